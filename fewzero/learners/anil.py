"""ANIL: Almost No Inner Loop (Raghu et al., ICLR 2020)."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from fewzero.learners.maml import MAML, Weights
from fewzero.learners.norm import support_statistics
from fewzero.registry import LEARNERS


@LEARNERS.register("anil")
class ANIL(MAML):
    """MAML whose inner loop adapts only the linear head; the backbone ("body") is learned in the outer loop alone.

    The support features are computed once per episode, so the inner loop costs a few (n_support, feature_dim)
    matrix products. Arguments as ``MAML``.
    """

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, differentiable: bool
              ) -> tuple[Weights, dict[str, torch.Tensor] | None]:
        """Inner loop on the head only: the returned body weights are the meta-learned parameters themselves."""
        self.check_ways(support_y, support_x)
        weights = self.meta_weights()
        body, head = weights[:-2], weights[-2:]
        stats: dict[str, torch.Tensor] = {}
        with torch.set_grad_enabled(differentiable):
            if self.batch_norm == "inductive":
                stats = support_statistics(self.backbone, lambda: self.backbone(support_x))
            z = self.backbone(support_x)
        head = self.inner_loop(lambda h: F.cross_entropy(F.linear(z, h[0], h[1]), support_y), head, differentiable)
        if not differentiable:
            body = [w.detach() for w in body]
        return body + head, stats or None
