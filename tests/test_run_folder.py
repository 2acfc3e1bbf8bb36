"""The run folder: locked while a run holds it, never silently overwritten, live metrics.jsonl, plot of runs."""
import json
import subprocess
import sys

import pytest

from fewzero.cli import main
from fewzero.config import load_config
from fewzero.errors import FewzeroError
from fewzero.run_folder import LOCK, RunFolder
from fewzero.runlog import read_metrics
from fewzero.train import train

TINY = {"train_way": 5, "train_shot": 1, "train_query": 2, "val_episodes": 4, "max_minutes": None,
        "precision": "fp32", "episodes": 6, "val_every": 2, "lr_step": 4}


def test_a_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"the only copy of a trained model")
    with pytest.raises(FewzeroError, match=r"already holds a run \(best.pt\): pass --resume .* --overwrite"):
        with RunFolder(tmp_path):
            pass
    assert (tmp_path / "best.pt").read_bytes() == b"the only copy of a trained model"
    with pytest.raises(FewzeroError, match="nothing to resume"):
        with RunFolder(tmp_path, resume=True):
            pass
    with RunFolder(tmp_path, overwrite=True) as folder:
        assert not (folder / "best.pt").exists() and (folder / LOCK).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_second_process_cannot_take_a_held_folder(tmp_path):
    code = ("import sys; from fewzero.run_folder import RunFolder; from fewzero.errors import FewzeroError\n"
            "try:\n    RunFolder(sys.argv[1]).__enter__()\nexcept FewzeroError as e:\n    print(e)")
    with RunFolder(tmp_path / "run"):
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                               timeout=60)
    assert "is in use by another fewzero run (pid " in other.stdout, other.stderr
    with RunFolder(tmp_path / "run"):  # released: the next run may take it
        pass


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with RunFolder(target):
            raise RuntimeError("the run failed before writing anything")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FewzeroError, match="is a file, not a folder"):
        with RunFolder(tmp_path / "file"):
            pass


def test_training_logs_every_validation_as_it_goes_and_resume_keeps_one_line_each(tiny_omniglot, tmp_path):
    config = load_config("protonet", "omniglot", overrides=TINY)
    metrics = train(config, tmp_path / "run", progress=False, data_root=str(tiny_omniglot))
    records = read_metrics(tmp_path / "run")
    assert [r["episode"] for r in records] == [2, 4, 6] == [h["episode"] for h in metrics["history"]]
    assert [r["step"] for r in records] == [2, 4, 6]
    for record, entry in zip(records, metrics["history"]):
        assert record["val_accuracy"] == pytest.approx(entry["val_accuracy"])
        assert record["lr"] == pytest.approx(entry["lr"]) and record["lr"] > 0
        assert 0 <= record["val_ci95"] < 50 and record["seconds"] >= 0
    # a line logged after the last checkpoint (a kill between the two) is dropped on resume
    with open(tmp_path / "run" / "metrics.jsonl", "a") as log:
        log.write(json.dumps({"episode": 99, "val_accuracy": 1.0}) + "\n")
    train(None, tmp_path / "run", resume=True, progress=False, changes={"episodes": 8}, data_root=str(tiny_omniglot))
    assert [r["episode"] for r in read_metrics(tmp_path / "run")] == [2, 4, 6, 8]


def test_resume_refuses_a_flag_that_would_change_the_saved_config(tiny_omniglot, tmp_path, capsys):
    config = load_config("protonet", "omniglot", overrides=TINY)
    train(config, tmp_path / "run", progress=False, data_root=str(tiny_omniglot))
    tmp_path = tmp_path / "run"
    for flags, named in ((["--lr", "0.5"], "--lr"), (["--train-way", "3"], "--train-way"),
                         (["--set", "meta_batch=2"], "--set meta_batch")):
        assert main(["train", "--method", "protonet", "--out", str(tmp_path), "--resume", *flags]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"fewzero: error: --resume continues the run with its saved config: drop {named}")
    assert main(["train", "--method", "maml", "--out", str(tmp_path), "--resume"]) == 2
    assert "holds a protonet run, not maml" in capsys.readouterr().err
    assert main(["train", "--method", "protonet", "--out", str(tmp_path), "--quiet", "--resume", "--episodes", "8",
                 "--set", "max_minutes=5", "--data-root", str(tiny_omniglot)]) == 0
    import torch

    resumed = torch.load(tmp_path / "last.pt", weights_only=True)
    assert resumed["episode"] == 8 and resumed["config"]["max_minutes"] == 5.0
    assert resumed["resumes"][-1]["changes"] == {"episodes": 8, "max_minutes": 5}


def test_fewzero_plot_draws_the_runs(tmp_path, capsys):
    for name, accuracy in (("a", 50.0), ("b", 70.0)):
        (tmp_path / name).mkdir()
        lines = [{"episode": e, "val_accuracy": accuracy + e, "val_ci95": 1.0, "train_loss": 1.0 / e}
                 for e in (1, 2, 3)]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as image:
        assert image.size[0] > 200 and len(set(image.convert("L").tobytes())) > 2
    assert main(["plot", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "x.png").exists()
