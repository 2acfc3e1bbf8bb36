"""The evaluator of domain adaptation: target accuracy with a 95 % interval, per-class precision / recall / F1, the
confusion matrix, and the proxy A-distance between two feature samples."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from fewzero.adapt.selection import domain_classifier
from fewzero.evaluate import confusion_matrix, mean_confidence_interval, per_class_precision_recall_f1


@dataclass
class DomainReport:
    """A classifier on one labelled test set (percentages). ``ci95`` is 1.96 x the standard error of the mean of the
    per-image 0/1 correctness (the normal interval of a binomial proportion)."""

    accuracy: float
    ci95: float
    n_images: int
    class_names: list[str]
    precision: list[float]
    recall: list[float]
    f1: list[float]
    confusion: list[list[int]]  # rows: true class, columns: predicted

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    def to_dict(self) -> dict:
        return {**asdict(self), "macro_f1": self.macro_f1}


def report_predictions(predictions: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> DomainReport:
    """Score predicted class indices (n,) against labels (n,)."""
    correct = (predictions == labels).double().numpy()
    accuracy, ci95 = mean_confidence_interval(100.0 * correct)
    confusion = confusion_matrix(labels.long(), predictions.long(), len(class_names))
    precision, recall, f1 = per_class_precision_recall_f1(confusion)
    return DomainReport(accuracy=accuracy, ci95=ci95, n_images=len(labels), class_names=list(class_names),
                        precision=(100 * precision).tolist(), recall=(100 * recall).tolist(), f1=(100 * f1).tolist(),
                        confusion=confusion.tolist())


@torch.no_grad()
def in_batches(model: torch.nn.Module, fn, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """``fn`` (a method of ``model``) over ``x`` in batches, with ``model`` in eval mode and no graph."""
    model.eval()
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class predictions (n,) of ``model`` (images -> logits) in eval mode."""
    return in_batches(model, lambda batch: model(batch).argmax(1), x)


def evaluate_domain(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> DomainReport:
    """Evaluate ``model`` on images (n, C, H, W) with labels (n,)."""
    return report_predictions(predict(model, x), y, class_names)


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, seed: int = 0) -> float:
    """Proxy A-distance 2 (1 - 2 err) (Ben-David et al. 2007; Ganin et al. 2016) between feature samples (n, d).

    A linear domain classifier (logistic regression on standardised features) is trained on half of an equal number
    of source and target rows and ``err`` is its error on the other half: 0 for indistinguishable domains, 2 for
    separable ones (clipped at 0 from below: a classifier worse than chance says "indistinguishable").
    """
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target))
    if n < 4:
        raise ValueError("the proxy A-distance needs at least 4 rows from each domain")
    x = np.concatenate([source[rng.permutation(len(source))[:n]], target[rng.permutation(len(target))[:n]]])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    order = rng.permutation(2 * n)
    train, test = order[:n], order[n:]
    classifier = domain_classifier(seed=seed).fit(x[train], y[train])
    error = float((classifier.predict(x[test]) != y[test]).mean())
    return max(0.0, 2.0 * (1.0 - 2.0 * error))
