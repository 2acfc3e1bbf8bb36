"""Datasets: each module registers its loader in ``fewzero.registry.DATASETS``."""
from fewzero.data import omniglot
from fewzero.data.arrays import ArrayImageDataset

__all__ = ["ArrayImageDataset", "omniglot"]
