"""Robot-action chunks [N, chunk, dims] for the action tokenizers, from a named source.

Sources (`ActionDataConfig.source`):
  "mocap"      the pybullet DeepMimic motion-capture clips as a stand-in 7-D arm:
               per frame [chest rotation vector (3), shoulder rotation vector (3),
               gripper (1)], where the gripper is +1 ("closed") when the elbow is bent
               more than `gripper_threshold` radians and -1 otherwise (MetaWorld's
               convention). Each clip gives two arms (right and left shoulder/elbow).
  "lerobot"    the `action` column of a LeRobot-style demonstration table on disk
               (`data.path`, a `datasets` folder with `action` and `episode_index`), e.g.
               MetaWorld's scripted experts recorded by `ddm prepare` of a VLA config (4-D: hand dx, dy,
               dz and gripper effort).
A new source is one function in SOURCES returning a list of [T, dims] float arrays
(one per episode).

Splits: the first (1 - heldout_fraction) of every episode's frames train, the rest is
held out, and chunks never cross the boundary (15 clips of 15 different motions: a
whole-clip split would hold out motions never seen in training).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ddm.config import ConfigError, bounded, positive

# Columns of a DeepMimic humanoid3d frame (duration, root pos 3, root quat 4, then joints).
CHEST = slice(8, 12)
SHOULDERS = {"right": slice(25, 29), "left": slice(39, 43)}
ELBOWS = {"right": 29, "left": 43}
FRAME_DIM = 44


@dataclass
class ActionDataConfig:
    source: str = "mocap"
    chunk: int = positive(8)  # action-chunk length (frames)
    stride: int = positive(1)  # frames between consecutive chunk starts
    fps: float = positive(30.0)  # clips are resampled by time to this rate
    heldout_fraction: float = bounded(0.2, 0.05, 0.5)
    gripper_threshold: float = bounded(1.0, 0.0)  # mocap: elbow angle (rad) above which the gripper closes
    max_chunks: int = bounded(0, 0)  # 0: all; else keep the first max_chunks of each split (tests)
    path: str = ""  # lerobot: the demonstration table's folder


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """[T, 4] (w, x, y, z) unit quaternions -> [T, 3] rotation vectors, continuous over time."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    # q and -q are the same rotation: flip signs so that consecutive frames agree (no jumps).
    for t in range(1, len(q)):
        if np.dot(q[t], q[t - 1]) < 0:
            q[t:] *= -1  # flip the rest to keep later comparisons consistent
    w, xyz = q[:, :1], q[:, 1:]
    s = np.linalg.norm(xyz, axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, w)  # in (-2pi, 2pi): may exceed pi, which keeps the curve continuous
    scale = np.where(s > 1e-8, angle / np.maximum(s, 1e-12), 2.0)  # small angles: rotvec ~ 2 * xyz
    return xyz * scale


def resample(times: np.ndarray, x: np.ndarray, fps: float) -> np.ndarray:
    """x [T, D] at `times` -> linear interpolation on a uniform grid at `fps`."""
    grid = np.arange(times[0], times[-1] + 1e-9, 1.0 / fps)
    return np.stack([np.interp(grid, times, x[:, d]) for d in range(x.shape[1])], axis=1)


def mocap_dir() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath()) / "data" / "motions"


def read_mocap_arm(path: Path, side: str, fps: float, gripper_threshold: float) -> np.ndarray:
    """One clip -> [T, 7] arm actions at `fps` (see the module docstring)."""
    frames = np.asarray(json.loads(path.read_text())["Frames"], dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != FRAME_DIM:
        raise ValueError(f"{path}: expected frames of {FRAME_DIM} numbers, got shape {frames.shape}")
    times = np.concatenate([[0.0], np.cumsum(frames[:-1, 0])])
    keep = np.concatenate([[True], np.diff(times) > 0])  # a zero duration repeats a time stamp
    frames, times = frames[keep], times[keep]
    chest = quat_to_rotvec(frames[:, CHEST].copy())
    shoulder = quat_to_rotvec(frames[:, SHOULDERS[side]].copy())
    elbow = frames[:, ELBOWS[side]: ELBOWS[side] + 1]
    x = resample(times, np.concatenate([chest, shoulder, elbow], axis=1), fps)
    # Binarise after resampling, so the gripper is exactly +-1 like a scripted expert's.
    gripper = np.where(x[:, 6:7] > gripper_threshold, 1.0, -1.0)
    return np.concatenate([x[:, :6], gripper], axis=1)


def mocap_episodes(cfg: ActionDataConfig) -> list[np.ndarray]:
    folder = mocap_dir()
    files = sorted(folder.glob("humanoid3d_*.txt"))
    if not files:
        raise FileNotFoundError(f"{folder}: no humanoid3d_*.txt motion clips (is pybullet installed?)")
    return [read_mocap_arm(f, side, cfg.fps, cfg.gripper_threshold) for f in files for side in ("right", "left")]


def lerobot_episodes(cfg: ActionDataConfig) -> list[np.ndarray]:
    """The `action` column of a LeRobot-style table, one [T, dims] array per episode (frame order kept)."""
    from datasets import load_from_disk

    folder = Path(cfg.path)
    if not cfg.path or not (folder / "dataset_info.json").is_file():
        raise FileNotFoundError(f"data.path: {cfg.path!r} is not a saved datasets folder (record demos first, "
                                "e.g. `ddm prepare --config configs/vla/mt10_cpu.yaml`)")
    table = load_from_disk(str(folder))
    missing = [c for c in ("action", "episode_index") if c not in table.column_names]
    if missing:
        raise ValueError(f"data.path: {folder} has no column(s) {missing}; it has {table.column_names}")
    columns = table.select_columns(["action", "episode_index"])[:]
    actions = np.asarray(columns["action"], dtype=np.float64)
    episode = np.asarray(columns["episode_index"])
    starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
    return np.split(actions, starts[1:])


# source name -> function(cfg) returning a list of [T, dims] episodes
SOURCES: dict[str, Callable[[ActionDataConfig], list[np.ndarray]]] = {
    "mocap": mocap_episodes,
    "lerobot": lerobot_episodes,
}


def chunks(episode: np.ndarray, length: int, stride: int) -> np.ndarray:
    """[T, D] -> [K, length, D] windows (none when the episode is shorter than `length`)."""
    starts = range(0, len(episode) - length + 1, stride)
    if not len(starts):
        return np.zeros((0, length, episode.shape[1]))
    return np.stack([episode[s: s + length] for s in starts])


def build_action_data(cfg: ActionDataConfig) -> dict[str, torch.Tensor]:
    """{"train": [N, chunk, dims], "heldout": [M, chunk, dims]} float32 action chunks."""
    if cfg.source not in SOURCES:
        raise ConfigError(f"data.source: unknown action source {cfg.source!r}; known: {', '.join(SOURCES)}")
    splits: dict[str, list[np.ndarray]] = {"train": [], "heldout": []}
    for ep in SOURCES[cfg.source](cfg):
        cut = int(round(len(ep) * (1 - cfg.heldout_fraction)))
        splits["train"].append(chunks(ep[:cut], cfg.chunk, cfg.stride))
        splits["heldout"].append(chunks(ep[cut:], cfg.chunk, cfg.stride))
    out = {}
    for name, parts in splits.items():
        x = torch.from_numpy(np.concatenate(parts)).float()
        if len(x) == 0:
            raise ValueError(f"data: no {name} chunks of length {cfg.chunk}; lower data.chunk")
        out[name] = x[: cfg.max_chunks] if cfg.max_chunks else x
    return out
