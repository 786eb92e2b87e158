"""The image task's figures: samples per class, inpainting strips, decoding order."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen here
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def sample_grid(images: Tensor, labels: Tensor, names: list[str], path: Path, per_class: int = 10) -> Path:
    """One row per class of generated images [N, 1, H, W]."""
    classes = len(names)
    fig, axes = plt.subplots(classes, per_class, figsize=(per_class * 0.8, classes * 0.8))
    for c in range(classes):
        picks = images[labels == c][:per_class]
        for j in range(per_class):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(picks):
                ax.imshow(picks[j, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[c, 0].set_title(names[c], fontsize=7, loc="left")
    return _save(fig, path)


def inpainting_strip(original: Tensor, hidden: Tensor, result: Tensor, path: Path, count: int = 10) -> Path:
    """Rows: the input, the input with its hidden region greyed, the filled result."""
    count = min(count, len(original))
    masked = original.masked_fill(hidden, 0.5)
    rows = [("original", original), ("input (grey hidden)", masked), ("inpainted", result)]
    fig, axes = plt.subplots(len(rows), count, figsize=(count * 0.8, len(rows) * 0.9), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for j in range(count):
            axes[r, j].axis("off")
            axes[r, j].imshow(images[j, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(name, fontsize=7, loc="left")
    return _save(fig, path)


def decoding_order(committed_at: Tensor, images: Tensor, grid: tuple[int, int], path: Path,
                   count: int = 8) -> Path:
    """Top: the step at which each token was (last) committed; bottom: the decoded image."""
    count = min(count, len(images))
    fig, axes = plt.subplots(2, count, figsize=(count * 1.1, 2.4), squeeze=False)
    steps = int(committed_at.max()) + 1
    for j in range(count):
        order = committed_at[j].reshape(grid).float().cpu()
        im = axes[0, j].imshow(order, cmap="viridis", vmin=0, vmax=max(steps - 1, 1))
        axes[1, j].imshow(images[j, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    axes[0, 0].set_title("step of commit", fontsize=7, loc="left")
    fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.02)
    return _save(fig, path)


def class_names(dataset: str, classes: int) -> list[str]:
    return [str(c) for c in range(classes)] if dataset == "mnist" else [f"class {c}" for c in range(classes)]


__all__ = ["sample_grid", "inpainting_strip", "decoding_order", "class_names"]
