"""TF-VAEGAN: a VAE-GAN feature generator with a semantic embedding decoder whose latent embedding is fed back
into the generator and added to the classifier's input (Narayan, Gupta, Khan, Snoek & Shao, ECCV 2020)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.registry import ZERO_SHOT
from fewzero.zsl.gan_parts import ConditionalMLP, check_finite, critic_step, sample_batch
from fewzero.zsl.generative import GenerativeLearner

BETAS = (0.0, 0.9)  # as f-CLSWGAN here (WGAN-GP's); the TF-VAEGAN code uses (0.5, 0.999)


class SemanticDecoder(nn.Module):
    """Dec: ``x (n, d) -> (â (n, a), h (n, hidden))``: reconstructs the semantics from a feature; its LeakyReLU
    hidden layer ``h`` is the latent embedding that is fed back to the generator and appended to the features."""

    def __init__(self, feature_dim: int, hidden_dim: int, semantic_dim: int):
        super().__init__()
        self.hidden = nn.Linear(feature_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, semantic_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.hidden(x), 0.2)
        return self.out(h), h


class FeedbackGenerator(nn.Module):
    """G with the feedback loop: ``(z (n, k), s (n, a)) -> (n, d)`` features in (0, 1) (sigmoid output).

    Pass 1: ``x1 = G(z, s)``. Pass 2 (``feedback=True`` and ``feedback_weight > 0``): G's hidden layer gets
    ``feedback_weight * Fb(h(x1))`` added, where ``h`` is the decoder's latent embedding of x1 (no gradient flows
    back through it) and ``Fb`` the feedback module (two LeakyReLU layers hidden -> hidden). The paper trains and
    generates this way; ``feedback=False`` (or weight 0) is the plain one-pass generator. Holds the decoder, so
    the fitted learner's ``generator_`` is all that synthesis and the feature transformation need.
    """

    def __init__(self, noise_dim: int, semantic_dim: int, hidden_dim: int, feature_dim: int,
                 feedback_weight: float):
        super().__init__()
        self.net = ConditionalMLP(noise_dim, semantic_dim, hidden_dim, feature_dim)
        self.decoder = SemanticDecoder(feature_dim, hidden_dim, semantic_dim)
        self.feedback = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2),
                                      nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2))
        self.feedback_weight = feedback_weight

    def hidden(self, z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """G's hidden layer (n, hidden_dim), where the feedback is added."""
        return F.leaky_relu(self.net.hidden(torch.cat([z, s], 1)), 0.2)

    def forward(self, z: torch.Tensor, s: torch.Tensor, feedback: bool = True) -> torch.Tensor:
        hidden = self.hidden(z, s)
        if feedback and self.feedback_weight > 0:
            first = torch.sigmoid(self.net.out(hidden))
            hidden = hidden + self.feedback_weight * self.feedback(self.decoder(first)[1].detach())
        return torch.sigmoid(self.net.out(hidden))


@ZERO_SHOT.register("tfvaegan")
class TFVAEGAN(GenerativeLearner):
    """A conditional VAE-GAN with a semantic embedding decoder, feedback, and decoder-augmented classifier input.

    Networks (one LeakyReLU hidden layer of ``hidden_dim`` each): encoder E(x, s) -> (mean, log-variance) of a
    ``noise_dim`` latent; generator G(z, s) -> x (sigmoid output: features are scaled to [0, 1]), the VAE decoder
    and the GAN generator at once; critic D(x, s); semantic embedding decoder Dec(x) -> (ŝ, h); feedback module
    Fb(h) (see ``FeedbackGenerator``). Per generator step:

    - ``critic_steps`` critic updates on ``D(fake, s) - D(real, s) + gp_weight * GP`` (fake from prior noise);
    - one update of E and G (and Fb on feedback steps) on ``BCE(G(z_E, s), x) + kl_weight * KL(q || N(0, I))
      - gan_weight * D(fake, s) + cycle_weight * |Dec(fake) - s|_1 + cls_weight * CE``: BCE and L1 summed over
      the feature / semantic dimensions, z_E sampled from E, fake = G(prior noise, s), CE the cross-entropy of
      the frozen seen classifier of ``GenerativeLearner`` on fake (off by default, as in the paper);
    - one decoder update on ``|Dec(x) - s|_1`` over the real items and the fakes of that step (the paper's code
      also steps the decoder on both), so its latent embedding treats real and synthetic features alike.

    Steps alternate between the plain generator and the feedback generator (every odd step), as the paper's two
    "feedback loops" per batch do; unseen features are generated with feedback. The final softmax classifier
    sees every feature (real seen, synthetic unseen and test) as ``[x, h(x)]`` (d + hidden_dim), the
    discriminative feature transformation (the paper's code also appends ŝ). A loss that is not finite stops
    training with a ``FewzeroError``. Other options: see ``GenerativeLearner``.

    Why TF-VAEGAN rather than CE-GZSL (Han et al., CVPR 2021): its decoder, feedback and feature transformation
    plug into the generator/classifier pipeline shared with f-CLSWGAN and the CVAE, whereas CE-GZSL's instance-
    and class-level contrastive losses need many items per class in a batch (CUB-50 has about 46 per seen class).

    Args:
        lr: Adam learning rate of E, G and D (the paper: 1e-4 over 300 epochs; 30 epochs here need 1e-3).
        critic_steps: critic updates per generator update.
        gp_weight: weight of the WGAN-GP gradient penalty (lambda).
        gan_weight: weight of the generator's WGAN term (the paper's gamma_G: 10 on 2,048-d features, whose BCE
            sums 8x more dimensions than 256-d ones).
        kl_weight: weight of the KL term of the VAE.
        cycle_weight: weight of the decoder's semantic reconstruction error on generated features in the
            generator loss (the paper's recons_weight).
        feedback_weight: scale of the feedback added to G's hidden layer in training and generation (the paper's
            a1 = a2); 0 turns the feedback module off (a plain VAE-GAN with a decoder).
        decoder_lr: Adam learning rate of the semantic embedding decoder (the paper: 1e-4, but stepped at every
            critic update, 5x as often as here).
        feedback_lr: Adam learning rate of the feedback module (the paper: a tenth of lr).
        cls_weight: see ``GenerativeLearner``; 0 (off) by default, as the paper has no classification loss.
        n_synthetic, noise_dim, hidden_dim, epochs, batch_size, classifier_epochs, classifier_lr, guide_epochs,
            balance_classes, seed, progress, normalize_semantics: see ``GenerativeLearner``.
    """

    def __init__(self, *, n_synthetic: int = 300, noise_dim: int = 64, hidden_dim: int = 1024, epochs: int = 30,
                 batch_size: int = 64, lr: float = 1e-3, critic_steps: int = 5, gp_weight: float = 10.0,
                 gan_weight: float = 1.0, kl_weight: float = 1.0, cycle_weight: float = 0.1,
                 feedback_weight: float = 1.0, decoder_lr: float = 1e-3, feedback_lr: float = 1e-4,
                 cls_weight: float = 0.0, classifier_epochs: int = 2, classifier_lr: float = 1e-3,
                 guide_epochs: int = 25, balance_classes: bool = True, seed: int = 0, progress: bool = True,
                 normalize_semantics: bool = True):
        super().__init__(n_synthetic=n_synthetic, noise_dim=noise_dim, hidden_dim=hidden_dim, epochs=epochs,
                         batch_size=batch_size, lr=lr, cls_weight=cls_weight, classifier_epochs=classifier_epochs,
                         classifier_lr=classifier_lr, guide_epochs=guide_epochs, balance_classes=balance_classes,
                         seed=seed, progress=progress, normalize_semantics=normalize_semantics)
        if int(critic_steps) < 1:
            raise FewzeroError(f"critic_steps is {critic_steps}: the critic needs at least 1 update per step")
        for name, value in (("gp_weight", gp_weight), ("gan_weight", gan_weight), ("kl_weight", kl_weight),
                            ("cycle_weight", cycle_weight), ("feedback_weight", feedback_weight)):
            if not value >= 0:
                raise FewzeroError(f"{name} is {value}: it must be 0 (off) or positive")
        for name, value in (("lr", lr), ("decoder_lr", decoder_lr), ("feedback_lr", feedback_lr)):
            if not value > 0:
                raise FewzeroError(f"{name} is {value}: a learning rate must be positive")
        self.critic_steps, self.gp_weight, self.gan_weight = int(critic_steps), gp_weight, gan_weight
        self.kl_weight, self.cycle_weight, self.feedback_weight = kl_weight, cycle_weight, feedback_weight
        self.decoder_lr, self.feedback_lr = decoder_lr, feedback_lr

    def _classifier_input(self, scaled_x: torch.Tensor) -> torch.Tensor:
        """``[x, h(x)]`` (n, d + hidden_dim): the features and the decoder's latent embedding of them."""
        return torch.cat([scaled_x, self.generator_.decoder(scaled_x)[1]], 1)

    def _train_generator(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor,
                         classifier: nn.Linear | None) -> FeedbackGenerator:
        from tqdm import tqdm

        d, a = x.shape[1], semantics.shape[1]
        model = FeedbackGenerator(self.noise_dim, a, self.hidden_dim, d, self.feedback_weight).to(x.device)
        encoder = ConditionalMLP(d, a, self.hidden_dim, 2 * self.noise_dim).to(x.device)
        critic = ConditionalMLP(d, a, self.hidden_dim, 1).to(x.device)
        g_opt = torch.optim.Adam([*encoder.parameters(), *model.net.parameters()], lr=self.lr, betas=BETAS)
        d_opt = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=BETAS)
        dec_opt = torch.optim.Adam(model.decoder.parameters(), lr=self.decoder_lr, betas=BETAS)
        f_opt = torch.optim.Adam(model.feedback.parameters(), lr=self.feedback_lr, betas=BETAS)
        steps = self.epochs * math.ceil(x.shape[0] / self.batch_size)

        def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            return sample_batch(x, y, semantics, self.batch_size, self.noise_dim)

        with torch.enable_grad(), tqdm(range(steps), desc="TF-VAEGAN", disable=not self.progress,
                                       leave=False) as bar:
            for step in bar:
                loop = step % 2 == 1 and self.feedback_weight > 0  # the paper's second feedback loop
                critic.requires_grad_(True)
                batches = [batch() for _ in range(self.critic_steps)]
                with torch.no_grad():  # the critic's fakes in one call: the feedback pass is the dear part
                    fakes = model(torch.cat([b[3] for b in batches]), torch.cat([b[2] for b in batches]),
                                  feedback=loop).split(self.batch_size)
                for (real, _, s, _), fake in zip(batches, fakes):
                    d_loss = critic_step(critic, d_opt, real, fake, s, self.gp_weight, step, self.lr)
                critic.requires_grad_(False)
                real, labels, s, noise = batch()
                model.decoder.requires_grad_(False)
                mean, log_var = encoder(real, s).chunk(2, dim=1)
                z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
                recon = F.binary_cross_entropy(model(z, s, feedback=loop), real, reduction="sum") / len(real)
                kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(1).mean()
                fake = model(noise, s, feedback=loop)
                cycle = (model.decoder(fake)[0] - s).abs().sum(1).mean()
                g_loss = recon + self.kl_weight * kl - self.gan_weight * critic(fake, s).mean() \
                    + self.cycle_weight * cycle
                if classifier is not None:
                    g_loss = g_loss + self.cls_weight * F.cross_entropy(classifier(fake), labels)
                check_finite(g_loss, "the generator loss", step, self.lr)
                g_opt.zero_grad()
                f_opt.zero_grad()
                g_loss.backward()
                g_opt.step()
                if loop:
                    f_opt.step()
                model.decoder.requires_grad_(True)
                dec_loss = (model.decoder(torch.cat([real, fake.detach()]))[0] - s.repeat(2, 1)).abs().sum(1).mean()
                check_finite(dec_loss, "the decoder loss", step, self.decoder_lr)
                dec_opt.zero_grad()
                dec_loss.backward()
                dec_opt.step()
                if step % 20 == 0:
                    bar.set_postfix(critic=f"{d_loss.item():.3f}", reconstruction=f"{recon.item():.3f}",
                                    cycle=f"{cycle.item():.3f}")
        return model
