"""f-CLSWGAN: feature-generating WGAN-GP with a classification loss (Xian, Lorenz, Schiele & Akata, CVPR 2018)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.gan_parts import ConditionalMLP, check_finite, critic_step, sample_batch
from fewzero.zsl.generative import GenerativeLearner

BETAS = (0.0, 0.9)  # Adam betas of Gulrajani et al.'s WGAN-GP (the more stable choice here than 0.5, 0.999)


@ZERO_SHOT.register("fclswgan")
class FCLSWGAN(GenerativeLearner):
    """A conditional WGAN-GP generates features of unseen classes from their semantics; a softmax classifies.

    Per generator step: ``critic_steps`` critic updates on ``D(fake, s) - D(real, s) + gp_weight * GP`` (the
    gradient penalty of ``gradient_penalty``), then one generator update on ``-D(fake, s) + cls_weight * CE``,
    where CE is the cross-entropy of a softmax classifier pre-trained on the seen features (frozen). Adam with
    betas (0, 0.9) for both networks, as in WGAN-GP (on class-conditional Gaussians its class means were 2-3x
    closer to the truth than with the f-CLSWGAN code's (0.5, 0.999) at the same lr). A critic or generator loss
    that is not finite stops training with a ``FewzeroError``. Classification and the remaining options: see
    ``GenerativeLearner``.

    Args:
        critic_steps: critic updates per generator update.
        gp_weight: weight of the gradient penalty (the paper's lambda).
    """

    def __init__(self, *, n_synthetic: int = 300, noise_dim: int = 64, hidden_dim: int = 1024, epochs: int = 30,
                 batch_size: int = 64, lr: float = 3e-4, critic_steps: int = 5, gp_weight: float = 10.0,
                 cls_weight: float = 0.01, classifier_epochs: int = 2, classifier_lr: float = 1e-3,
                 guide_epochs: int = 25, balance_classes: bool = True, seed: int = 0, progress: bool = True,
                 normalize_semantics: bool = True):
        super().__init__(n_synthetic=n_synthetic, noise_dim=noise_dim, hidden_dim=hidden_dim, epochs=epochs,
                         batch_size=batch_size, lr=lr, cls_weight=cls_weight, classifier_epochs=classifier_epochs,
                         classifier_lr=classifier_lr, guide_epochs=guide_epochs, balance_classes=balance_classes,
                         seed=seed, progress=progress, normalize_semantics=normalize_semantics)
        if int(critic_steps) < 1:
            raise FewzeroError(f"critic_steps is {critic_steps}: the critic needs at least 1 update per step")
        if gp_weight < 0:
            raise FewzeroError(f"gp_weight is {gp_weight}: it must be 0 (off) or positive")
        self.critic_steps, self.gp_weight = int(critic_steps), gp_weight

    def _train_generator(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor,
                         classifier: nn.Linear | None) -> ConditionalMLP:
        from tqdm import tqdm

        d, a = x.shape[1], semantics.shape[1]
        generator = ConditionalMLP(self.noise_dim, a, self.hidden_dim, d, relu_output=True).to(x.device)
        critic = ConditionalMLP(d, a, self.hidden_dim, 1).to(x.device)
        g_opt = torch.optim.Adam(generator.parameters(), lr=self.lr, betas=BETAS)
        d_opt = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=BETAS)
        steps = self.epochs * math.ceil(x.shape[0] / self.batch_size)

        def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            return sample_batch(x, y, semantics, self.batch_size, self.noise_dim)

        with torch.enable_grad(), tqdm(range(steps), desc="f-CLSWGAN", disable=not self.progress,
                                       leave=False) as bar:
            for step in bar:
                for _ in range(self.critic_steps):
                    real, _, s, noise = batch()
                    fake = generator(noise, s).detach()
                    d_loss = critic_step(critic, d_opt, real, fake, s, self.gp_weight, step, self.lr)
                _, labels, s, noise = batch()
                fake = generator(noise, s)
                g_loss = -critic(fake, s).mean()
                if classifier is not None:
                    g_loss = g_loss + self.cls_weight * F.cross_entropy(classifier(fake), labels)
                check_finite(g_loss, "the generator loss", step, self.lr)
                g_opt.zero_grad()
                g_loss.backward()
                g_opt.step()
                if step % 20 == 0:
                    bar.set_postfix(critic=f"{d_loss.item():.3f}", generator=f"{g_loss.item():.3f}")
        return generator
