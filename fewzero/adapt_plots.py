"""What a domain-adaptation run shows: the confusion-matrix PNG, the t-SNE PNG of both domains before and after
adaptation, and the Markdown summary. matplotlib is imported only when a plot is drawn."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fewzero.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    _pyplot().close(fig)
    return path


def confusion_png(confusion: list[list[int]], class_names: list[str], path: str | os.PathLike, *,
                  title: str = "") -> Path:
    """Counts (rows: true class, columns: predicted), each cell annotated."""
    plt = _pyplot()
    counts = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * len(class_names), 1.0 + 0.45 * len(class_names)))
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        ax.text(col, row, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > counts.max() / 2 else "black")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xticklabels=class_names,
           yticklabels=class_names, xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return _save(fig, path)


def tsne_points(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, per_domain: int = 300,
                seed: int = 0) -> dict[str, np.ndarray]:
    """2-D t-SNE (scikit-learn, PCA init) of up to ``per_domain`` random rows of each domain, pooled.

    Returns ``xy`` (n, 2), ``domain`` (n,) 0 = source / 1 = target, ``label`` (n,) class index."""
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    rows = {d: rng.permutation(len(features[d]))[:per_domain] for d in ("source", "target")}
    x = np.concatenate([features[d][rows[d]] for d in ("source", "target")])
    domain = np.concatenate([np.full(len(rows[d]), i) for i, d in enumerate(("source", "target"))])
    label = np.concatenate([np.asarray(labels[d])[rows[d]] for d in ("source", "target")])
    xy = TSNE(n_components=2, init="pca", perplexity=min(30.0, (len(x) - 1) / 3), random_state=seed).fit_transform(x)
    return {"xy": xy, "domain": domain, "label": label}


def tsne_png(before: dict[str, np.ndarray], after: dict[str, np.ndarray], path: str | os.PathLike, *,
             names: tuple[str, str] = ("source", "target"), title: str = "") -> Path:
    """2 x 2 scatter: rows before / after adaptation; left coloured by domain, right by class (marker = domain).
    ``before`` and ``after`` are ``tsne_points`` outputs."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.5))
    markers = ("o", "^")
    for row, (stage, points) in enumerate((("before", before), ("after", after))):
        for index, name in enumerate(names):
            mine = points["domain"] == index
            axes[row, 0].scatter(*points["xy"][mine].T, s=6, alpha=0.6, marker=markers[index],
                                 color=("tab:blue", "tab:red")[index], label=name)
            axes[row, 1].scatter(*points["xy"][mine].T, s=8, alpha=0.7, marker=markers[index],
                                 c=points["label"][mine], cmap="tab10", vmin=0, vmax=9)
        axes[row, 0].legend(loc="best", fontsize="small", markerscale=2)
        axes[row, 0].set_title(f"{stage} adaptation: by domain", fontsize="medium")
        axes[row, 1].set_title(f"{stage} adaptation: by class (o {names[0]}, ^ {names[1]})", fontsize="medium")
        for ax in axes[row]:
            ax.set(xticks=[], yticks=[])
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def run_pngs(result, keep: dict, confusion_path: str | os.PathLike, tsne_path: str | os.PathLike) -> None:
    """A run's confusion matrix and its t-SNE before/after (``result``: an ``AdaptResult``; ``keep``: what
    ``adapt(..., keep=...)`` filled in)."""
    s, report = result.settings, result.report
    title = f"{s['method']}: {s['source']} -> {s['target']}, seed {s['seed']}"
    confusion_png(report.confusion, report.class_names, confusion_path, title=f"{title} ({report.accuracy:.1f} %)")
    labels = {d: keep["labels"][d].numpy() for d in ("source", "target")}
    tsne_png(*(tsne_points(keep[stage], labels, seed=s["seed"]) for stage in ("before", "after")), tsne_path,
             names=(str(s["source"]), str(s["target"])), title=f"{title} (t-SNE of the classifier's input features)")


def markdown(result: dict, *, command: str = "") -> str:
    """A run's summary (``AdaptResult.to_dict()``) as Markdown: the selected model per criterion, the A-distances,
    the per-class precision / recall / F1 of the model the run used."""
    s = result["settings"]
    used = result["used"]
    lines = [f"# {s['method']}: {s['source']} -> {s['target']}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"Seed {s['seed']}, backbone {s['backbone']}, {s['steps']} steps of {s['batch_size']} + "
              f"{s['batch_size']} images, candidates every {s['steps'] // s['checkpoints']} steps for each weight in "
              f"{s['weights'] or 'the method grid'}. Target labels are read only for the test rows below.", "",
              "| selected by | weight | step | estimated target acc. (no labels) | target test accuracy | macro F1 |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, chosen in result["selected"].items():
        report = chosen["report"]
        mark = " (used)" if name == used else ""
        lines.append(f"| {name}{mark} | {chosen['weight']:g} | {chosen['step']} | {chosen['criteria'][name]:.2f} | "
                     f"{report['accuracy']:.2f} ± {report['ci95']:.2f} | {report['macro_f1']:.2f} |")
    ess = result["selected"][used]["criteria"].get("weights_ess")
    if ess is not None:
        lines.append(f"\nEffective sample size of the importance weights behind IWV and DEV: {ess:.1f} % of the source "
                     f"validation images" + (" (below 10 %: their estimates rest on a few images; compare "
                                             "source_val)" if ess < 10 else "") + ".")
    for gone in result.get("diverged", []):
        lines.append(f"\nWeight {gone['weight']:g} diverged at step {gone['step']}; its later candidates are missing.")
    a = result["a_distance"]
    report = result["selected"][used]["report"]
    lines += ["", f"Proxy A-distance (source vs target features, 0 = indistinguishable, 2 = separable): "
              f"{a['before']:.3f} before -> {a['after']:.3f} after.", "",
              f"Per class ({used}-selected model, {report['n_images']} target test images):", "",
              "| class | precision | recall | F1 |", "| --- | ---: | ---: | ---: |"]
    for name, p, r, f in zip(report["class_names"], report["precision"], report["recall"], report["f1"]):
        lines.append(f"| {name} | {p:.1f} | {r:.1f} | {f:.1f} |")
    return "\n".join(lines) + "\n"
