"""Ship a trained run as the default checkpoint of ``fewzero eval --method <method> --dataset <dataset>``.

    python benchmarks/package_checkpoint.py runs/benchmark/protonet_1shot
    python benchmarks/package_checkpoint.py runs/benchmark/maml_20way --per-way    # maml_omniglot_20way.pt
    python benchmarks/package_checkpoint.py runs/benchmark/maml_20way5shot --per-way --per-shot  # ..._20way_5shot.pt
    python benchmarks/package_checkpoint.py runs/pretrain_conv4_omniglot   # a fewzero pretrain run: pretrain_conv4_omniglot.pt

Copies ``<run>/best.pt`` (written by ``fewzero train``) to ``fewzero/pretrained/<method>_<dataset>.pt`` and writes
``<method>_<dataset>.md`` beside it with the training command, config and metrics, all read from the run. The test-time
step size per shot count of a MAML-family model (``learner.test_inner_lr_by_shot``) is not in a training run: after
re-evaluating the packaged model (``benchmarks/omniglot.py --packaged``), ``benchmarks/store_test_inner_lr.py`` stores
the one chosen on validation episodes; a run whose config has it gets a "Test-time step size" section here.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from fewzero.atomic import write_text

MAX_BYTES = 1_000_000
CONFIG_HEADING = "Config (as saved in the checkpoint):"
STEP_SIZE_HEADING = "## Test-time step size"


def config_block(config: dict) -> str:
    """The md lines (joined) that show a checkpoint's saved config."""
    return "\n".join([CONFIG_HEADING, "", "```yaml", yaml.safe_dump(config, sort_keys=False).strip(), "```"])


def step_size_section(by_shot: dict[int, float], *, origin: str, notes: dict[int, str] | None = None) -> str:
    """The md section on the eval-mode step size per shot count a packaged model carries; ``origin`` says where the
    values come from, ``notes`` add a remark per shot count."""
    notes = notes or {}
    lines = [STEP_SIZE_HEADING, "",
             "`fewzero eval` adapts this model to a test task with the inner step size stored for the number of shots "
             "of the task's support set (`learner.test_inner_lr_by_shot` in the config above):", ""]
    lines += [f"- {shot}-shot: {lr:g}" + (f" ({notes[shot]})" if shot in notes else "")
              for shot, lr in sorted(by_shot.items())]
    lines += ["", origin + " Other shot counts adapt with `test_inner_lr` (default: the training step size). "
              "`--set learner.test_inner_lr=LR` overrides the stored step sizes (every test task then adapts with LR); "
              "`--set \"learner.test_inner_lr_by_shot={1: LR1, 5: LR5}\"` replaces them.", ""]
    return "\n".join(lines)


def with_step_size_section(note: str, section: str | None) -> str:
    """``note`` (a packaged model's md) with its step-size section replaced by ``section`` (None: removed); the
    section goes last."""
    start = note.find(STEP_SIZE_HEADING)
    if start >= 0:
        end = note.find("\n## ", start + len(STEP_SIZE_HEADING))
        note = note[:start] + (note[end + 1:] if end >= 0 else "")
    note = note.rstrip("\n") + "\n"
    return note + ("\n" + section if section else "")


def packaged_size(path: Path) -> int:
    """The size in bytes of a packaged checkpoint; a FewzeroError past the limit of packaged files (1 MB)."""
    from fewzero.errors import FewzeroError

    size = path.stat().st_size
    if size > MAX_BYTES:
        raise FewzeroError(f"{path} is {size} bytes: packaged checkpoints must stay under 1 MB")
    return size

def store_main(argv: list[str] | None, *, doc: str, table: Path, store, script: str) -> None:
    """The command line of a script that stores choices recorded in a results ``table`` into the packaged models:
    ``store(table_dict, packaged_folder)`` returns the files it changed."""
    from fewzero.errors import FewzeroError
    from fewzero.pretrained import PACKAGED

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=table, help="the results table that records the choices")
    parser.add_argument("--packaged", type=Path, default=PACKAGED, help="the folder of the packaged models")
    args = parser.parse_args(argv)
    try:
        changed = store(json.loads(args.table.read_text()), args.packaged)
    except FewzeroError as exc:
        sys.exit(f"{script}: {exc}")
    print("\n".join(f"wrote {path}" for path in changed) or "nothing to change")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished `fewzero train` run folder")
    parser.add_argument("--per-way", action="store_true",
                        help="ship as <method>_<dataset>_<way>way.pt, trained with configs/<that name>.yaml "
                             "(the model `fewzero eval --way <way>` picks for learners tied to a number of ways)")
    parser.add_argument("--per-shot", action="store_true",
                        help="with --per-way: ship as <method>_<dataset>_<way>way_<shot>shot.pt, the model "
                             "`fewzero eval --way <way> --shot <shot>` picks")
    args = parser.parse_args()
    if args.per_shot and not args.per_way:
        parser.error("--per-shot needs --per-way: a model for one number of shots is also for one number of ways")

    from fewzero.checkpoint import PRETRAINED_KIND, load_checkpoint
    from fewzero.pretrained import PACKAGED, pretrained_name, shipped_name

    payload = load_checkpoint(args.run / "best.pt")
    metrics = json.loads((args.run / "metrics.json").read_text())
    config = payload["config"]
    size = (args.run / "best.pt").stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"{args.run / 'best.pt'} is {size} bytes: packaged checkpoints must stay under 1 MB")
    prov_path = args.run / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    pretrained = payload.get("kind") == PRETRAINED_KIND
    if pretrained:
        name = pretrained_name(config["backbone"], config["dataset"])
        what = (f"The pretrained backbone every transfer learner (baseline, baselinepp, simpleshot, logreg, finetune) "
                f"starts from in `fewzero eval --method <learner> --dataset {config['dataset']}`, produced by:")
        command = (f"fewzero pretrain --backbone {config['backbone']} --dataset {config['dataset']} "
                   f"--config configs/pretrain_{config['dataset']}.yaml --out {args.run}")
        when, done = f"epoch {metrics['best_epoch']}", f"epochs trained: {metrics['epochs_done']}"
    else:
        name = shipped_name(config["method"], config["dataset"], config["train_way"] if args.per_way else None,
                            config["train_shot"] if args.per_shot else None)
        what = "The default checkpoint of `fewzero eval --method {} --dataset {}`, produced by:".format(
            config["method"], config["dataset"])
        command = (f"fewzero train --method {config['method']} --dataset {config['dataset']} "
                   f"--config configs/{name}.yaml --out {args.run}")
        when, done = f"episode {metrics['best_episode']}", f"episodes trained: {metrics['episodes_done']}"
    if str(prov.get("command", "")).startswith(("fewzero train ", "fewzero pretrain ")):
        command = prov["command"]  # what the run recorded (e.g. a benchmark's own config), not the default
    dest = PACKAGED / f"{name}.pt"
    shutil.copyfile(args.run / "best.pt", dest)
    lines = [f"# `{name}.pt`", "", what, "", f"```bash\n{command}\n```", "",
             f"- best validation accuracy ({config['method']}, {config['test_way']}-way {config['test_shot']}-shot, "
             f"{config['val_episodes']} fixed validation episodes): {metrics['best_val_accuracy']:.2f} ± "
             f"{metrics['best_val_ci95']:.2f} % at {when}",
             f"- {done} in {metrics['train_seconds'] / 60:.1f} min "
             f"(stopped by the time cap: {metrics['stopped_early']})",
             f"- size: {size} bytes",
             f"- training commit: {prov.get('commit', 'not recorded for this run')}", "",
             config_block(config), ""]
    learner = config.get("learner") or {}
    by_shot = learner.get("test_inner_lr_by_shot")
    section = step_size_section(by_shot, origin="Set in the training run's config.") if by_shot else None
    write_text(dest.with_suffix(".md"), with_step_size_section("\n".join(lines), section))
    print(f"wrote {dest} and {dest.with_suffix('.md')}")
    if config["method"] in ("maml", "fomaml", "anil") and config["dataset"] == "omniglot" and not by_shot:
        print(f"note: {name}.pt adapts with its training step size at test time; to store the one chosen on "
              f"validation episodes, run python benchmarks/omniglot.py --method {config['method']} --packaged, then "
              f"python benchmarks/store_test_inner_lr.py")


if __name__ == "__main__":
    main()
