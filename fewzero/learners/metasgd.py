"""Meta-SGD (Li et al., 2017): MAML with a learned inner learning rate for every parameter entry."""
from __future__ import annotations

import torch
from torch import nn

from fewzero.learners.maml import MAML, Weights, same_strides
from fewzero.registry import LEARNERS


@LEARNERS.register("metasgd")
class MetaSGD(MAML):
    """MAML whose inner step is ``w - alpha * g`` with ``alpha`` a learned tensor shaped like ``w`` (element-wise),
    initialised to ``inner_lr`` and meta-trained with the initialisation. Arguments as ``MAML``.

    Attributes:
        inner_lrs: one learned step-size tensor per entry of ``meta_weights()``, same shape.
    """

    def __init__(self, backbone: nn.Module, *, n_way: int = 5, feature_dim: int = 64, inner_lr: float = 0.4,
                 inner_steps: int = 1, test_inner_steps: int | None = 3, first_order: bool = False,
                 batch_norm: str = "transductive", vmap: bool = False):
        super().__init__(backbone, n_way=n_way, feature_dim=feature_dim, inner_lr=inner_lr, inner_steps=inner_steps,
                         test_inner_steps=test_inner_steps, first_order=first_order, batch_norm=batch_norm, vmap=vmap)
        self.inner_lrs = nn.ParameterList(
            [nn.Parameter(torch.full_like(w, self.inner_lr)) for w in self.meta_weights()])

    def step(self, weights: Weights, grads: tuple[torch.Tensor, ...]) -> Weights:
        return [same_strides(w, torch.addcmul(w, lr, g, value=-1.0)) for w, lr, g in zip(weights, self.inner_lrs, grads)]

    def lr_setting(self) -> str:
        return "inner_lr"  # the initial value of the learned rates, in train and eval mode alike

    def describe_lr(self, test: bool = True) -> str:
        lrs = torch.cat([lr.detach().flatten() for lr in self.inner_lrs])
        return f"learned inner learning rates in [{lrs.min().item():g}, {lrs.max().item():g}], initial {self.inner_lr:g}"
