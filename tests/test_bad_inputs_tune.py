"""Bad input to fewzero tune: one error line, exit status 2, and no study folder left behind."""
from __future__ import annotations

import pytest
import yaml

import bad_input_helpers
from bad_input_helpers import fails

isolated = bad_input_helpers.isolated


def space_file(tmp_path, values) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def tune_args(tmp_path, *extra):
    return ["tune", "--method", "eszsl", "--out", str(tmp_path / "study"), "--quiet", *extra]


@pytest.mark.parametrize("values, fragments", [
    ({"params": {"gamma": {"type": "float", "low": 0.1, "high": 1}}, "extras": 1}, ("unknown key 'extras'",)),
    ({"params": {"gamma": {"type": "flaot", "low": 0.1, "high": 1}}}, ("type 'flaot'", "float, int, categorical")),
    ({"params": {"gamma": {"type": "float", "low": 0.1, "high": 1, "lgo": True}}}, ("unknown field 'lgo'",)),
    ({"params": {"gammma": {"type": "float", "low": 0.1, "high": 1}}}, ("'gammma' is not a setting of eszsl",)),
    ({"params": {}}, ("searches nothing",)),
    ({}, ("searches nothing",)),
    ({"params": {"gamma": {"type": "float", "low": 1, "high": 0.1}}}, ("low (1) must be below high (0.1)",)),
    ({"params": {"gamma": {"type": "float", "low": 0, "high": 1, "log": True}}}, ("log scale needs low > 0",)),
    ({"params": {"gamma": {"type": "float", "low": "a", "high": 1}}}, ("low must be a number",)),
    ({"params": {"gamma": {"type": "categorical", "choices": []}}}, ("non-empty list of choices",)),
    ({"params": {"gamma": {"type": "float", "low": 0.1, "high": 1, "grid": [5]}}}, ("grid value 5",)),
    ({"params": {"lam": {"type": "float", "low": 0.1, "high": 1, "when": {"gamma": 1}}}}, ("not a key listed",)),
    ({"method": "sae", "params": {"lam": {"type": "float", "low": 0.1, "high": 1}}}, ("is for sae, not eszsl",)),
])
def test_bad_space_files(capfd, tmp_path, values, fragments):
    fails(capfd, tmp_path, tune_args(tmp_path, "--space", space_file(tmp_path, values)), *fragments)


def test_a_space_file_that_is_missing_or_not_yaml(capfd, tmp_path):
    fails(capfd, tmp_path, tune_args(tmp_path, "--space", tmp_path / "nope.yaml"), "does not exist")
    broken = tmp_path / "broken.yaml"
    broken.write_text("params: [unclosed\n")
    fails(capfd, tmp_path, tune_args(tmp_path, "--space", broken), "not valid YAML")


@pytest.mark.parametrize("extra, fragments", [
    (("--trials", "0"), ("--trials 0", "at least one trial")),
    (("--jobs", "0"), ("--jobs 0",)),
    (("--storage", "sqlite:////no/such/folder/study.db"), ("cannot open the study storage", "check the URL")),
    (("--storage", "postgresql://nobody@127.0.0.1:9/nothing"), ("cannot open the study storage",)),
    (("--storage", "redis://127.0.0.1:9"), ("give a journal file path",)),
    (("--metric", "accuracy"), ("--metric accuracy does not apply to eszsl",)),
    (("--episodes", "5"), ("--episodes does not apply to eszsl",)),
    (("--study", "a b"), ("--study 'a b'",)),
])
def test_bad_flags(capfd, tmp_path, extra, fragments):
    fails(capfd, tmp_path, tune_args(tmp_path, *extra), *fragments)


def test_cma_es_over_a_categorical_key(capfd, tmp_path):
    fails(capfd, tmp_path, ["tune", "--method", "sae", "--sampler", "cmaes", "--out", str(tmp_path / "s")],
          "cmaes searches numbers only")


def test_unknown_method_and_ensemble(capfd, tmp_path):
    fails(capfd, tmp_path, ["tune", "--method", "protonett", "--out", str(tmp_path / "s")], "unknown method")
    fails(capfd, tmp_path, ["tune", "--method", "ensemble", "--out", str(tmp_path / "s")], "tune each member")


def test_a_few_shot_space_with_a_bad_config_key(capfd, tmp_path):
    space = space_file(tmp_path, {"fixed": {"epochz": 3}, "params": {"lr": {"type": "float", "low": 1e-4,
                                                                             "high": 1e-2}}})
    fails(capfd, tmp_path, ["tune", "--method", "protonet", "--space", space, "--out", str(tmp_path / "s")],
          "'epochz' is not a setting of protonet")


def test_a_study_folder_that_is_a_file(capfd, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    fails(capfd, tmp_path, ["tune", "--method", "eszsl", "--out", str(target)], "is a file")
