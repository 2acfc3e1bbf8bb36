"""Write ``configs/<learner>_cub50.yaml`` for every zero-shot learner of ``paper_results/zsl_cub50.json``, so that
the plain command ``fewzero eval --method NAME`` evaluates NAME as the table's attributes row did: on the features
the table chose on validation classes, with the hyper-parameters it chose on them and its fixed settings (gcnzsl's
class graph, ``zsl_common.FIXED``); and ``configs/ensemble_cub50.yaml``, every one of them as an ensemble member,
as ``benchmarks/ensembles.py`` runs them; ``configs/ensemble_cub50_both.yaml`` has each of them twice, on attributes
and on text (``--part cub50_both``).

    python benchmarks/zsl_configs.py           # after a rerun of benchmarks/zsl_cub.py
    python benchmarks/zsl_configs.py --check   # exit 1 (naming the files) if a config differs from the table

A test runs the check, so a table rerun that chooses other values cannot leave the configs behind.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from zsl_common import table_data_options, table_params

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "paper_results" / "zsl_cub50.json"
SEMANTICS = "attributes"


def config_text(method: str, table: dict) -> str:
    """The YAML of ``configs/<method>_cub50.yaml`` from the table's JSON (``paper_results/zsl_cub50.json``)."""
    values = {"method": method, "dataset": "cub50", "semantics": SEMANTICS, "data": table_data_options(table),
              "learner": table_params(table, method, SEMANTICS)}
    header = [f"# fewzero eval --method {method}   (read by default for {method} on cub50; --config, flags and --set "
              f"win over it)",
              f"# The {method} row of paper_results/zsl_cub50.md ({SEMANTICS} semantics, seed 0): the features the "
              f"table chose on",
              "# validation classes (data:) and the learner settings it chose on them, with its fixed ones "
              "(learner:). The settings",
              f"# were chosen for {SEMANTICS}; with --semantics text they are a starting point, not the text row's.",
              "# Written by benchmarks/zsl_configs.py from paper_results/zsl_cub50.json; do not edit by hand."]
    return "\n".join(header) + "\n" + yaml.safe_dump(values, sort_keys=False, default_flow_style=None)


ENSEMBLE_HEADER = """# fewzero eval --method ensemble --config configs/ensemble_cub50.yaml
# Every zero-shot learner of paper_results/zsl_cub50.md as a member, on the features that table chose on validation
# classes (data:) with the hyper-parameters it chose on them and its fixed settings (params:), as
# benchmarks/ensembles.py runs it. The combiner is fitted on seen classes held out as pseudo-unseen, never on test
# items or unseen classes. The feature generators (cvae, fclswgan, tfvaegan) are refitted for each held-out split
# and take most of the time. Written by benchmarks/zsl_configs.py from paper_results/zsl_cub50.json.
"""


BOTH_HEADER = """# fewzero eval --method ensemble --config configs/ensemble_cub50_both.yaml
# Every zero-shot learner of paper_results/zsl_cub50.md twice as a member: on attributes and on text (<learner>@text),
# each with the hyper-parameters that table chose for it on that semantics on validation classes, and each reading
# its own block of the attributes+text semantics (semantics:), as benchmarks/ensembles.py --part cub50_both runs it.
# The combiner is fitted on seen classes held out as pseudo-unseen, never on test items or unseen classes. Twice the
# members of ensemble_cub50.yaml, about twice its time. Written by benchmarks/zsl_configs.py from
# paper_results/zsl_cub50.json.
"""


def ensemble_config_text(table: dict, members, semantics: tuple[str, ...] = (SEMANTICS,)) -> str:
    """The YAML of an ensemble config: ``members`` (learner names, in order) of the table on each of ``semantics``
    (``configs/ensemble_cub50.yaml``: attributes; ``ensemble_cub50_both.yaml``: attributes, then text, each member
    naming its block and the ensemble its members)."""
    from ensembles import member_name

    chosen = [(m, sem) for sem in semantics for m in members if m in table["results"][sem]]
    both = len(semantics) > 1
    learner = {"combine": "stacking", **({"names": [member_name(m, sem) for m, sem in chosen]} if both else {}),
               "members": [{"method": m, **({"semantics": sem} if both else {}), "params": table_params(table, m, sem)}
                           for m, sem in chosen]}
    values = {"method": "ensemble", "dataset": "cub50", "semantics": "+".join(semantics),
              "data": table_data_options(table), "learner": learner}
    return (BOTH_HEADER if both else ENSEMBLE_HEADER) + yaml.safe_dump(values, sort_keys=False, default_flow_style=None)


def configs(table: dict) -> dict[Path, str]:
    """Path -> text of every learner's config and of the ensemble's."""
    from ensembles import CUB_PARTS, ZSL_MEMBERS

    return {**{ROOT / "configs" / f"{m}_cub50.yaml": config_text(m, table) for m in sorted(table["results"][SEMANTICS])},
            ROOT / "configs" / "ensemble_cub50.yaml": ensemble_config_text(table, ZSL_MEMBERS),
            ROOT / "configs" / "ensemble_cub50_both.yaml": ensemble_config_text(table, ZSL_MEMBERS,
                                                                                CUB_PARTS["cub50_both"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a config differs")
    args = parser.parse_args()
    wanted = configs(json.loads(TABLE.read_text()))
    stale = [path for path, text in wanted.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} differs from {TABLE.relative_to(ROOT)}: run benchmarks/zsl_configs.py",
                  file=sys.stderr)
        sys.exit(1 if stale else 0)
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
