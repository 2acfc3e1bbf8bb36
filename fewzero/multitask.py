"""Multi-task learning: one shared backbone, named heads with their own losses, and loss weighting.

    from fewzero.multitask import MultiTaskModel, MultiTaskTrainer, Task, accuracy

    model = MultiTaskModel(backbone, {"classes": nn.Linear(256, 40), "rotation": nn.Linear(256, 4)})
    tasks = {"classes": Task(F.cross_entropy, metric=accuracy), "rotation": Task(F.cross_entropy, metric=accuracy)}
    trainer = MultiTaskTrainer(model, tasks, weighting="uncertainty", lr=0.05)
    for epoch in range(10):
        for x, y in loader:
            trainer.step({"classes": (x, y), "rotation": (rotated(x), turns)})
        print(trainer.end_epoch())   # per task: mean loss, metric and weight of the epoch

Each task gets its own (input, target) pair each step; inputs that are the same tensor object go through the
backbone once, and all distinct inputs go through it in one concatenated batch (so batch norm sees every task's
items, and one forward serves DistributedDataParallel). Loss weighting: ``fixed`` weights, ``uncertainty``
(homoscedastic task uncertainty, Kendall, Gal & Cipolla, CVPR 2018) or ``gradnorm`` (Chen et al., ICML 2018).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from fewzero.distributed import rank_and_world
from fewzero.errors import FewzeroError

WEIGHTINGS = ("fixed", "uncertainty", "gradnorm")


@dataclass
class Task:
    """One task: ``loss(head_output, target) -> scalar``; ``metric(head_output, target) -> float`` is logged."""

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[[torch.Tensor, torch.Tensor], float] | None = None


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy in % of (n, C) logits against (n,) labels."""
    return 100.0 * float((logits.argmax(1) == target).float().mean())


class MultiTaskModel(nn.Module):
    """A shared ``backbone`` (x -> (n, d) features) and named heads ((n, d) -> task output)."""

    def __init__(self, backbone: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__()
        if not heads:
            raise FewzeroError("a multi-task model needs at least one head")
        self.backbone = backbone
        self.heads = nn.ModuleDict(dict(heads))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{task: (n_task, ...) input} -> {task: head output}; distinct inputs share one backbone pass."""
        unknown = sorted(set(inputs) - set(self.heads))
        if unknown:
            raise FewzeroError(f"no head named {unknown[0]!r}: the model has {', '.join(self.heads)}")
        distinct: list[torch.Tensor] = []
        for x in inputs.values():
            if not any(x is seen for seen in distinct):
                distinct.append(x)
        features = self.backbone(torch.cat(distinct) if len(distinct) > 1 else distinct[0])
        pieces = features.split([len(x) for x in distinct])
        return {name: self.heads[name](pieces[next(i for i, seen in enumerate(distinct) if seen is x)])
                for name, x in inputs.items()}


class FixedWeighting(nn.Module):
    """Total loss = sum of w_task * loss_task with constant weights (default 1 each)."""

    def __init__(self, names: list[str], weights: Mapping[str, float] | None = None):
        super().__init__()
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise FewzeroError(f"a weight is given for {unknown[0]!r}, which is not a task: tasks are {', '.join(names)}")
        if any(w < 0 for w in weights.values()):
            raise FewzeroError("task weights must be 0 or positive")
        self.names = names
        self.register_buffer("w", torch.tensor([float(weights.get(n, 1.0)) for n in names]))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        """(T,) task losses -> scalar total."""
        return (self.w * losses).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.w.tolist()))


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): total = sum_t exp(-s_t) * loss_t + s_t with a learned s_t = log sigma_t^2 per task.

    For a fixed loss the optimum is exp(s_t) = loss_t, so a noisier task (larger irreducible loss) gets a larger
    sigma and a smaller weight exp(-s_t). (Twice the paper's regression form 1/(2 sigma^2) L + log sigma.)
    """

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = names
        self.log_var = nn.Parameter(torch.zeros(len(names)))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return (torch.exp(-self.log_var) * losses + self.log_var).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, torch.exp(-self.log_var.detach()).tolist()))


class GradNorm(nn.Module):
    """Chen et al. (2018): learned weights w_t that pull each task's gradient norm on the shared layer,
    G_t = w_t * ||grad_W loss_t||, toward mean(G) * r_t ** alpha, where r_t is the task's loss ratio
    loss_t / loss_t(first step), relative to the mean ratio. The weights get their own Adam (lr) on
    sum_t |G_t - target_t| and are renormalised to sum to the number of tasks after every step.
    """

    def __init__(self, names: list[str], *, alpha: float = 1.5, lr: float = 0.025):
        super().__init__()
        if alpha < 0:
            raise FewzeroError(f"GradNorm alpha is {alpha}: it must be 0 or positive")
        self.names, self.alpha = names, alpha
        self.w = nn.Parameter(torch.ones(len(names)))
        self.register_buffer("initial", torch.zeros(0))
        self.optimizer = torch.optim.Adam([self.w], lr=lr)

    def forward(self, losses: torch.Tensor, shared: list[torch.Tensor]) -> torch.Tensor:
        """(T,) losses and the shared layer's parameters -> scalar total (weights held fixed); updates w."""
        norms = torch.stack([torch.sqrt(sum((g ** 2).sum() for g in torch.autograd.grad(
            loss, shared, retain_graph=True, allow_unused=True) if g is not None)) for loss in losses]).detach()
        if self.initial.numel() == 0:
            self.initial = losses.detach().clamp_min(1e-12)
        ratio = losses.detach() / self.initial
        target = (self.w.detach() * norms).mean() * (ratio / ratio.mean()) ** self.alpha
        self.optimizer.zero_grad()
        (self.w * norms - target).abs().sum().backward()
        self.optimizer.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-4).mul_(len(self.names) / self.w.sum())
        return (self.w.detach() * losses).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.w.detach().tolist()))


class MultiTaskTrainer:
    """Trains a ``MultiTaskModel`` on named tasks with one optimizer and a loss weighting.

    Args:
        model: the shared backbone and its heads (one head per task, same names).
        tasks: name -> ``Task``.
        weighting: ``fixed`` (with ``weights``), ``uncertainty`` or ``gradnorm``.
        weights: fixed weights by task name (default 1 each); only with ``fixed``.
        optimizer: an optimizer over ``model``'s parameters (default SGD, momentum 0.9, ``lr``).
        scheduler: stepped after every optimizer step (optional).
        lr: learning rate of the default optimizer.
        weighting_lr: Adam learning rate of the learned weights (uncertainty: its log-variances; gradnorm: w).
        gradnorm_alpha: GradNorm's asymmetry; 0 asks for equal gradient norms.
        shared_parameters: the shared layer GradNorm measures gradients on (default: the backbone's last
            parameter with 2 or more dimensions).
        log: a ``fewzero.runlog.RunLog`` (anything with ``record(**values)``); ``end_epoch`` records every
            task's loss, metric and weight there (metrics.jsonl).

    Under torchrun the model trains as DistributedDataParallel; learned uncertainty weights are averaged over
    the processes each step; GradNorm is single-process only.
    """

    def __init__(self, model: MultiTaskModel, tasks: Mapping[str, Task], *, weighting: str = "fixed",
                 weights: Mapping[str, float] | None = None, optimizer: torch.optim.Optimizer | None = None,
                 scheduler=None, lr: float = 0.01, weighting_lr: float = 0.01, gradnorm_alpha: float = 1.5,
                 shared_parameters: list[torch.Tensor] | None = None, log=None):
        names = list(tasks)
        if set(names) != set(model.heads):
            raise FewzeroError(f"tasks ({', '.join(names) or 'none'}) and heads ({', '.join(model.heads)}) must "
                               f"have the same names")
        if weighting not in WEIGHTINGS:
            raise FewzeroError(f"unknown loss weighting {weighting!r}: choose one of {', '.join(WEIGHTINGS)}")
        if weights and weighting != "fixed":
            raise FewzeroError(f"weights are fixed task weights: they go with weighting='fixed', not {weighting!r}")
        self.model, self.tasks, self.names, self.log = model, dict(tasks), names, log
        self.rank, self.world = rank_and_world()
        if weighting == "fixed":
            self.weighting: nn.Module = FixedWeighting(names, weights)
        elif weighting == "uncertainty":
            self.weighting = UncertaintyWeighting(names)
        else:
            if self.world > 1:
                raise FewzeroError("GradNorm runs in one process: use weighting='uncertainty' or 'fixed' "
                                   "under torchrun")
            self.weighting = GradNorm(names, alpha=gradnorm_alpha, lr=weighting_lr)
        self.shared = shared_parameters or [[p for p in model.backbone.parameters() if p.ndim >= 2][-1]]
        self.optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        self.weighting_optimizer = (torch.optim.Adam(self.weighting.parameters(), lr=weighting_lr)
                                    if weighting == "uncertainty" else None)
        self.scheduler = scheduler
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.forward = DistributedDataParallel(model)
        else:
            self.forward = model
        self.epoch, self.steps, self._sums = 0, 0, {}

    def step(self, batch: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step on {task: (input, target)} for every task -> {task: loss, "total": total}."""
        missing = [n for n in self.names if n not in batch]
        if missing:
            raise FewzeroError(f"the batch has no items for task {missing[0]!r}: give every task (input, target)")
        self.model.train()
        outputs = self.forward({n: batch[n][0] for n in self.names})
        losses = torch.stack([self.tasks[n].loss(outputs[n], batch[n][1]) for n in self.names])
        if not bool(torch.isfinite(losses).all()):
            bad = self.names[int((~torch.isfinite(losses)).nonzero()[0])]
            raise FewzeroError(f"the loss of task {bad!r} is not finite: lower the learning rate or check its "
                               f"targets for NaN")
        if isinstance(self.weighting, GradNorm):
            total = self.weighting(losses, self.shared)
        else:
            total = self.weighting(losses)
        self.optimizer.zero_grad(set_to_none=True)
        if self.weighting_optimizer is not None:
            self.weighting_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        if self.weighting_optimizer is not None:
            if self.world > 1:
                import torch.distributed as dist

                for p in self.weighting.parameters():
                    dist.all_reduce(p.grad)
                    p.grad /= self.world
            self.weighting_optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        values = {n: float(v) for n, v in zip(self.names, losses.detach())}
        count = len(next(iter(batch.values()))[1])
        for n in self.names:
            metric = self.tasks[n].metric
            self._add(f"{n}/loss", values[n], count)
            if metric is not None:
                self._add(f"{n}/metric", float(metric(outputs[n].detach(), batch[n][1])), count)
        self._add("total", float(total.detach()), count)
        return {**values, "total": float(total.detach())}

    def _add(self, key: str, value: float, count: int) -> None:
        total, n = self._sums.get(key, (0.0, 0))
        self._sums[key] = (total + value * count, n + count)

    def weights(self) -> dict[str, float]:
        """The current weight of every task."""
        return self.weighting.weights()

    def end_epoch(self, **extra) -> dict[str, float]:
        """Close an epoch: per-task mean loss and metric over its steps, and the weights; recorded in ``log``."""
        self.epoch += 1
        row = {"epoch": self.epoch, **{k: round(s / max(n, 1), 5) for k, (s, n) in self._sums.items()},
               **{f"{k}/weight": round(v, 5) for k, v in self.weights().items()}, **extra}
        self._sums = {}
        if self.log is not None and self.rank == 0:
            self.log.record(**row)
        return row
