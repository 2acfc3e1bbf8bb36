"""The shared evaluator: the only place a reported number is computed.

Few-shot: accuracy per episode, mean +- 95% confidence interval (1.96 * std / sqrt(N), sample std), macro
precision / recall / F1 (per episode, then averaged), a pooled confusion matrix over episode-local labels,
per-class accuracy over dataset classes, and per-episode records saved as JSON.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fewzero.atomic import write_json
from fewzero.learners.base import EmbeddingLearner, Learner
from fewzero.data.arrays import ItemBatch
from fewzero.sampling import EpisodeSampler

Z95 = 1.96


def mean_confidence_interval(values) -> tuple[float, float]:
    """(mean, 1.96 * sample std / sqrt(N)) of a 1-D sequence; the half-width is 0 for a single value."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to summarise")
    if values.size == 1 or np.all(values == values[0]):  # exact for constant values (no summation rounding)
        return float(values[0]), 0.0
    return float(values.mean()), float(Z95 * values.std(ddof=1) / np.sqrt(values.size))


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts; rows are true labels, columns predictions."""
    return torch.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).view(n_classes, n_classes)


def macro_precision_recall_f1(confusion: torch.Tensor) -> tuple[float, float, float]:
    """Macro averages over classes; a class never predicted has precision 0 (as scikit-learn's zero_division=0)."""
    c = confusion.double()
    tp = c.diag()
    predicted, actual = c.sum(0), c.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


@dataclass
class FewShotReport:
    """Result of evaluating one learner on a set of episodes (accuracies in percent)."""

    accuracy: float
    ci95: float
    n_episodes: int
    n_way: int
    n_shot: int
    n_query: int
    precision: float
    recall: float
    f1: float
    seconds: float
    confusion: list[list[int]]
    per_class_accuracy: dict[str, float]
    records: list[dict] = field(repr=False)

    def __str__(self) -> str:
        return (f"{self.n_way}-way {self.n_shot}-shot accuracy: {self.accuracy:.2f} +- {self.ci95:.2f} % "
                f"(95% CI, N={self.n_episodes} episodes, {self.n_query} queries/class); "
                f"macro F1 {100 * self.f1:.2f} %; {self.seconds:.1f} s")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report with its per-episode records as JSON (atomically)."""
        return write_json(path, asdict(self))


class _EmbeddedItems(Dataset):
    """Stand-in dataset whose items are precomputed embeddings: row ``position[i]`` of ``z`` is item ``i``."""

    def __init__(self, z: torch.Tensor, position: torch.Tensor, labels: torch.Tensor):
        self.z, self.position, self.labels = z, position, labels

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __getitems__(self, indices) -> ItemBatch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ItemBatch(self.z[self.position[idx]], self.labels[idx])


def _fetch(dataset: Dataset, indices: list[int]) -> ItemBatch:
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(indices)
    items = [dataset[i] for i in indices]
    return ItemBatch(torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items]))


@torch.no_grad()
def embed_items(backbone: torch.nn.Module, dataset: Dataset, indices: torch.Tensor, device: torch.device,
                batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Backbone embeddings of ``dataset[indices]``: (len(indices), D)."""
    from tqdm import tqdm

    chunks = []
    for start in tqdm(range(0, len(indices), batch_size), desc="embedding test items", disable=not progress,
                      leave=False):
        batch = _fetch(dataset, indices[start:start + batch_size].tolist())
        chunks.append(backbone(batch.x.to(device)).float())
    return torch.cat(chunks)


def evaluate(learner: Learner, dataset: Dataset, sampler: EpisodeSampler, device: str | torch.device = "cpu",
             progress: bool = True, reuse_embeddings: bool = True) -> FewShotReport:
    """Run ``learner`` on every episode of ``sampler`` and summarise.

    The learner is put in eval mode (and restored afterwards). For an ``EmbeddingLearner`` each distinct item is
    embedded once (``reuse_embeddings``), which gives the same logits as embedding per episode.
    """
    from tqdm import tqdm

    device = torch.device(device)
    was_training = learner.training
    learner.eval()
    started = time.perf_counter()
    labels = getattr(dataset, "labels", None)
    class_names = getattr(dataset, "class_names", None)
    use_cache = reuse_embeddings and isinstance(learner, EmbeddingLearner) and labels is not None
    if use_cache:
        needed = torch.as_tensor(sorted({i for episode in sampler for i in episode}), dtype=torch.long)
        position = torch.full((len(dataset),), -1, dtype=torch.long)
        position[needed] = torch.arange(len(needed))
        z = embed_items(learner.backbone, dataset, needed, device, progress=progress)
        dataset = _EmbeddedItems(z, position, torch.as_tensor(labels))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate)
    n_way = sampler.n_way
    confusion_total = torch.zeros(n_way, n_way, dtype=torch.long)
    correct_by_class: dict[int, list[int]] = {}
    accuracies, precisions, recalls, f1s, records = [], [], [], [], []
    try:
        for index, episode in enumerate(tqdm(loader, desc="evaluating", disable=not progress, leave=False)):
            episode = episode.to(device)
            if use_cache:
                with torch.no_grad():
                    logits = learner.fit_embeddings(episode.support_x, episode.support_y).score_embeddings(
                        episode.query_x)
            else:
                learner.fit(episode.support_x, episode.support_y)
                with torch.no_grad():
                    logits = learner(episode.query_x)
            pred = logits.argmax(1).cpu()
            truth = episode.query_y.cpu()
            confusion = confusion_matrix(truth, pred, n_way)
            confusion_total += confusion
            accuracy = 100.0 * float((pred == truth).double().mean())
            p, r, f1 = macro_precision_recall_f1(confusion)
            accuracies.append(accuracy), precisions.append(p), recalls.append(r), f1s.append(f1)
            class_ids = episode.class_ids.cpu().tolist()
            for local, cls in enumerate(class_ids):
                hits = correct_by_class.setdefault(cls, [0, 0])
                hits[0] += int(confusion[local, local])
                hits[1] += int(confusion[local].sum())
            records.append({"episode": sampler.start + index, "accuracy": accuracy, "macro_f1": f1,
                            "class_ids": class_ids})
    finally:
        learner.train(was_training)
    if not accuracies:
        raise ValueError("the sampler yielded no episodes")
    mean, ci = mean_confidence_interval(accuracies)
    per_class = {str(class_names[c]) if class_names else str(c): 100.0 * hit / total
                 for c, (hit, total) in sorted(correct_by_class.items())}
    return FewShotReport(
        accuracy=mean, ci95=ci, n_episodes=len(accuracies), n_way=n_way, n_shot=sampler.n_shot,
        n_query=sampler.n_query, precision=float(np.mean(precisions)), recall=float(np.mean(recalls)),
        f1=float(np.mean(f1s)), seconds=time.perf_counter() - started, confusion=confusion_total.tolist(),
        per_class_accuracy=per_class, records=records)
