"""Fine-tuning a pretrained network on the support set, with the first ``freeze`` blocks frozen and per-block
learning rates (discriminative fine-tuning). ``freeze`` = all blocks is feature extraction: only the head learns."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.learners.base import Learner, check_support_labels
from fewzero.registry import LEARNERS
from fewzero.transfer.blocks import block_names, freeze, named_blocks, param_groups
from fewzero.transfer.heads import ClassifierHead, check_optimisation


class Network(nn.Module):
    """A backbone with a classifier head; its blocks are the backbone's, then ``"head"``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def named_blocks(self) -> list[tuple[str, nn.Module]]:
        return [*named_blocks(self.backbone), ("head", self.head)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@LEARNERS.register("finetune")
class FineTune(Learner):
    """Per episode: copy the pretrained backbone, add a head (linear, or cosine with ``cosine=True``) started from
    the support class means, and train both on the support set for ``steps`` full-batch SGD steps (momentum 0.9).

    Args:
        backbone: the pretrained network, with blocks (``fewzero.transfer.named_blocks``); never changed by ``fit``.
        freeze: how many blocks (input side first) stay frozen, weights and batch-norm statistics; 0..n_blocks.
        steps: optimisation steps on the support set.
        lr: the head's learning rate, and every block's unless ``lrs`` or ``lr_decay`` says otherwise.
        lrs: block name -> learning rate, e.g. ``{"block4": 0.01, "head": 0.1}`` (names: ``block_names``).
        lr_decay: each block gets ``lr_decay`` times the learning rate of the block above it (head = ``lr``).
        weight_decay, cosine, scale: of the optimiser and the head (as ``baseline`` / ``baselinepp``).
    """

    starts_from_pretrained = True
    meta_trainable = False

    def __init__(self, backbone: nn.Module, *, freeze: int = 0, steps: int = 100, lr: float = 0.1,
                 lrs: dict | None = None, lr_decay: float | None = None, weight_decay: float = 1e-3,
                 cosine: bool = False, scale: float = 10.0):
        super().__init__()
        check_optimisation(steps=steps, lr=lr, weight_decay=weight_decay)
        names = block_names(backbone)
        if isinstance(freeze, bool) or not isinstance(freeze, int) or not 0 <= freeze <= len(names):
            raise FewzeroError(f"freeze={freeze!r} but the backbone has {len(names)} blocks "
                               f"({', '.join(names) or 'none'}): give 0..{len(names)}")
        if lrs is not None and not isinstance(lrs, Mapping):
            raise FewzeroError(f"lrs must map block names to learning rates, e.g. {{head: 0.1}}, got {lrs!r}")
        self.backbone = backbone
        self.freeze, self.steps, self.lr, self.weight_decay = freeze, steps, lr, weight_decay
        self.lrs, self.lr_decay, self.cosine, self.scale = dict(lrs) if lrs else None, lr_decay, cosine, scale
        self._groups(Network(backbone, nn.Linear(1, 1)))  # bad block names or learning rates fail here, not later
        self.adapted_: Network | None = None

    def _groups(self, network: Network) -> list[dict]:
        return param_groups(network, lr=self.lr, lrs=self.lrs, decay=self.lr_decay)

    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "FineTune":
        n_way = check_support_labels(support_y, support_x)
        backbone = freeze(copy.deepcopy(self.backbone), up_to=self.freeze)
        with torch.no_grad():
            backbone.eval()
            head = ClassifierHead(backbone(support_x), support_y, n_way, cosine=self.cosine,
                                  scale=self.scale)
        network = Network(backbone, head).train()
        groups = self._groups(network)
        optimizer = torch.optim.SGD(groups, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        with torch.enable_grad():
            for _ in range(self.steps):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(network(support_x), support_y).backward()
                optimizer.step()
        self.adapted_ = network.eval().requires_grad_(False)
        return self

    def episode_loss(self, episode):
        raise FewzeroError("finetune adapts a pretrained network and is not meta-trained: pretrain its backbone "
                           "with `fewzero pretrain`, then evaluate it with `fewzero eval --method finetune`")

    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        if self.adapted_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        return self.adapted_(query_x)
