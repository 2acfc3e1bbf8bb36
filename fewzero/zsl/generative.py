"""What the feature-generating zero-shot learners share: scaling, synthesis and the final softmax classifier."""
from __future__ import annotations

import abc
import hashlib

import torch
from torch import nn
from torch.nn import functional as F

from fewzero.errors import FewzeroError
from fewzero.zsl.base import ZeroShotLearner
from fewzero.zsl.gan_parts import ConditionalMLP, train_softmax

MATCH_TOLERANCE = 1e-5  # semantic rows closer than this to a training class's row are that class
MAX_CACHED = 4


class GenerativeLearner(ZeroShotLearner):
    """Learns a conditional generator G(noise, semantics) -> feature on the seen classes; classifies by softmax.

    ``fit`` scales the features to [0, 1] per dimension (min-max on the training items), pre-trains a softmax
    classifier on the seen classes (its loss guides the generator when ``cls_weight > 0``) and trains the
    generator (``_train_generator``, seeded). The training items and labels are kept.

    ``forward(x, semantics)`` builds the final classifier for exactly the classes in ``semantics``: rows that
    equal a training class's semantics (within 1e-5) use that class's real training features; every other row is
    an unseen class and gets ``n_synthetic`` generated features. A softmax classifier trained on these gives the
    (n, C') log-probabilities. So unseen-only semantics give the zero-shot classifier (synthetic features only),
    seen + unseen semantics the generalized one (real seen + synthetic unseen). Only the semantics of unseen
    classes are used, never their features. Classifiers are cached by the semantics matrix (up to 4), so scoring
    a test set in batches trains once.

    Args:
        n_synthetic: generated features per unseen class.
        noise_dim: size of the generator's noise (latent) input.
        hidden_dim: hidden units of every MLP.
        epochs: passes over the training items (generator steps = epochs * ceil(n / batch_size)).
        batch_size: items per step.
        lr: Adam learning rate of the generator (and critic / encoder).
        cls_weight: weight of the pre-trained seen classifier's cross-entropy on generated features.
        classifier_epochs: epochs of the final softmax classifier. Few on purpose: trained longer, it learns to
            tell real seen features from synthetic ones and pushes real unseen test items to seen classes (on
            the CUB-50 validation classes, generalized H 53 at 2 epochs, 51 at 5, about 32 at 25).
        classifier_lr: Adam learning rate of both softmax classifiers.
        guide_epochs: epochs of the seen-class classifier whose cross-entropy guides the generator.
        balance_classes: weight the final classifier's loss so every class counts equally, whatever its number
            of real or synthetic items (False: each item counts once, so ``n_synthetic`` against the number of
            real items per seen class sets the seen/unseen prior, as in the paper).
        seed: seeds initialisation, batches, noise and synthesis.
        progress: show a progress bar with the losses while training.
        normalize_semantics: see ``ZeroShotLearner``.
    """

    def __init__(self, *, n_synthetic: int = 300, noise_dim: int = 64, hidden_dim: int = 1024, epochs: int = 30,
                 batch_size: int = 64, lr: float = 1e-3, cls_weight: float = 0.01, classifier_epochs: int = 2,
                 classifier_lr: float = 1e-3, guide_epochs: int = 25, balance_classes: bool = True, seed: int = 0,
                 progress: bool = True, normalize_semantics: bool = True):
        super().__init__(normalize_semantics=normalize_semantics)
        if int(n_synthetic) < 1:
            raise FewzeroError(f"n_synthetic is {n_synthetic}: generate at least 1 feature per unseen class "
                               f"(a few hundred is usual)")
        for name, value in (("noise_dim", noise_dim), ("hidden_dim", hidden_dim), ("epochs", epochs),
                            ("batch_size", batch_size), ("classifier_epochs", classifier_epochs),
                            ("guide_epochs", guide_epochs)):
            if int(value) < 1:
                raise FewzeroError(f"{name} is {value}: it must be a positive integer")
        if cls_weight < 0:
            raise FewzeroError(f"cls_weight is {cls_weight}: it must be 0 (off) or positive")
        self.n_synthetic, self.noise_dim, self.hidden_dim = int(n_synthetic), int(noise_dim), int(hidden_dim)
        self.epochs, self.batch_size, self.lr, self.cls_weight = int(epochs), int(batch_size), lr, cls_weight
        self.classifier_epochs, self.classifier_lr = int(classifier_epochs), classifier_lr
        self.guide_epochs, self.balance_classes = int(guide_epochs), balance_classes
        self.seed, self.progress = seed, progress
        self.generator_: ConditionalMLP | None = None
        for name in ("low_", "span_", "train_x_", "train_y_", "train_semantics_"):
            self.register_buffer(name, None)
        self._classifiers: dict[str, nn.Linear] = {}

    @abc.abstractmethod
    def _train_generator(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor,
                         classifier: nn.Linear | None) -> ConditionalMLP:
        """Train and return G on scaled (n, d) features, (n,) labels, (C, a) semantics; the global RNG is seeded."""

    def _fit(self, x: torch.Tensor, y: torch.Tensor, semantics: torch.Tensor) -> None:
        self.low_ = x.min(0).values
        self.span_ = (x.max(0).values - self.low_).clamp(min=1e-6)
        x = self._scale(x)
        self.train_x_, self.train_y_, self.train_semantics_ = x, y, semantics
        self._classifiers = {}
        classifier = None
        if self.cls_weight > 0:
            classifier = train_softmax(x, y, semantics.shape[0], self.guide_epochs, self.classifier_lr,
                                       self.batch_size, self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator_ = self._train_generator(x, y, semantics, classifier).requires_grad_(False).eval()

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.low_) / self.span_

    @torch.no_grad()
    def generate(self, semantics, n_per_class: int, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthetic features of the classes in ``semantics`` (C, a): (C * n_per_class, d) features in the
        original feature scale and (C * n_per_class,) labels indexing the rows of ``semantics``."""
        if self.generator_ is None:
            raise FewzeroError(f"{type(self).__name__} is not fitted: call fit(x, y, semantics) before generate")
        if int(n_per_class) < 1:
            raise FewzeroError(f"n_per_class is {n_per_class}: ask for at least 1 feature per class")
        semantics = torch.as_tensor(semantics).float()
        if semantics.ndim != 2 or semantics.shape[0] == 0:
            raise FewzeroError(f"generate needs one semantic row per class, got shape {tuple(semantics.shape)}: a "
                               f"class without semantics cannot be generated")
        if semantics.shape[1] != self.semantic_dim_:
            raise FewzeroError(f"semantics have {semantics.shape[1]} dimensions but the generator was trained on "
                               f"{self.semantic_dim_}: use the same kind of semantics (attributes or text)")
        bad = ~torch.isfinite(semantics).all(1)
        if bad.any():
            raise FewzeroError(f"class {int(bad.nonzero()[0])} has no semantics (NaN or inf row): give every class "
                               f"whose features you generate a semantic vector")
        semantics = self._semantics(semantics).to(self.low_.device)
        features, labels = self._synthesize(semantics, int(n_per_class), self.seed if seed is None else seed)
        return features * self.span_ + self.low_, labels

    def _synthesize(self, semantics: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled features (C * n, d) and labels (C * n,) for normalised (C, a) semantics."""
        labels = torch.arange(semantics.shape[0], device=semantics.device).repeat_interleave(n)
        noise = torch.randn(labels.numel(), self.noise_dim, generator=torch.Generator().manual_seed(seed))
        return self.generator_(noise.to(semantics.device), semantics[labels]), labels

    def _score(self, x: torch.Tensor, semantics: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(semantics.detach().cpu().numpy().tobytes()).hexdigest() + str(tuple(semantics.shape))
        if key not in self._classifiers:
            if len(self._classifiers) >= MAX_CACHED:
                self._classifiers.pop(next(iter(self._classifiers)))
            self._classifiers[key] = self._final_classifier(semantics)
        return F.log_softmax(self._classifiers[key](self._classifier_input(self._scale(x))), 1)

    def _classifier_input(self, scaled_x: torch.Tensor) -> torch.Tensor:
        """What the final classifier sees of scaled (n, d) features, real or synthetic: the features here; a
        subclass may transform them (TF-VAEGAN appends its decoder's latent embedding)."""
        return scaled_x

    @torch.no_grad()
    def _final_classifier(self, semantics: torch.Tensor) -> nn.Linear:
        """Softmax over the rows of (C', a) semantics: real features for training classes, synthetic otherwise."""
        distance, match = torch.cdist(semantics, self.train_semantics_,
                                      compute_mode="donot_use_mm_for_euclid_dist").min(1)
        seen = distance < MATCH_TOLERANCE
        row_of_class = torch.full((self.train_semantics_.shape[0],), -1, dtype=torch.long, device=semantics.device)
        row_of_class[match[seen]] = seen.nonzero().flatten()
        rows = row_of_class[self.train_y_]  # training items in their own order (relabelling-equivariant)
        xs, ys = [self._classifier_input(self.train_x_[rows >= 0])], [rows[rows >= 0]]
        unseen = (~seen).nonzero().flatten()
        if unseen.numel():
            fake, fake_y = self._synthesize(semantics[unseen], self.n_synthetic, self.seed + 1)
            xs.append(self._classifier_input(fake))
            ys.append(unseen[fake_y])
        return train_softmax(torch.cat(xs), torch.cat(ys), semantics.shape[0], self.classifier_epochs,
                             self.classifier_lr, self.batch_size, self.seed + 2, balanced=self.balance_classes)
