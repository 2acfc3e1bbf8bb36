"""The container every zero-shot learner, loader and the evaluator agree on."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fewzero.errors import FewzeroError


@dataclass
class ZeroShotData:
    """Features and class semantics of one zero-shot benchmark (a "proposed split" in the sense of Xian et al.).

    Labels index the rows of ``semantics`` (all classes, seen and unseen). Seen and unseen classes are disjoint.

    Attributes:
        semantics: (n_classes, dim) one semantic vector (attributes or text embedding) per class.
        class_names: n_classes names.
        seen_classes: (n_seen,) class indices used for training.
        unseen_classes: (n_unseen,) class indices never seen in training.
        train_x, train_y: (n_train, d) features and (n_train,) labels of seen-class training items (trainval).
        test_seen_x, test_seen_y: held-out items of seen classes (generalized zero-shot "s").
        test_unseen_x, test_unseen_y: items of unseen classes ("T1" and generalized "u").
        val_classes: optional (n_val,) seen classes held out for tuning (e.g. the calibration factor); a learner
            tuned on them is fitted on the other seen classes only.
        info: free-form provenance (backbone, input size, ...).
    """

    semantics: torch.Tensor
    class_names: list[str]
    seen_classes: torch.Tensor
    unseen_classes: torch.Tensor
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_seen_x: torch.Tensor
    test_seen_y: torch.Tensor
    test_unseen_x: torch.Tensor
    test_unseen_y: torch.Tensor
    val_classes: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse anything that would make the zero-shot numbers meaningless; one-line errors."""
        n = self.semantics.shape[0]
        if self.semantics.ndim != 2:
            raise FewzeroError(f"semantics must be (n_classes, dim), got shape {tuple(self.semantics.shape)}")
        if len(self.class_names) != n:
            raise FewzeroError(f"semantics has {n} rows but there are {len(self.class_names)} classes: "
                               f"give one semantic vector per class")
        bad = torch.isnan(self.semantics).any(1)
        if bad.any():
            raise FewzeroError(f"class {self.class_names[int(bad.nonzero()[0])]!r} has NaN semantics: fix or drop it")
        for x, y, name in ((self.train_x, self.train_y, "train"), (self.test_seen_x, self.test_seen_y, "test_seen"),
                           (self.test_unseen_x, self.test_unseen_y, "test_unseen")):
            if x.shape[0] != y.shape[0]:
                raise FewzeroError(f"{name} has {x.shape[0]} feature rows but {y.shape[0]} labels: they must agree")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n):
                raise FewzeroError(f"{name} labels must index the {n} classes of the semantics matrix")
        if set(self.seen_classes.tolist()) & set(self.unseen_classes.tolist()):
            raise FewzeroError("a class is both seen and unseen: the split is invalid")
        leaked = set(self.train_y.unique().tolist()) & set(self.unseen_classes.tolist())
        if leaked:
            raise FewzeroError(f"unseen class {self.class_names[min(leaked)]!r} appears in the training data: "
                               f"refusing, it would invalidate zero-shot evaluation")
