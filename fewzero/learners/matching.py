"""Matching Networks (Vinyals et al., NeurIPS 2016)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.learners.base import EmbeddingLearner, check_support_labels
from fewzero.registry import LEARNERS


@LEARNERS.register("matching")
class MatchingNetwork(EmbeddingLearner):
    """Classifies a query by attention over the support set: ``P(y | x) = sum_i a(x, x_i) onehot(y_i)`` with
    ``a(x, x_i) = softmax_i(scale * cos(f(x), g(x_i)))``. The logits are ``log P(y | x)`` (each row logsumexps to 0),
    so cross-entropy on them is the paper's negative log-likelihood.

    Args:
        backbone: maps items (B, *item_shape) to embeddings (B, D).
        fce: full-context embeddings (the paper's appendix): the support embeddings go through a bidirectional
            LSTM ``g`` (plus a skip connection), each query through the attention LSTM ``f`` reading the support
            set ``lstm_steps`` times. Queries still see the support set only through its embeddings.
        feature_dim: D, the backbone's embedding size (only used by ``fce``; 64 for Conv-4 on 28x28 Omniglot).
        lstm_steps: K, the read steps of the attention LSTM ``f``.
        scale: multiplies the cosine similarities before the softmax (1 in the paper).
    """

    def __init__(self, backbone: nn.Module, *, fce: bool = False, feature_dim: int = 64, lstm_steps: int = 5,
                 scale: float = 1.0):
        super().__init__()
        if feature_dim < 1 or lstm_steps < 1:
            raise FewzeroError(f"feature_dim and lstm_steps must be >= 1, got {feature_dim} and {lstm_steps}")
        if not scale > 0:
            raise FewzeroError(f"scale must be > 0, got {scale}: use 1.0 for the paper's plain cosine attention")
        self.backbone = backbone
        self.fce, self.feature_dim, self.lstm_steps, self.scale = fce, feature_dim, lstm_steps, scale
        if fce:
            self.support_lstm = nn.LSTM(feature_dim, feature_dim, bidirectional=True)  # g
            self.query_lstm = nn.LSTMCell(2 * feature_dim, feature_dim)  # f: input [f'(x), r_{k-1}], state h_{k-1}
        self.support_z_: torch.Tensor | None = None
        self.support_onehot_: torch.Tensor | None = None

    def _check_dim(self, z: torch.Tensor, what: str) -> torch.Tensor:
        if z.ndim != 2:
            raise FewzeroError(f"matching networks need flat {what} embeddings (N, D), got shape {tuple(z.shape)}: "
                               f"use a backbone that flattens (e.g. conv4 without backbone_args)")
        if self.fce and z.shape[1] != self.feature_dim:
            raise FewzeroError(f"the backbone gives {z.shape[1]}-dim embeddings but feature_dim is "
                               f"{self.feature_dim}: set learner.feature_dim to {z.shape[1]}")
        return z.float()

    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "MatchingNetwork":
        """Store the (full-context) support embeddings g (n_support, D) and one-hot labels (n_support, n_way)."""
        n_way = check_support_labels(support_y)
        with torch.autocast(support_z.device.type, enabled=False):  # the head runs in fp32 under bf16 training
            z = self._check_dim(support_z, "support")
            if self.fce:  # g(x_i, S) = h_fwd_i + h_bwd_i + g'(x_i): one sequence in support order
                out, _ = self.support_lstm(z.unsqueeze(1))
                z = out[:, 0, :self.feature_dim] + out[:, 0, self.feature_dim:] + z
        self.support_z_ = z
        self.support_onehot_ = F.one_hot(support_y, n_way).to(z.dtype)
        return self

    def _attend(self, query_z: torch.Tensor) -> torch.Tensor:
        """f(x, S) = h_K of the attention LSTM: (n_query, D) -> (n_query, D)."""
        g = self.support_z_
        h, c = torch.zeros_like(query_z), torch.zeros_like(query_z)
        for _ in range(self.lstm_steps):
            read = torch.softmax(h @ g.T, dim=1) @ g  # r_{k-1}: dot-product attention of h_{k-1} over g(S)
            h_hat, c = self.query_lstm(torch.cat([query_z, read], dim=1), (h, c))
            h = h_hat + query_z
        return h

    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        """(n_query, D) -> (n_query, n_way) log-probabilities."""
        if self.support_z_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        with torch.autocast(query_z.device.type, enabled=False):
            q = self._check_dim(query_z, "query")
            if self.fce:
                q = self._attend(q)
            sim = self.scale * F.normalize(q, dim=1) @ F.normalize(self.support_z_, dim=1).T  # (n_query, n_support)
            # log sum_{i in class c} a_i, computed exactly with logsumexp: every class has a support item, so the
            # result is never log 0 (no clamp needed) and its gradient stays finite
            in_class = torch.log(self.support_onehot_)  # 0 for the item's class, -inf elsewhere
            per_class = torch.logsumexp(sim.unsqueeze(2) + in_class.unsqueeze(0), dim=1)
            return per_class - torch.logsumexp(sim, dim=1, keepdim=True)
