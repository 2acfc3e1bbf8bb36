"""MAML++ (Antoniou, Edwards, Storkey: How to train your MAML, ICLR 2019): MAML with five switches.

- ``multi_step_loss`` (MSL): the meta-loss weighs the query loss after every inner step, the weights of the earlier
  steps annealed to a floor over the first ``msl_fraction`` of meta-training, after which only the last step counts.
- ``per_step_bn_weights`` (BNWB): batch-norm scale and shift per inner step (meta-learned, not adapted): set k serves
  the network after k inner updates (k = 0..inner_steps), on support and query sets alike.
- ``per_step_bn_statistics`` (BNRS): running batch-norm statistics per inner step, set k collected in meta-training
  from the network after k updates (support and query passes). As in Antoniou et al.'s code, every pass still
  normalises with its batch's statistics (``test_bn_statistics="batch"``); ``"running"`` normalises test passes with
  the collected statistics instead (each query scored on its own), which a network meta-trained with batch
  statistics does not survive: 5 % (chance) on 20-way validation tasks after 900 tasks, against 57 % with batch
  statistics.
- ``learned_inner_lr`` (LSLR): one learned step size per weight tensor and inner step, initialised to ``inner_lr``.
- ``derivative_order_annealing`` (DA): first-order meta-gradients for the first ``first_order_fraction`` of
  meta-training, second order after.
The sixth component, cosine annealing of the outer learning rate (CA), belongs to the optimiser: ``lr_schedule:
cosine`` in the training config. With every switch off the learner is MAML (same weights, same meta-gradients).
Inner steps past the meta-training count (``test_inner_steps > inner_steps``) reuse the last BN set and step size.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.learners import batched
from fewzero.learners.maml import MAML, Weights, same_strides
from fewzero.learners.norm import norm_layers
from fewzero.registry import LEARNERS

MSL_FLOOR = 0.03  # the earlier steps' weights stop at MSL_FLOOR / steps, as in Antoniou et al.'s code


def step_loss_weights(steps: int, progress: float, msl_fraction: float) -> list[float]:
    """Weights of the query losses after inner steps 1..steps at ``progress`` (0..1) of meta-training.

    Uniform at the start; each earlier step's weight falls linearly to a floor while the last one's grows, reaching
    the floor at ``progress = msl_fraction``; from there on only the last step counts ([0, ..., 0, 1]).
    """
    if steps == 1 or progress >= msl_fraction:
        return [0.0] * (steps - 1) + [1.0]
    epoch = progress / msl_fraction  # 0..1 through the annealing
    floor = MSL_FLOOR / steps
    early = max(1.0 / steps - epoch / steps, floor)
    last = min(1.0 / steps + epoch * (steps - 1) / steps, 1.0 - (steps - 1) * floor)
    return [early] * (steps - 1) + [last]


@LEARNERS.register("mamlpp")
class MAMLpp(MAML):
    """MAML++: arguments as ``MAML``, plus the switches above (all on by default) and

    Args:
        msl_fraction: share of meta-training over which the multi-step loss anneals (Antoniou et al. count it in
            epochs of their much longer runs; a share keeps the schedule when the budget changes).
        first_order_fraction: share of meta-training with first-order meta-gradients under DA (Antoniou et al.: the
            first 50 epochs).
        bn_momentum: momentum of the per-step running statistics.
        test_bn_statistics: ``"batch"`` or ``"running"`` (see BNRS above).
    """

    batch_norm_modes = ("transductive",)  # batch statistics, or each step's running ones (BNRS)

    def __init__(self, backbone: nn.Module, *, n_way: int = 5, feature_dim: int = 64, inner_lr: float = 0.4,
                 inner_steps: int = 1, test_inner_steps: int | None = 3, first_order: bool = False,
                 batch_norm: str = "transductive", test_inner_lr: float | None = None,
                 test_inner_lr_by_shot: dict[int, float] | None = None, vmap: bool = False,
                 multi_step_loss: bool = True, per_step_bn_weights: bool = True, per_step_bn_statistics: bool = True,
                 learned_inner_lr: bool = True, derivative_order_annealing: bool = True, msl_fraction: float = 0.1,
                 first_order_fraction: float = 0.33, bn_momentum: float = 0.1, test_bn_statistics: str = "batch"):
        for name, value in (("msl_fraction", msl_fraction), ("first_order_fraction", first_order_fraction),
                            ("bn_momentum", bn_momentum)):
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise FewzeroError(f"{name} must be in [0, 1], got {value!r}: set learner.{name}")
        if test_bn_statistics not in ("batch", "running") or (test_bn_statistics == "running"
                                                               and not per_step_bn_statistics):
            raise FewzeroError(f"test_bn_statistics must be 'batch' or 'running' (with per_step_bn_statistics), got "
                               f"{test_bn_statistics!r}: set learner.test_bn_statistics")
        layers = norm_layers(backbone)
        if (per_step_bn_weights or per_step_bn_statistics) and not layers:
            raise FewzeroError(f"backbone {type(backbone).__name__} has no batch-norm layers: set "
                               f"learner.per_step_bn_weights=false and learner.per_step_bn_statistics=false")
        # per-step BN scale and shift replace the layers' own, which then are neither adapted nor meta-learned
        affine = {f"{name}.{p}" for name, layer in layers if per_step_bn_weights and layer.affine
                  for p in ("weight", "bias")}
        for name, p in backbone.named_parameters():
            if name in affine:
                p.requires_grad_(False)
        super().__init__(backbone, n_way=n_way, feature_dim=feature_dim, inner_lr=inner_lr, inner_steps=inner_steps,
                         test_inner_steps=test_inner_steps, first_order=first_order, batch_norm=batch_norm,
                         test_inner_lr=test_inner_lr, test_inner_lr_by_shot=test_inner_lr_by_shot, vmap=vmap)
        if self.batch_norm != "transductive":
            raise FewzeroError("mamlpp normalises with batch statistics or, with per_step_bn_statistics, with each "
                               "step's running statistics: drop learner.batch_norm")
        if self.inner_steps < 1:
            raise FewzeroError("mamlpp needs inner_steps >= 1 (its per-step parts are per inner step)")
        self.multi_step_loss, self.learned_inner_lr = bool(multi_step_loss), bool(learned_inner_lr)
        self.derivative_order_annealing = bool(derivative_order_annealing)
        self.per_step_bn_weights, self.per_step_bn_statistics = bool(per_step_bn_weights), bool(per_step_bn_statistics)
        self.msl_fraction, self.first_order_fraction = float(msl_fraction), float(first_order_fraction)
        self.bn_momentum, self.progress, self.test_bn_statistics = float(bn_momentum), 0.0, test_bn_statistics
        steps = self.inner_steps + 1  # BN sets: after 0..inner_steps updates
        self._norm_names = [name for name, _ in layers]
        key = lambda name: name.replace(".", "__")  # noqa: E731  (ParameterDict keys cannot hold dots)
        self.step_bn_weight = nn.ParameterDict({key(name): nn.Parameter(layer.weight.detach().repeat(steps, 1))
                                                for name, layer in layers if per_step_bn_weights and layer.affine})
        self.step_bn_bias = nn.ParameterDict({key(name): nn.Parameter(layer.bias.detach().repeat(steps, 1))
                                              for name, layer in layers if per_step_bn_weights and layer.affine})
        for name, layer in layers if per_step_bn_statistics else ():
            self.register_buffer(f"step_mean__{key(name)}", torch.zeros(steps, layer.num_features))
            self.register_buffer(f"step_var__{key(name)}", torch.ones(steps, layer.num_features))
        self.step_lrs = (nn.Parameter(torch.full((len(self.meta_weights()), self.inner_steps), self.inner_lr))
                         if learned_inner_lr else None)
        self._key = key

    # -- training progress (set by fewzero.train before every optimizer step) ------------------------------------
    def set_training_progress(self, fraction: float) -> None:
        """Meta-training done so far (0..1): drives the MSL weights and derivative-order annealing."""
        self.progress = min(max(float(fraction), 0.0), 1.0)

    def second_order_now(self) -> bool:
        """Whether meta-gradients are second order at the current progress."""
        return not self.first_order and not (self.derivative_order_annealing and self.progress < self.first_order_fraction)

    # -- the inner loop ------------------------------------------------------------------------------------------
    def task_loss(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor,
                  query_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MSL-weighted query cross-entropy, final query logits (n_query, n_way))."""
        self.check_ways(support_y, support_x)
        steps = self.inner_steps
        weighted = step_loss_weights(steps, self.progress, self.msl_fraction) if self.multi_step_loss else None
        weights, loss = self.meta_weights(), query_x.new_zeros(())
        for step in range(steps):
            weights = self.inner_step(weights, support_x, support_y, step, torch.is_grad_enabled())
            if weighted is not None and weighted[step] > 0 and step < steps - 1:
                loss = loss + weighted[step] * F.cross_entropy(self.step_logits(query_x, weights, step + 1), query_y)
        logits = self.step_logits(query_x, weights, steps, record=True)
        return loss + (weighted[-1] if weighted else 1.0) * F.cross_entropy(logits, query_y), logits

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor, differentiable: bool
              ) -> tuple[Weights, dict[str, torch.Tensor] | None]:
        """The inner loop at fit time: (adapted weights, None); the query pass picks its step's statistics."""
        self.check_ways(support_y, support_x)
        weights = self.meta_weights()
        steps = self.inner_steps if self.training else self.test_inner_steps
        if not differentiable:
            weights = [w.detach() for w in weights]
        for step in range(steps):
            weights = self.inner_step(weights, support_x, support_y, step, differentiable)
        self.steps_taken_ = steps
        return weights, None

    def forward(self, query_x: torch.Tensor) -> torch.Tensor:
        if self.fast_weights_ is None:
            raise FewzeroError("call fit(support_x, support_y) before scoring queries")
        return self.step_logits(query_x, self.fast_weights_, self.steps_taken_)

    def inner_step(self, weights: Weights, support_x: torch.Tensor, support_y: torch.Tensor, step: int,
                   differentiable: bool) -> Weights:
        """One SGD step on the support loss with step ``step``'s BN and step sizes."""
        create_graph = differentiable and self.second_order_now()
        if not differentiable:
            weights = [w.detach().requires_grad_() for w in weights]
        with torch.enable_grad():
            grads = self.gradients(lambda w: F.cross_entropy(self.step_logits(support_x, w, step, record=True),
                                                             support_y),
                                   weights, create_graph, f"inner step {step + 1}")
        lrs = self.step_sizes(step)
        new = [same_strides(w, w - lr * g) for w, lr, g in zip(weights, lrs, grads)]
        return new if differentiable else [w.detach() for w in new]

    def step_sizes(self, step: int) -> list[torch.Tensor | float]:
        """Step size of each weight tensor at inner step ``step``."""
        if self.step_lrs is None:
            lr = self.inner_lr if self.training else self.eval_inner_lr()
            return [lr] * (len(self._body_names) + 2)
        return list(self.step_lrs[:, min(step, self.inner_steps - 1)])

    def step_logits(self, x: torch.Tensor, weights: Weights, updates: int, record: bool = False) -> torch.Tensor:
        """(B, *item_shape) -> (B, n_way) of the network after ``updates`` inner updates, with that BN set.

        ``record``: in meta-training with per-step statistics, fold this pass's batch statistics into the set's
        running statistics.
        """
        index = min(updates, self.inner_steps)
        extra = {}
        for name in self._norm_names:
            k = self._key(name)
            if k in self.step_bn_weight:
                extra[f"{name}.weight"], extra[f"{name}.bias"] = self.step_bn_weight[k][index], self.step_bn_bias[k][index]
        if not self.per_step_bn_statistics:
            return self.logits(x, weights, extra=extra)
        if not self.training and self.test_bn_statistics == "running":  # each query on its own
            stats = {f"{name}.running_{s}": getattr(self, f"step_{s}__{self._key(name)}")[index]
                     for name in self._norm_names for s in ("mean", "var")}
            return self.logits(x, weights, stats, extra)
        if not (self.training and record) or batched.active():
            return self.logits(x, weights, extra=extra)
        seen: dict[str, torch.Tensor] = {}
        hooks = [layer.register_forward_pre_hook(lambda m, a, name=name: seen.__setitem__(name, a[0].detach()))
                 for name, layer in norm_layers(self.backbone)]
        try:
            out = self.logits(x, weights, extra=extra)
        finally:
            for hook in hooks:
                hook.remove()
        with torch.no_grad():
            for name, h in seen.items():
                dims = [d for d in range(h.ndim) if d != 1]
                k = self._key(name)
                getattr(self, f"step_mean__{k}")[index].lerp_(h.mean(dims), self.bn_momentum)
                getattr(self, f"step_var__{k}")[index].lerp_(h.var(dims), self.bn_momentum)
        return out

    def vmappable(self) -> bool:
        # per-step running statistics are folded in by forward hooks, which vmap cannot run
        return super().vmappable() and not self.per_step_bn_statistics

    def describe_lr(self, test: bool = True) -> str:
        if self.step_lrs is None:
            return super().describe_lr(test)
        lrs = self.step_lrs.detach()
        return f"learned per-layer per-step inner learning rates in [{lrs.min().item():g}, {lrs.max().item():g}]"

    def lr_setting(self) -> str:
        return "inner_lr" if self.step_lrs is not None else super().lr_setting()

    def extra_repr(self) -> str:
        switches = {"msl": self.multi_step_loss, "bnwb": self.per_step_bn_weights, "bnrs": self.per_step_bn_statistics,
                    "lslr": self.learned_inner_lr, "da": self.derivative_order_annealing}
        return super().extra_repr() + ", " + ", ".join(f"{k}={v}" for k, v in switches.items())
