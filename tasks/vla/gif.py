"""Rollout GIFs with the instruction written above the pictures (PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_WIDTH = 256  # small renders are enlarged so that the text stays readable


def caption_frame(frame: np.ndarray, lines: list[str], banner: int) -> Image.Image:
    image = Image.fromarray(frame)
    scale = max(1, -(-MIN_WIDTH // image.width))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + banner), "white")
    canvas.paste(image, (0, banner))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, line in enumerate(lines):
        draw.text((4, 2 + 12 * i), line, fill="black", font=font)
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines


def write_gif(frames: list[np.ndarray], instruction: str, path: str | Path, status: str = "",
              fps: float = 10.0) -> Path:
    """frames: uint8 [H, W, 3] (side by side cameras already joined); writes an endlessly looping GIF."""
    if not frames:
        raise ValueError("write_gif: no frames")
    width = max(MIN_WIDTH, frames[0].shape[1])
    lines = _wrap(f'"{instruction}"', width // 6) + ([status] if status else [])
    banner = 4 + 12 * len(lines)
    images = [caption_frame(f, lines, banner) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
