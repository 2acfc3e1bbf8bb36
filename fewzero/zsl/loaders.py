"""One entry point for every zero-shot dataset: ``load_zero_shot(name, semantics) -> ZeroShotData``.

    load_zero_shot("cub50", "text")               # CUB classes 001-050 from images: 40 seen, 10 unseen
    load_zero_shot("xlsa17-CUB", "attributes")    # ResNet-101 features of Xian et al. (needs res101.mat)

``cub50`` features come from a backbone trained on the seen classes' trainval images only (see
``fewzero.zsl.features``); ``val_classes`` are the seen classes of ``valclasses1.txt``, held out for tuning.
"""
from __future__ import annotations

import inspect
import os

import torch

from fewzero.errors import FewzeroError
from fewzero.data.zero_shot import ZeroShotData

SEMANTICS = ("attributes", "text", "attributes+text")  # fewzero.data.semantics.SEMANTICS_KINDS


def zero_shot_datasets() -> list[str]:
    """Names ``load_zero_shot`` accepts."""
    from fewzero.data.xlsa17 import DATASETS

    return ["cub50", *(f"xlsa17-{name}" for name in DATASETS)]


def load_cub50(semantics: str = "attributes", data_root: str | os.PathLike | None = None, progress: bool = True,
               image_size: int = 64, bbox_crop: bool = True, backbone: str = "resnet_small", epochs: int = 30,
               lr: float = 0.05, seed: int = 0, batch_size: int = 64, text_source: str = "both",
               text_model: str = "all-MiniLM-L6-v2", text_pooling: str | None = None, val_split: int = 1,
               cache: bool = True, heads: str = "classes", weighting: str = "fixed", class_split_seed: int = 0,
               val_blind: bool = False) -> ZeroShotData:
    """CUB-50: the images of CUB classes 001-050 under the proposed split, as learned features + semantics.

    Args:
        semantics: ``attributes`` (CUB's class-level attributes, L2-normalised), ``text`` (sentence embeddings of
            prompt-filled names and descriptors) or ``attributes+text`` (both blocks, each with norm 1/sqrt(2));
            see ``fewzero.data.semantics.cub_semantics``.
        image_size, bbox_crop: input images (square crops around the bird's box by default).
        backbone, epochs, lr, seed, batch_size: the feature backbone's training (seen-class trainval images only).
        text_source: ``names``, ``descriptions`` or ``both`` (descriptors_cub.json) for text semantics.
        text_pooling: how prompt-filled descriptors become one vector (``fewzero.data.text_semantics``; default
            ``joined``).
        val_split: ``valclasses<k>.txt`` of xlsa17/CUB gives the validation classes (0: none).
        heads, weighting: the feature backbone's multi-task heads (``classes``, ``attributes``, ``rotation``
            joined by ``+``) and loss weighting (``fixed``, ``uncertainty``, ``gradnorm``); see
            ``fewzero.zsl.features.train_backbone``. The attributes head regresses CUB's class attributes.
        class_split_seed: 0 keeps the proposed split; k >= 1 draws a seeded random split (``random_class_split``):
            10 unseen classes, 8 validation classes among the 40 seen, and a fifth of each seen class's images
            as its test images.
        val_blind: train the feature backbone without the validation classes' images too, so that validation T1
            measures transfer to classes the features never saw, as test T1 does (to choose a feature recipe on
            validation classes: a backbone trained on them makes them easy, the more so the longer it trains).
    """
    from fewzero.data.cub import TEST_SEEN, TEST_UNSEEN, TRAINVAL, load_cub
    from fewzero.data.semantics import cub_attributes, cub_semantics
    from fewzero.zsl.features import image_features

    if semantics not in SEMANTICS:
        raise FewzeroError(f"unknown semantics {semantics!r}: choose one of {', '.join(SEMANTICS)}")
    cub = load_cub(data_root, classes=range(1, 51), image_size=image_size, bbox_crop=bbox_crop, progress=progress)
    role, random_val = cub.split, None
    if class_split_seed:
        role, random_val = random_class_split(cub.labels, class_split_seed)
    train = (role == TRAINVAL).nonzero().squeeze(1)
    seen = cub.labels[train].unique()
    unseen = cub.labels[role == TEST_UNSEEN].unique()
    val_classes = random_val if class_split_seed else listed_val_classes(cub.class_names, seen, val_split, data_root)
    backbone_train, forbidden = train, unseen
    if val_blind:
        if val_classes is None:
            raise FewzeroError("val_blind needs validation classes: set val_split to 1, 2 or 3")
        backbone_train = train[~torch.isin(cub.labels[train], val_classes)]
        forbidden = torch.cat([unseen, val_classes])
    class_attributes = cub_attributes(cub.class_names, data_root)
    features, facts = image_features(cub.images, cub.labels, backbone_train, forbidden_classes=forbidden,
                                     backbone=backbone,
                                     epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, cache=cache,
                                     progress=progress, heads=heads, weighting=weighting,
                                     class_attributes=class_attributes)
    pooling = {} if text_pooling is None else {"text_pooling": text_pooling}
    matrix, described = cub_semantics(semantics, cub.class_names, data_root=data_root, text_source=text_source,
                                      text_model=text_model, **pooling)
    pick = lambda code: role == code  # noqa: E731
    width = class_attributes.shape[1] if semantics == "attributes+text" else None
    blocks = {semantics: [0, matrix.shape[1]]} if width is None else \
        {"attributes": [0, width], "text": [width, matrix.shape[1]]}
    return ZeroShotData(
        semantics=matrix, class_names=cub.class_names, seen_classes=seen, unseen_classes=unseen,
        train_x=features[train], train_y=cub.labels[train],
        test_seen_x=features[pick(TEST_SEEN)], test_seen_y=cub.labels[pick(TEST_SEEN)],
        test_unseen_x=features[pick(TEST_UNSEEN)], test_unseen_y=cub.labels[pick(TEST_UNSEEN)],
        val_classes=val_classes,
        info={"dataset": "cub50", "semantics": described, "backbone": facts["backbone"],
              "input_size": facts["input_size"], "epochs": facts["epochs"],
              "feature_train_seconds": facts["train_seconds"], "bbox_crop": bbox_crop, "val_split": val_split,
              "class_split_seed": class_split_seed, "val_blind": val_blind, "features": facts,
              "semantic_blocks": blocks})  # kind -> [start, stop) columns (fewzero.zsl.semantic_block)


def listed_val_classes(class_names, seen: torch.Tensor, val_split: int, data_root) -> torch.Tensor | None:
    """The seen classes listed in xlsa17's ``valclasses<val_split>.txt`` (None for val_split 0 or none listed)."""
    from fewzero.data.xlsa17 import dataset_folder

    if not val_split:
        return None
    path = dataset_folder("CUB", data_root) / f"valclasses{val_split}.txt"
    if not path.is_file():
        raise FewzeroError(f"{path} is missing: put the xlsa17 class lists there, or use --set val_split=0")
    listed = set(path.read_text().split())
    kept = [i for i in seen.tolist() if class_names[i] in listed]
    return torch.tensor(kept, dtype=torch.long) if kept else None


def random_class_split(labels: torch.Tensor, seed: int, n_unseen: int = 10, n_val: int = 8,
                       test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random zero-shot split of the classes in ``labels`` (n,) -> ((n,) role per image, val classes).

    ``n_unseen`` classes become unseen (all their images test unseen); ``n_val`` of the others are validation
    classes; of every seen class a seeded ``test_fraction`` of its images (at least one) is test seen, the rest
    trainval. Roles use ``fewzero.data.cub``'s codes.
    """
    from fewzero.data.cub import TEST_SEEN, TEST_UNSEEN, TRAINVAL

    classes = labels.unique()
    if classes.numel() < n_unseen + n_val + 2:
        raise FewzeroError(f"{classes.numel()} classes cannot make {n_unseen} unseen, {n_val} validation and two "
                           f"more seen classes: use more classes")
    generator = torch.Generator().manual_seed(int(seed))
    order = classes[torch.randperm(classes.numel(), generator=generator)]
    seen = order[n_unseen:]  # order[:n_unseen] are the unseen classes
    val = seen[torch.randperm(seen.numel(), generator=generator)[:n_val]].sort().values
    role = torch.full_like(labels, TEST_UNSEEN)
    for cls in seen.sort().values.tolist():
        items = (labels == cls).nonzero().flatten()
        items = items[torch.randperm(items.numel(), generator=generator)]
        n_test = max(1, round(test_fraction * items.numel()))
        role[items[:n_test]], role[items[n_test:]] = TEST_SEEN, TRAINVAL
    return role, val


def _check_options(func, dataset: str, options: dict) -> None:
    allowed = [p for p in inspect.signature(func).parameters if p not in ("semantics", "data_root", "progress", "name")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise FewzeroError(f"{dataset} has no option {unknown[0]!r}: choose from {', '.join(allowed)}")


def tuning_options(dataset: str, options: dict) -> dict:
    """The loader ``options`` for the features hyper-parameters are chosen on. Where the dataset trains its own
    feature backbone (cub50), that backbone also leaves out the validation classes (``val_blind``) unless
    ``options`` say otherwise: validation classes the features were fitted to score far above classes they never
    saw, and the test's unseen classes are such classes. Fixed features (xlsa17) are used as they are."""
    has_val_classes = options.get("val_split", 1) != 0 or bool(options.get("class_split_seed"))
    if dataset.lower() != "cub50" or "val_blind" in options or not has_val_classes:
        return dict(options)
    return {**options, "val_blind": True}


def load_zero_shot(dataset: str, semantics: str = "attributes", data_root: str | os.PathLike | None = None,
                   progress: bool = True, **options) -> ZeroShotData:
    """A zero-shot benchmark by name (see ``zero_shot_datasets()``) with ``attributes`` or ``text`` semantics.

    ``options`` go to the dataset's loader (``load_cub50`` or ``fewzero.data.xlsa17.load_xlsa17``); ``None``
    values are dropped so that loader defaults apply.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if semantics not in SEMANTICS and not (dataset.lower().startswith("xlsa17-") and semantics == "original"):
        raise FewzeroError(f"unknown semantics {semantics!r}: choose one of {', '.join(SEMANTICS)}")
    if dataset.lower() == "cub50":
        _check_options(load_cub50, dataset, options)
        return load_cub50(semantics, data_root, progress, **options)
    if dataset.lower().startswith("xlsa17-"):
        from fewzero.data.xlsa17 import DATASETS, load_xlsa17

        name = dataset.split("-", 1)[1].upper()
        if name in DATASETS:
            _check_options(load_xlsa17, dataset, options)
            return load_xlsa17(name, semantics, data_root, progress=progress, **options)
    raise FewzeroError(f"unknown zero-shot dataset {dataset!r}: choose one of {', '.join(zero_shot_datasets())}")
