"""A catalogue of bad inputs, each found by a user.

The rule of the house: bad input gets ONE line on stderr beginning ``fewzero: error: `` that says what to do, exit
status 2, no traceback, no warning lines, and no partial file left behind; research code gets a ``FewzeroError``.
Nothing loaded from disk may run code. Most cases run the CLI in-process (fast); three run the installed
``fewzero`` command to prove there is no traceback or warning noise for real. Data is a tiny fake Omniglot
(tests/conftest.py: ``tiny_omniglot``), never the real 32k images.
"""
from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from fewzero.checkpoint import build_learner, learner_from_checkpoint, load_checkpoint, save_checkpoint
from fewzero.cli import main
from fewzero.config import check_device, load_config, validate
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.registry import DATASETS
from fewzero.sampling import EpisodeSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFFLINE = "http://127.0.0.1:9/"  # nothing listens on the discard port: every download fails at once
FEWZERO = Path(sys.executable).with_name("fewzero")


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each case gets its own empty cache, no data by default, and no network."""
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FEWZERO_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("FEWZERO_OMNIGLOT_URL", OFFLINE)
    monkeypatch.setenv("FEWZERO_VINYALS_URL", OFFLINE)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder`` (but the cache) with its size and modification time."""
    if not folder.exists():
        return {}
    out = {".": ("dir",)}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if relative.parts[0] == "cache":
            continue
        stat = path.stat()
        out[str(relative)] = ("dir",) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return out


def cache_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def one_error_line(rc: int, err: str) -> str:
    """The single ``fewzero: error:`` line of a failed command (asserting everything else about stderr)."""
    assert rc == 2, f"exit status {rc}, stderr: {err!r}"
    assert "Traceback" not in err and "Warning" not in err, err
    assert "\r" not in err and err.endswith("\n") and err.count("\n") == 1, f"not exactly one line: {err!r}"
    assert err.startswith("fewzero: error: "), err
    return err.rstrip("\n")


def fails(capfd, tmp_path: Path, argv: list[str], *fragments: str, absent: tuple[str, ...] = ()) -> str:
    """Run ``fewzero argv`` in-process: one error line holding every fragment and none of ``absent``; nothing new
    (and no partial file) under ``tmp_path``; no temporary file in the cache."""
    before = snapshot(tmp_path)
    capfd.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capfd.readouterr()
    line = one_error_line(rc, err)
    for fragment in fragments:
        assert fragment in line, line
    for fragment in absent:
        assert fragment not in line, line
    assert snapshot(tmp_path) == before, "files changed or were left behind"
    assert not [p for p in cache_files(tmp_path) if ".tmp" in p.name or p.name.endswith(".part")]
    return line


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def replace_zip(root: Path, archive: str, entries: dict[str, bytes]) -> Path:
    path = root / "omniglot" / f"{archive}.zip"
    path.write_bytes(zip_bytes(entries))
    return path


def extract(root: Path) -> None:
    """Turn the tiny zips into the extracted-folder layout."""
    for archive in ("images_background", "images_evaluation"):
        path = root / "omniglot" / f"{archive}.zip"
        with zipfile.ZipFile(path) as zipped:
            zipped.extractall(root / "omniglot")
        path.unlink()


def _untrained(method: str, **config_changes) -> dict:
    """The payload of an untrained, narrow (hidden width 8) checkpoint, optionally with a changed config."""
    overrides = {"backbone_args.hidden": 8, **({"learner.feature_dim": 8} if method != "protonet" else {})}
    config = load_config(method, "omniglot", overrides=overrides)
    return {"config": {**config.to_dict(), **config_changes}, "in_channels": 1,
            "model": build_learner(config).state_dict()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Checkpoints by name: good protonet and maml ones, and damaged, foreign or malicious ones."""
    folder = tmp_path_factory.mktemp("checkpoints")
    good = _untrained("protonet")
    made = {"protonet": save_checkpoint(folder / "protonet.pt", good),
            "maml": save_checkpoint(folder / "maml.pt", _untrained("maml")),
            "no_config": save_checkpoint(folder / "no_config.pt", {"model": good["model"]}),
            "bad_backbone_args": save_checkpoint(folder / "bad_args.pt",
                                                 _untrained("protonet", backbone_args={"hidden": "wide"})),
            "other_dataset": save_checkpoint(folder / "tinyglot.pt", _untrained("protonet", dataset="tinyglot")),
            "folder": save_checkpoint(folder / "run" / "best.pt", good).parent,
            "truncated": folder / "truncated.pt", "pickled_code": folder / "pickled_code.pt",
            "marker": folder / "code-ran"}
    whole = made["protonet"].read_bytes()
    made["truncated"].write_bytes(whole[: len(whole) // 2])
    torch.save({"format": "fewzero-checkpoint-v1", **good, "note": RunsCode(made["marker"])}, made["pickled_code"])
    return made


class RunsCode:
    """An object whose unpickling would create a file: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def tinyglot(monkeypatch):
    """A second few-shot dataset name (for the lifetime of one test) so that a checkpoint can be of another one."""
    from fewzero.data.omniglot import omniglot

    DATASETS.get("omniglot")
    monkeypatch.setitem(DATASETS._entries, "tinyglot", omniglot)


def eval_args(checkpoint: Path, root: Path | str, *extra) -> list:
    return ["eval", "--method", "protonet", "--checkpoint", checkpoint, "--data-root", root, "--quiet", *extra]


def train_args(out: Path, root: Path | str, *extra) -> list:
    return ["train", "--method", "protonet", "--out", out, "--data-root", root, "--quiet", "--episodes", "2",
            "--train-way", "5", "--set", "val_every=2", "--set", "val_episodes=2", "--set", "backbone_args.hidden=8",
            *extra]


# --------------------------------------------------------------------------------------------- data


def test_missing_data_root_from_the_environment(capfd, tmp_path, checkpoints):
    missing = tmp_path / "no-data-here"  # FEWZERO_DATA (see _isolated)
    fails(capfd, tmp_path, ["eval", "--method", "protonet", "--checkpoint", checkpoints["protonet"], "--quiet"],
          "could not download", "--data-root / FEWZERO_DATA")
    assert not missing.exists()


def test_mistyped_data_root_leaves_no_omniglot_folder(capfd, tmp_path, tiny_omniglot, checkpoints):
    typo = tmp_path / "dta"
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], typo), "could not download", str(typo / "omniglot"))
    assert not typo.exists()


def test_empty_data_root(capfd, tmp_path, checkpoints):
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], empty), "could not download", "--data-root")
    assert not list(empty.iterdir()), "no empty omniglot/ folder is left behind"


def test_data_root_that_is_a_file(capfd, tmp_path, checkpoints):
    (tmp_path / "data.txt").write_text("not a folder")
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path / "data.txt"), "is not a folder",
          "--data-root")


def test_corrupted_zip(capfd, tmp_path, tiny_omniglot, checkpoints):
    (tiny_omniglot / "omniglot" / "images_background.zip").write_bytes(b"PK\x03\x04 garbage, not an archive" * 9)
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "images_background.zip",
          "corrupt or truncated", "delete it")


def test_truncated_zip(capfd, tmp_path, tiny_omniglot, checkpoints):
    path = tiny_omniglot / "omniglot" / "images_evaluation.zip"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "images_evaluation.zip",
          "corrupt or truncated")


def test_zip_member_with_bad_crc(capfd, tmp_path, tiny_omniglot, tiny_omniglot_entries, checkpoints):
    entries = tiny_omniglot_entries["images_background"]
    first = next(iter(entries))
    data = bytearray(zip_bytes(entries))
    at = data.index(entries[first][:16]) + 40  # inside the stored bytes of the first drawing
    data[at] ^= 0xFF
    (tiny_omniglot / "omniglot" / "images_background.zip").write_bytes(bytes(data))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "corrupt or truncated")


@pytest.mark.parametrize("data,fragment", [(b"<html>404 Not Found</html>", "is not a readable PNG image"),
                                           (b"", "is empty (0 bytes)")], ids=["not-an-image", "zero-bytes"])
def test_bad_png_in_the_zip(capfd, tmp_path, tiny_omniglot, tiny_omniglot_entries, checkpoints, data, fragment):
    name = "images_evaluation/Gamma/character01/0200_21.png"
    replace_zip(tiny_omniglot, "images_evaluation", {**tiny_omniglot_entries["images_evaluation"], name: data})
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), name, fragment, "images_evaluation.zip")


def test_bad_png_in_an_extracted_folder(capfd, tmp_path, tiny_omniglot, checkpoints):
    extract(tiny_omniglot)
    bad = tiny_omniglot / "omniglot" / "images_background" / "Beta" / "character02" / "0011_99.png"
    bad.write_bytes(b"GIF89a not a png")
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "0011_99.png",
          "is not a readable PNG image")


@pytest.mark.parametrize("evil", ["../evil.png", "images_background/Alpha/character01/../../../../evil.png",
                                  "/tmp/evil.png"], ids=["parent", "nested-parent", "absolute"])
def test_archive_entry_outside_the_folder_is_refused(capfd, tmp_path, tiny_omniglot, tiny_omniglot_entries,
                                                     checkpoints, evil):
    entries = {**tiny_omniglot_entries["images_background"], evil: b"\x89PNG evil"}
    replace_zip(tiny_omniglot, "images_background", entries)
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "points outside its folder",
          "refused")
    assert not list(tmp_path.rglob("evil.png"))


def test_junk_files_among_the_images_are_ignored(tiny_omniglot, tiny_omniglot_entries):
    from fewzero.data.omniglot import load_drawings, omniglot

    junk = {"images_background/Alpha/character01/Thumbs.db": b"\xd0\xcf\x11\xe0 thumbnails",
            "images_background/.DS_Store": b"\x00\x00\x00\x01Bud1",
            "images_background/Alpha/character01/._0000_01.png": b"\x00\x05\x16\x07 AppleDouble",
            "__MACOSX/images_background/Alpha/character01/._0000_01.png": b"\x00\x05\x16\x07 AppleDouble"}
    replace_zip(tiny_omniglot, "images_background", {**tiny_omniglot_entries["images_background"], **junk})
    images, character, names, background = load_drawings(tiny_omniglot, progress=False)
    assert images.shape == (120, 28, 28) and len(names) == 6 and int(background.sum()) == 4
    assert len(omniglot("train", data_root=tiny_omniglot, progress=False).labels) == 2 * 4 * 20


def test_junk_files_in_extracted_folders_are_ignored(tiny_omniglot):
    from fewzero.data.omniglot import load_drawings

    extract(tiny_omniglot)
    character = tiny_omniglot / "omniglot" / "images_evaluation" / "Gamma" / "character01"
    (character / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (character / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (character / "._0200_01.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    images, character_of, names, _ = load_drawings(tiny_omniglot, progress=False)
    assert images.shape == (120, 28, 28) and len(names) == 6


@pytest.mark.parametrize("data,fragment", [("Gamma/character01/rot000\nÜber\n".encode("latin-1"), "not UTF-8"),
                                           (b"", "lists no classes"), (b"\n  \n", "lists no classes")],
                         ids=["latin-1", "empty", "blank"])
def test_bad_split_file(capfd, tmp_path, tiny_omniglot, checkpoints, data, fragment):
    (tiny_omniglot / "omniglot" / "splits" / "vinyals" / "test.txt").write_bytes(data)
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "test.txt", fragment)


# --------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("extra,fragments", [
    (["--set", "backbone=resnet99"], ["unknown backbone 'resnet99'", "conv4"]),
    (["--dataset", "mnist"], ["unknown dataset 'mnist'", "omniglot"]),
    (["--set", "colour=red"], ["unknown config key 'colour'", "valid keys are"]),
    (["--set", "learner.distanse=cosine"], ["learner.distanse", "valid keys are distance"]),
], ids=["backbone", "dataset", "key", "learner-key"])
def test_unknown_names(capfd, tmp_path, checkpoints, extra, fragments):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, *extra), *fragments)


def test_unknown_method(capfd, tmp_path):
    fails(capfd, tmp_path, ["eval", "--method", "protonot", "--quiet"], "unknown method 'protonot'", "protonet")


@pytest.mark.parametrize("text,fragment", [("[]\n", "must hold a mapping"), ("- lr: 1\n", "must hold a mapping"),
                                           ("42\n", "must hold a mapping"), ("false\n", "must hold a mapping")],
                         ids=["empty-list", "list", "number", "false"])
def test_yaml_that_is_not_a_mapping(capfd, tmp_path, checkpoints, text, fragment):
    (tmp_path / "c.yaml").write_text(text)
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", tmp_path / "c.yaml"),
          str(tmp_path / "c.yaml"), fragment)


def test_empty_yaml_is_fine(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing set here\n")
    assert load_config(path=tmp_path / "empty.yaml") == load_config(path=tmp_path / "comments.yaml") == validate({})


def test_config_path_that_is_a_directory(capfd, tmp_path, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", tmp_path),
          "is a directory", absent=("does not exist",))


def test_config_that_is_not_utf8(capfd, tmp_path, checkpoints):
    (tmp_path / "latin.yaml").write_bytes("method: protonet\n# réglages\n".encode("latin-1"))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", tmp_path / "latin.yaml"),
          "not UTF-8")


def test_empty_set_value_is_an_error(capfd, tmp_path, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--set", "test_episodes="), "--set",
          "test_episodes=", "no value")


@pytest.mark.parametrize("extra,fragments", [
    (["--lr", "nan"], ["'lr'", "--lr", "nan"]),
    (["--lr", "inf"], ["'lr'", "--lr"]),
    (["--set", "lr=.nan"], ["'lr'", "--set lr=.nan"]),
    (["--lr", "-0.001"], ["'lr'", "--lr", "> 0"]),
    (["--set", "weight_decay=-1"], ["'weight_decay'", "--set weight_decay=-1", ">= 0"]),
    (["--set", "lr_gamma=-0.5"], ["'lr_gamma'", "--set lr_gamma=-0.5", "> 0"]),
    (["--set", "lr_gamma=0"], ["'lr_gamma'", "> 0"]),
    (["--set", "max_minutes=-1"], ["'max_minutes'", "--set max_minutes=-1"]),
    (["--seed", "-1"], ["'seed'", "--seed", ">= 0"]),
    (["--train-query", "0"], ["'train_query'", "--train-query", ">= 1"]),
    (["--train-way", "0"], ["'train_way'", "--train-way"]),
    (["--train-shot", "-2"], ["'train_shot'", "--train-shot"]),
    (["--episodes", "0"], ["'episodes'", "--episodes"]),
    (["--set", "test_query=0"], ["'test_query'", "--set test_query=0"]),
], ids=["lr-nan", "lr-inf", "set-lr-nan", "lr-negative", "weight-decay", "lr-gamma-negative", "lr-gamma-zero",
        "max-minutes", "seed", "train-query", "train-way", "train-shot", "episodes", "test-query"])
def test_bad_training_numbers_fail_before_training(capfd, tmp_path, tiny_omniglot, extra, fragments):
    fails(capfd, tmp_path, train_args(tmp_path / "run", tiny_omniglot, *extra), *fragments,
          absent=("protonet_omniglot.yaml",))
    assert not cache_files(tmp_path), "no data was decoded"


def test_train_query_zero_is_not_blamed_on_the_learning_rate(capfd, tmp_path, tiny_omniglot):
    fails(capfd, tmp_path, train_args(tmp_path / "run", tiny_omniglot, "--train-query", "0"), "train_query",
          absent=("--lr", "lower", "loss became"))


@pytest.mark.parametrize("extra,fragments", [
    (["--query", "0"], ["'test_query'", "--query"]),
    (["--set", "test_query=0"], ["'test_query'", "--set test_query=0"]),
    (["--way", "0"], ["'test_way'", "--way"]),
    (["--way", "-3"], ["'test_way'", "--way"]),
    (["--shot", "0"], ["'test_shot'", "--shot"]),
    (["--episodes", "-1"], ["'test_episodes'", "--episodes"]),
    (["--seed", "-1"], ["'test_seed'", "--seed"]),
], ids=["query", "set-query", "way-zero", "way-negative", "shot", "episodes", "seed"])
def test_bad_eval_numbers_fail_before_any_training(capfd, tmp_path, extra, fragments):
    # reptile has no packaged model: a check that came after "find or train a model" would say so instead
    fails(capfd, tmp_path, ["eval", "--method", "reptile", "--quiet", "--train-if-missing", *extra], *fragments,
          absent=("reptile_omniglot.yaml", "no trained", "download"))
    assert not cache_files(tmp_path), "nothing was trained or decoded"


def test_way_larger_than_the_classes(capfd, tmp_path, tiny_omniglot, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--way", "9"),
          "n_way=9 is larger than the 8 classes", "at most 8")


def test_shot_plus_query_larger_than_the_images(capfd, tmp_path, tiny_omniglot, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--shot", "10", "--query", "11"),
          "has 20 items but n_shot + n_query = 21")


def test_errors_name_where_the_value_came_from(capfd, tmp_path, checkpoints):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("method: protonet\ntest_episodes: 10\n")
    bad.write_text("method: protonet\nlr: -1\n")
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", bad), "'lr'", str(bad))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", good, "--set", "lr=-1"),
          "'lr'", "--set lr=-1", absent=(str(good),))
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--config", good, "--way", "0"),
          "'test_way'", "--way", absent=(str(good), "--set"))


def test_config_origins_in_the_python_api(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: protonet\nepisodes: 10\nlearner: {distance: cosine}\n")
    with pytest.raises(FewzeroError, match=r"'lr' \(from --lr\) must be") as caught:
        load_config(path=path, overrides={"lr": float("nan")}, origins={"lr": "--lr"})
    assert str(path) not in str(caught.value)
    path.write_text("method: protonet\nepisodes: 0\n")
    with pytest.raises(FewzeroError, match=r"'episodes' in .*run.yaml must be >= 1"):
        load_config(path=path, overrides={"lr": 0.1}, origins={"lr": "--lr"})
    path.write_text("method: protonet\nlearner: {distance: cosine}\n")
    message = r"'learner.scale' \(from --set learner.scale=1e999\) must be a finite number"
    with pytest.raises(FewzeroError, match=message):
        load_config(path=path, overrides={"learner.scale": float("inf")},
                    origins={"learner.scale": "--set learner.scale=1e999"})


# --------------------------------------------------------------------------------------------- device


@pytest.fixture
def unavailable_cuda() -> str:
    """A CUDA device this machine lacks: ``cuda`` on a CPU-only build, else one past the last GPU."""
    return "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def test_nonsense_device_in_eval(capfd, tmp_path, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tmp_path, "--device", "nonsense"),
          "unknown device 'nonsense'", "--device", "cpu")


def test_nonsense_device_in_train(capfd, tmp_path, tiny_omniglot):
    fails(capfd, tmp_path, train_args(tmp_path / "run", tiny_omniglot, "--device", "gpu0"), "unknown device 'gpu0'")


def test_unavailable_cuda_in_eval(capfd, tmp_path, tiny_omniglot, checkpoints, unavailable_cuda):
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--device", unavailable_cuda),
          f"'{unavailable_cuda}'", "not available", "cpu")


def test_unavailable_cuda_in_train(capfd, tmp_path, tiny_omniglot, unavailable_cuda):
    fails(capfd, tmp_path, train_args(tmp_path / "run", tiny_omniglot, "--device", unavailable_cuda),
          f"'{unavailable_cuda}'", "not available")
    assert not cache_files(tmp_path), "the device is checked before any data is loaded"


def test_check_device(unavailable_cuda):
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(unavailable_cuda, require_available=False).type == "cuda"  # a GPU config, read on a CPU
    with pytest.raises(FewzeroError, match="not available"):
        check_device(unavailable_cuda)
    for name in ("nonsense", "cuda:x", "", "meta"):
        with pytest.raises(FewzeroError, match="device"):
            check_device(name, require_available=False)
    assert validate({"device": unavailable_cuda}).device == unavailable_cuda


# --------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name,fragments", [
    ("truncated", ["unreadable or truncated"]),
    ("pickled_code", ["refused", "could run code"]),
    ("no_config", ["has no training config"]),
    ("bad_backbone_args", ["backbone_args.hidden", "must be int", "'wide'"]),
    ("folder", ["is a directory", "best.pt"]),
], ids=["truncated", "pickled-code", "no-config", "bad-backbone-args", "directory"])
def test_bad_checkpoints(capfd, tmp_path, checkpoints, name, fragments):
    fails(capfd, tmp_path, eval_args(checkpoints[name], tmp_path, "--episodes", "2"), *fragments,
          absent=("does not exist",))
    assert not checkpoints["marker"].exists(), "loading a checkpoint ran code"


def test_checkpoint_of_another_method(capfd, tmp_path, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["maml"], tmp_path), "holds a", "maml", "--method maml")


def test_checkpoint_of_another_dataset(capfd, tmp_path, tinyglot, tiny_omniglot, checkpoints):
    fails(capfd, tmp_path, eval_args(checkpoints["other_dataset"], tiny_omniglot), "tinyglot", "--dataset tinyglot")


def test_checkpoint_checks_in_the_python_api(checkpoints, tinyglot):
    with pytest.raises(FewzeroError, match="holds a maml model, not protonet"):
        learner_from_checkpoint(checkpoints["maml"], method="protonet")
    with pytest.raises(FewzeroError, match="trained on tinyglot, not omniglot"):
        learner_from_checkpoint(checkpoints["other_dataset"], dataset="omniglot")
    with pytest.raises(FewzeroError, match="could run code"):
        load_checkpoint(checkpoints["pickled_code"])
    assert not checkpoints["marker"].exists()


# --------------------------------------------------------------------------------------------- Python API


@pytest.mark.parametrize("args", [dict(n_way=math.nan), dict(n_way=float("inf")), dict(n_episodes=math.inf),
                                  dict(n_episodes=math.nan), dict(n_shot=1.5), dict(n_query=-1), dict(n_way=True),
                                  dict(n_way="5"), dict(seed=-1)],
                         ids=["nan-way", "inf-way", "inf-episodes", "nan-episodes", "half-shot", "negative-query",
                              "bool-way", "str-way", "negative-seed"])
def test_episode_sampler_rejects_bad_numbers(args):
    labels = torch.arange(6).repeat_interleave(4)
    with pytest.raises(FewzeroError, match=f"{next(iter(args))} must be an integer"):
        EpisodeSampler(labels, **{"n_way": 3, "n_shot": 1, "n_query": 2, "n_episodes": 4, **args})


def test_episode_sampler_rejects_bad_labels():
    with pytest.raises(FewzeroError, match="1-D sequence of integer"):
        EpisodeSampler(torch.zeros(4, 2, dtype=torch.long), 1, 1, 1, 1)
    with pytest.raises(FewzeroError, match="1-D sequence of integer"):
        EpisodeSampler(torch.rand(20), 1, 1, 1, 1)


def _episode(**changes) -> Episode:
    parts = dict(support_x=torch.zeros(6, 1, 4, 4), support_y=torch.arange(3).repeat_interleave(2),
                 query_x=torch.zeros(9, 1, 4, 4), query_y=torch.arange(3).repeat_interleave(3),
                 class_ids=torch.tensor([4, 7, 9]))
    return Episode(**{**parts, **changes})


@pytest.mark.parametrize("changes,fragment", [
    (dict(support_x=torch.zeros(5, 1, 4, 4)), "support_x has 5 items but support_y has 6"),
    (dict(query_y=torch.arange(3).repeat_interleave(2)), "query_x has 9 items but query_y has 6"),
    (dict(support_y=torch.arange(3).repeat_interleave(2).float()), "support_y must be a 1-D integer tensor"),
    (dict(query_y=torch.arange(3).repeat_interleave(3).view(3, 3)), "query_y must be a 1-D integer tensor"),
    (dict(support_y=torch.tensor([0, 0, 1, 1, 2, 3])), "episode-local labels 0..2"),
    (dict(query_y=torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, -1])), "episode-local labels 0..2"),
    (dict(class_ids=torch.tensor([[4, 7, 9]])), "class_ids must be a 1-D integer tensor"),
    (dict(class_ids=torch.tensor([], dtype=torch.long)), "class_ids is empty"),
    (dict(support_y=[0, 0, 1, 1, 2, 2]), "support_y must be a torch.Tensor"),
    (dict(class_semantics=torch.zeros(2, 5)), "class_semantics must be a (n_way=3, dim) tensor"),
], ids=["support-length", "query-length", "float-labels", "2d-labels", "label-too-big", "negative-label",
        "2d-class-ids", "no-classes", "list-labels", "semantics-rows"])
def test_episode_validates_on_construction(changes, fragment):
    with pytest.raises(FewzeroError) as caught:
        _episode(**changes)
    assert fragment in str(caught.value)


def test_a_good_episode_still_works():
    episode = _episode(class_semantics=torch.zeros(3, 5))
    assert (episode.n_way, episode.n_shot, episode.n_query) == (3, 2, 3)
    assert episode.to("cpu").class_ids.tolist() == [4, 7, 9]


@pytest.mark.parametrize("labels,n_items,fragment", [
    (torch.tensor([0.0, 1.0, 2.0]), 3, "must be integers"),
    (torch.tensor([[0, 1, 2]]), 3, "1-D"),
    (torch.tensor([0, 1, 2]), 4, "4 items but 3 labels"),
    (torch.tensor([0, 1, -1]), 3, "0..n_way-1"),
    (torch.tensor([True, False]), 2, "must be integers"),
], ids=["float", "2d", "length", "negative", "bool"])
def test_protonet_fit_checks_its_support_set(labels, n_items, fragment):
    from fewzero.backbones.conv4 import Conv4
    from fewzero.learners import ProtoNet

    learner = ProtoNet(backbone=Conv4(hidden=8))
    with pytest.raises(FewzeroError) as caught:
        learner.fit(torch.zeros(n_items, 1, 28, 28), labels)
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------------------------- the lead's CLI work


@pytest.mark.parametrize("argv,fragments", [
    (["eval", "--method", "protonet", "--semantics", "text"], ["--semantics", "protonet", "drop it"]),
    (["eval", "--method", "eszsl", "--way", "5"], ["--way", "eszsl", "drop it"]),
], ids=["semantics-for-few-shot", "way-for-zero-shot"])
def test_flags_of_the_other_kind_of_method(capfd, tmp_path, argv, fragments):
    fails(capfd, tmp_path, [*argv, "--quiet"], *fragments)


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A run folder holding best.pt and last.pt of a protonet config (untrained weights; no training needed)."""
    config = load_config("protonet", "omniglot", overrides={"backbone_args.hidden": 8, "train_way": 5,
                                                            "episodes": 2, "val_every": 2, "val_episodes": 2})
    payload = {"config": config.to_dict(), "in_channels": 1, "model": build_learner(config).state_dict()}
    out = tmp_path / "run"
    save_checkpoint(out / "best.pt", payload)
    save_checkpoint(out / "last.pt", payload)
    return out


@pytest.mark.parametrize("keep", ["best.pt", "last.pt", "both"])
def test_train_never_overwrites_a_run(capfd, tmp_path, tiny_omniglot, finished_run, keep):
    for name in ("best.pt", "last.pt"):
        if keep not in (name, "both"):
            (finished_run / name).unlink()
    fails(capfd, tmp_path, train_args(finished_run, tiny_omniglot), "already holds a run", "--resume",
          "--overwrite")


def test_overwrite_replaces_a_run(capfd, tmp_path, tiny_omniglot, finished_run):
    before = (finished_run / "best.pt").read_bytes()
    assert main([str(a) for a in train_args(finished_run, tiny_omniglot, "--overwrite")]) == 0, capfd.readouterr()
    assert (finished_run / "best.pt").read_bytes() != before


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unusable_out_fails_before_loading_data(capfd, tmp_path, tiny_omniglot, where):
    out = tmp_path / "taken.txt" if where == "file" else Path("/proc/fewzero-run")
    if where == "file":
        out.write_text("my notes")
    fails(capfd, tmp_path, train_args(out, tiny_omniglot), "--out", str(out))
    assert not cache_files(tmp_path), "no data was loaded"


@pytest.mark.parametrize("where", ["folder", "proc"])
def test_unusable_records_fail_before_evaluation(capfd, tmp_path, tiny_omniglot, checkpoints, where):
    records = tmp_path if where == "folder" else Path("/proc/fewzero-records.json")
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot, "--records", records), "--records",
          str(records))
    assert not cache_files(tmp_path), "no data was loaded"


def test_resume_with_no_run(capfd, tmp_path, tiny_omniglot):
    fails(capfd, tmp_path, ["train", "--method", "protonet", "--out", tmp_path / "new", "--resume", "--quiet",
                            "--data-root", tiny_omniglot], "nothing to resume")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("extra,flag", [(["--lr", "0.5"], "--lr"), (["--method", "maml"], "maml"),
                                        (["--train-way", "3"], "--train-way"), (["--set", "seed=4"], "seed")],
                         ids=["lr", "method", "train-way", "set-seed"])
def test_resume_with_a_conflicting_flag(capfd, tmp_path, tiny_omniglot, finished_run, extra, flag):
    argv = ["train", "--out", finished_run, "--resume", "--quiet", "--data-root", tiny_omniglot]
    argv = argv + (extra if "--method" in extra else ["--method", "protonet", *extra])
    fails(capfd, tmp_path, argv, flag)


def test_eval_without_any_model_names_the_train_command(capfd, tmp_path):
    fails(capfd, tmp_path, ["eval", "--method", "reptile", "--quiet"], "fewzero train --method reptile")
    assert not cache_files(tmp_path), "nothing was trained"


# --------------------------------------------------------------------------------------------- for real


def run_fewzero(tmp_path: Path, *argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "FEWZERO_CACHE": str(tmp_path / "cache"), "FEWZERO_DATA": str(tmp_path / "no-data-here"),
           "FEWZERO_OMNIGLOT_URL": OFFLINE, "FEWZERO_VINYALS_URL": OFFLINE, "PYTHONWARNINGS": "default"}
    return subprocess.run([str(FEWZERO), *map(str, argv)], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("case", ["lr-nan", "corrupt-zip", "pickled-checkpoint"])
def test_the_installed_command_prints_one_line(tmp_path, tiny_omniglot, checkpoints, case):
    before = snapshot(tmp_path)
    if case == "lr-nan":
        argv = train_args(tmp_path / "run", tiny_omniglot, "--lr", "nan")
        fragment = "'lr'"
    elif case == "corrupt-zip":
        (tiny_omniglot / "omniglot" / "images_background.zip").write_bytes(b"not a zip")
        before = snapshot(tmp_path)
        argv = eval_args(checkpoints["protonet"], tiny_omniglot)[:-1]  # with progress bars: none may show
        fragment = "corrupt or truncated"
    else:
        argv = eval_args(checkpoints["pickled_code"], tiny_omniglot)[:-1]
        fragment = "could run code"
    result = run_fewzero(tmp_path, *argv)
    line = one_error_line(result.returncode, result.stderr)
    assert fragment in line and result.stdout == ""
    assert snapshot(tmp_path) == before
    assert not checkpoints["marker"].exists()
