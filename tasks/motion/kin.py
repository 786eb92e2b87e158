"""Forward kinematics of pose features: the joint and end-site (head, feet) positions in metres."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from tokenizers_vq.data.motion import FEATURE_DIM, features_to_pose, foot_positions, joint_positions
from tokenizers_vq.kinematics import Skeleton, load_skeleton


@lru_cache(maxsize=1)
def skeleton() -> Skeleton:
    return load_skeleton()


def check_features(x: Tensor, where: str = "motion") -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != FEATURE_DIM:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{where}: expected pose features [B, T, {FEATURE_DIM}], got {got}")
    if x.shape[1] < 2:
        raise ValueError(f"{where}: needs at least 2 frames, got {x.shape[1]}")
    return x


def body_points(x: Tensor) -> tuple[Tensor, Tensor]:
    """Features [B, T, 65] -> (joint positions [B, T, J, 3], feet centres [B, T, 2, 3] (right, left)), y up."""
    skel = skeleton()
    pos, rot = joint_positions(skel, features_to_pose(x.double()))
    return pos, foot_positions(skel, pos, rot)


def all_points(x: Tensor) -> Tensor:
    """Joints and end sites (head, feet) [B, T, J + 3, 3]."""
    skel = skeleton()
    pos, rot = joint_positions(skel, features_to_pose(x.double()))
    ends = [pos[..., j, :] + (rot[..., j, :, :] @ p.double()[:, None])[..., 0] for j, p in skel.end_sites.items()]
    return torch.cat([pos, torch.stack(ends, -2)], -2)


__all__ = ["skeleton", "body_points", "all_points", "check_features", "FEATURE_DIM"]
