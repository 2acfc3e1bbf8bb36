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
        if path.stem.endswith("way"):  # a model for one number of ways: <method>_<dataset>_<way>way
            assert path.stem.split("_")[2] == f"{config.test_way}way" == f"{config.train_way}way"
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
