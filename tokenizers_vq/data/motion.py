"""The 15 DeepMimic motion-capture clips shipped with pybullet, as pose-feature windows.

A motion file is JSON: {"Loop": ..., "Frames": [[44 numbers], ...]}; a frame is

    duration (s to the next frame), root position (3), root rotation (w, x, y, z),
    chest, neck, right hip (quaternions), right knee (1 angle), right ankle, right
    shoulder (quaternions), right elbow (1 angle), left hip, left knee (angle),
    left ankle, left shoulder (quaternions), left elbow (angle)

(the order pybullet's own deep_mimic pose interpolator reads). Clips come at 16-60
frames/s, one (roll) with uneven frame times, so every clip is resampled by time to
one rate: positions and angles linearly, quaternions by slerp.

Features, per frame (FEATURE_DIM = 65), all continuous, no quaternion sign flips:
    [0:3]   root position; x and z relative to the window's first frame, y (height) absolute
    [3:9]   root rotation, 6-D form (first two matrix columns)
    [9:57]  the 8 ball joints, 6-D form each, relative to the parent
    [57:65] the 4 hinge joints (knees, elbows), (cos, sin) of the angle each

Splits: the first (1 - heldout_fraction) of every clip's key frames train, the rest
is held out; each part is resampled on its own, so no training frame interpolates a
held-out key frame and no window crosses the boundary. Training windows get random
yaw rotations about the vertical axis (the ground translation is already removed by
making x, z relative to the first frame) and, optionally, left-right mirrored twins.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ddm.config import ConfigError, bounded, positive

from ..kinematics import (Skeleton, axis_angle_matrix, forward_kinematics, matrix_from_6d, matrix_to_6d,
                          quat_slerp, quat_to_matrix, yaw_matrix)

# (name, kind) of the joints after the root, in file order; kind "ball" = quaternion, "hinge" = angle
JOINTS: list[tuple[str, str]] = [
    ("chest", "ball"), ("neck", "ball"),
    ("right_hip", "ball"), ("right_knee", "hinge"), ("right_ankle", "ball"),
    ("right_shoulder", "ball"), ("right_elbow", "hinge"),
    ("left_hip", "ball"), ("left_knee", "hinge"), ("left_ankle", "ball"),
    ("left_shoulder", "ball"), ("left_elbow", "hinge"),
]
BALL = [n for n, k in JOINTS if k == "ball"]
HINGE = [n for n, k in JOINTS if k == "hinge"]
FRAME_DIM = 1 + 3 + 4 + 4 * len(BALL) + len(HINGE)  # 44
FEATURE_DIM = 3 + 6 + 6 * len(BALL) + 2 * len(HINGE)  # 65
ROOT_POS, ROOT_ROT = slice(0, 3), slice(3, 9)
BALL_SLICE = slice(9, 9 + 6 * len(BALL))
HINGE_SLICE = slice(BALL_SLICE.stop, FEATURE_DIM)


@dataclass
class MotionDataConfig:
    motions_dir: str = ""  # folder of humanoid3d_*.txt clips; "" = pybullet_data's data/motions
    clips: list[str] = field(default_factory=list)  # clip names (e.g. "walk") to use; empty = all
    fps: float = positive(30.0)  # the common frame rate every clip is resampled to
    window: int = positive(16)  # training window length, frames
    stride: int = positive(1)  # frames between training window starts
    yaw_copies: int = positive(4)  # random-yaw copies of every training window
    mirror: bool = True  # also train on left-right mirrored windows (twice the poses)
    heldout_fraction: float = bounded(0.2, 0.05, 0.9)  # the last part of every clip, by key frames
    seed: int = 0  # the yaw draws

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ConfigError(f"data.window: expected >= 2 frames, got {self.window}")


@dataclass
class Pose:
    """Poses of T frames: root_pos [..., T, 3], root_rot [..., T, 3, 3], ball [..., T, 8, 3, 3], hinge [..., T, 4]."""

    root_pos: torch.Tensor
    root_rot: torch.Tensor
    ball: torch.Tensor
    hinge: torch.Tensor

    def __len__(self) -> int:
        return self.root_pos.shape[-2]

    def slice(self, start: int, stop: int) -> "Pose":
        return Pose(self.root_pos[start:stop], self.root_rot[start:stop], self.ball[start:stop],
                    self.hinge[start:stop])


# --------------------------------------------------------------------------- files


def default_motions_dir() -> Path:
    import pybullet_data  # imported here: only this modality needs pybullet

    return Path(pybullet_data.getDataPath()) / "data" / "motions"


def clip_files(motions_dir: str | Path = "", names: list[str] = ()) -> dict[str, Path]:
    """{name: file} of the humanoid clips (the laikago dog clip in the same folder is not a humanoid)."""
    folder = Path(motions_dir) if motions_dir else default_motions_dir()
    files = {p.stem.removeprefix("humanoid3d_"): p for p in sorted(folder.glob("humanoid3d_*.txt"))}
    if not files:
        raise FileNotFoundError(f"{folder}: no humanoid3d_*.txt motion clips")
    unknown = [n for n in names if n not in files]
    if unknown:
        raise ValueError(f"data.clips: unknown clip {unknown[0]!r}; known: {', '.join(files)}")
    return {n: files[n] for n in names} if names else files


def read_keyframes(path: str | Path) -> torch.Tensor:
    """The [K, 44] frames of a motion file, float64, with clear errors for a malformed file."""
    path = Path(path)
    try:
        frames = json.loads(path.read_text())["Frames"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a DeepMimic motion file (JSON with a 'Frames' list): {e}") from None
    frames = torch.tensor(frames, dtype=torch.float64)
    if frames.ndim != 2 or frames.shape[1] != FRAME_DIM:
        raise ValueError(f"{path}: expected frames of {FRAME_DIM} numbers, got shape {tuple(frames.shape)}")
    if len(frames) < 2:
        raise ValueError(f"{path}: a clip needs at least 2 frames, got {len(frames)}")
    if not torch.isfinite(frames).all():
        raise ValueError(f"{path}: non-finite numbers in the frames")
    return frames


def _split_frame(frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """[K, 44] -> (root_pos [K, 3], root_quat [K, 4], ball_quats [K, 8, 4], hinge [K, 4])."""
    balls, hinges, i = [], [], 8
    for _, kind in JOINTS:
        if kind == "ball":
            balls.append(frames[:, i:i + 4])
            i += 4
        else:
            hinges.append(frames[:, i])
            i += 1
    return frames[:, 1:4], frames[:, 4:8], torch.stack(balls, 1), torch.stack(hinges, 1)


def resample(frames: torch.Tensor, fps: float) -> Pose:
    """Key frames [K, 44] (each with its duration to the next) -> a Pose at `fps` over the same time span."""
    durations = frames[:-1, 0]
    if (durations <= 0).any():
        raise ValueError("motion frames: a frame duration is <= 0")
    times = torch.cat([torch.zeros(1, dtype=frames.dtype), durations.cumsum(0)])
    n = int(math.floor(float(times[-1]) * fps + 1e-6)) + 1
    t = torch.arange(n, dtype=frames.dtype) / fps
    k = (torch.searchsorted(times, t, right=True) - 1).clamp(0, len(times) - 2)  # key frame before t
    frac = ((t - times[k]) / (times[k + 1] - times[k])).clamp(0.0, 1.0)
    pos, quat, balls, hinge = _split_frame(frames)
    lerp = lambda a: a[k] + frac.view(-1, *[1] * (a.ndim - 1)) * (a[k + 1] - a[k])  # noqa: E731
    root_rot = quat_to_matrix(quat_slerp(quat[k], quat[k + 1], frac))
    ball = quat_to_matrix(quat_slerp(balls[k], balls[k + 1], frac[:, None].expand(-1, balls.shape[1])))
    return Pose(lerp(pos), root_rot, ball, lerp(hinge))


# --------------------------------------------------------------------------- features


def pose_to_features(pose: Pose, yaw: float = 0.0) -> torch.Tensor:
    """[T, 65] features of a pose sequence, turned by `yaw` about the vertical axis and put at the origin."""
    turn = yaw_matrix(torch.tensor(yaw, dtype=pose.root_pos.dtype))
    pos = pose.root_pos @ turn.T
    pos = pos - pos[:1] * torch.tensor([1.0, 0.0, 1.0], dtype=pos.dtype)  # ground offset of frame 0
    root = turn @ pose.root_rot
    hinge = pose.hinge
    t = len(pose)
    return torch.cat([pos, matrix_to_6d(root), matrix_to_6d(pose.ball).reshape(t, -1),
                      torch.stack([hinge.cos(), hinge.sin()], -1).reshape(t, -1)], -1)


def features_to_pose(x: torch.Tensor) -> Pose:
    """The inverse of pose_to_features on [..., T, 65] (any 6 or 2 numbers map to a valid rotation)."""
    if x.shape[-1] != FEATURE_DIM:
        raise ValueError(f"motion features: expected last dim {FEATURE_DIM}, got {tuple(x.shape)}")
    ball = matrix_from_6d(x[..., BALL_SLICE].unflatten(-1, (len(BALL), 6)))
    hinge = x[..., HINGE_SLICE].unflatten(-1, (len(HINGE), 2))
    return Pose(x[..., ROOT_POS], matrix_from_6d(x[..., ROOT_ROT]), ball, torch.atan2(hinge[..., 1], hinge[..., 0]))


def local_rotations(skel: Skeleton, pose: Pose) -> torch.Tensor:
    """[..., J, 3, 3] per skeleton joint: root world rotation, joint rotations, identity for fixed joints."""
    dtype = pose.root_rot.dtype
    eye = torch.eye(3, dtype=dtype).expand(*pose.root_rot.shape[:-2], 3, 3)
    out = []
    for j, name in enumerate(skel.names):
        if j == 0:
            out.append(pose.root_rot)
        elif name in BALL:
            out.append(pose.ball[..., BALL.index(name), :, :])
        elif name in HINGE:
            out.append(axis_angle_matrix(skel.axes[j], pose.hinge[..., HINGE.index(name)]))
        else:
            out.append(eye)
    return torch.stack(out, -3)


def joint_positions(skel: Skeleton, pose: Pose) -> tuple[torch.Tensor, torch.Tensor]:
    """World joint positions [..., J, 3] and rotations [..., J, 3, 3] by forward kinematics."""
    return forward_kinematics(skel, pose.root_pos, local_rotations(skel, pose))


FEET = ("right_ankle", "left_ankle")


def foot_positions(skel: Skeleton, pos: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """The feet's centres [..., 2, 3] (right, left: each ankle's end site) from `joint_positions`' output."""
    feet = [pos[..., j, :] + (rot[..., j, :, :] @ skel.end_sites[j].to(rot.dtype)[:, None])[..., 0]
            for j in map(skel.index, FEET)]
    return torch.stack(feet, -2)


def mirror(pose: Pose) -> Pose:
    """The left-right mirror image: reflect across the body's x-y plane (z is lateral) and swap sides.

    Reflection M = diag(1, 1, -1) turns a rotation R into M R M; a hinge about z keeps its angle.
    """
    m = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=pose.root_pos.dtype))
    swap = lambda names: [names.index(_other_side(n)) for n in names]  # noqa: E731
    return Pose(pose.root_pos @ m, m @ pose.root_rot @ m, (m @ pose.ball @ m)[..., swap(BALL), :, :],
                pose.hinge[..., swap(HINGE)])


def _other_side(name: str) -> str:
    if name.startswith("right_"):
        return "left_" + name.removeprefix("right_")
    if name.startswith("left_"):
        return "right_" + name.removeprefix("left_")
    return name


# --------------------------------------------------------------------------- splits


def load_clips(config: MotionDataConfig) -> dict[str, tuple[Pose, Pose]]:
    """{name: (training part, held-out part)}, each resampled to config.fps."""
    out = {}
    for name, path in clip_files(config.motions_dir, config.clips).items():
        frames = read_keyframes(path)
        cut = int(round(len(frames) * (1 - config.heldout_fraction)))
        cut = min(max(cut, 2), len(frames) - 2)  # both parts keep at least two key frames
        out[name] = (resample(frames[:cut], config.fps), resample(frames[cut:], config.fps))
    return out


def build_motion_data(config: MotionDataConfig) -> dict:
    """{"train": windows [window, 65] with random yaws, "heldout": one whole held-out part per clip}.

    Held-out rows have different lengths (5-30 frames at 30 fps); they keep the clip's
    own heading. Both are `datasets.Dataset`s in torch format, column "x" (+ "clip").
    """
    from datasets import Dataset

    gen = torch.Generator().manual_seed(config.seed)
    train_x, train_clip, held_x, held_clip = [], [], [], []
    for name, (train, heldout) in load_clips(config).items():
        for start in range(0, len(train) - config.window + 1, config.stride):
            window = train.slice(start, start + config.window)
            for view in [window, mirror(window)] if config.mirror else [window]:
                for _ in range(config.yaw_copies):
                    yaw = float(torch.rand((), generator=gen, dtype=torch.float64)) * 2 * math.pi
                    train_x.append(pose_to_features(view, yaw).float().numpy())
                    train_clip.append(name)
        held_x.append(pose_to_features(heldout).float().numpy())
        held_clip.append(name)
    if not train_x:
        raise ValueError(f"data.window: {config.window} frames is longer than every clip's training part")
    return {"train": Dataset.from_dict({"x": np.stack(train_x), "clip": train_clip}).with_format("torch"),
            "heldout": Dataset.from_dict({"x": held_x, "clip": held_clip}).with_format("torch")}
