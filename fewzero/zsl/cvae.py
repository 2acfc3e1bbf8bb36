"""A conditional VAE feature generator for zero-shot learning (in the spirit of Mishra et al., CVPR-W 2018)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.gan_parts import ConditionalMLP, check_finite
from fewzero.zsl.generative import GenerativeLearner


@ZERO_SHOT.register("cvae")
class CVAE(GenerativeLearner):
    """Encoder q(z | x, s) and decoder G(z, s) -> x trained on seen features; unseen features decode prior noise.

    Loss per item: squared reconstruction error (summed over feature dimensions) + ``kl_weight`` * KL(q || N(0, I))
    + ``cls_weight`` * the pre-trained seen classifier's cross-entropy on features decoded from prior noise (which
    makes samples drawn as at generation time discriminative). The decoder is the generator of
    ``GenerativeLearner``; ``noise_dim`` is the latent size. A loss that is not finite stops training with a
    ``FewzeroError``. Other options: see ``GenerativeLearner``.

    Args:
        kl_weight: weight of the KL term (beta).
    """

    def __init__(self, *, n_synthetic: int = 300, noise_dim: int = 64, hidden_dim: int = 1024, epochs: int = 30,
                 batch_size: int = 64, lr: float = 1e-3, kl_weight: float = 1.0, cls_weight: float = 0.1,
                 classifier_epochs: int = 2, classifier_lr: float = 1e-3, guide_epochs: int = 25,
                 balance_classes: bool = True, seed: int = 0, progress: bool = True, normalize_semantics: bool = True):
        super().__init__(n_synthetic=n_synthetic, noise_dim=noise_dim, hidden_dim=hidden_dim, epochs=epochs,
                         batch_size=batch_size, lr=lr, cls_weight=cls_weight, classifier_epochs=classifier_epochs,
                         classifier_lr=classifier_lr, guide_epochs=guide_epochs, balance_classes=balance_classes,
                         seed=seed, progress=progress, normalize_semantics=normalize_semantics)
        if kl_weight < 0:
            raise FewzeroError(f"kl_weight is {kl_weight}: it must be 0 or positive")
        self.kl_weight = kl_weight

    def _train_generator(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor,
                         classifier: nn.Linear | None) -> ConditionalMLP:
        from tqdm import tqdm

        d, a = x.shape[1], semantics.shape[1]
        encoder = ConditionalMLP(d, a, self.hidden_dim, 2 * self.noise_dim).to(x.device)
        decoder = ConditionalMLP(self.noise_dim, a, self.hidden_dim, d, relu_output=True).to(x.device)
        optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=self.lr)
        steps = self.epochs * math.ceil(x.shape[0] / self.batch_size)
        with torch.enable_grad(), tqdm(range(steps), desc="CVAE", disable=not self.progress, leave=False) as bar:
            for step in bar:
                idx = torch.randint(x.shape[0], (self.batch_size,)).to(x.device)
                real, labels, s = x[idx], y[idx], semantics[y[idx]]
                mean, log_var = encoder(real, s).chunk(2, dim=1)
                z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
                recon = ((decoder(z, s) - real) ** 2).sum(1).mean()
                kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(1).mean()
                loss = recon + self.kl_weight * kl
                if classifier is not None:
                    prior = decoder(torch.randn_like(mean), s)
                    loss = loss + self.cls_weight * F.cross_entropy(classifier(prior), labels)
                check_finite(loss, "the VAE loss", step, self.lr)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if step % 20 == 0:
                    bar.set_postfix(reconstruction=f"{recon.item():.3f}", kl=f"{kl.item():.3f}")
        return decoder
