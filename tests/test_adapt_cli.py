"""``fewzero adapt`` end to end on tiny .npz domains: its outputs, label-free training through the real data path,
``--init``, and the bad inputs that must fail with one line and leave nothing behind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import bad_input_helpers
from bad_input_helpers import fails

from fewzero.adapt_runner import adapt
from fewzero.adapt_setup import AdaptSettings, build_backbone, load_adapted
from fewzero.checkpoint import PRETRAINED_KIND, save_checkpoint
from fewzero.cli import main
from fewzero.registry import BACKBONES

pytestmark = pytest.mark.usefixtures("one_torch_thread")
isolated = bad_input_helpers.isolated  # autouse: an empty cache, no data root, no network


def write_domain(path, *, seed: int, invert: bool, per_class: int = 20, classes: int = 3, labels=None):
    """Grey 28x28 images: class c is a bright horizontal bar at row 6 + 8c, with noise; ``invert`` flips intensities
    (the domain shift). ``labels`` replaces the labels (e.g. a permutation)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), per_class)
    x = rng.uniform(0, 0.3, (len(y), 28, 28))
    for i, c in enumerate(y):
        x[i, 6 + 8 * c: 9 + 8 * c, 4:24] = 1.0
    x = 1.0 - x if invert else x
    np.savez(path, x=(255 * x).astype(np.uint8), y=y if labels is None else labels)
    return path


@pytest.fixture
def domains(tmp_path):
    return (write_domain(tmp_path / "ink.npz", seed=0, invert=False),
            write_domain(tmp_path / "paper.npz", seed=1, invert=True))


def test_adapt_writes_every_output(tmp_path, domains, capfd):
    out = tmp_path / "run"
    rc = main(["adapt", "--method", "dann", "--source", str(domains[0]), "--target", str(domains[1]),
               "--steps", "4", "--checkpoints", "2", "--weights", "0.5", "--channels", "1", "--out", str(out), "--quiet"])
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    assert "target accuracy" in captured.out and "selected by dev" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "metrics.jsonl", "model.pt", "results.json",
                                                      "results.md", "tsne.png"]
    result = json.loads((out / "results.json").read_text())
    assert set(result["selected"]) == {"dev", "iwv", "source_val"} and result["used"] == "dev"
    assert [(c["weight"], c["step"]) for c in result["candidates"]] == [(0.5, 2), (0.5, 4)]
    report = result["selected"]["dev"]["report"]
    assert report["n_images"] == sum(map(sum, report["confusion"])) == 12  # 3 classes x 20 % of 20
    assert 0.0 <= result["a_distance"]["before"] <= 2.0 and 0.0 <= result["a_distance"]["after"] <= 2.0
    state = torch.load(out / "model.pt", weights_only=True)
    assert "domain_classifier.0.weight" in state["model"] and state["model"]["backbone.block1.0.weight"].shape[1] == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    model = load_adapted(out / "model.pt")
    x = torch.from_numpy(np.load(domains[1])["x"][:4]).float().div(255).unsqueeze(1)
    assert model(x).shape == (4, 3)
    assert "| dev (used) |" in (out / "results.md").read_text()


def test_method_arguments_from_set_reach_the_model_and_its_reload(tmp_path, domains, capfd):
    out = tmp_path / "run"
    rc = main(["adapt", "--method", "dann", "--source", str(domains[0]), "--target", str(domains[1]), "--steps", "2",
               "--checkpoints", "1", "--weights", "0.5", "--channels", "1", "--set", "layer=hidden",
               "--set", "domain_depth=2", "--set", "domain_hidden=16", "--set", "domain_batch_norm=true",
               "--out", str(out), "--quiet"])
    assert rc == 0, capfd.readouterr().err
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["method_args"] == {"layer": "hidden", "domain_depth": 2, "domain_hidden": 16,
                                       "domain_batch_norm": True}
    model = load_adapted(out / "model.pt")
    assert [type(m).__name__ for m in model.domain_classifier] == ["Linear", "BatchNorm1d", "ReLU"] * 2 + ["Linear"]
    assert model.domain_classifier[0].in_features == model.classifier.in_features  # reads the hidden layer


def test_permuted_target_labels_change_no_weight_and_no_selection(tmp_path):
    """Through the real data path: the target's labels are read only by the final report."""
    source = write_domain(tmp_path / "s.npz", seed=0, invert=False)
    target = write_domain(tmp_path / "t.npz", seed=1, invert=True)
    shuffled = write_domain(tmp_path / "t2.npz", seed=1, invert=True,
                            labels=np.random.default_rng(7).permutation(np.repeat(np.arange(3), 20)))
    runs = []
    for target_path in (target, shuffled):
        keep: dict = {}
        settings = AdaptSettings(method="dan", source=str(source), target=str(target_path), steps=8, checkpoints=2,
                                 weights=(0.3, 1.0))
        result = adapt(settings, progress=False, keep=keep)
        runs.append((result, keep["model"].state_dict()))
    (first, state1), (second, state2) = runs
    assert first.candidates == second.candidates
    assert {k: (v["weight"], v["step"]) for k, v in first.selected.items()} == \
        {k: (v["weight"], v["step"]) for k, v in second.selected.items()}
    assert all(torch.equal(state1[k], state2[k]) for k in state1)


def test_init_widens_a_grey_checkpoint_to_three_channels(tmp_path):
    torch.manual_seed(0)
    grey = BACKBONES.create("lenet", in_channels=1)
    path = save_checkpoint(tmp_path / "best.pt", {"kind": PRETRAINED_KIND, "config": {"backbone": "lenet"},
                                                  "model": grey.state_dict()})
    colour = build_backbone(AdaptSettings(method="dann", source="a", target="b", init=str(path)))
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(colour.eval()(x.repeat(1, 3, 1, 1)), grey.eval()(x), atol=1e-5)


BAD = [
    (["--source", "nowhere", "--target", "mnist"], ("unknown domain 'nowhere'",)),
    (["--source", "mnist", "--target", "mnist"], ("both 'mnist'", "two different domains")),
    (["--source", "mnist", "--target", "uci_digits", "--method", "magic"], ("unknown adaptation method 'magic'",)),
    (["--source", "mnist", "--target", "uci_digits", "--weights", "a,b"], ("--weights",)),
    (["--source", "mnist", "--target", "uci_digits", "--steps", "0"], ("steps must be a positive integer",)),
    (["--source", "mnist", "--target", "uci_digits", "--set", "colour=red"],
     ("dann has no argument colour", "domain_depth", "layer")),
    (["--source", "mnist", "--target", "uci_digits", "--set", "layer=logits"],
     ("dann refuses the arguments layer='logits'",)),
    (["--source", "mnist", "--target", "uci_digits", "--set", "layer"], ("--set expects key=value",)),
]


@pytest.mark.parametrize("args,fragments", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_fails_in_one_line_and_leaves_nothing(tmp_path, capfd, args, fragments):
    argv = ["adapt", "--method", "dann", *args, "--out", tmp_path / "run"]
    if "--method" in args:
        argv = ["adapt", *args, "--out", tmp_path / "run"]
    fails(capfd, tmp_path, argv, *fragments)


def test_a_target_with_no_test_images_is_refused(tmp_path, capfd, domains):
    few = write_domain(tmp_path / "few.npz", seed=2, invert=True, per_class=1)
    fails(capfd, tmp_path, ["adapt", "--method", "coral", "--source", domains[0], "--target", few,
                            "--out", tmp_path / "run"], "few.npz has no test images", "at least 5")


def test_an_init_checkpoint_of_another_backbone_is_refused(tmp_path, capfd, domains):
    path = save_checkpoint(tmp_path / "conv4.pt", {"kind": PRETRAINED_KIND, "config": {"backbone": "conv4"},
                                                   "model": BACKBONES.create("conv4").state_dict()})
    fails(capfd, tmp_path, ["adapt", "--method", "dann", "--source", domains[0], "--target", domains[1],
                            "--init", path, "--out", tmp_path / "run"], "conv4 backbone, not lenet",
          "--backbone conv4")


def test_an_init_checkpoint_without_backbone_weights_is_refused(tmp_path, capfd, domains):
    path = save_checkpoint(tmp_path / "empty.pt", {"kind": PRETRAINED_KIND, "config": {},
                                                   "model": {"w": torch.zeros(2)}})
    fails(capfd, tmp_path, ["adapt", "--method", "dann", "--source", domains[0], "--target", domains[1],
                            "--init", path, "--out", tmp_path / "run"], "holds no backbone")
