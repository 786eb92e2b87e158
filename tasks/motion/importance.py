"""Per-token importance for priority masking: how much the body moves in the frames a token covers.

A token step covers `downsample` frames; its score is the mean over those frames of the summed
squared joint speeds (forward kinematics, every joint and end site: the kinetic energy of unit
point masses). Within a window the steps are ranked and the ranks scaled to [0, 1] (ties share
their mean rank), and every token of a step (its groups / residual levels) gets its step's score:
the frames where the motion happens stay visible longest in the forward process (diffusion.
priority_strength > 0) and so are generated first. Ranks, not raw energies, because a backflip
has a hundred times a walk's energy: the priority is about which part of *this* window leads.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .kin import all_points, check_features


def velocity_energy(x: Tensor, fps: float) -> Tensor:
    """Features [B, T, 65] -> summed squared joint speed per frame [B, T] (m^2/s^2)."""
    points = all_points(check_features(x))
    v = (points[:, 1:] - points[:, :-1]) * fps
    e = v.pow(2).sum((-1, -2))
    return torch.cat([e[:, :1], e], 1)  # frame 0 takes the speed of its first step


def rank01(scores: Tensor) -> Tensor:
    """Ranks along the last dim scaled to [0, 1] (lowest 0, highest 1; ties share their mean rank)."""
    n = scores.shape[-1]
    if n == 1:
        return torch.full_like(scores, 0.5, dtype=torch.float32)
    less = (scores[..., None, :] < scores[..., :, None]).sum(-1).float()
    equal = (scores[..., None, :] == scores[..., :, None]).sum(-1).float()
    return (less + (equal - 1) / 2) / (n - 1)


def velocity_importance(x: Tensor, downsample: int, tokens_per_step: int, fps: float) -> Tensor:
    """Features [B, T, 65] -> importance [B, (T / downsample) * tokens_per_step] in [0, 1], step-major
    like the flat token ids."""
    e = velocity_energy(x, fps)
    b, t = e.shape
    if t % downsample:
        raise ValueError(f"motion: {t} frames is not a multiple of the tokenizer's downsample {downsample}")
    per_step = e.reshape(b, t // downsample, downsample).mean(-1)
    return rank01(per_step).repeat_interleave(tokens_per_step, dim=1).float()
