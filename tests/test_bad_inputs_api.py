"""Bad input through the Python API (the CLI cases are in tests/test_bad_inputs.py and
tests/test_bad_inputs_config.py): research code gets a ``FewzeroError`` that says what is wrong, from the data
loader, the config, the device check, checkpoints, the sampler, ``Episode`` and a learner's support set.
"""
from __future__ import annotations

import math

import pytest
import torch

import bad_input_helpers
from bad_input_helpers import extract, replace_zip
from fewzero.checkpoint import learner_from_checkpoint, load_checkpoint
from fewzero.config import check_device, load_config, validate
from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.sampling import EpisodeSampler

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_isolated = bad_input_helpers.isolated  # autouse: each case gets its own empty cache, no data, no network
checkpoints = bad_input_helpers.checkpoints
tinyglot = bad_input_helpers.tinyglot
unavailable_cuda = bad_input_helpers.unavailable_cuda


# --------------------------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------------------------- config


def test_empty_yaml_is_fine(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing set here\n")
    assert load_config(path=tmp_path / "empty.yaml") == load_config(path=tmp_path / "comments.yaml") == validate({})


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


def test_checkpoint_checks_in_the_python_api(checkpoints, tinyglot):
    with pytest.raises(FewzeroError, match="holds a maml model, not protonet"):
        learner_from_checkpoint(checkpoints["maml"], method="protonet")
    with pytest.raises(FewzeroError, match="trained on tinyglot, not omniglot"):
        learner_from_checkpoint(checkpoints["other_dataset"], dataset="omniglot")
    with pytest.raises(FewzeroError, match="could run code"):
        load_checkpoint(checkpoints["pickled_code"])
    assert not checkpoints["marker"].exists()


# --------------------------------------------------------------------------------------------- sampler and Episode


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


@pytest.mark.parametrize("method", ["maml", "anil"])
def test_maml_family_support_sets_of_mismatched_length_are_one_line_errors(method):
    from fewzero.registry import BACKBONES, LEARNERS

    learner = LEARNERS.create(method, backbone=BACKBONES.create("mlp", in_features=4, hidden=8, out_features=3), n_way=2)
    with pytest.raises(FewzeroError, match="support"):
        learner.eval().fit(torch.rand(5, 4), torch.tensor([0, 1, 0, 1]))
