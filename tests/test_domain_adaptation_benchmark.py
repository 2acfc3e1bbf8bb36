"""The domain adaptation table (benchmarks/domain_adaptation_report.py): its means, stds and target verdicts from
run files whose numbers are known."""
from __future__ import annotations

import json

from benchmark_scripts import load_script


def fake_run(path, accuracy: float, oracle: bool = False) -> None:
    selected = {name: {"weight": 1.0, "step": 10, "criteria": {name: 90.0}, "report": {"accuracy": accuracy}}
                for name in (("source_val",) if oracle else ("dev", "iwv", "source_val"))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "selected": selected, "a_distance": {"before": 2.0, "after": 1.0 if not oracle else 1.5}, "seconds": 60.0,
        "settings": {"method": "m", "source": "s", "target": "t", "seed": 0, "steps": 10},
        "provenance": {"command": "python benchmarks/domain_adaptation.py", "commit": "abc", "date": "today",
                       "machine": "test"}}))


def test_the_table_and_its_target_verdicts_follow_from_the_runs(tmp_path, data_root):
    report = load_script("domain_adaptation_report")
    runs = tmp_path / "runs" / "mnist_to_uci_digits"
    for seed, (base, dan, dann, oracle) in enumerate([(70.0, 84.0, 73.0, 98.0), (72.0, 86.0, 74.0, 99.0)]):
        fake_run(runs / f"source_only_seed{seed}.json", base)
        fake_run(runs / f"dan_seed{seed}.json", dan)
        fake_run(runs / f"dann_seed{seed}.json", dann)
        fake_run(runs / f"target_oracle_seed{seed}.json", oracle, oracle=True)
    out = report.write_report(tmp_path / "runs", [("mnist", "uci_digits")],
                              ["source_only", "dan", "dann", "target_oracle"], [0, 1], "cmd", out=tmp_path / "t.md")
    text = out.read_text()
    assert "| dan | 85.00 ± 1.41 (n=2) |" in text and "| target_oracle | 98.50 ± 0.71 (n=2) |" in text
    assert "| dan | 2.00 → 1.00 |" in text
    (verdict,) = json.loads(out.with_suffix(".json").read_text())["targets"]
    assert "source-only 71.00; dan +14.00, dann +2.50" in verdict
    assert "every method ≥ +5: missed (dann +2.50)" in verdict and "best (dan) ≥ +10" in verdict
    assert verdict.endswith(": met")
    assert "mnist 3000 / 1000 / 1000; uci_digits 1079 / 359 / 359" in text
