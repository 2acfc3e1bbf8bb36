"""Text class semantics: prompt ensembles, descriptor pooling, de-meaning, whitening, attributes+text."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from fewzero.data import semantics as S
from fewzero.data import text_semantics as TS
from fewzero.errors import FewzeroError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DIM = 16


def fake_embed(texts):
    """Deterministic unit vectors, one per distinct text (a stand-in for the sentence model)."""
    rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=DIM)
            for t in texts]
    return TS.l2_rows(np.stack(rows))


def fake_torch_embeddings(texts, *args, **kwargs):
    return torch.from_numpy(fake_embed(list(texts))).float()


def _groups(rng, sizes=(3, 1, 5, 2)):
    return [TS.l2_rows(rng.normal(size=(k, DIM))) for k in sizes]


@pytest.mark.parametrize("pooling", TS.TEXT_POOLINGS)
def test_pooling_weights_sum_to_one_per_class(pooling):
    groups = _groups(np.random.default_rng(0)) + [np.zeros((0, DIM))]
    weights = TS.descriptor_weights(groups, pooling)
    assert [w.shape for w in weights] == [(3,), (1,), (5,), (2,), (0,)]
    for w in weights[:4]:
        assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    if pooling != "distinctive":
        assert np.allclose(weights[2], 0.2)


def test_distinctive_weights_match_a_numpy_oracle_and_downweight_shared_descriptors():
    rng = np.random.default_rng(1)
    groups = _groups(rng)
    groups[0][0] = groups[2][1]  # class 0's first descriptor is one class 2 also has
    weights = TS.descriptor_weights(groups, "distinctive", temperature=0.1)
    others = np.concatenate([groups[2], groups[1], groups[3]])
    logits = -(groups[0] @ others.T).mean(1) / 0.1
    oracle = np.exp(logits) / np.exp(logits).sum()
    assert np.allclose(weights[0], oracle)
    assert weights[0][0] < weights[0][1:].min()
    pooled = TS.pool_descriptors(groups, weights)
    assert np.allclose(pooled[0], TS.l2_rows((oracle[:, None] * groups[0]).sum(0)[None])[0])
    with pytest.raises(FewzeroError, match="temperature must be positive"):
        TS.descriptor_weights(groups, "distinctive", temperature=0)


def test_demean_makes_the_class_mean_zero_before_normalisation():
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(7, DIM)) + 5.0 * rng.normal(size=DIM)  # a large shared component
    out = TS.demean(matrix)
    centred = matrix - matrix.mean(0)
    assert np.allclose(out, centred / np.linalg.norm(centred, axis=1, keepdims=True))
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    # undoing the normalisation gives rows whose mean is zero
    assert np.allclose((out * np.linalg.norm(centred, axis=1, keepdims=True)).mean(0), 0.0, atol=1e-12)
    assert (TS.l2_rows(matrix) @ TS.l2_rows(matrix).T).min() > 0.5 > (out @ out.T).mean()


def test_pca_whiten_decorrelates_the_class_matrix():
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(6, DIM)) * np.linspace(5, 0.1, DIM)
    out = TS.pca_whiten(matrix, shrink=0.0)
    assert out.shape == (6, 5) and np.allclose(np.linalg.norm(out, axis=1), 1.0)
    centred = matrix - matrix.mean(0)
    _, sing, axes = np.linalg.svd(centred, full_matrices=False)
    white = centred @ axes[:5].T / sing[:5]  # oracle up to per-axis sign: identity covariance
    assert np.allclose(white.T @ white, np.eye(5), atol=1e-8)
    assert np.allclose(np.abs(out), np.abs(TS.l2_rows(white)))
    with pytest.raises(FewzeroError, match="same text embedding"):
        TS.pca_whiten(np.ones((4, DIM)))


def test_prompt_ensemble_and_source_oracles():
    names, descs = ["Red Bird", "Blue Bird"], [["a red crest", "black wings"], ["a blue back"]]
    out = TS.text_class_matrix(names, descs, fake_embed, "names", "mean")
    oracle = TS.l2_rows(np.stack([fake_embed([t.format(name=n) for t in TS.NAME_TEMPLATES]).mean(0) for n in names]))
    assert np.allclose(out, oracle)
    both = TS.text_class_matrix(names, descs, fake_embed, "both", "mean")
    desc = [TS.l2_rows(fake_embed([t.format(name=names[0], descriptor=d) for t in TS.DESCRIPTOR_TEMPLATES])
                       .mean(0)[None])[0] for d in descs[0]]
    assert np.allclose(both[0], TS.l2_rows((oracle[0] + TS.l2_rows(sum(desc)[None])[0])[None])[0])
    joined = TS.text_class_matrix(names, descs, fake_embed, "both", "joined")
    assert TS.join_descriptors(descs[0]) == "a red crest and black wings"
    assert TS.join_descriptors(["a", "b", "c"]) == "a, b and c" and TS.join_descriptors(["a"]) == "a"
    sentence = fake_embed([t.format(name=names[0], descriptor="a red crest and black wings")
                           for t in TS.DESCRIPTOR_TEMPLATES]).mean(0)
    assert np.allclose(joined[0], TS.l2_rows((oracle[0] + TS.l2_rows(sentence[None])[0])[None])[0])
    concat = TS.text_class_matrix(names, descs, fake_embed, "both", "concat")
    assert concat.shape == (2, 2 * DIM) and np.allclose(concat[:, :DIM], oracle / np.sqrt(2))
    assert np.allclose(np.linalg.norm(concat[:, DIM:], axis=1), 1 / np.sqrt(2))
    alone = TS.text_class_matrix(names, [descs[0], []], fake_embed, "both", "mean")
    assert np.allclose(alone[1], oracle[1])  # a class without descriptors keeps its name vector
    with pytest.raises(FewzeroError, match="'Blue Bird' has no descriptors"):
        TS.text_class_matrix(names, [descs[0], []], fake_embed, "descriptions")


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWZERO_CACHE", str(tmp_path))
    monkeypatch.setattr(S, "text_embeddings", fake_torch_embeddings)


def test_attributes_plus_text_blocks_count_equally(fake_model, data_root):
    folders = S.cub_class_folders()[:5]
    matrix, said = S.cub_semantics("attributes+text", folders)
    attributes, _ = S.cub_semantics("attributes", folders)
    text, _ = S.cub_semantics("text", folders)
    assert matrix.shape == (5, 312 + DIM) and "\n" not in said and "1/sqrt(2)" in said
    assert "all-MiniLM-L6-v2" in said and f"{TS.DEFAULT_TEXT_POOLING} pooling" in said
    assert torch.allclose(matrix[:, :312].norm(dim=1), torch.full((5,), 2 ** -0.5), atol=1e-6)
    assert torch.allclose(matrix[:, 312:].norm(dim=1), torch.full((5,), 2 ** -0.5), atol=1e-6)
    assert torch.allclose(matrix, torch.cat([attributes, text], 1) / 2 ** 0.5, atol=1e-6)
    assert torch.allclose(attributes, S.cub_attributes(folders))


@pytest.mark.parametrize("kind,pooling",
                         [("text", p) for p in TS.TEXT_POOLINGS] + [("attributes+text", TS.DEFAULT_TEXT_POOLING)])
def test_rows_follow_the_given_class_order(fake_model, data_root, kind, pooling):
    folders = S.cub_class_folders()[:6]
    order = [3, 0, 5, 1, 4, 2]
    matrix, _ = S.cub_semantics(kind, folders, text_pooling=pooling)
    shuffled, _ = S.cub_semantics(kind, [folders[i] for i in order], text_pooling=pooling)
    assert torch.allclose(shuffled, matrix[order], atol=1e-5)
    assert not torch.allclose(matrix, matrix[order], atol=1e-3)  # the classes really differ


def test_unknown_kind_pooling_and_source_give_one_line_errors(fake_model, data_root):
    folders = S.cub_class_folders()[:2]
    poolings = "joined, mean, distinctive, demean, whiten, concat"
    cases = [(dict(kind="wiki"), "unknown semantics 'wiki': choose one of attributes, text, attributes\\+text$"),
             (dict(kind="text", text_pooling="max"), f"unknown text pooling 'max': choose one of {poolings}$"),
             (dict(kind="text", text_source="web"), "unknown text source 'web': choose one of names, descriptions, both$")]
    for options, message in cases:
        with pytest.raises(FewzeroError, match=message) as caught:
            S.cub_semantics(options.pop("kind"), folders, **options)
        assert "\n" not in str(caught.value)
    with pytest.raises(FewzeroError, match="unknown text pooling 'sum'"):
        TS.descriptor_weights([np.ones((1, DIM))], "sum")
    assert S.SEMANTICS_KINDS == ("attributes", "text", "attributes+text")
