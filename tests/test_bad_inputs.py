"""A catalogue of bad inputs, each found by a user: data, checkpoints, devices, flags, and the installed command.

The rule of the house: bad input gets ONE line on stderr beginning ``fewzero: error: `` that says what to do, exit
status 2, no traceback, no warning lines, and no partial file left behind; research code gets a ``FewzeroError``.
Nothing loaded from disk may run code. Most cases run the CLI in-process (fast); three run the installed
``fewzero`` command to prove there is no traceback or warning noise for real. Data is a tiny fake Omniglot
(tests/conftest.py: ``tiny_omniglot``), never the real 32k images. Bad config and run-folder input through the CLI
is in tests/test_bad_inputs_config.py, bad input through the Python API in tests/test_bad_inputs_api.py; the
helpers they share in tests/bad_input_helpers.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bad_input_helpers
from bad_input_helpers import (OFFLINE, cache_files, eval_args, extract, fails, one_error_line, replace_zip, snapshot,
                               train_args, zip_bytes)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEWZERO = Path(sys.executable).with_name("fewzero")
_isolated = bad_input_helpers.isolated  # autouse: each case gets its own empty cache, no data, no network
checkpoints = bad_input_helpers.checkpoints
tinyglot = bad_input_helpers.tinyglot
unavailable_cuda = bad_input_helpers.unavailable_cuda


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


@pytest.mark.parametrize("data,fragment", [("Gamma/character01/rot000\nÜber\n".encode("latin-1"), "not UTF-8"),
                                           (b"", "lists no classes"), (b"\n  \n", "lists no classes")],
                         ids=["latin-1", "empty", "blank"])
def test_bad_split_file(capfd, tmp_path, tiny_omniglot, checkpoints, data, fragment):
    (tiny_omniglot / "omniglot" / "splits" / "vinyals" / "test.txt").write_bytes(data)
    fails(capfd, tmp_path, eval_args(checkpoints["protonet"], tiny_omniglot), "test.txt", fragment)


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


# --------------------------------------------------------------------------------------------- device


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


# --------------------------------------------------------------------------------------------- flags of the other kind


@pytest.mark.parametrize("argv,fragments", [
    (["eval", "--method", "protonet", "--semantics", "text"], ["--semantics", "protonet", "drop it"]),
    (["eval", "--method", "eszsl", "--way", "5"], ["--way", "eszsl", "drop it"]),
], ids=["semantics-for-few-shot", "way-for-zero-shot"])
def test_flags_of_the_other_kind_of_method(capfd, tmp_path, argv, fragments):
    fails(capfd, tmp_path, [*argv, "--quiet"], *fragments)


def test_batch_norm_flag_refused_where_the_learner_cannot_honour_it(capfd, tmp_path):
    # the packaged MAML++ model normalises with batch statistics only (its per-step batch-norm parts)
    fails(capfd, tmp_path, ["eval", "--method", "mamlpp", "--way", "20", "--batch-norm", "inductive", "--quiet"],
          "mamlpp supports --batch-norm transductive only")
