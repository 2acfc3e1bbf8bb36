"""Store the transfer learners' settings chosen on validation episodes in the packaged pretrained backbone.

    python benchmarks/store_transfer_settings.py   # after benchmarks/omniglot_transfer.py has written its table

``benchmarks/omniglot_transfer.py`` chooses each transfer learner's settings (SimpleShot's normalisation, logistic
regression's C, fine-tuning's frozen blocks and learning rate, ...) per task shape on validation episodes and records
them in ``paper_results/omniglot_transfer.json``. This writes them into the packaged backbone's checkpoint
(``task_settings``: learner -> "5w1s" -> settings; its weights are kept as they are), so that the plain
``fewzero eval --method simpleshot --way 20 --shot 1`` adapts as the table's cell did, and says so in the model's
``.md``. A backbone whose weights are not the ones the table evaluated is refused. Rerunning it changes no file.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from omniglot_transfer import run_of  # noqa: E402
from result_cache import weights_digest  # noqa: E402
from package_checkpoint import packaged_size, store_main  # noqa: E402
from provenance import ROOT  # noqa: E402

from fewzero.atomic import write_text  # noqa: E402
from fewzero.checkpoint import TASK_SETTINGS  # noqa: E402
from fewzero.errors import FewzeroError  # noqa: E402

TABLE = ROOT / "paper_results" / "omniglot_transfer.json"
SECTION = "## Settings per task shape"


def chosen_settings(table: dict) -> dict[str, dict[str, dict]]:
    """{learner: {"5w1s": settings}} for every learner the table chose settings for on validation episodes."""
    return {method: {setting: dict(result["settings"]) for setting, result in by_setting.items()}
            for method, by_setting in table["results"].items() if method in table.get("grids", {})}


def evaluated_digest(run: dict, path: str) -> str:
    """The weights digest of the backbone ``path`` that a ``run`` of the table evaluated: recorded with the run, or
    else read from the checkpoint file as it was at the run's commit."""
    recorded = (run.get("weights_digests") or {}).get("pretrained")
    if recorded:
        return recorded
    commit = str(run.get("commit", "")).split(" ")[0]
    try:
        blob = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout
    except subprocess.CalledProcessError:
        raise FewzeroError(f"the table records no weights digest and {path} is not in git at its commit {commit}: "
                           f"rerun benchmarks/omniglot_transfer.py") from None
    with tempfile.TemporaryDirectory() as folder:
        old = Path(folder) / "evaluated.pt"
        old.write_bytes(blob)
        return weights_digest(old)


def runs_behind(table: dict, methods) -> list[dict]:
    """The distinct runs of the table that scored ``methods`` (each once, in order)."""
    runs = []
    for method in methods:
        run = run_of(table, method)
        if run not in runs:
            runs.append(run)
    return runs


def section(chosen: dict[str, dict[str, dict]], table: dict) -> str:
    shapes = sorted({shape for by_shape in chosen.values() for shape in by_shape},
                    key=lambda s: tuple(int(n) for n in re.fullmatch(r"(\d+)w(\d+)s", s).groups()))
    rows = ["| learner | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
    for method, by_shape in chosen.items():
        cells = (", ".join(f"{k}={v}" for k, v in by_shape[s].items()) if s in by_shape else "–" for s in shapes)
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join([
        SECTION, "",
        "`fewzero eval --method <learner> --way W --shot S` (and `learner_from_checkpoint(..., way=W, shot=S)`) builds "
        "the learner with the settings stored in this checkpoint for its task shape, so the plain command adapts as "
        "the cell of paper_results/omniglot_transfer.md did. Each was chosen for its shape on "
        f"{table['episodes']['val']} fixed validation episodes ({table['finetune_episodes']['val']} for finetune) "
        f"among the grid {json.dumps(table['grids'])}, by "
        + "; ".join(f"`{run['command']}` at commit {run['commit']}, {run['date']}" for run in runs_behind(table, chosen))
        + "; stored by `python benchmarks/store_transfer_settings.py`. Other task shapes use the "
        "learner's defaults; a `--set learner.KEY=VALUE` (or a `--config`) replaces that one setting.", "",
        *rows, ""])


def store(table: dict, packaged: Path) -> list[Path]:
    """Write the chosen settings into the packaged backbone and its note; the files that changed."""
    from fewzero.checkpoint import load_checkpoint, save_checkpoint

    path = packaged / "pretrain_conv4_omniglot.pt"
    if Path(table["checkpoints"]["pretrained"]).name != path.name:
        raise FewzeroError(f"the table evaluated {table['checkpoints']['pretrained']}, not the packaged {path.name}: "
                           f"rerun benchmarks/omniglot_transfer.py on the packaged backbone")
    chosen, changed = chosen_settings(table), []
    if any(weights_digest(path) != evaluated_digest(run, table["checkpoints"]["pretrained"])
           for run in runs_behind(table, chosen)):
        raise FewzeroError(f"{path} does not hold the weights the table evaluated: rerun "
                           f"benchmarks/omniglot_transfer.py on it first")
    payload = load_checkpoint(path)
    if payload.get(TASK_SETTINGS) != chosen:  # torch.save is not byte-reproducible: write only what changes
        save_checkpoint(path, {**payload, TASK_SETTINGS: chosen})
        changed.append(path)
    size = packaged_size(path)
    note_path = path.with_suffix(".md")
    note = note_path.read_text(encoding="utf-8")
    kept = note.split(f"\n{SECTION}\n")[0].rstrip("\n")
    new = re.sub(r"^- size: \d+ bytes$", f"- size: {size} bytes", kept, count=1, flags=re.M)
    new = f"{new}\n\n{section(chosen, table)}"
    if new != note:
        write_text(note_path, new)
        changed.append(note_path)
    return changed


def main(argv: list[str] | None = None) -> None:
    store_main(argv, doc=__doc__, table=TABLE, store=store, script="store_transfer_settings.py")

if __name__ == "__main__":
    main()
