"""Model selection without target labels: which epoch and trade-off weight to keep.

Each criterion turns a candidate model into an *estimated target accuracy* (percent, higher is better):

- ``source_val``: plain accuracy on the labelled source validation set.
- ``iwv``: importance-weighted validation (Sugiyama et al. 2007): the source validation errors weighted by the density
  ratio w(x) = p_target(x) / p_source(x), estimated in feature space by a domain classifier; self-normalised
  (sum w l / sum w), which stays a weighted error rate when the domains are nearly separable and every w is tiny.
- ``dev``: deep embedded validation (You et al. 2019): IWV with the control variate w that cancels most of its
  variance, risk = mean(w l) + eta mean(w) - eta with eta = -Cov(w l, w) / Var(w). Unbiased but not bounded: its
  estimate can leave [0, 100] when the weights are degenerate.

Each candidate also gets ``weights_ess``, the effective sample size of its importance weights (a diagnostic).

The domain classifier (scikit-learn logistic regression, C = 0.1, on standardised features) is fitted on the source
*training* features against the unlabelled target training features, so only target images are read, never labels.
"""
from __future__ import annotations

import numpy as np

CRITERIA = ("dev", "iwv", "source_val")


def domain_classifier(*, seed: int = 0, C: float = 1.0):
    """An unfitted linear domain classifier: scikit-learn logistic regression (inverse regularisation ``C``) on
    standardised features. Used for density ratios here and for proxy A-distances by the evaluator."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


def density_ratio(source_train: np.ndarray, target_train: np.ndarray, source_val: np.ndarray, *,
                  seed: int = 0) -> np.ndarray:
    """w(x) = (n_s / n_t) P(target | x) / P(source | x) for each row of ``source_val`` (n_val, d) -> (n_val,)."""
    x = np.concatenate([source_train, target_train])
    is_target = np.concatenate([np.zeros(len(source_train)), np.ones(len(target_train))])
    classifier = domain_classifier(seed=seed, C=0.1).fit(x, is_target)
    log_odds = np.clip(classifier.decision_function(source_val), -50.0, 50.0)  # p / (1 - p) = exp(log-odds)
    return (len(source_train) / len(target_train)) * np.exp(log_odds)


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """Deep embedded validation risk from density ratios (n,) and per-example losses (n,)."""
    weights, losses = np.asarray(weights, np.float64), np.asarray(losses, np.float64)
    weighted = weights * losses
    variance = weights.var(ddof=1)
    eta = 0.0 if variance <= 0 else -np.cov(weighted, weights)[0, 1] / variance
    return float(weighted.mean() + eta * weights.mean() - eta)


def criteria(*, source_train: np.ndarray, target_train: np.ndarray, source_val: np.ndarray,
             val_correct: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Every criterion's estimated target accuracy (percent) for one candidate.

    ``source_train`` (n_s, d), ``target_train`` (n_t, d), ``source_val`` (n_v, d) are the candidate's features;
    ``val_correct`` (n_v,) whether it classifies each source validation example correctly.
    """
    errors = 1.0 - np.asarray(val_correct, np.float64)
    weights = density_ratio(source_train, target_train, source_val, seed=seed)
    return {"dev": 100.0 * (1.0 - dev_risk(weights, errors)),
            "iwv": 100.0 * (1.0 - float((weights * errors).sum() / weights.sum())),
            "source_val": 100.0 * (1.0 - float(errors.mean())),
            "weights_ess": effective_sample_size(weights)}


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of importance weights, in percent of their number: a
    diagnostic, not a criterion. Far below 10 % means IWV and DEV rest on a handful of target-like source images
    (the domains are nearly separable in feature space), and their estimates are noisy."""
    weights = np.asarray(weights, np.float64)
    return float(100.0 * weights.sum() ** 2 / (len(weights) * (weights ** 2).sum()))


def select(candidates: list[dict], criterion: str) -> dict:
    """The candidate with the highest ``candidate["criteria"][criterion]`` (the earliest one on a tie)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return max(candidates, key=lambda c: (c["criteria"][criterion], -c["order"]))
