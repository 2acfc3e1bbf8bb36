"""Transfer learning: the blocks of a network, freezing the first k, per-block learning rates, and the heads that
the transfer learners (Baseline, Baseline++, fine-tuning) fit on pretrained features.

Importable on its own: ``from fewzero.transfer import freeze, param_groups``.
"""
from fewzero.transfer.blocks import block_names, freeze, named_blocks, param_groups

__all__ = ["block_names", "freeze", "named_blocks", "param_groups"]
