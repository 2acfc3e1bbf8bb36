"""The development pairs of benchmarks/domain_adaptation_dev.py (built only from the benchmark's train/val digits)
and the rule that decides which DAN / DANN variant ships."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark_scripts import load_script
from fewzero.data.digits import upsample_uci
from fewzero.data.domains import load_domain


def test_development_digits_are_the_train_and_val_images_and_never_a_test_image():
    dev = load_script("domain_adaptation_dev")
    images, labels = dev.development_digits()
    test = load_domain("mnist", subset="test", stratify=False, channels=1)
    test_images = test.images[test.item_image].numpy()[:, 0]
    assert images.shape == (4000, 28, 28) and labels.shape == (4000,)
    seen = {row.tobytes() for row in images}
    assert not any(row.tobytes() in seen for row in test_images)


def test_texture_target_blends_strokes_over_a_seeded_texture():
    dev = load_script("domain_adaptation_dev")
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 10:18, 12:16] = 255
    a, b = dev.texture_target(digits, seed=5), dev.texture_target(digits, seed=5)
    assert a.shape == (3, 3, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, dev.texture_target(digits, seed=6))
    background = dev.texture_target(np.zeros_like(digits), seed=5)
    stroke = digits[:, None].repeat(3, 1) > 127
    assert np.array_equal(a[stroke], 255 - background[stroke]) and np.array_equal(a[~stroke], background[~stroke])


def test_lowres_target_is_the_uci_drawing_of_17_level_block_means():
    dev = load_script("domain_adaptation_dev")
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 17, (2, 4, 4))  # a 20x20 box made of 5x5 blocks: 8x8 area cells fall inside blocks
    digits = np.zeros((2, 28, 28), np.uint8)
    digits[:, 4:24, 4:24] = np.kron(blocks, np.ones((5, 5))) * 255 // 16
    expected_levels = np.kron(blocks, np.ones((2, 2)))
    expected = (upsample_uci(torch.from_numpy(expected_levels))[:, 0] * 255).round().byte().numpy()
    assert np.abs(dev.lowres_target(digits).astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("means, ships", [
    ({"dann": 50.0, "dann_a": 50.9, "dann_b": 49.0}, "dann"),  # best gains < margin: the default stays
    ({"dann": 50.0, "dann_a": 51.0, "dann_b": 52.5}, "dann_b"),
    ({"dann": 53.0, "dann_a": 51.0, "dann_b": 52.5}, "dann"),
])
def test_the_rule_ships_the_best_variant_only_by_the_margin(means, ships):
    report = load_script("domain_adaptation_dev_report")
    variants = {"source_only": ("source_only", {}), "dann": ("dann", {}), "dann_a": ("dann", {"x": 1}),
                "dann_b": ("dann", {"x": 2})}
    assert report.decide({"source_only": 10.0, **means}, variants, 1.0)["dann"]["ships"] == ships


def test_the_table_waits_for_every_run_and_then_decides(tmp_path):
    report = load_script("domain_adaptation_dev_report")
    variants = {"source_only": ("source_only", {}), "dan": ("dan", {}), "dan_h": ("dan", {"layers": ["hidden"]})}
    accuracy = {"source_only": 40.0, "dan": 45.0, "dan_h": 47.0}

    def run(variant, pair, seed):
        (tmp_path / f"{pair}_{variant}_seed{seed}.json").write_text(json.dumps({
            "variant": variant, "pair": pair, "seed": seed, "accuracy": accuracy[variant] + seed,
            "a_distance": {"before": 2.0, "after": 1.5}, "seconds": 30.0,
            "provenance": {"commit": "abc", "date": "today", "machine": "test"}}))

    for variant in variants:
        run(variant, "p", 0)
    out = report.write_report(tmp_path, variants, ("p",), [0, 1], 1.0, tmp_path / "dev.md")
    assert "no decision yet" in out.read_text()
    for variant in variants:
        run(variant, "p", 1)
    text = report.write_report(tmp_path, variants, ("p",), [0, 1], 1.0, tmp_path / "dev.md").read_text()
    assert "| dan_h | `{\"layers\": [\"hidden\"]}` | 47.00, 48.00 | 47.50 | 1.50 |" in text
    assert "- dan: **dan_h** ships (+2.00 over the default dan); dan_h vs dan per pair: p +2.00" in text


def test_the_library_defaults_are_the_variants_the_development_table_decided():
    import re
    from pathlib import Path

    from fewzero.backbones.simple import MLP
    from fewzero.registry import ADAPTERS

    dev = load_script("domain_adaptation_dev")
    decision = Path(dev.OUT).read_text().split("## Decision")[1].split("##")[0]

    def build(method, **args):
        torch.manual_seed(0)
        model = ADAPTERS.create(method, backbone=MLP(in_features=12, hidden=8, out_features=6), feature_dim=6,
                                n_classes=3, **args)
        return repr(model), getattr(model, "align_layers", None), getattr(model, "layer", None)

    for method in ("dan", "dann"):
        (line,) = [row for row in decision.splitlines() if row.startswith(f"- {method}:")]
        shipped = re.search(r"\*\*(\w+)\*\*", line).group(1)
        variant_method, args = dev.VARIANTS[shipped]
        assert variant_method == method
        assert build(method) == build(method, **{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
