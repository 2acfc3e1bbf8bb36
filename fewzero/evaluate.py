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


def per_class_precision_recall_f1(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class precision, recall and F1 (each (n_classes,) fractions) of a confusion matrix (rows true); a class
    never predicted has precision 0 (as scikit-learn's zero_division=0)."""
    c = confusion.double()
    tp = c.diag()
    predicted, actual = c.sum(0), c.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return precision, recall, f1


def macro_precision_recall_f1(confusion: torch.Tensor) -> tuple[float, float, float]:
    """Macro averages over classes of ``per_class_precision_recall_f1``."""
    precision, recall, f1 = per_class_precision_recall_f1(confusion)
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
    members: dict[str, dict[str, float]] | None = None  # an ensemble's members: name -> accuracy, ci95
    disagreement: list[list[float]] | None = None  # (M, M) % of test queries two members predict differently

    def __str__(self) -> str:
        text = (f"{self.n_way}-way {self.n_shot}-shot accuracy: {self.accuracy:.2f} +- {self.ci95:.2f} % "
                f"(95% CI, N={self.n_episodes} episodes, {self.n_query} queries/class); "
                f"macro F1 {100 * self.f1:.2f} %; {self.seconds:.1f} s")
        if self.members:
            names = list(self.members)
            text += "\nmembers: " + ", ".join(f"{n} {m['accuracy']:.2f} +- {m['ci95']:.2f} %"
                                                for n, m in self.members.items())
            text += "\npairwise disagreement (% of test queries): " + ", ".join(
                f"{names[i]}/{names[j]} {self.disagreement[i][j]:.1f}"
                for i in range(len(names)) for j in range(i + 1, len(names)))
        return text

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


def _is_ensemble(learner) -> bool:
    return hasattr(learner, "member_logits") and hasattr(learner, "combine") and hasattr(learner, "members")


def _member_episodes(learner, dataset: Dataset, sampler: EpisodeSampler, device: torch.device, progress: bool,
                     reuse_embeddings: bool):
    """Yield ``(episode, member logits (M, n_query, n_way))`` of an ensemble on every episode of ``sampler``.

    An ensemble's ``fit`` fits each member, so members are fitted one by one here: an ``EmbeddingLearner`` member
    embeds each distinct item once (``reuse_embeddings``), the others see the items.
    """
    labels = getattr(dataset, "labels", None)
    members = list(learner.members)
    sources: dict[int, Dataset] = {}
    if reuse_embeddings and labels is not None and any(isinstance(m, EmbeddingLearner) for m in members):
        needed = torch.as_tensor(sorted({i for episode in sampler for i in episode}), dtype=torch.long)
        position = torch.full((len(dataset),), -1, dtype=torch.long)
        position[needed] = torch.arange(len(needed))
        for i, member in enumerate(members):
            if isinstance(member, EmbeddingLearner):
                z = embed_items(member.backbone, dataset, needed, device, progress=progress)
                sources[i] = _EmbeddedItems(z, position, torch.as_tensor(labels))
    keys = [i if i in sources else "raw" for i in range(len(members))]  # members that see items share a loader
    distinct = list(dict.fromkeys(keys))
    loaders = [DataLoader(sources.get(k, dataset), batch_sampler=sampler, collate_fn=sampler.collate)
               for k in distinct]
    for batches in zip(*loaders):
        episodes = {k: episode.to(device) for k, episode in zip(distinct, batches)}
        logits = []
        for i, member in enumerate(members):
            episode = episodes[keys[i]]
            if i in sources:
                with torch.no_grad():
                    logits.append(member.fit_embeddings(episode.support_x, episode.support_y).score_embeddings(
                        episode.query_x))
            else:
                member.fit(episode.support_x, episode.support_y)
                with torch.no_grad():
                    logits.append(member(episode.query_x))
        yield episodes[keys[0]], torch.stack([x.to(logits[0].dtype) for x in logits])


def member_logits_on_episodes(learner, dataset: Dataset, sampler: EpisodeSampler, device: str | torch.device = "cpu",
                              progress: bool = True, reuse_embeddings: bool = True
                              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """An ensemble's member logits on every episode of ``sampler`` (validation episodes, for fitting its combiner):
    ([(M, n_query, n_way)], [(n_query,)] query labels), on the CPU."""
    from tqdm import tqdm

    was_training = learner.training
    learner.eval()
    scores, labels = [], []
    try:
        for episode, member in tqdm(_member_episodes(learner, dataset, sampler, torch.device(device), progress,
                                                     reuse_embeddings),
                                    total=len(sampler), desc="member scores", disable=not progress, leave=False):
            scores.append(member.detach().float().cpu()), labels.append(episode.query_y.cpu())
    finally:
        learner.train(was_training)
    return scores, labels


def disagreement_matrix(predictions: torch.Tensor) -> torch.Tensor:
    """(M, n) predicted labels -> (M, M) counts of items on which members i and j predict differently."""
    return (predictions.unsqueeze(1) != predictions.unsqueeze(0)).sum(2)


def evaluate(learner: Learner, dataset: Dataset, sampler: EpisodeSampler, device: str | torch.device = "cpu",
             progress: bool = True, reuse_embeddings: bool = True) -> FewShotReport:
    """Run ``learner`` on every episode of ``sampler`` and summarise.

    The learner is put in eval mode (and restored afterwards). For an ``EmbeddingLearner`` each distinct item is
    embedded once (``reuse_embeddings``), which gives the same logits as embedding per episode. For an ensemble
    (``member_logits``, ``combine`` and ``members``) the report also holds each member's accuracy and the members'
    pairwise disagreement on these episodes.
    """
    from tqdm import tqdm

    device = torch.device(device)
    was_training = learner.training
    learner.eval()
    started = time.perf_counter()
    labels = getattr(dataset, "labels", None)
    class_names = getattr(dataset, "class_names", None)
    ensemble = _is_ensemble(learner)
    use_cache = reuse_embeddings and isinstance(learner, EmbeddingLearner) and labels is not None
    if use_cache:
        needed = torch.as_tensor(sorted({i for episode in sampler for i in episode}), dtype=torch.long)
        position = torch.full((len(dataset),), -1, dtype=torch.long)
        position[needed] = torch.arange(len(needed))
        z = embed_items(learner.backbone, dataset, needed, device, progress=progress)
        dataset = _EmbeddedItems(z, position, torch.as_tensor(labels))
    loader = (_member_episodes(learner, dataset, sampler, device, progress, reuse_embeddings) if ensemble
              else DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.collate))
    n_way = sampler.n_way
    member_accuracies, differ, n_queries = [], 0, 0
    confusion_total = torch.zeros(n_way, n_way, dtype=torch.long)
    correct_by_class: dict[int, list[int]] = {}
    accuracies, precisions, recalls, f1s, records = [], [], [], [], []
    try:
        for index, episode in enumerate(tqdm(loader, desc="evaluating", disable=not progress, leave=False,
                                             total=len(sampler))):
            if ensemble:
                episode, member_logits = episode
                with torch.no_grad():
                    logits = learner.combine(member_logits)
                member_pred = member_logits.argmax(2).cpu()
                member_accuracies.append((100.0 * (member_pred == episode.query_y.cpu()).double().mean(1)).tolist())
                differ, n_queries = differ + disagreement_matrix(member_pred), n_queries + member_pred.shape[1]
            elif use_cache:
                episode = episode.to(device)
                with torch.no_grad():
                    logits = learner.fit_embeddings(episode.support_x, episode.support_y).score_embeddings(
                        episode.query_x)
            else:
                episode = episode.to(device)
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
    members = disagreement = None
    if ensemble:
        members = {name: dict(zip(("accuracy", "ci95"), mean_confidence_interval(column)))
                   for name, column in zip(getattr(learner, "names", None) or range(len(learner.members)),
                                                zip(*member_accuracies))}
        disagreement = (100.0 * differ.double() / n_queries).tolist()
        for record, member_accuracy in zip(records, member_accuracies):
            record["members"] = member_accuracy
    return FewShotReport(
        accuracy=mean, ci95=ci, n_episodes=len(accuracies), n_way=n_way, n_shot=sampler.n_shot,
        n_query=sampler.n_query, precision=float(np.mean(precisions)), recall=float(np.mean(recalls)),
        f1=float(np.mean(f1s)), seconds=time.perf_counter() - started, confusion=confusion_total.tolist(),
        per_class_accuracy=per_class, records=records, members=members, disagreement=disagreement)
