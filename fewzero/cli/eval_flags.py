"""Flags of ``fewzero eval``: which kind of method takes each, and the config overrides they make."""
from __future__ import annotations

import argparse

from fewzero.cli.parser import EVAL_FLAGS_BY_KIND, flag_name
from fewzero.errors import FewzeroError

# few-shot eval flag (argparse dest) -> the config key it sets
FEW_SHOT_EVAL_KEYS = {"split": "split", "seed": "test_seed", "device": "device", "way": "test_way",
                      "shot": "test_shot", "query": "test_query", "episodes": "test_episodes",
                      "subset": "test_subset"}


def refuse_foreign_flags(args: argparse.Namespace, kind: str, allowed: tuple[str, ...] = ()) -> None:
    """A flag that only another kind of method takes (and is not in ``allowed``) is an error that names the flags
    this kind takes."""
    foreign = [flag_name(dest) for other, dests in EVAL_FLAGS_BY_KIND.items() if other != kind
               for dest in dests if dest not in allowed and getattr(args, dest, None) is not None]
    if foreign:
        own = ", ".join(flag_name(dest) for dest in EVAL_FLAGS_BY_KIND[kind]) or "none"
        raise FewzeroError(f"{', '.join(foreign)} does not apply to {args.method} (a {kind} method): drop it; "
                           f"the {kind} flags are {own}")


def overrides_of(args: argparse.Namespace, mapping: dict[str, str]) -> tuple[dict, dict]:
    """(overrides, origins) of ``--set`` and of the flags in ``mapping`` (argparse dest -> config key)."""
    from fewzero.config import command_line_overrides

    return command_line_overrides(args.set, {flag_name(dest): (key, getattr(args, dest, None))
                                             for dest, key in mapping.items()})
