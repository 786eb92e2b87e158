"""MetaWorld MT10: task names, one instruction per task, environments and the robot's state.

MetaWorld ships no language: the instructions below are this project's own, one
imperative sentence per task, naming the object and what to do with it.

`make_env(task, seed)` builds the goal-observable variant (the scripted experts
read the goal from the observation). A seed fixes the scene: the object and goal
placements are drawn once when the env is built and every reset returns to them,
so different scenes need different seeds. MetaWorld raises at its own horizon of
500 steps; `TimeLimit` caps episodes earlier (our `max_steps`) and reports the cut.
"""

from __future__ import annotations

import tasks.vla  # noqa: F401  (sets a headless MUJOCO_GL before mujoco is imported)

import numpy as np

from .schema import check_instruction

MT10_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

INSTRUCTIONS: dict[str, str] = {
    "reach-v3": "move the gripper to the goal position",
    "push-v3": "push the puck to the goal",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "door-open-v3": "open the door by pulling its handle",
    "drawer-open-v3": "pull the drawer open",
    "drawer-close-v3": "push the drawer closed",
    "button-press-topdown-v3": "press the button down from above",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "window-open-v3": "slide the window open",
    "window-close-v3": "slide the window closed",
}

# The first four numbers of a MetaWorld observation: hand (end effector) xyz in
# metres and how far apart the fingers are (0 closed .. 1 open). The rest (object
# poses, the previous frame, the goal) is the privileged state the policy must not see.
STATE_DIM = 4
ACTION_DIM = 4  # hand dx, dy, dz (scaled to [-1, 1]) and gripper effort
HAND_DIMS = 3  # the hand-motion part of an action (the rest: gripper)
DEFAULT_MAX_STEPS = 500  # MetaWorld's own horizon


def check_task(task: str) -> str:
    if task not in INSTRUCTIONS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(MT10_TASKS)}")
    return task


def instruction(task: str) -> str:
    """The instruction sentence of an MT10 task."""
    return check_instruction(INSTRUCTIONS[check_task(task)], where=f"task {task!r}")


class TimeLimit:
    """The env with episodes cut at `max_steps` (<= MetaWorld's 500, past which it raises).

    `step` returns `truncated=True` on the last allowed step. Everything else is the
    MetaWorld env's (`model`, `data`, `reset`, ...), reached through attribute lookup.
    """

    def __init__(self, env, max_steps: int):
        if not 1 <= max_steps <= env.max_path_length:
            raise ValueError(f"max_steps must be in [1, {env.max_path_length}], got {max_steps}")
        self.env = env
        self.max_steps = max_steps
        self.steps = 0

    def reset(self):
        self.steps = 0
        return self.env.reset()

    def step(self, action):
        if self.steps >= self.max_steps:
            raise RuntimeError(f"episode already at its cap of {self.max_steps} steps: reset first")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, reward, terminated, truncated or self.steps >= self.max_steps, info

    def close(self) -> None:
        self.env.close()

    def __getattr__(self, name):
        return getattr(self.env, name)


def make_env(task: str, seed: int, max_steps: int = DEFAULT_MAX_STEPS) -> TimeLimit:
    """The goal-observable MT10 env of `task`, its scene fixed by `seed`, capped at `max_steps`."""
    check_task(task)
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"](seed=int(seed))
    return TimeLimit(env, max_steps)


def make_expert(task: str):
    """MetaWorld's scripted policy for `task`: `.get_action(full_obs) -> action[4]`."""
    check_task(task)
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task]()


def robot_state(obs: np.ndarray) -> np.ndarray:
    """The robot's own state from a full MetaWorld observation: hand xyz and gripper opening."""
    obs = np.asarray(obs)
    if obs.ndim != 1 or obs.shape[0] < STATE_DIM:
        raise ValueError(f"robot_state: expected a flat MetaWorld observation (39 numbers), got shape {obs.shape}")
    return obs[:STATE_DIM].astype(np.float32)
