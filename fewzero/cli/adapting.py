"""``fewzero adapt``: unsupervised domain adaptation from the command line.

Everything a bad input can break (settings, both domains, the --init checkpoint, the output folder) is checked
before training, so a refused command leaves nothing in ``--out``. The folder then receives a live
``metrics.jsonl``, and at the end ``results.json``, ``results.md``, ``confusion.png``, ``tsne.png`` and
``model.pt`` (the selected model: ``fewzero.adapt_setup.load_adapted(path)`` gives it back as a module).
"""
from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path

from fewzero.errors import FewzeroError


def _weights(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise FewzeroError(f"--weights {text!r} is not a comma-separated list of numbers, e.g. 0.1,0.3,1") from None


def settings_from_args(args: argparse.Namespace):
    from fewzero.adapt_setup import AdaptSettings
    from fewzero.config import parse_override

    optional = ("steps", "batch_size", "lr", "checkpoints", "image_size", "channels")
    given = {name: getattr(args, name) for name in optional if getattr(args, name) is not None}
    method_args = dict(parse_override(text) for text in getattr(args, "set", []))
    return AdaptSettings(method=args.method, source=args.source, target=args.target, seed=args.seed,
                         backbone=args.backbone, init=args.init, weights=_weights(args.weights), select=args.select,
                         method_args=method_args, **given)


def write_outputs(folder: Path, result, keep: dict, command: str) -> None:
    """results.json, results.md, model.pt and (with matplotlib) confusion.png and tsne.png."""
    from fewzero.adapt_plots import markdown, run_pngs
    from fewzero.atomic import write_json, write_text
    from fewzero.adapt_setup import ADAPTED_KIND
    from fewzero.checkpoint import save_checkpoint

    summary = {**result.to_dict(), "command": command}
    save_checkpoint(folder / "model.pt", {"kind": ADAPTED_KIND, "settings": result.settings,
                                          "n_classes": len(result.report.class_names),
                                          "class_names": result.report.class_names,
                                          "model": keep["model"].state_dict()})
    write_json(folder / "results.json", summary)
    write_text(folder / "results.md", markdown(summary, command=command))
    if importlib.util.find_spec("matplotlib") is None:
        print("fewzero: note: matplotlib is not installed, so confusion.png and tsne.png were not drawn "
              "(pip install matplotlib)", file=sys.stderr)
        return
    run_pngs(result, keep, folder / "confusion.png", folder / "tsne.png")


def cmd_adapt(args: argparse.Namespace, argv: list[str]) -> None:
    from fewzero.adapt_runner import adapt
    from fewzero.adapt_setup import check_method_args, check_settings, load_data, load_target_test
    from fewzero.run_folder import RunFolder
    from fewzero.runlog import RunLog

    settings = settings_from_args(args)
    check_settings(settings)
    data = load_data(settings, args.data_root)
    test = load_target_test(settings, data["class_names"], args.data_root)
    # builds the model once: refuses a bad method argument or an --init checkpoint of another backbone before any work
    check_method_args(settings, len(data["class_names"]), data["source_train"][0])
    names = [Path(str(d)).stem for d in (settings.source, settings.target)]
    out = Path(args.out or f"runs/adapt_{settings.method}_{names[0]}_{names[1]}")
    command = shlex.join(["fewzero", *argv])
    with RunFolder(out, overwrite=args.overwrite) as folder, RunLog(folder) as log:
        keep: dict = {}
        result = adapt(settings, data=data, test=test, progress=not args.quiet, log=log, keep=keep)
        write_outputs(folder, result, keep, command)
    report = result.report
    chosen = result.selected[result.used]
    print(f"{settings.method} {settings.source} -> {settings.target}: target accuracy {report.accuracy:.2f} +- "
          f"{report.ci95:.2f} % (macro F1 {report.macro_f1:.2f}), weight {chosen['weight']:g} at step "
          f"{chosen['step']} selected by {result.used}; proxy A-distance {result.a_distance['before']:.2f} -> "
          f"{result.a_distance['after']:.2f}; results in {out}")
