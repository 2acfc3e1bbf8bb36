import re

import pytest

import fewzero.pretrained as pretrained
from fewzero.checkpoint import learner_from_checkpoint
from fewzero.config import CONFIG_DIR, load_config


def test_packaged_checkpoints_are_small_and_documented():
    shipped = sorted(pretrained.PACKAGED.glob("*.pt"))
    assert shipped, "fewzero eval --method protonet needs a packaged checkpoint"
    for path in shipped:
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


def test_missing_default_checkpoint_is_trained_once_and_cached(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PACKAGED", tmp_path / "nothing-shipped")
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path / "cache"))
    tiny = load_config("protonet", "omniglot", overrides={"episodes": 4, "train_way": 5, "val_every": 2,
                                                            "val_episodes": 5, "max_minutes": None})
    monkeypatch.setattr(pretrained, "load_config", lambda method, dataset: tiny)
    path = pretrained.default_checkpoint(tiny, progress=False)
    assert path == tmp_path / "cache" / "checkpoints" / "protonet_omniglot" / "best.pt" and path.is_file()
    assert not (path.parent / "last.pt").exists()
    monkeypatch.setattr(pretrained, "load_config", lambda *a: pytest.fail("trained a second time"))
    assert pretrained.default_checkpoint(tiny, progress=False) == path


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
