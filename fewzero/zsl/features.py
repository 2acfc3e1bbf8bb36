"""Image features for zero-shot learning: a backbone trained on seen-class training images only.

    features, info = image_features(images, labels, train_index, forbidden_classes=unseen)
    features, info = image_features(..., heads="classes+attributes+rotation", weighting="uncertainty",
                                    class_attributes=attributes)   # multi-task (fewzero.multitask)

The backbone is trained on ``images[train_index]`` (light augmentation: random crops of a padded image and
horizontal flips) with cross-entropy over the seen classes, optionally beside attribute regression and rotation
prediction heads, then every image is embedded (averaged with its mirror image). Images of ``forbidden_classes`` (the unseen classes) in ``train_index`` are refused, so no
unseen image can shape the features. Results are cached as ``.npz`` keyed by the images and every setting.
"""
from __future__ import annotations

import hashlib
import json
import time
import zipfile

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fewzero.atomic import atomic_path
from fewzero.distributed import AgreedError, rank_and_world
from fewzero.errors import FewzeroError
from fewzero.paths import user_cache_dir
from fewzero.registry import BACKBONES

FEATURE_BACKBONES = ("resnet_small", "conv4")
FEATURE_HEADS = ("classes", "attributes", "rotation")


def _training_batch(images: torch.Tensor, index: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 images[index] (B, 3, S, S) -> augmented float (B, 3, S, S) in [0, 1]: random crop and flip."""
    x = images[index].float().div_(255.0)
    size = x.shape[-1]
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (len(index), 2), generator=generator)
        rows = offsets[:, :1] + torch.arange(size)  # (B, S)
        cols = offsets[:, 1:] + torch.arange(size)
        b = torch.arange(len(index))[:, None, None]
        x = x.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = torch.rand(len(index), generator=generator) < 0.5
    x[flip] = x[flip].flip(-1)
    return x


def _build(backbone: str) -> nn.Module:
    if backbone not in FEATURE_BACKBONES:
        raise FewzeroError(f"unknown feature backbone {backbone!r}: choose one of {', '.join(FEATURE_BACKBONES)}")
    return BACKBONES.create(backbone, in_channels=3)


def _rotated(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, S, S) -> each image turned by a random multiple of 90 degrees, and the (B,) number of turns."""
    turns = torch.randint(0, 4, (len(x),), generator=generator)
    return torch.stack([img.rot90(int(k), (1, 2)) for img, k in zip(x, turns)]), turns


def parse_heads(heads: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"classes+attributes"`` or a sequence of head names -> a tuple in canonical order, checked."""
    names = tuple(h.strip() for h in (heads.split("+") if isinstance(heads, str) else heads) if h.strip())
    unknown = [h for h in names if h not in FEATURE_HEADS]
    if unknown or not names:
        raise FewzeroError(f"unknown feature head {unknown[0] if unknown else '(none)'!r}: choose from "
                           f"{', '.join(FEATURE_HEADS)}, joined with '+' (e.g. classes+attributes+rotation)")
    if "classes" not in names and "attributes" not in names:
        raise FewzeroError("the feature backbone needs a class-level task: add 'classes' or 'attributes' to heads")
    return tuple(h for h in FEATURE_HEADS if h in names)


def _tasks(heads: tuple[str, ...], dim: int, n_classes: int, attribute_targets: torch.Tensor | None) -> tuple:
    """The heads and ``Task``s of the feature backbone's multi-task training."""
    from fewzero.multitask import Task, accuracy

    made, tasks = {}, {}
    if "classes" in heads:
        made["classes"], tasks["classes"] = nn.Linear(dim, n_classes), Task(F.cross_entropy, metric=accuracy)
    if "attributes" in heads:
        made["attributes"], tasks["attributes"] = nn.Linear(dim, attribute_targets.shape[1]), Task(F.mse_loss)
    if "rotation" in heads:
        made["rotation"], tasks["rotation"] = nn.Linear(dim, 4), Task(F.cross_entropy, metric=accuracy)
    return made, tasks


def train_backbone(images: torch.Tensor, labels: torch.Tensor, train_index: torch.Tensor,
                   backbone: str = "resnet_small", epochs: int = 30, batch_size: int = 64, lr: float = 0.05,
                   weight_decay: float = 5e-4, pad: int = 4, seed: int = 0, progress: bool = True, *,
                   heads: str | tuple[str, ...] = ("classes",), weighting: str = "fixed",
                   head_weights: dict[str, float] | None = None, class_attributes: torch.Tensor | None = None,
                   rotation_fraction: float = 0.5, log=None) -> tuple[nn.Module, torch.Tensor, torch.Tensor, dict]:
    """Train ``backbone`` with ``fewzero.multitask`` heads on ``images[train_index]`` only.

    Heads: ``classes`` (cross-entropy over the seen classes), ``attributes`` (squared error regressing each image's
    class attribute vector ``class_attributes[label]``, every attribute standardised over the training classes)
    and ``rotation`` (Gidaris et al. 2019: a ``rotation_fraction`` of each batch, turned by 0/90/180/270 degrees,
    goes through the backbone in the same batch and a 4-way head predicts the turn). Losses are combined by
    ``weighting`` (``fixed`` with ``head_weights``, ``uncertainty`` or ``gradnorm``). SGD with momentum 0.9 and a
    one-cycle cosine learning rate; inputs standardised with the training images' channel mean and std. Under
    torchrun the processes share each batch (DistributedDataParallel); on CPU batch norm then normalises each
    process's share by itself.

    Returns:
        the trained backbone (eval mode), channel mean (3,), channel std (3,), and a dict of training facts
        (with the per-epoch, per-task losses and metrics under ``history``).
    """
    from fewzero.multitask import MultiTaskModel, MultiTaskTrainer

    heads = parse_heads(heads)
    if train_index.numel() == 0:
        raise FewzeroError("no training images for the feature backbone: the seen classes have no trainval images")
    if "attributes" in heads and class_attributes is None:
        raise FewzeroError("the attributes head needs class_attributes (one attribute vector per class)")
    if not 0 < rotation_fraction <= 1:
        raise FewzeroError(f"rotation_fraction is {rotation_fraction}: it must be in (0, 1]")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    classes, targets = labels[train_index].unique(return_inverse=True)
    attribute_targets = None
    if "attributes" in heads:
        rows = torch.as_tensor(class_attributes).float()[classes]
        attribute_targets = (rows - rows.mean(0)) / rows.std(0).clamp_min(1e-6)
    train = images[train_index].float().div_(255.0)
    mean, std = train.mean((0, 2, 3)), train.std((0, 2, 3)).clamp_min(1e-3)
    del train
    net = _build(backbone)
    with torch.no_grad():
        dim = net(torch.zeros(2, *images.shape[1:])).shape[1]
    made, tasks = _tasks(heads, dim, len(classes), attribute_targets)
    model = MultiTaskModel(net, made)
    rank, world = rank_and_world()
    if batch_size % world:
        raise AgreedError(f"batch_size ({batch_size}) must be a multiple of the number of processes ({world})")
    steps = epochs * max(1, len(train_index) // batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1),
                                                   pct_start=0.15, anneal_strategy="cos")
    # under torchrun: DDP, each process takes every world-th image of each batch (the whole batch's augmentation is
    # drawn in every process, so that together they train on exactly the batches of one process)
    trainer = MultiTaskTrainer(model, tasks, weighting=weighting, weights=head_weights, optimizer=optimizer,
                               scheduler=schedule, log=log)
    from tqdm import tqdm

    started, history = time.perf_counter(), []
    n_rotated = max(1, round(rotation_fraction * batch_size))
    with tqdm(total=steps, desc=f"training {backbone} features", disable=not progress or rank > 0, leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(train_index), generator=generator)
            for b in range(max(1, len(order) // batch_size)):  # the last incomplete batch is dropped
                pick = order[b * batch_size:(b + 1) * batch_size]
                x = (_training_batch(images, train_index[pick], pad, generator) - mean[:, None, None]) \
                    / std[:, None, None]
                batch = {}
                if "rotation" in heads:
                    turned, turns = _rotated(x[:n_rotated], generator)
                    batch["rotation"] = (turned[rank::world], turns[rank::world])
                x, pick = x[rank::world], pick[rank::world]
                if "classes" in heads:
                    batch["classes"] = (x, targets[pick])
                if "attributes" in heads:
                    batch["attributes"] = (x, attribute_targets[targets[pick]])
                losses = trainer.step(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{losses['total']:.3f}")
            history.append(trainer.end_epoch())
    net.eval()
    last = history[-1]
    facts = {"train_seconds": round(time.perf_counter() - started, 1), "steps": trainer.steps,
             "train_images": int(train_index.numel()), "train_classes": int(len(classes)), "processes": world,
             "final_loss": round(losses["total"], 4),
             "last_epoch_train_accuracy": last.get("classes/metric"), "history": history}
    return net, mean, std, facts


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
          batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """(n, 3, S, S) uint8 -> (n, dim) float32 features, each averaged with that of the mirrored image."""
    from tqdm import tqdm

    net.eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="embedding images", disable=not progress, leave=False):
        x = (images[start:start + batch_size].float().div_(255.0) - mean[:, None, None]) / std[:, None, None]
        out.append((net(x) + net(x.flip(-1))) / 2)
    return torch.cat(out).float()


def _cache_file(images: torch.Tensor, train_index: torch.Tensor, settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(np.ascontiguousarray(images.numpy()).tobytes())
    h.update(np.ascontiguousarray(train_index.numpy().astype(np.int64)).tobytes())
    return f"features_{settings['backbone']}_{h.hexdigest()[:20]}.npz"


def image_features(images: torch.Tensor, labels: torch.Tensor, train_index: torch.Tensor,
                   forbidden_classes: torch.Tensor | None = None, backbone: str = "resnet_small",
                   epochs: int = 30, batch_size: int = 64, lr: float = 0.05, seed: int = 0, cache: bool = True,
                   progress: bool = True, *, heads: str | tuple[str, ...] = ("classes",), weighting: str = "fixed",
                   head_weights: dict[str, float] | None = None, class_attributes: torch.Tensor | None = None,
                   log=None) -> tuple[torch.Tensor, dict]:
    """Features of every image from a backbone trained on ``images[train_index]``, cached on disk.

    ``heads``, ``weighting``, ``head_weights`` and ``class_attributes`` choose the multi-task training (see
    ``train_backbone``); ``log`` (a ``RunLog``) receives the per-epoch, per-task metrics of a training run.

    Args:
        images: (n, 3, S, S) uint8.
        labels: (n,) class of each image.
        train_index: (m,) indices of the images the backbone may learn from (seen-class training images).
        forbidden_classes: classes whose images must never be trained on (the unseen classes).

    Returns:
        (n, dim) float32 features and a dict recording backbone, input size, epochs and training time.
    """
    train_index = torch.as_tensor(train_index, dtype=torch.long)
    if forbidden_classes is not None:
        leaked = set(labels[train_index].tolist()) & set(torch.as_tensor(forbidden_classes).tolist())
        if leaked:
            raise FewzeroError(f"class {min(leaked)} is unseen but has images in the feature backbone's training "
                               f"set: refusing, it would invalidate zero-shot evaluation")
    settings = {"backbone": backbone, "input_size": list(images.shape[1:]), "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "seed": seed, "augmentation": "pad-4 random crop, flip",
                "loss": "cross-entropy", "version": 1}
    heads = parse_heads(heads)
    if heads != ("classes",) or weighting != "fixed" or head_weights:  # plain cross-entropy keeps its old key
        settings.update(loss="multi-task", heads="+".join(heads), weighting=weighting,
                        head_weights=dict(sorted((head_weights or {}).items())), rotation_fraction=0.5)
        if "attributes" in heads and class_attributes is not None:
            settings["attribute_targets"] = hashlib.sha256(
                np.ascontiguousarray(torch.as_tensor(class_attributes).float().numpy()).tobytes()).hexdigest()[:16]
    path = user_cache_dir() / "zsl_features" / _cache_file(images, train_index, settings)
    if cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                features, facts = saved["features"], json.loads(str(saved["facts"]))
            if features.shape[0] == len(images):
                return torch.from_numpy(features), {**facts, "cached": True}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass
        path.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    net, mean, std, facts = train_backbone(images, labels, train_index, backbone, epochs, batch_size, lr,
                                           seed=seed, progress=progress, heads=heads, weighting=weighting,
                                           head_weights=head_weights, class_attributes=class_attributes, log=log)
    started = time.perf_counter()
    features = embed(net, images, mean, std, progress=progress)
    facts = {**settings, **facts, "embed_seconds": round(time.perf_counter() - started, 1),
             "feature_dim": int(features.shape[1]), "threads": torch.get_num_threads()}
    if cache and rank_and_world()[0] == 0:  # under torchrun every process has the features; process 0 keeps them
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, features=features.numpy(), facts=np.array(json.dumps(facts)))
    return features, {**facts, "cached": False}
