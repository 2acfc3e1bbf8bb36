"""Property tests (hypothesis): the episode sampler, config overrides and the evaluator's confidence interval hold
their contracts for any valid input, and reject invalid ones with a FewzeroError."""
from __future__ import annotations

import math
import statistics
import typing
from dataclasses import fields

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from fewzero.config import RunConfig, load_config, parse_override
from fewzero.errors import FewzeroError
from fewzero.evaluate import mean_confidence_interval
from fewzero.registry import LEARNERS
from fewzero.sampling import EpisodeSampler, ItemBatch

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the episode sampler -------------------------------------------------------------------------------------------

@st.composite
def splits(draw) -> tuple[np.ndarray, int, int, int]:
    """A shuffled split with sparse class ids and uneven class sizes, and a valid (way, shot, query) for it."""
    n_classes = draw(st.integers(1, 8))
    counts = draw(st.lists(st.integers(1, 9), min_size=n_classes, max_size=n_classes))
    ids = draw(st.lists(st.integers(0, 10 ** 6), min_size=n_classes, max_size=n_classes, unique=True))
    labels = np.repeat(np.array(ids, dtype=np.int64), counts)
    labels = labels[np.array(draw(st.permutations(range(len(labels)))), dtype=np.int64)]
    way = draw(st.integers(1, n_classes))
    shot = draw(st.integers(1, min(counts)))
    query = draw(st.integers(0, min(counts) - shot))
    return labels, way, shot, query


@given(split=splits(), n_episodes=st.integers(0, 6), seed=st.integers(0, 2 ** 32 - 1))
@SETTINGS
def test_every_episode_has_way_distinct_classes_and_shot_plus_query_distinct_items_each(split, n_episodes, seed):
    labels, way, shot, query = split
    sampler = EpisodeSampler(labels, way, shot, query, n_episodes, seed=seed)
    episodes = list(sampler)
    assert len(episodes) == len(sampler) == n_episodes
    for indices in episodes:
        assert len(indices) == len(set(indices)) == way * (shot + query)
        groups = labels[indices].reshape(way, shot + query)  # class by class
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0].tolist())) == way
    # Through a DataLoader and the sampler's collate: local labels 0..way-1, each naming its items' class.
    dataset = TensorDataset(torch.arange(len(labels)).unsqueeze(1), torch.from_numpy(labels))
    for episode in DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate):
        assert episode.support_y.tolist() == [c for c in range(way) for _ in range(shot)]
        assert episode.query_y.tolist() == [c for c in range(way) for _ in range(query)]
        for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
            assert torch.equal(torch.from_numpy(labels)[x[:, 0]], episode.class_ids[y])
    for i, indices in enumerate(episodes):  # a dataset's batched fetch (ItemBatch) collates to the same episode
        batched = sampler.collate(ItemBatch(dataset.tensors[0][indices], dataset.tensors[1][indices]))
        listed = sampler.collate([dataset[j] for j in indices])
        assert all(torch.equal(getattr(batched, f), getattr(listed, f)) for f in
                   ("support_x", "support_y", "query_x", "query_y", "class_ids")), i


@given(split=splits(), n_episodes=st.integers(0, 6), seed=st.integers(0, 2 ** 32 - 1), data=st.data())
@SETTINGS
def test_same_seed_same_episodes_and_start_resumes_them(split, n_episodes, seed, data):
    labels, way, shot, query = split
    full = list(EpisodeSampler(labels, way, shot, query, n_episodes, seed=seed))
    assert list(EpisodeSampler(labels.copy(), way, shot, query, n_episodes, seed=seed)) == full
    assert [EpisodeSampler(labels, way, shot, query, n_episodes, seed=seed).episode_indices(i)
            for i in range(n_episodes)] == full
    start = data.draw(st.integers(0, n_episodes + 2), label="start")
    resumed = EpisodeSampler(labels, way, shot, query, n_episodes, seed=seed, start=start)
    assert list(resumed) == full[start:] and len(resumed) == len(full[start:])


@given(split=splits(), n_episodes=st.integers(0, 9), seed=st.integers(0, 2 ** 32 - 1), world=st.integers(1, 4),
       data=st.data())
@SETTINGS
def test_rank_shards_cover_every_episode_once(split, n_episodes, seed, world, data):
    labels, way, shot, query = split
    start = data.draw(st.integers(0, n_episodes), label="start")
    full = list(EpisodeSampler(labels, way, shot, query, n_episodes, seed=seed))
    shards = [list(EpisodeSampler(labels, way, shot, query, n_episodes, seed=seed, start=start, rank=rank,
                                  world=world)) for rank in range(world)]
    assert sum(map(len, shards)) == n_episodes - start
    for rank, shard in enumerate(shards):  # rank r gets episodes i >= start with i % world == r, in order
        assert shard == [full[i] for i in range(start, n_episodes) if i % world == rank]


BAD_COUNTS = st.one_of(st.integers(-5, -1), st.sampled_from([0.5, 2.5, float("nan"), float("inf"), True, "two", None]))


@given(split=splits(), field=st.sampled_from(["n_way", "n_shot", "n_query", "n_episodes", "seed", "start"]),
       bad=BAD_COUNTS)
@SETTINGS
def test_invalid_counts_raise(split, field, bad):
    labels, way, shot, query = split
    args = dict(n_way=way, n_shot=shot, n_query=query, n_episodes=3, seed=0, start=0)
    with pytest.raises(FewzeroError):
        EpisodeSampler(labels, **{**args, field: bad})


@given(split=splits(), extra=st.integers(1, 3))
@SETTINGS
def test_more_ways_than_classes_or_a_short_class_raise(split, extra):
    labels, way, shot, query = split
    n_classes, smallest = len(np.unique(labels)), int(np.bincount(np.unique(labels, return_inverse=True)[1]).min())
    with pytest.raises(FewzeroError, match="larger than the"):
        EpisodeSampler(labels, n_classes + extra, shot, query, 3)
    with pytest.raises(FewzeroError, match="items but n_shot \\+ n_query"):
        EpisodeSampler(labels, way, shot, smallest - shot + extra, 3)


@given(split=splits(), world=st.integers(1, 4), extra=st.integers(0, 3))
@SETTINGS
def test_rank_outside_world_raises(split, world, extra):
    labels, way, shot, query = split
    with pytest.raises(FewzeroError, match="rank must be in"):
        EpisodeSampler(labels, way, shot, query, 3, rank=world + extra, world=world)


# --- config overrides ----------------------------------------------------------------------------------------------

HINTS = typing.get_type_hints(RunConfig)
INT_LOW = {"seed": 0, "test_seed": 0}  # every other int key must be >= 1
# Keys tied by divisibility (val_every % meta_batch): drawn together below.
TIED = ("meta_batch", "val_every")
BOUNDED = {"augment_shift": (0, 13)}  # also under half the image size (28): drawn below
INT_KEYS = sorted(f.name for f in fields(RunConfig) if HINTS[f.name] is int)
FLOAT_LOW = {"lr": (0.0, True), "lr_gamma": (0.0, True), "weight_decay": (0.0, False), "lr_min": (0.0, False),
             "max_minutes": (0.0, True)}


def test_the_tables_above_name_every_numeric_config_key():
    numeric = {f.name for f in fields(RunConfig) if float in (typing.get_args(HINTS[f.name]) or (HINTS[f.name],))}
    assert numeric == set(FLOAT_LOW) and set(INT_LOW) | set(TIED) | set(BOUNDED) <= set(INT_KEYS)


def typed(value: int | float) -> str:
    """How a user writes the number on the command line (Python's repr: ``3``, ``0.25``, ``1e-05``)."""
    return repr(value)


def floats_above(low: float, strict: bool) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, exclude_min=strict, allow_nan=False, allow_infinity=False)


@given(key=st.sampled_from([k for k in INT_KEYS if k not in TIED and k not in BOUNDED]), data=st.data())
@SETTINGS
def test_an_int_override_round_trips(key, data):
    low = INT_LOW.get(key, 1)
    value = data.draw(st.integers(low, 10 ** 12), label="value")
    parsed_key, parsed = parse_override(f"{key}={typed(value)}")
    assert (parsed_key, parsed) == (key, value)
    assert getattr(load_config("protonet", "omniglot", overrides={key: parsed}), key) == value
    with pytest.raises(FewzeroError, match=f"'{key}'.* must be >= {low}"):
        load_config("protonet", "omniglot", overrides={key: data.draw(st.integers(-10 ** 6, low - 1), label="bad")})


@given(value=st.integers(*BOUNDED["augment_shift"]),
       bad=st.one_of(st.integers(-10 ** 6, -1), st.integers(BOUNDED["augment_shift"][1] + 1, 10 ** 6)))
@SETTINGS
def test_a_bounded_int_override_round_trips(value, bad):
    assert load_config("simpleshot", "omniglot", overrides={"augment_shift": value}).augment_shift == value
    with pytest.raises(FewzeroError, match="'augment_shift'.* must be"):
        load_config("simpleshot", "omniglot", overrides={"augment_shift": bad})


@given(meta_batch=st.integers(1, 32), steps=st.integers(1, 50))
@SETTINGS
def test_tied_int_overrides_round_trip_together(meta_batch, steps):
    values = {"meta_batch": meta_batch, "val_every": meta_batch * steps}
    overrides = dict(parse_override(f"{key}={typed(value)}") for key, value in values.items())
    config = load_config("protonet", "omniglot", overrides=overrides)
    assert {key: getattr(config, key) for key in values} == values


@given(key=st.sampled_from(sorted(FLOAT_LOW)), data=st.data())
@SETTINGS
def test_a_float_override_round_trips(key, data):
    value = data.draw(floats_above(*FLOAT_LOW[key]), label="value")
    parsed_key, parsed = parse_override(f"{key}={typed(value)}")
    assert (parsed_key, parsed) == (key, value)
    config = load_config("protonet", "omniglot", overrides={key: parsed})
    assert getattr(config, key) == value and isinstance(getattr(config, key), float)


NESTED_NUMBERS = sorted((method, name, type(p.default)) for method in LEARNERS.available()
                        for name, p in LEARNERS.parameters(method).items()
                        if type(p.default) in (int, float))


@given(target=st.sampled_from(NESTED_NUMBERS), data=st.data())
@SETTINGS
def test_a_nested_learner_override_round_trips_and_keeps_the_files_other_learner_keys(target, data):
    method, name, kind = target
    value = data.draw(st.integers(0, 10 ** 6) if kind is int else floats_above(0.0, True), label="value")
    key, parsed = parse_override(f"learner.{name}={typed(value)}")
    assert (key, parsed) == (f"learner.{name}", value)
    from_file = load_config(method).learner
    assert load_config(method, overrides={key: parsed}).learner == {**from_file, name: value}


KEY_TEXT = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


@given(key=KEY_TEXT.filter(lambda k: k not in HINTS and k not in LEARNERS.parameters("protonet")),
       value=st.integers(0, 9))
@SETTINGS
def test_unknown_keys_raise(key, value):
    with pytest.raises(FewzeroError, match=f"unknown config key '{key}'"):
        load_config("protonet", overrides={key: value})
    for nested in ("learner", "backbone_args"):  # protonet's learner and conv4's backbone arguments
        with pytest.raises(FewzeroError, match=f"unknown key {nested}.{key}.*valid keys are"):
            load_config("protonet", overrides={f"{nested}.{key}": value})
    with pytest.raises(FewzeroError, match="only learner.\\* and backbone_args.\\* are nested"):
        load_config("protonet", overrides={f"{key}.lr": value})


BLANK = st.text(alphabet=" \t", max_size=3)


@given(key=KEY_TEXT, value=st.integers(0, 9).map(str), blank=BLANK)
@SETTINGS
def test_an_override_without_key_or_value_raises(key, value, blank):
    for text in (key, f"{blank}={value}"):
        with pytest.raises(FewzeroError, match="--set expects key=value"):
            parse_override(text)
    with pytest.raises(FewzeroError, match="has no value"):
        parse_override(f"{key}={blank}")


# --- the evaluator's confidence interval ---------------------------------------------------------------------------

SAMPLES = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=100)


def tolerance(values) -> float:
    """Absolute rounding slack: a few ulps of the largest magnitude (the std of near-constant data cancels)."""
    return 1e-12 * max(1.0, max(abs(v) for v in values))


@given(values=SAMPLES)
@SETTINGS
def test_the_interval_is_the_normal_one_of_the_sample_std(values):
    mean, half = mean_confidence_interval(values)
    n = len(values)
    assert mean == pytest.approx(statistics.fmean(values), rel=1e-12, abs=tolerance(values))
    assert half == pytest.approx(1.96 * statistics.stdev(values) / math.sqrt(n), rel=1e-9, abs=tolerance(values))
    normal = scipy.stats.norm.ppf(0.975) * scipy.stats.sem(values)  # the normal interval: z = 1.96, not a t quantile
    assert half == pytest.approx(normal, rel=1e-4, abs=tolerance(values))
    assert half >= 0


@given(value=st.floats(-1e6, 1e6, allow_nan=False), n=st.integers(1, 200))
@SETTINGS
def test_a_constant_sample_has_no_interval(value, n):
    mean, half = mean_confidence_interval([value] * n)
    assert mean == pytest.approx(value, rel=1e-15, abs=1e-300)
    assert half <= max(1e-15 * abs(value), 1e-300)  # zero up to the rounding of the mean


@given(values=SAMPLES, data=st.data())
@SETTINGS
def test_the_interval_does_not_depend_on_the_order(values, data):
    shuffled = data.draw(st.permutations(values), label="shuffled")
    for a, b in zip(mean_confidence_interval(values), mean_confidence_interval(shuffled)):
        assert a == pytest.approx(b, rel=1e-12, abs=tolerance(values))


@given(values=SAMPLES, scale=st.floats(-100, 100, allow_nan=False).filter(lambda s: abs(s) > 1e-3),
       shift=st.floats(-1e3, 1e3, allow_nan=False))
@SETTINGS
def test_the_interval_moves_with_an_affine_change_of_units(values, scale, shift):
    mean, half = mean_confidence_interval(values)
    moved_mean, moved_half = mean_confidence_interval([scale * v + shift for v in values])
    slack = tolerance([scale * v + shift for v in values]) * 10
    assert moved_mean == pytest.approx(scale * mean + shift, rel=1e-9, abs=slack)
    assert moved_half == pytest.approx(abs(scale) * half, rel=1e-9, abs=slack)
