"""The policy behind SimplerEnv's policy contract (SimplerEnv itself needs GPU rendering:
not runnable here).

    adapter = SimplerEnvAdapter(runner, state_provider=lambda: robot_state)
    adapter.reset("pick up the puck and place it at the goal")
    raw_action, action = adapter.step(image, "pick up the puck and place it at the goal")

`action` has SimplerEnv's keys: `world_vector` (3), `rot_axangle` (3), `gripper` (1),
`terminate_episode` (1); `raw_action` the policy's own reading of them (`world_vector`,
`rotation_delta`, `open_gripper`). A 4-d policy (MetaWorld: hand xyz + gripper effort,
+1 = close) gives no rotation; a 7-d one (xyz, axis-angle, gripper) fills all of them.

SimplerEnv hands a policy one image per step and no robot state: a policy trained with
a wrist camera needs `wrist_image=`, and the state comes from `state=` or the
`state_provider` given at construction; a missing one is an error naming it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import schema
from .runner import PolicyRunner
from .schema import check_instruction


class SimplerEnvAdapter:
    def __init__(self, runner: PolicyRunner, state_provider: Callable[[], np.ndarray] | None = None,
                 translation_scale: float = 1.0):
        dims = runner.policy.config.action_dim
        if dims not in (4, 7):
            raise ValueError(f"action dimension mismatch: the policy outputs {dims}-d actions; the SimplerEnv "
                             f"adapter maps 4-d (xyz + gripper) or 7-d (xyz + axis-angle + gripper) actions")
        self.runner = runner
        self.state_provider = state_provider
        self.translation_scale = translation_scale
        self.instruction: str | None = None

    def reset(self, task_description: str) -> None:
        self.instruction = check_instruction(task_description, where="task_description")
        self.runner.reset()

    def _observation(self, image, wrist_image, state, instruction: str) -> dict:
        cameras = self.runner.policy.config.cameras
        obs = {schema.image_key(cameras[0]): np.asarray(image)}
        if len(cameras) > 1 and wrist_image is not None:
            obs[schema.image_key(cameras[1])] = np.asarray(wrist_image)
        if state is None and self.state_provider is not None:
            state = self.state_provider()
        if state is None:
            raise KeyError(f"no robot state: SimplerEnv gives none, so pass state= to step or a state_provider "
                           f"(the policy reads {schema.STATE!r}, {self.runner.policy.config.state_dim} numbers)")
        obs[schema.STATE] = np.asarray(state, dtype=np.float32)
        obs[schema.TASK] = instruction
        return obs

    def step(self, image, task_description: str | None = None, *, wrist_image=None, state=None
             ) -> tuple[dict, dict]:
        text = check_instruction(task_description if task_description is not None else self.instruction,
                                 where="task_description")
        if text != self.instruction:  # a new instruction (long-horizon tasks): re-plan from scratch
            self.reset(text)
        a = np.asarray(self.runner.act(self._observation(image, wrist_image, state, text)), dtype=np.float64)
        if a.shape[0] == 4:
            xyz, rot, grip = a[:3], np.zeros(3), a[3:4]
        else:
            xyz, rot, grip = a[:3], a[3:6], a[6:7]
        raw = {"world_vector": xyz.copy(), "rotation_delta": rot.copy(), "open_gripper": -grip}
        action = {"world_vector": xyz * self.translation_scale, "rot_axangle": rot, "gripper": grip,
                  "terminate_episode": np.zeros(1)}
        return raw, action
