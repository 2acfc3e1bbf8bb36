import pytest

from fewzero.config import load_config, parse_override, validate
from fewzero.errors import FewzeroError


def test_default_file_then_overrides():
    config = load_config("protonet", "omniglot", overrides={"test_shot": 5, "learner.distance": "cosine", "lr": None})
    assert config.train_way == 60 and config.test_shot == 5  # from configs/protonet_omniglot.yaml, then the flag
    assert config.learner == {"distance": "cosine"} and config.lr == 0.001  # None means "not given"


def test_explicit_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: protonet\nepisodes: 7\nlr: 1\n")
    config = load_config(path=path)
    assert config.episodes == 7 and config.lr == 1.0 and isinstance(config.lr, float)


@pytest.mark.parametrize("text,message", [
    ("method: protonet\nepisods: 7\n", "unknown config key 'episods'.*valid keys are"),
    ("method: protonet\nepisodes: seven\n", "'episodes'.* must be int, got 'seven'"),
    ("method: protonet\nepisodes: true\n", "'episodes'.* must be int"),
    ("method: protonet\nlearner: {distanse: cosine}\n", "unknown key learner.distanse.*valid keys are distance"),
    ("method: protonet\nlearner: {scale: fast}\n", "learner.scale.* must be float"),
    ("method: protonet\nepisodes: 0\n", "'episodes'.* must be >= 1"),
    ("method: protonot\n", "unknown method 'protonot'"),
    ("method: protonet\ndataset: mnist\n", "unknown dataset 'mnist'"),
    ("method: protonet\nprecision: fp16\n", "precision"),
    ("- a\n- b\n", "must hold a mapping"),
    ("method: [unclosed\n", "not valid YAML"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FewzeroError, match=message):
        load_config(path=path)


def test_overrides_are_parsed_as_yaml():
    assert parse_override("lr=0.5") == ("lr", 0.5)
    assert parse_override("learner.distance=cosine") == ("learner.distance", "cosine")
    with pytest.raises(FewzeroError, match="key=value"):
        parse_override("lr")
    with pytest.raises(FewzeroError, match="only learner"):
        load_config("protonet", overrides={"lr.x": 1})


def test_validate_round_trip():
    config = load_config("protonet", "omniglot")
    assert validate(config.to_dict()) == config
