"""The GBU table (Xian et al., TPAMI 2018) from the xlsa17 release: every registered zero-shot learner on each
dataset whose ``res101.mat`` you have, attribute semantics, proposed split.

    python benchmarks/zsl_gbu.py                          # every dataset with xlsa17/<NAME>/res101.mat
    python benchmarks/zsl_gbu.py --datasets CUB AWA2      # only these

Put the release's ``res101.mat`` beside ``att_splits.mat`` in ``<data root>/xlsa17/<NAME>/`` (the files are not
shipped with fewzero). Hyper-parameters are tuned on ``valclasses1.txt`` by zero-shot accuracy on training items;
every number comes from ``fewzero.evaluate_zsl.evaluate_zero_shot``. Writes ``paper_results/zsl_gbu.{json,md}``
with provenance and the published numbers beside ours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fewzero.atomic import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import ROOT, provenance  # noqa: E402
from zsl_common import GBU, GBU_NOTE, GBU_PROTOCOL, GBU_SOURCE, fmt, run_learners  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--datasets", nargs="+", default=None, help="CUB AWA1 AWA2 SUN APY (default: all found)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tune", action="store_true", help="use every learner's default hyper-parameters")
    parser.add_argument("--methods", nargs="+", default=None, help="learners (default: every registered one)")
    parser.add_argument("--out", default=str(ROOT / "paper_results" / "zsl_gbu"), help="output path stem")
    args = parser.parse_args(argv)

    from fewzero.data.xlsa17 import DATASETS, dataset_folder
    from fewzero.zsl.loaders import load_zero_shot
    from fewzero.errors import FewzeroError

    wanted = [d.upper() for d in args.datasets] if args.datasets else list(DATASETS)
    unknown = [d for d in wanted if d not in DATASETS]
    if unknown:
        raise SystemExit(f"unknown xlsa17 dataset {unknown[0]!r}: choose from {', '.join(DATASETS)}")
    found = [d for d in wanted if (dataset_folder(d, args.data_root) / "res101.mat").is_file()]
    if not found:
        raise SystemExit(f"no res101.mat found for {', '.join(wanted)} under "
                         f"{dataset_folder(wanted[0], args.data_root).parent}: put the xlsa17 release files there")
    started = provenance()
    results, sizes = {}, {}
    for name in found:
        try:
            data = load_zero_shot(f"xlsa17-{name}", "attributes", args.data_root, progress=True)
        except FewzeroError as exc:
            raise SystemExit(f"xlsa17-{name}: {exc}") from None
        sizes[name] = {"seen": data.seen_classes.numel(), "unseen": data.unseen_classes.numel(),
                       "train": data.train_y.numel(), "test_seen": data.test_seen_y.numel(),
                       "test_unseen": data.test_unseen_y.numel(), "feature_dim": data.train_x.shape[1]}
        results[name] = run_learners(data, args.seed, not args.no_tune, names=args.methods, label=name)
    report = {"benchmark": "xlsa17 GBU", "datasets": sizes, "config": {"tune": not args.no_tune,
              "semantics": "attributes (att)", "val_split": 1}, "seed": args.seed, "results": results,
              "published": {"source": GBU_SOURCE, "protocol": GBU_PROTOCOL, "note": GBU_NOTE, "results": GBU},
              "provenance": {**started, "finished": provenance()["date"]}}
    out = Path(args.out)
    write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(out.with_suffix(".md"), render(report))
    print(f"wrote {out}.json and {out}.md")
    return results


def render(out: dict) -> str:
    prov = out["provenance"]
    lines = ["# Zero-shot learning on the xlsa17 proposed split (GBU format)", "",
             "Per-class mean top-1 in %: T1 among unseen classes; u, s and H = 2us/(u+s) searched over all classes; "
             "cal. H with calibrated stacking chosen on training items. Ours / published (Xian et al.).", ""]
    for name, rows in out["results"].items():
        size = out["datasets"][name]
        lines += [f"## {name}: {size['seen']} seen, {size['unseen']} unseen classes; {size['train']} / "
                  f"{size['test_seen']} / {size['test_unseen']} train / seen test / unseen test images", "",
                  "| learner | T1 | u | s | H | cal. H | published T1 | published u | published s | published H |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for method, r in rows.items():
            pub = out["published"]["results"].get(method, {}).get(name, (None,) * 4)
            lines.append(f"| {method} | {fmt(r['t1'])} | {fmt(r['u'])} | {fmt(r['s'])} | {fmt(r['h'])} | "
                         f"{fmt(r['calibrated_h'])} | " + " | ".join(fmt(v) for v in pub) + " |")
        lines.append("")
    lines += [f"Published: {out['published']['source']} ({out['published']['protocol']}; "
              f"{out['published']['note']}).", "",
              "## Provenance", "", f"- command: `{prov['command']}`", f"- config: `{json.dumps(out['config'])}`",
              f"- seed: {out['seed']}", f"- commit: {prov['commit']}",
              f"- date: {prov['date']} (finished {prov['finished']})", f"- machine: {prov['machine']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
