"""Building blocks of the feature generators: conditional MLPs, the WGAN-GP gradient penalty, a softmax head."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError


class ConditionalMLP(nn.Module):
    """``(a (n, p), s (n, q)) -> (n, out_dim)``: one hidden LeakyReLU layer on the concatenation ``[a, s]``.

    Serves as generator (a = noise or latent code, ReLU output for non-negative features), critic
    (a = feature, out_dim 1) and VAE encoder (a = feature, out_dim 2 * latent).
    """

    def __init__(self, in_dim: int, cond_dim: int, hidden_dim: int, out_dim: int, relu_output: bool = False):
        super().__init__()
        self.hidden = nn.Linear(in_dim + cond_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, out_dim)
        self.relu_output = relu_output

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.hidden(torch.cat([a, s], 1)), 0.2)
        out = self.out(h)
        return F.relu(out) if self.relu_output else out


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, semantics: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP term ``mean((||grad_x D(x_hat, s)|| - 1)^2)`` at random points x_hat between real and fake (n, d).

    ``critic(x, s)`` returns (n,) or (n, 1) scores; the graph is kept so the term can be back-propagated.
    """
    alpha = torch.rand(real.shape[0], 1, generator=generator, device=real.device)
    between = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(between, semantics)
    grad, = torch.autograd.grad(scores.sum(), between, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def sample_batch(x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor, batch_size: int,
                 noise_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random batch (with replacement) of the generators' training: features, labels, their classes' semantics
    and (batch_size, noise_dim) Gaussian noise, drawn from the global RNG in that order."""
    idx = torch.randint(x.shape[0], (batch_size,)).to(x.device)
    noise = torch.randn(batch_size, noise_dim).to(x.device)
    return x[idx], y[idx], semantics[y[idx]], noise


def critic_step(critic: nn.Module, optimizer: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
                semantics: torch.Tensor, gp_weight: float, iteration: int, lr: float) -> torch.Tensor:
    """One WGAN-GP critic update on ``D(fake, s) - D(real, s) + gp_weight * GP``; returns that loss."""
    loss = critic(fake, semantics).mean() - critic(real, semantics).mean()
    if gp_weight > 0:
        loss = loss + gp_weight * gradient_penalty(critic, real, fake, semantics)
    check_finite(loss, "the critic loss", iteration, lr)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def check_finite(loss: torch.Tensor, what: str, iteration: int, lr: float) -> None:
    """Stop training with a one-line error when ``loss`` is NaN or infinite."""
    if not bool(torch.isfinite(loss)):
        raise FewzeroError(f"{what} became {float(loss.detach())} at iteration {iteration} (learning rate {lr:g}): "
                           f"training stopped; lower lr (or gp_weight / cls_weight) and check the features for inf "
                           f"or NaN")


def train_softmax(x: torch.Tensor, y: torch.Tensor, n_classes: int, epochs: int, lr: float, batch_size: int,
                  seed: int, balanced: bool = False) -> nn.Linear:
    """A linear softmax classifier on (n, d) features and (n,) labels, trained with Adam from zero weights.

    Zero initialisation makes the result equivariant to relabelling the classes; the batch order is seeded.
    ``balanced`` weights each item's loss by 1 / (its class's item count), so every class has the same total
    weight whatever its number of (real or synthetic) items.
    """
    weight = None
    if balanced:
        counts = torch.bincount(y, minlength=n_classes).float()
        weight = torch.where(counts > 0, y.numel() / (n_classes * counts.clamp(min=1)), 0.0)
    head = nn.Linear(x.shape[1], n_classes).to(x.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, betas=(0.5, 0.999))
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator).to(x.device)
            for start in range(0, x.shape[0], batch_size):
                batch = order[start:start + batch_size]
                optimizer.zero_grad()
                F.cross_entropy(head(x[batch]), y[batch], weight=weight).backward()
                optimizer.step()
    return head.requires_grad_(False)
