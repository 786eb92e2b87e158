"""Moving-MNIST built from the real MNIST digits: digits bouncing on a dark canvas.

    splits = moving_mnist_splits(num_train=2000, num_heldout=200)
    splits["train"][0]["x"]       # float32 [1, 16, 64, 64] (channels, frames, height, width) in [0, 1]
    splits["train"][0]["labels"]  # the class of each digit in the video

Each video places `num_digits` digits at random positions with random velocities
(2 to 4 pixels a frame for 28-pixel digits, scaled with `digit_size`); a digit bounces off
the canvas edges, and overlapping digits combine by their maximum. `digit_size` < 28
shrinks the digits by area averaging: a 32x32 canvas of 14-pixel digits is the same scene
at a quarter of the pixels, which is what a 2-core CPU can generate from. Everything is drawn from the seed, so a seed always gives
the same videos. Training videos use only the training digits of
`tokenizers_vq.data.images.image_splits("mnist", digit_seed)`, held-out videos only its
held-out digits: the held-out set tests digits the tokenizer has never seen.

The data set stores each video's digits and trajectories, and frames are drawn when
examples are read: 2,000 videos as float pixels would be 500 MB to build and hash.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from datasets import Dataset

from .images import IMAGE_SIZE, load_images, split_indices

MIN_SPEED, MAX_SPEED = 2.0, 4.0  # pixels per frame


def plan_videos(pool: np.ndarray, num_videos: int, seed: int, frames: int = 16, size: int = 64,
                num_digits: int = 2, digit_size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(digit ids drawn from `pool` [V, num_digits], top-left corners [V, num_digits, frames, 2])."""
    if not 1 <= digit_size <= IMAGE_SIZE:
        raise ValueError(f"digit_size: expected 1 .. {IMAGE_SIZE} pixels, got {digit_size}")
    if size < digit_size:
        raise ValueError(f"size: the canvas must hold a {digit_size}x{digit_size} digit, got {size}")
    if len(pool) < 1:
        raise ValueError("pool: no digits to draw from")
    rng = np.random.default_rng(seed)
    room = size - digit_size  # corners stay in [0, room]
    digits = pool[rng.integers(0, len(pool), (num_videos, num_digits))]
    pos = rng.uniform(0, room, (num_videos, num_digits, 2))
    angle = rng.uniform(0, 2 * np.pi, (num_videos, num_digits))
    scale = digit_size / IMAGE_SIZE  # speeds in digit sizes per frame, whatever the resolution
    speed = scale * rng.uniform(MIN_SPEED, MAX_SPEED, (num_videos, num_digits, 1))
    vel = speed * np.stack([np.sin(angle), np.cos(angle)], -1)
    corners = np.zeros((num_videos, num_digits, frames, 2), np.int64)
    for t in range(frames):
        corners[:, :, t] = np.round(pos)
        pos = pos + vel
        # bounce: reflect a corner that left [0, room] and reverse that velocity component
        out = (pos < 0) | (pos > room)
        pos = np.where(pos < 0, -pos, np.where(pos > room, 2 * room - pos, pos))
        vel = np.where(out, -vel, vel)
    return digits, corners


@functools.lru_cache(maxsize=4)
def digit_sprites(digit_size: int = IMAGE_SIZE) -> np.ndarray:
    """The MNIST digits as float32 [N, digit_size, digit_size] in [0, 1] (area-averaged when smaller)."""
    images = torch.from_numpy(load_images("mnist")[0].astype(np.float32) / 255.0)
    if digit_size != IMAGE_SIZE:
        images = torch.nn.functional.interpolate(images[:, None], size=(digit_size, digit_size), mode="area")[:, 0]
    sprites = images.numpy()
    sprites.flags.writeable = False  # cached and shared
    return sprites


def render(digits: np.ndarray, corners: np.ndarray, size: int, digit_size: int = IMAGE_SIZE) -> np.ndarray:
    """float32 videos [V, frames, size, size] in [0, 1] from digit ids and corners."""
    sprites = digit_sprites(digit_size)
    num_videos, num_digits, frames, _ = corners.shape
    videos = np.zeros((num_videos, frames, size, size), np.float32)
    for v in range(num_videos):
        for d in range(num_digits):
            sprite = sprites[digits[v, d]]
            for t, (y, x) in enumerate(corners[v, d]):
                window = videos[v, t, y:y + digit_size, x:x + digit_size]
                np.maximum(window, sprite, out=window)
    return videos


def _draw(batch: dict, size: int, digit_size: int) -> dict:
    digits = np.asarray(batch["digits"], np.int64)
    corners = np.asarray(batch["corners"], np.int64)
    x = torch.from_numpy(render(digits, corners, size, digit_size)).unsqueeze(1)  # channel axis first
    return {"x": x, "labels": torch.as_tensor(np.asarray(batch["labels"], np.int64))}


def moving_mnist_splits(num_train: int = 2000, num_heldout: int = 200, seed: int = 0, frames: int = 16,
                        size: int = 64, num_digits: int = 2, digit_seed: int = 0,
                        heldout_fraction: float = 0.1, digit_size: int = IMAGE_SIZE) -> dict[str, Dataset]:
    """{"train": ..., "heldout": ...} Moving-MNIST videos; held-out videos use held-out digits."""
    _, labels = load_images("mnist")
    train_pool, heldout_pool = split_indices(labels, heldout_fraction, digit_seed)
    out = {}
    # one generator per split: the held-out videos do not depend on num_train
    for name, count, pool, stream in (("train", num_train, train_pool, 0), ("heldout", num_heldout, heldout_pool, 1)):
        digits, corners = plan_videos(pool, count, seed * 2 + stream, frames, size, num_digits, digit_size)
        ds = Dataset.from_dict({"digits": digits.tolist(), "corners": corners.tolist(),
                                "labels": labels[digits].tolist()})
        out[name] = ds.with_transform(functools.partial(_draw, size=size, digit_size=digit_size))
    return out
