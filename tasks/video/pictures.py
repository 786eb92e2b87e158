"""The video task's pictures: a frame strip per use (truth, what was given, the result) and
animated GIFs of videos side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from tokenizers_vq.pictures import save_rows

GREY = 0.5  # hidden pixels in the "given" rows


def use_strips(results: dict[str, torch.Tensor], truth: torch.Tensor, scored: Callable, path: Path,
               video: int = 0) -> Path:
    """One held-out video's frames under every use: the truth, then per use the input (hidden pixels
    grey) and the model's result; generation shows one unconditional sample."""
    rows, labels = [truth[video, 0]], ["truth"]
    for use, videos in results.items():
        where, _ = scored(use)
        if where is not None:
            rows.append(truth[video, 0].masked_fill(where[0, 0], GREY))
            labels.append(f"{use}: given")
        rows.append(videos[video, 0])
        labels.append(f"{use}: result" if where is not None else "generation: a sample")
    return save_rows(path, rows, labels, scale=2)


def video_gif(videos: torch.Tensor, path: Path, columns: int = 8, scale: int = 2, ms_per_frame: int = 120) -> Path:
    """Videos [B, 1, T, H, W] in [0, 1] tiled `columns` a row, as one looping GIF."""
    b, _, t, h, w = videos.shape
    rows = -(-b // columns)
    gap = 2
    canvas = np.full((t, rows * (h * scale + gap) + gap, min(b, columns) * (w * scale + gap) + gap), 64, np.uint8)
    pixels = (videos[:, 0].detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    for i in range(b):
        y = gap + (i // columns) * (h * scale + gap)
        x = gap + (i % columns) * (w * scale + gap)
        canvas[:, y:y + h * scale, x:x + w * scale] = pixels[i].repeat(scale, 1).repeat(scale, 2)
    frames = [Image.fromarray(f) for f in canvas]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return path
