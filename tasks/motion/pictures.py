"""Stick-figure GIFs of motions: a grid of figures, one per motion, all moving together.

Drawn with PIL from forward kinematics (`tokenizers_vq.kinematics.bones`), seen from a fixed
oblique side view with the floor as a line; each cell is centred on its motion's mean ground
position, so travel (a walk, a jump forward) shows as movement across the cell.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

from tokenizers_vq.data.motion import features_to_pose, joint_positions
from tokenizers_vq.kinematics import bones

from .kin import check_features, skeleton

CELL_W, CELL_H, PX_PER_M, TITLE_H = 200, 200, 85.0, 14
VIEW = math.radians(30)  # the camera turned 30 degrees from the side: depth shows a little


def _segments(x: Tensor) -> Tensor:
    """One motion [T, 65] -> bone segments [T, S, 2, 3]."""
    skel = skeleton()
    pos, rot = joint_positions(skel, features_to_pose(x.double()))
    return torch.stack([torch.stack([a, b], -2) for a, b in bones(skel, pos, rot)], -3)


def motion_gif(motions: Tensor, titles: list[str], path: str | Path, fps: float = 30.0, cols: int = 5,
               highlight: Tensor | None = None) -> Path:
    """Motions [B, T, 65] -> an animated GIF at `path` (one cell per motion, titled); returns the path.
    `highlight` [B, T] bool: frames drawn in red instead of black (e.g. the generated frames of an
    in-betweening)."""
    motions = check_features(motions, "motions")
    if len(titles) != len(motions):
        raise ValueError(f"titles: {len(titles)} titles for {len(motions)} motions")
    if highlight is not None and tuple(highlight.shape) != tuple(motions.shape[:2]):
        raise ValueError(f"highlight: expected [B, T] = {tuple(motions.shape[:2])}, got {tuple(highlight.shape)}")
    b, t = motions.shape[:2]
    cols = min(cols, b)
    rows = math.ceil(b / cols)
    segs = [_segments(m) for m in motions]
    frames = []
    for f in range(t):
        image = Image.new("RGB", (cols * CELL_W, rows * (CELL_H + TITLE_H)), "white")
        draw = ImageDraw.Draw(image)
        for i, s in enumerate(segs):
            ox, oy = (i % cols) * CELL_W, (i // cols) * (CELL_H + TITLE_H)
            centre = s[:, 0, 0].mean(0)  # the root's mean position over the motion
            u = lambda p: ox + CELL_W / 2 + PX_PER_M * (  # noqa: E731
                (p[0] - centre[0]) * math.cos(VIEW) + (p[2] - centre[2]) * math.sin(VIEW))
            v = lambda p: oy + TITLE_H + CELL_H - 12 - PX_PER_M * p[1]  # noqa: E731
            floor = oy + TITLE_H + CELL_H - 12
            draw.line([(ox + 6, floor), (ox + CELL_W - 6, floor)], fill=(150, 150, 150), width=1)
            color = "red" if highlight is not None and bool(highlight[i, f]) else "black"
            for a, c in s[f].tolist():
                draw.line([(u(a), v(a)), (u(c), v(c))], fill=color, width=3)
            draw.text((ox + 4, oy + 1), f"{titles[i]}  {f + 1}/{t}", fill=(0, 0, 0))
        frames.append(image.convert("P", palette=Image.ADAPTIVE, colors=16))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return path
