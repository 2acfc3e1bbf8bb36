"""Ensembles: a learner whose members are other learners (few-shot ``Ensemble``, ``ZeroShotEnsemble``), combined
by a calibrated weighted mean of probabilities (``mean_prob``) or class-wise stacking (``stacking``), both fitted
on validation scores only."""
from fewzero.ensemble.combine import COMBINES, Combiner
from fewzero.ensemble.fewshot import Ensemble
from fewzero.ensemble.zero_shot import ZeroShotEnsemble, standardise

__all__ = ["COMBINES", "Combiner", "Ensemble", "ZeroShotEnsemble", "standardise"]
