import re

import pytest

import fewzero.pretrained as pretrained
from fewzero.checkpoint import learner_from_checkpoint
from fewzero.config import CONFIG_DIR, load_config
from fewzero.paths import user_cache_dir


def test_packaged_checkpoints_are_small_and_documented():
    shipped = sorted(pretrained.PACKAGED.glob("*.pt"))
    assert shipped, "fewzero eval --method protonet needs a packaged checkpoint"
    for path in shipped:
        if path.stem.startswith("pretrain_"):
            continue  # pretrained backbones: test_shipped_pretrained_backbones_serve_every_transfer_learner
        assert path.stat().st_size < 1_000_000
        _, config, _ = learner_from_checkpoint(path)
        note = path.with_suffix(".md").read_text()
        command = re.search(r"fewzero train --method (\S+) --dataset (\S+) --config configs/(\S+\.yaml)", note)
        assert command and (command[1], command[2]) == (config.method, config.dataset) == tuple(path.stem.split("_")[:2])
        # a model for one number of ways (<method>_<dataset>_<way>way) or one setting (..._<way>way_<shot>shot)
        suffix = path.stem.split("_")[2:]
        if suffix:
            assert suffix[0] == f"{config.test_way}way" == f"{config.train_way}way"
        if len(suffix) == 2:
            assert suffix[1] == f"{config.test_shot}shot" == f"{config.train_shot}shot"
        assert len(suffix) <= 2
        assert path.stem == command[3].removesuffix(".yaml")  # shipped under its config's name
        assert (CONFIG_DIR / command[3]).is_file()


def test_eval_without_a_model_names_the_train_command_and_trains_only_when_asked(data_root, tmp_path, monkeypatch,
                                                                                 capsys):
    from fewzero.cli import main

    monkeypatch.setattr(pretrained, "PACKAGED", tmp_path / "nothing-shipped")
    decoded = user_cache_dir() / "omniglot"  # the session's decoded drawings: shared, not decoded again (~7 s)
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path / "cache"))
    decoded.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "omniglot").symlink_to(decoded, target_is_directory=True)
    run = tmp_path / "cache" / "checkpoints" / "protonet_omniglot"
    tiny = ["--set", "episodes=4", "--set", "train_way=5", "--set", "val_every=2", "--set", "val_episodes=5",
            "--set", "max_minutes=null", "--episodes", "5", "--quiet"]
    assert main(["eval", "--method", "protonet", *tiny]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"fewzero: error: no trained protonet model for omniglot is packaged or cached: run `fewzero "
                     f"train --method protonet --dataset omniglot --out {run}` (or pass --train-if-missing, or "
                     f"--checkpoint)")
    assert not run.exists()
    assert main(["eval", "--method", "protonet", "--train-if-missing", *tiny]) == 0
    assert "5-way 1-shot accuracy" in capsys.readouterr().out
    assert (run / "best.pt").is_file() and (run / "metrics.json").is_file()
    assert pretrained.default_checkpoint(load_config("protonet")) == run / "best.pt"
    import fewzero.train

    monkeypatch.setattr(fewzero.train, "train", lambda *a, **k: pytest.fail("trained a second time"))
    assert main(["eval", "--method", "protonet", "--train-if-missing", *tiny]) == 0


def test_the_most_specific_shipped_model_serves_an_episode_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PACKAGED", tmp_path)
    for stem in ("maml_omniglot", "maml_omniglot_20way", "maml_omniglot_20way_5shot"):
        (tmp_path / f"{stem}.pt").write_bytes(b"")

    def shipped(way, shot):
        config = load_config("maml", "omniglot", overrides={"test_way": way, "test_shot": shot})
        return pretrained.default_checkpoint(config).name

    assert shipped(20, 5) == "maml_omniglot_20way_5shot.pt"
    assert shipped(20, 1) == "maml_omniglot_20way.pt"
    assert shipped(5, 5) == shipped(5, 1) == "maml_omniglot.pt"
    assert pretrained.shipped_name("anil", "omniglot", 20, 5) == "anil_omniglot_20way_5shot"
    with pytest.raises(ValueError, match="give way"):
        pretrained.shipped_name("anil", "omniglot", shot=5)


def test_shipped_pretrained_backbones_serve_every_transfer_learner():
    backbones = sorted(pretrained.PACKAGED.glob("pretrain_*.pt"))
    assert backbones, "fewzero eval --method simpleshot needs a shipped pretrained backbone"
    for path in backbones:
        assert path.stat().st_size < 1_000_000
        note = path.with_suffix(".md").read_text()
        command = re.search(r"fewzero pretrain --backbone (\S+) --dataset (\S+) --config configs/(\S+\.yaml)", note)
        assert command and path.stem == pretrained.pretrained_name(command[1], command[2])
        assert (CONFIG_DIR / command[3]).is_file()
        for method in ("baseline", "baselinepp", "simpleshot", "logreg", "finetune"):
            config = load_config(method, command[2], overrides={"backbone": command[1]})
            assert pretrained.default_checkpoint(config) == path
            learner, saved, _ = learner_from_checkpoint(path, method=method)
            assert learner.starts_from_pretrained and saved.method == method and saved.backbone == command[1]
        assert pretrained.default_checkpoint(load_config("protonet", command[2])) != path
