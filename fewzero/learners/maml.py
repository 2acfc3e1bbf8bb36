"""Model-Agnostic Meta-Learning (Finn et al., ICML 2017) on plain ``nn.Module`` backbones.

The inner loop runs on a flat list of tensors with ``torch.func.functional_call``: no copies of modules, no special
layer classes. ANIL, Meta-SGD and Reptile (sibling files) change one piece each.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.episode import Episode
from fewzero.errors import FewzeroError
from fewzero.learners import batched
from fewzero.learners.base import Learner, check_support_labels
from fewzero.learners.norm import BATCH_NORM_MODES, norm_layers, norm_with_stats, support_statistics, use_batch_statistics
from fewzero.registry import LEARNERS

Weights = list[torch.Tensor]


@LEARNERS.register("maml")
class MAML(Learner):
    """A linear head on ``backbone``; ``fit`` takes ``inner_steps`` SGD steps on the support set from the
    meta-learned initialisation of every trainable parameter, ``forward`` scores queries with the adapted weights.

    Meta-training (``episode_loss``) differentiates the query loss through the inner loop: second order by default,
    first order (FOMAML: the inner gradients are constants) with ``first_order=True``. In eval mode ``fit`` keeps no
    graph: the adapted weights are plain tensors.

    Batch norm: the learner switches the backbone's batch-norm layers to batch statistics (no running averages), as in
    Finn et al. ``batch_norm="transductive"`` (the paper's choice) normalises the query set with its own statistics,
    so a query's logits depend on the other queries; ``"inductive"`` normalises queries with the statistics of the
    (adapted network on the) support set, a constant of the meta-gradient, so each query is scored on its own.

    Args:
        backbone: maps items (B, *item_shape) to features (B, feature_dim).
        n_way: classes per episode: the head has ``n_way`` outputs and episodes must have that many ways.
        feature_dim: width of the backbone's output (64 for Conv4 on 28x28 images).
        inner_lr: step size of the inner-loop SGD.
        test_inner_lr: step size in eval mode (``None``: same as ``inner_lr``). A model meta-trained on 1-shot tasks
            may need a smaller one on 5-shot tasks; ``benchmarks/omniglot.py`` chooses it on validation classes.
        inner_steps: inner steps in train mode (meta-training).
        test_inner_steps: inner steps in eval mode (``None``: same as ``inner_steps``).
        test_inner_lr_by_shot: eval-mode step size per number of shots of the support set, e.g. ``{1: 0.4, 5: 0.1}``
            (chosen on validation episodes and shipped with the packaged models); a shot count not listed adapts
            with ``test_inner_lr``.
        first_order: drop the second-order terms of the meta-gradient.
        batch_norm: ``"transductive"`` or ``"inductive"`` (see above).
        vmap: in meta-training, adapt all tasks of a meta-batch at once with ``torch.func.vmap``
            (``meta_batch_loss``); same meta-gradients as one task after the other. Inductive batch norm falls back
            to the loop (its statistics come from forward hooks).
    """

    batch_norm_modes = BATCH_NORM_MODES  # what --batch-norm may choose

    label_permutation_invariant = False  # row i of the (meta-learned) head belongs to label i

    def __init__(self, backbone: nn.Module, *, n_way: int = 5, feature_dim: int = 64, inner_lr: float = 0.4,
                 inner_steps: int = 1, test_inner_steps: int | None = 3, first_order: bool = False,
                 batch_norm: str = "transductive", test_inner_lr: float | None = None,
                 test_inner_lr_by_shot: dict[int, float] | None = None, vmap: bool = False):
        super().__init__()
        test_inner_steps = inner_steps if test_inner_steps is None else test_inner_steps
        test_inner_lr = inner_lr if test_inner_lr is None else test_inner_lr
        by_shot = {} if test_inner_lr_by_shot is None else dict(test_inner_lr_by_shot)
        for shot, value in by_shot.items():
            if not (isinstance(shot, int) and shot >= 1 and isinstance(value, (int, float)) and value > 0):
                raise FewzeroError(f"test_inner_lr_by_shot maps a shot count >= 1 to a step size > 0, got {shot!r}: "
                                   f"{value!r}; fix learner.test_inner_lr_by_shot")
        for name, value in (("inner_lr", inner_lr), ("test_inner_lr", test_inner_lr)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise FewzeroError(f"{name} must be > 0, got {value!r}: set learner.{name} to a positive step size")
        for name, value in (("inner_steps", inner_steps), ("test_inner_steps", test_inner_steps)):
            if int(value) != value or value < 0:
                raise FewzeroError(f"{name} must be an integer >= 0, got {value!r}: set learner.{name}")
        if batch_norm not in BATCH_NORM_MODES:
            raise FewzeroError(f"unknown batch_norm {batch_norm!r}: choose one of {', '.join(BATCH_NORM_MODES)}")
        if n_way < 1 or feature_dim < 1:
            raise FewzeroError(f"n_way and feature_dim must be >= 1, got {n_way} and {feature_dim}")
        self._body_names = [name for name, p in backbone.named_parameters() if p.requires_grad]
        if not self._body_names:
            raise FewzeroError(f"backbone {type(backbone).__name__} has no trainable parameters: gradient-based "
                               f"meta-learning adapts them; use a backbone with parameters (e.g. conv4)")
        use_batch_statistics(backbone)
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, n_way)
        self.n_way, self.feature_dim = int(n_way), int(feature_dim)
        self.inner_lr, self.inner_steps, self.test_inner_steps = float(inner_lr), int(inner_steps), int(test_inner_steps)
        self.test_inner_lr = float(test_inner_lr)
        self.test_inner_lr_by_shot = {int(k): float(v) for k, v in by_shot.items()}
        self.shot_: int | None = None  # shots of the support set being adapted to
        self.first_order, self.batch_norm, self.vmap = bool(first_order), batch_norm, bool(vmap)
        self.fast_weights_: Weights | None = None
        self.norm_stats_: dict[str, torch.Tensor] | None = None

    # -- the contract -------------------------------------------------------------------------------------------
    def fit(self, support_x: torch.Tensor, support_y: torch.Tensor) -> "MAML":
        """Adapt to a support set (n_support, *item_shape), (n_support,): sets ``fast_weights_``.

        In train mode with gradients enabled the adapted weights stay differentiable (as in ``episode_loss``).
        """
        differentiable = self.training and torch.is_grad_enabled()
        self.fast_weights_, self.norm_stats_ = self.adapt(support_x, support_y, differentiable)
        return self

    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        """(n_query, *item_shape) -> (n_query, n_way) logits of the adapted network."""
        if self.fast_weights_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        return self.logits(query_x, self.fast_weights_, self.norm_stats_)

    def episode_loss(self, episode: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """Query cross-entropy of the adapted network, differentiable w.r.t. the initialisation."""
        return self.task_loss(episode.support_x, episode.support_y, episode.query_x, episode.query_y)

    def meta_batch_loss(self, episodes: list[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
        """(query cross-entropy per task (B,), query logits (B, n_query, n_way)) of a meta-batch of equally
        shaped episodes; all tasks at once with ``vmap=True`` (transductive batch norm), else one by one."""
        if not (self.vmap and self.vmappable() and len(episodes) > 1):
            losses, logits = zip(*(self.episode_loss(episode) for episode in episodes))
            return torch.stack(losses), torch.stack(logits)
        for episode in episodes:  # what vmap cannot check (data-dependent Python control flow)
            self.check_ways(episode.support_y, episode.support_x)
        with batched.vmapping():
            return torch.func.vmap(self.task_loss)(*batched.stack_episodes(episodes))

    def vmappable(self) -> bool:
        """Whether ``meta_batch_loss`` can vmap this learner (inductive batch norm records statistics with forward
        hooks, which vmap cannot run)."""
        return self.batch_norm == "transductive"

    def task_loss(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                  query_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One task's (query cross-entropy, query logits), differentiable w.r.t. the initialisation."""
        weights, stats = self.adapt(support_x, support_y, differentiable=torch.is_grad_enabled())
        logits = self.logits(query_x, weights, stats)
        return F.cross_entropy(logits, query_y), logits

    def extra_repr(self) -> str:
        return (f"n_way={self.n_way}, inner_lr={self.inner_lr:g}, inner_steps={self.inner_steps}, "
                f"test_inner_lr={self.test_inner_lr:g}, test_inner_steps={self.test_inner_steps}, "
                f"first_order={self.first_order}, "
                f"batch_norm={self.batch_norm!r}")

    # -- the pieces ---------------------------------------------------------------------------------------------
    def meta_weights(self) -> Weights:
        """The meta-learned initialisation as a flat list: trainable backbone parameters, head weight, head bias."""
        params = dict(self.backbone.named_parameters())
        return [params[name] for name in self._body_names] + [self.head.weight, self.head.bias]

    def logits(self, x: torch.Tensor, weights: Weights, norm_stats: dict[str, torch.Tensor] | None = None,
               extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, *item_shape) -> (B, n_way) logits of the network with ``weights`` (ordered as ``meta_weights``).

        ``norm_stats``: batch-norm ``running_mean / running_var`` to normalise with instead of batch statistics;
        ``extra``: other backbone tensors by name (e.g. MAML++'s per-step batch-norm scale and shift).
        """
        n_body = len(self._body_names)
        body = {**dict(zip(self._body_names, weights[:n_body])), **(extra or {})}
        if norm_stats:
            with norm_with_stats(norm_layers(self.backbone)):
                z = torch.func.functional_call(self.backbone, {**body, **norm_stats}, (x,), strict=False)
        else:
            z = torch.func.functional_call(self.backbone, body, (x,), strict=False)
        if z.ndim != 2 or z.shape[1] != self.feature_dim:
            raise FewzeroError(f"backbone gives features of shape {tuple(z.shape[1:])} but the head expects "
                               f"({self.feature_dim},): set learner.feature_dim={math.prod(z.shape[1:])}")
        return F.linear(z, weights[n_body], weights[n_body + 1])

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, differentiable: bool
              ) -> tuple[Weights, dict[str, torch.Tensor] | None]:
        """The inner loop: (adapted weights ordered as ``meta_weights``, inductive batch-norm statistics or None).

        ``differentiable``: keep the graph back to the initialisation (second order unless ``first_order``).
        """
        self.check_ways(support_y, support_x)
        weights = self.inner_loop(lambda w: F.cross_entropy(self.logits(support_x, w), support_y),
                                  self.meta_weights(), differentiable)
        stats = None
        if self.batch_norm == "inductive":
            stats = support_statistics(self.backbone, lambda: self.logits(support_x, weights)) or None
        return weights, stats

    def inner_loop(self, loss_fn: Callable[[Weights], torch.Tensor], weights: Weights, differentiable: bool
                   ) -> Weights:
        """``steps`` gradient steps on ``loss_fn(weights)`` (scalar); returns the adapted list."""
        create_graph = differentiable and not self.first_order
        steps = self.inner_steps if self.training else self.test_inner_steps
        if not differentiable:
            weights = [w.detach().requires_grad_() for w in weights]
        with torch.enable_grad():
            for step in range(steps):
                grads = self.gradients(loss_fn, weights, create_graph, f"inner step {step + 1} of {steps}")
                weights = self.step(weights, grads)
                if not differentiable:
                    weights = [w.detach().requires_grad_() for w in weights]
        return weights if differentiable else [w.detach() for w in weights]

    def gradients(self, loss_fn: Callable[[Weights], torch.Tensor], weights: Weights, create_graph: bool,
                  where: str) -> list[torch.Tensor]:
        """d loss_fn(weights) / d weights, kept differentiable with ``create_graph``; a non-finite loss gets a
        FewzeroError naming ``where``. Inside a vmapped meta-batch: ``torch.func.grad``, no per-task check."""
        if batched.active():
            grads = torch.func.grad(loss_fn)(weights)
            return grads if create_graph else [g.detach() for g in grads]
        loss = loss_fn(weights)
        if not math.isfinite(loss.item()):
            raise FewzeroError(f"adaptation loss became {loss.item()} at {where} "
                               f"({self.describe_lr(test=not self.training)}): lower learner.{self.lr_setting()}")
        return list(torch.autograd.grad(loss, weights, create_graph=create_graph))

    def step(self, weights: Weights, grads: tuple[torch.Tensor, ...]) -> Weights:
        """One SGD step: w - lr * g, with ``inner_lr`` in train mode and ``eval_inner_lr()`` in eval mode."""
        lr = self.inner_lr if self.training else self.eval_inner_lr()
        return [same_strides(w, torch.add(w, g, alpha=-lr)) for w, g in zip(weights, grads)]

    def eval_inner_lr(self, shot: int | None = None) -> float:
        """The eval-mode step size for ``shot``-shot support sets (default: the set being adapted to)."""
        shot = self.shot_ if shot is None else shot
        return self.test_inner_lr_by_shot.get(shot, self.test_inner_lr)

    def describe_adaptation(self) -> str:
        """One line for reports: test-time inner loop and batch-norm mode."""
        statistics = ("the query set's own statistics, as in Finn et al. 2017" if self.batch_norm == "transductive"
                      else "the support set's statistics, each query scored on its own")
        return (f"test-time adaptation: {self.test_inner_steps} inner step(s), {self.describe_lr()}; batch norm "
                f"{self.batch_norm} ({statistics}; --batch-norm chooses)")

    def describe_lr(self, test: bool = True) -> str:
        """The inner step size at test time (``test``) or in meta-training, for reports and errors."""
        lr = self.eval_inner_lr()
        if not test or lr == self.inner_lr:
            return f"inner_lr {self.inner_lr:g}"
        which = "" if lr == self.test_inner_lr else f" for {self.shot_}-shot support sets (test_inner_lr_by_shot)"
        return f"test_inner_lr {lr:g}{which} (meta-trained with inner_lr {self.inner_lr:g})"

    def lr_setting(self) -> str:
        """The config key of the step size in use (for error messages)."""
        return "inner_lr" if self.training else "test_inner_lr"

    def check_ways(self, support_y: torch.Tensor, support_x: torch.Tensor | None = None) -> None:
        """Support labels are valid (one per item of ``support_x``) and as many ways as the head has outputs;
        records the support set's shots (the fewest items of a class) in ``shot_``."""
        if batched.active():
            return  # checked on every task before the vmapped call
        n_way = check_support_labels(support_y, support_x)
        self.shot_ = int(torch.bincount(support_y.long()).min())
        if n_way != self.n_way:
            raise FewzeroError(f"the episode has {n_way} ways but the head has {self.n_way} outputs: use "
                               f"{self.n_way}-way episodes or build the learner with learner.n_way={n_way}")


def same_strides(reference: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``t`` laid out in memory like ``reference`` (a differentiable copy when it is not).

    A weight of shape (C_out, 1, k, k) is both NCHW- and channels-last-contiguous; which of the two its strides say
    decides the layout of the convolution's output. Without this, the first inner step turns Conv4's first weight
    from channels-last to NCHW strides, and every later pass runs max-pooling and batch norm on NCHW activations and
    converts them back: meta-training on CPU was 1.3x to 1.8x slower (benchmarks/speed.py).
    """
    if t.stride() == reference.stride() or batched.active():
        return t
    return torch.empty_strided(reference.shape, reference.stride(), dtype=t.dtype, device=t.device).copy_(t)


@LEARNERS.register("fomaml")
def fomaml(backbone: nn.Module, *, n_way: int = 5, feature_dim: int = 64, inner_lr: float = 0.4, inner_steps: int = 1,
           test_inner_steps: int | None = 3, batch_norm: str = "transductive", test_inner_lr: float | None = None,
           test_inner_lr_by_shot: dict[int, float] | None = None, vmap: bool = False) -> MAML:
    """First-order MAML: ``MAML(..., first_order=True)``."""
    return MAML(backbone, n_way=n_way, feature_dim=feature_dim, inner_lr=inner_lr, inner_steps=inner_steps,
                test_inner_steps=test_inner_steps, first_order=True, batch_norm=batch_norm, test_inner_lr=test_inner_lr,
                test_inner_lr_by_shot=test_inner_lr_by_shot, vmap=vmap)
