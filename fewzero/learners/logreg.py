"""Logistic regression on L2-normalised features of a pretrained backbone (Tian et al., Rethinking Few-Shot Image
Classification, ECCV 2020), fitted by scikit-learn."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.learners.base import EmbeddingLearner, check_support_labels
from fewzero.registry import LEARNERS


@LEARNERS.register("logreg")
class LogisticRegressionLearner(EmbeddingLearner):
    """Multinomial ``sklearn.linear_model.LogisticRegression`` (L-BFGS) on the support features.

    Args:
        backbone: the pretrained feature extractor, (B, *item_shape) -> (B, D).
        C: inverse L2 regularisation strength (scikit-learn's ``C``). The default, 10, is what Omniglot's validation
            episodes chose in 3 of 4 settings (``paper_results/omniglot_transfer.md``; 100 at 5-way 1-shot).
        max_iter: L-BFGS iterations.
        normalise: L2-normalise the features first (Tian et al.).

    The logits are ``z @ coef.T + intercept`` computed in torch, so they are differentiable in the query features.
    """

    starts_from_pretrained = True

    def __init__(self, backbone: nn.Module, *, C: float = 10.0, max_iter: int = 1000, normalise: bool = True):
        super().__init__()
        if not C > 0:
            raise FewzeroError(f"C must be > 0, got {C!r}")
        self.backbone = backbone
        self.C, self.max_iter, self.normalise = C, max_iter, normalise
        self.coef_: torch.Tensor | None = None
        self.intercept_: torch.Tensor | None = None

    def transform(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) if self.normalise else z

    def fit_embeddings(self, support_z: torch.Tensor, support_y: torch.Tensor) -> "LogisticRegressionLearner":
        from sklearn.linear_model import LogisticRegression

        n_way = check_support_labels(support_y)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter)
        model.fit(self.transform(support_z).detach().cpu().numpy(), support_y.cpu().numpy())
        coef, intercept = torch.as_tensor(model.coef_), torch.as_tensor(model.intercept_)
        if n_way == 2:  # scikit-learn keeps one weight vector for two classes: logit of class 1 minus class 0
            coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2, intercept / 2])
        self.coef_ = coef.to(support_z.device, support_z.dtype)
        self.intercept_ = intercept.to(support_z.device, support_z.dtype)
        return self

    def score_embeddings(self, query_z: torch.Tensor) -> torch.Tensor:
        if self.coef_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        return F.linear(self.transform(query_z), self.coef_.to(query_z.dtype), self.intercept_.to(query_z.dtype))
