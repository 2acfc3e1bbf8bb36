"""Finished parts of a benchmark in a JSON file, so that a killed run continues where it stopped."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


class Cache:
    """``get_or_run(key, run)``: the stored value of ``key``, else ``run()``'s, stored at once (atomically)."""

    def __init__(self, path: Path):
        self.path = path
        self.values = json.loads(path.read_text()) if path.is_file() else {}

    def get_or_run(self, key: str, run):
        if key not in self.values:
            from fewzero.atomic import write_json

            self.values[key] = run()
            write_json(self.path, self.values)
        return self.values[key]

    def absorb(self, other: Path, must_match: tuple[str, ...] = ()) -> int:
        """Takes the results of another cache file that this one lacks (e.g. written by a process that ran a share
        of the work); the keys in ``must_match`` (a run's settings) must hold the same values in both. Returns how
        many results it took."""
        from fewzero.atomic import write_json

        values = json.loads(other.read_text())
        for key in must_match:
            if values.get(key) != self.values.get(key):
                raise SystemExit(f"{other} holds results of other settings ({key}): it cannot join {self.path}")
        new = {k: v for k, v in values.items() if k not in self.values}
        if new:
            self.values.update(new)
            write_json(self.path, self.values)
        return len(new)


def weights_digest(checkpoint: Path) -> str:
    """A digest of a checkpoint's tensors (weights and base-class statistics), not of its file: settings stored in
    it later (benchmarks/store_transfer_settings.py) leave the digest unchanged."""
    from fewzero.checkpoint import load_checkpoint

    payload = load_checkpoint(checkpoint)
    digest = hashlib.sha256()
    for part in ("model", "statistics"):
        for name, tensor in sorted((payload.get(part) or {}).items()):
            digest.update(f"{part}.{name}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def members_digest(members: dict[str, tuple[str, dict]]) -> str:
    """One short digest of the members' (weights digest, settings), by name."""
    return hashlib.sha256(json.dumps(members, sort_keys=True).encode()).hexdigest()[:12]
