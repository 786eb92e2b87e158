"""The one episode loop, for the scripted expert (demonstrations) and the policy (evaluation):
render, observe, act, step, until success or the step cap."""

from __future__ import annotations

import tasks.vla  # noqa: F401  (sets a headless MUJOCO_GL before mujoco is imported)

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .env import make_env, robot_state

# act(raw env observation, {camera: uint8 [H, W, 3]}) -> action
Actor = Callable[[np.ndarray, dict], np.ndarray]


@dataclass
class Episode:
    task: str
    seed: int
    success: bool
    steps: int
    seconds: float
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)  # camera -> images of the recorded steps
    states: list[np.ndarray] = field(default_factory=list)  # robot state before each action
    actions: list[np.ndarray] = field(default_factory=list)  # the action played at each step, in [-1, 1]
    successes: list[bool] = field(default_factory=list)  # solved after each action


def run_episode(task: str, seed: int, act: Actor, cameras: list[str], size: int, max_steps: int,
                record_every: int = 0, record_last: bool = False, check_env: Callable | None = None,
                play: Callable[[np.ndarray], np.ndarray] | None = None, hold: int = 0) -> Episode:
    """Roll `act` out on the scene of `seed`. Frames of every `record_every`-th step are kept (0:
    none), and with `record_last` the scene after the final step too; `check_env(env)` may
    refuse an env before the first step (e.g. an action size the actor cannot give).

    `play(action)` is what the env receives in place of the recorded action (the demos' DART
    noise: the expert's label is kept, a perturbed action is played). The episode ends at the
    first success, or `hold` steps after it (the demos' "stay there" frames); `success` is
    whether it was ever reached."""
    from .render import CameraRenderer

    # The experts warn on every step that their gains exceed the action range: the env
    # clips, and so does this loop before recording.
    warnings.filterwarnings("ignore", message=r".*Constant\(s\) may be too high.*")
    start = time.perf_counter()
    env = make_env(task, seed, max_steps)
    if check_env is not None:
        check_env(env)
    renderer = CameraRenderer(env.model, cameras, size)
    episode = Episode(task, seed, False, 0, 0.0, {c: [] for c in cameras})

    def record(images: dict) -> None:
        for c in cameras:
            episode.frames[c].append(images[c])

    try:
        obs, _ = env.reset()
        while True:
            images = renderer.render(env.data)
            if record_every and episode.steps % record_every == 0:
                record(images)
            episode.states.append(robot_state(obs))
            action = np.clip(act(obs, images), -1.0, 1.0).astype(np.float32)
            played = action if play is None else np.clip(play(action), -1.0, 1.0).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(played)
            episode.steps += 1
            if info["success"] and not episode.success:
                episode.success, last_step = True, episode.steps + hold
            episode.actions.append(action)
            episode.successes.append(bool(info["success"]))
            if terminated or truncated or (episode.success and episode.steps >= last_step):
                break
        if record_last:
            record(renderer.render(env.data))
    finally:
        renderer.close()
        env.close()
    episode.seconds = time.perf_counter() - start
    return episode
