"""Grids of grey images as PNG: rows of tiles, each row with a label on its left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

LABEL_WIDTH = 110
GAP = 2


def save_rows(path: str | Path, rows: list[torch.Tensor], labels: list[str], scale: int = 3) -> Path:
    """Write rows of tiles ([N, H, W] each, values in [0, 1]) as one PNG; returns the path."""
    if len(rows) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(rows)} rows")
    n, h, w = rows[0].shape
    tile_h, tile_w = h * scale, w * scale
    canvas = np.full((len(rows) * (tile_h + GAP) + GAP, LABEL_WIDTH + n * (tile_w + GAP) + GAP), 128, np.uint8)
    for r, row in enumerate(rows):
        if tuple(row.shape) != (n, h, w):
            raise ValueError(f"rows[{r}]: shape {tuple(row.shape)}, expected {(n, h, w)} like rows[0]")
        tiles = (row.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        for i, tile in enumerate(tiles):
            y, x = GAP + r * (tile_h + GAP), LABEL_WIDTH + GAP + i * (tile_w + GAP)
            canvas[y:y + tile_h, x:x + tile_w] = np.kron(tile, np.ones((scale, scale), np.uint8))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for r, label in enumerate(labels):
        draw.text((4, GAP + r * (tile_h + GAP) + tile_h // 2 - 6), label, fill=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
