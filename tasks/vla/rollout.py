"""One closed-loop episode: render, observe, act, step, until success or the step cap."""

from __future__ import annotations

import tasks.vla  # noqa: F401  (sets a headless MUJOCO_GL before mujoco is imported)

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import schema
from .env import instruction, make_env, robot_state
from .runner import PolicyRunner, check_action_dim


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    steps: int
    chunks: int
    nfe: int
    policy_seconds: float  # encoders + decoder
    seconds: float  # the whole episode (physics and rendering included)
    frames: list[np.ndarray] = field(default_factory=list)  # kept for a GIF, every `record_every`-th


def run_episode(runner: PolicyRunner, task: str, seed: int, max_steps: int, size: int | None = None,
                record_every: int = 0) -> EpisodeResult:
    """Roll the policy out on the scene of `seed`; `record_every` > 0 keeps frames (cameras side by side)."""
    from .render import CameraRenderer

    warnings.filterwarnings("ignore", message=r".*Constant\(s\) may be too high.*")
    start = time.perf_counter()
    cameras = list(runner.policy.config.cameras)
    size = size or runner.policy.config.image_size
    text = instruction(task)
    env = make_env(task, seed, max_steps)
    check_action_dim(runner.policy, int(env.action_space.shape[0]), where=f"env {task!r}")
    renderer = CameraRenderer(env.model, cameras, size)
    before = (runner.stats.chunks, runner.stats.nfe, runner.stats.encode_seconds + runner.stats.decode_seconds)
    frames, success, steps = [], False, 0
    runner.reset(seed)
    try:
        obs, _ = env.reset()
        while True:
            images = renderer.render(env.data)
            if record_every and steps % record_every == 0:
                frames.append(np.concatenate([images[c] for c in cameras], axis=1))
            observation = {schema.image_key(c): images[c] for c in cameras}
            observation[schema.STATE] = robot_state(obs)
            observation[schema.TASK] = text
            action = np.clip(runner.act(observation), -1.0, 1.0).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            success = bool(info["success"])
            if success or terminated or truncated:
                break
        if record_every:
            images = renderer.render(env.data)
            frames.append(np.concatenate([images[c] for c in cameras], axis=1))
    finally:
        renderer.close()
        env.close()
    s = runner.stats
    return EpisodeResult(task, seed, success, steps, s.chunks - before[0], s.nfe - before[1],
                         s.encode_seconds + s.decode_seconds - before[2], time.perf_counter() - start, frames)
