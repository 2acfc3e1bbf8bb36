"""Unsupervised domain adaptation (labelled source, unlabelled target) on any registered backbone.

Methods (``fewzero.registry.ADAPTERS``): ``source_only``, ``target_oracle`` (the upper bound), ``dan`` (multi-kernel
MMD), ``dann`` (gradient reversal) and ``coral`` (Deep CORAL). Loss terms in ``fewzero.adapt.losses``, model
selection without target labels in ``fewzero.adapt.selection``; ``fewzero.adapt_runner.adapt`` runs it all.

    from fewzero.adapt import DANN
    model = DANN(backbone=net, feature_dim=768, n_classes=10, weight=1.0)
    loss, parts = model.loss(source_x, source_y, target_x, progress=step / steps)
"""
from fewzero.adapt.base import LAYERS, Adapter
from fewzero.adapt.losses import coral_loss, dann_coefficient, mk_mmd, reverse_gradient
from fewzero.adapt.methods import CORAL, DAN, DANN, SourceOnly, TargetOracle

__all__ = ["LAYERS", "Adapter", "CORAL", "DAN", "DANN", "SourceOnly", "TargetOracle", "coral_loss",
           "dann_coefficient", "mk_mmd", "reverse_gradient"]
