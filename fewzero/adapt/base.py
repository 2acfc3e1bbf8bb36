"""The adapter: a classifier on a backbone, trained on labelled source and unlabelled target batches.

    image (B, C, H, W) --backbone--> "features" (B, F) --Linear+ReLU--> "hidden" (B, hidden) --Linear--> "logits"

A method subclasses ``Adapter`` and says how the two domains' layer outputs are aligned (``alignment``); the loss is
source cross-entropy + ``weight`` x alignment (DANN: + the domain loss, ``weight`` scaling the reversed gradient).
The trade-off ``weight`` is chosen by the runner without target labels, from the method's ``weight_grid``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LAYERS = ("features", "hidden", "logits")


class Adapter(nn.Module):
    """Source-only training; subclasses add an alignment term over the layers in ``LAYERS``."""

    weight_grid: tuple[float, ...] = (0.0,)  # the trade-off weights the runner tries (one model per weight)
    uses_target_images = False  # whether the loss needs unlabelled target batches
    uses_target_labels = False  # only the oracle: trained on labelled target data, never selected

    def __init__(self, *, backbone: nn.Module, feature_dim: int, n_classes: int, hidden: int = 100,
                 weight: float | None = None):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, n_classes)
        self.weight = float(self.weight_grid[-1] if weight is None else weight)

    def layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output for a batch: ``features`` (B, F), ``hidden`` (B, hidden), ``logits`` (B, classes)."""
        features = self.backbone(x).flatten(1)
        hidden = self.bottleneck(features)
        return {"features": features, "hidden": hidden, "logits": self.classifier(hidden)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> class logits (B, n_classes)."""
        return self.layers(x)["logits"]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The representation the classifier reads, (B, hidden): what A-distances and t-SNE plots show."""
        return self.layers(x)["hidden"]

    def loss(self, source_x: torch.Tensor, source_y: torch.Tensor, target_x: torch.Tensor | None = None, *,
             progress: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, its parts as floats) for one step; ``progress`` in [0, 1] is the fraction of training done.

        Both domains go through the network in one batch, so batch norm sees both (as in DANN's and DAN's code).
        """
        if not self.uses_target_images:
            classification = F.cross_entropy(self(source_x), source_y)
            return classification, {"classification": classification.item()}
        out = self.layers(torch.cat([source_x, target_x]))
        n = source_x.shape[0]
        source = {name: value[:n] for name, value in out.items()}
        target = {name: value[n:] for name, value in out.items()}
        classification = F.cross_entropy(source["logits"], source_y)
        alignment = self.alignment(source, target, progress=progress)
        total = classification + self.alignment_loss_weight * alignment
        return total, {"classification": classification.item(), "alignment": alignment.item(), **self.diagnostics()}

    def diagnostics(self) -> dict[str, float]:
        """Label-free numbers about the last alignment step, logged with the loss parts (DANN: its domain
        classifier's accuracy and logit spread)."""
        return {}

    @property
    def alignment_loss_weight(self) -> float:
        """The factor of the alignment term in the loss: the trade-off ``weight`` (DANN puts it elsewhere)."""
        return self.weight

    def alignment(self, source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *,
                  progress: float) -> torch.Tensor:
        """The alignment term from the two domains' layer outputs (dicts keyed by ``LAYERS``)."""
        raise NotImplementedError


def check_layers(layers, allowed=LAYERS) -> tuple[str, ...]:
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [name for name in layers if name not in allowed]
    if not layers or unknown:
        raise ValueError(f"layers must be a non-empty subset of {allowed}, got {layers}")
    return layers
