"""The adaptation methods: source-only, the target oracle, DAN, DANN and Deep CORAL (one short class each)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.adapt.base import Adapter, check_layers
from fewzero.adapt.losses import KERNEL_MULTIPLIERS, coral_loss, dann_coefficient, mk_mmd, reverse_gradient
from fewzero.registry import ADAPTERS


@ADAPTERS.register("source_only")
class SourceOnly(Adapter):
    """The baseline: cross-entropy on the labelled source, nothing else."""


@ADAPTERS.register("target_oracle")
class TargetOracle(Adapter):
    """Trained on the *labelled target* (the runner hands it target data as its source): the upper bound a method
    could reach. Reported beside the others, never a candidate for selection."""

    uses_target_labels = True


@ADAPTERS.register("dan")
class DAN(Adapter):
    """Deep Adaptation Network (Long et al. 2015): multi-kernel MMD between the domains on each layer of ``layers``
    (default the backbone's features and the hidden layer; DAN's own choice, fc7 and fc8, is ``("hidden",
    "logits")``, which lost on the development pairs of paper_results/domain_adaptation_dev.md). ``estimator``:
    ``quadratic`` (unbiased U-statistic, default: smaller variance at these batch sizes) or ``linear`` (DAN's
    linear-time estimator)."""

    weight_grid = (0.1, 0.3, 1.0)
    uses_target_images = True

    def __init__(self, *, layers: Sequence[str] = ("features", "hidden"), estimator: str = "quadratic",
                 multipliers: Sequence[float] = KERNEL_MULTIPLIERS, **kwargs):
        super().__init__(**kwargs)
        self.align_layers, self.estimator, self.multipliers = check_layers(layers), estimator, tuple(multipliers)

    def alignment(self, source, target, *, progress):
        return sum(mk_mmd(source[name], target[name], multipliers=self.multipliers, estimator=self.estimator)
                   for name in self.align_layers)


@ADAPTERS.register("dann")
class DANN(Adapter):
    """Domain-adversarial training (Ganin et al. 2016): a domain classifier learns to tell the domains apart from
    ``layer``, whose gradient is reversed with coefficient ``weight`` x ``dann_coefficient(progress)``. ``weight`` is
    the paper's lambda: it scales only what reaches the features; the domain classifier always learns from its whole
    loss (scaling the loss instead would slow the classifier down by the same factor and leave the features a weaker
    adversary).

    The domain classifier is ``layer`` -> [Linear(domain_hidden) (-> BatchNorm1d) -> ReLU] x ``domain_depth`` -> 1.
    The default, depth 2, width 1024 with batch norm, is Transfer-Learning-Library's ``DomainDiscriminator``; it
    beat Ganin et al.'s digits classifier (``domain_hidden=100, domain_depth=1, domain_batch_norm=False``) on the
    development pairs of paper_results/domain_adaptation_dev.md."""

    weight_grid = (0.1, 0.3, 1.0)
    uses_target_images = True

    def __init__(self, *, layer: str = "features", domain_hidden: int = 1024, domain_depth: int = 2,
                 domain_batch_norm: bool = True, gamma: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        (self.layer,) = check_layers(layer, ("features", "hidden"))
        if isinstance(domain_depth, bool) or not isinstance(domain_depth, int) or domain_depth < 1:
            raise ValueError(f"domain_depth must be a positive integer, got {domain_depth!r}")
        width = kwargs["feature_dim"] if self.layer == "features" else self.classifier.in_features
        self.gamma = gamma
        blocks: list[nn.Module] = []
        for _ in range(domain_depth):
            blocks += [nn.Linear(width, domain_hidden), *([nn.BatchNorm1d(domain_hidden)] if domain_batch_norm else []),
                       nn.ReLU()]
            width = domain_hidden
        self.domain_classifier = nn.Sequential(*blocks, nn.Linear(width, 1))

    def alignment(self, source, target, *, progress):
        features = torch.cat([source[self.layer], target[self.layer]])
        reversed_ = reverse_gradient(features, self.weight * dann_coefficient(progress, gamma=self.gamma))
        is_target = torch.cat([features.new_zeros(len(source[self.layer])), features.new_ones(len(target[self.layer]))])
        logits = self.domain_classifier(reversed_).squeeze(1)
        with torch.no_grad():
            self._diagnostics = {"domain_accuracy": ((logits > 0).float() == is_target).float().mean().item(),
                                 "domain_logit_std": logits.std().item()}
        return F.binary_cross_entropy_with_logits(logits, is_target)

    def diagnostics(self):
        """How the adversarial game stands: the domain classifier's accuracy on the step's batch (0.5 = fooled) and
        the spread of its logits (near 0 with accuracy near 0.5: a collapsed classifier that outputs one constant,
        which also gives chance-level loss without aligning anything)."""
        return dict(getattr(self, "_diagnostics", {}))

    @property
    def alignment_loss_weight(self) -> float:
        return 1.0  # the trade-off sits in the gradient reversal


@ADAPTERS.register("coral")
class CORAL(Adapter):
    """Deep CORAL (Sun & Saenko 2016): match the second-order statistics of ``layer`` (default the logits, the
    paper's last layer)."""

    weight_grid = (1.0, 10.0, 100.0)
    uses_target_images = True

    def __init__(self, *, layer: str = "logits", **kwargs):
        super().__init__(**kwargs)
        (self.layer,) = check_layers(layer)

    def alignment(self, source, target, *, progress):
        return coral_loss(source[self.layer], target[self.layer])
