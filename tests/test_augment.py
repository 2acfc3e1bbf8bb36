"""Pretraining augmentation: random shifts against a numpy oracle (edge padding, then a crop), and reproducibility."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fewzero.config import validate
from fewzero.errors import FewzeroError
from fewzero.transfer.augment import batch_generator, random_shift


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 3), st.integers(5, 9), st.integers(0, 2), st.integers(0, 2 ** 31))
def test_every_image_is_an_edge_padded_crop_of_itself(batch, channels, size, max_shift, seed):
    images = torch.randn(batch, channels, size, size + 1)
    out = random_shift(images, max_shift, torch.Generator().manual_seed(seed))
    assert out.shape == images.shape
    for b in range(batch):
        padded = np.pad(images[b].numpy(), ((0, 0), (max_shift, max_shift), (max_shift, max_shift)), mode="edge")
        crops = [padded[:, dy:dy + size, dx:dx + size + 1] for dy in range(2 * max_shift + 1)
                 for dx in range(2 * max_shift + 1)]
        assert any(np.array_equal(out[b].numpy(), crop) for crop in crops)


def test_shifts_vary_and_repeat_with_the_batch_generator():
    images = torch.rand(64, 1, 12, 12)
    first = random_shift(images, 2, batch_generator(0, 3, 128))
    assert torch.equal(first, random_shift(images, 2, batch_generator(0, 3, 128)))  # a resumed run redraws them
    assert not torch.equal(first, random_shift(images, 2, batch_generator(0, 3, 256)))
    moved = [not torch.equal(first[b], images[b]) for b in range(64)]
    assert 40 < sum(moved) < 64  # 1 in 25 offsets is (0, 0)
    assert random_shift(images, 0, batch_generator(0, 1, 0)) is images


@pytest.mark.parametrize("shift,fragment", [(-1, "must be >= 0"), (14, "under half the image_size (28)")])
def test_bad_shift_is_one_clear_error(shift, fragment):
    with pytest.raises(FewzeroError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        validate({"method": "simpleshot", "dataset": "omniglot", "augment_shift": shift})
