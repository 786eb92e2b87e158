"""The LeRobot-style frame format of the demonstrations, and its checks.

One row per control step:
  observation.images.<camera>  uint8 [H, W, 3], upright
  observation.state            float32 [4]: hand xyz, gripper opening (no object poses)
  action                       float32 [4]: the action taken at this frame, in [-1, 1]
  task                         the instruction sentence
  episode_index, frame_index   int64
  next.success                 bool: the task was solved after this action
The names follow LeRobot's so that its policies and loaders read the data as is.
Images are stored as uint8; note that datasets' "numpy" and "torch" formats widen
every integer column to int64 when read (pass dtype=... to `with_format` to keep
bytes).
"""

from __future__ import annotations

from collections.abc import Mapping

IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
ACTION = "action"
TASK = "task"
EPISODE = "episode_index"
FRAME = "frame_index"
SUCCESS = "next.success"


def image_key(camera: str) -> str:
    return IMAGE_PREFIX + camera


def check_instruction(text, where: str = "instruction") -> str:
    """The instruction stripped; raise where it is empty or blank: a policy given no
    words would quietly learn the average of all tasks."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty instruction ({where}): got {text!r}")
    return text.strip()


def check_observation(obs: Mapping, cameras) -> None:
    """Raise where an observation (one frame or a batch) lacks a camera, the state or the instruction."""
    missing = [image_key(c) for c in cameras if image_key(c) not in obs]
    if missing:
        have = sorted(k for k in obs if k.startswith(IMAGE_PREFIX))
        raise KeyError(f"observation is missing camera key(s) {missing}; it has {have}")
    if STATE not in obs:
        raise KeyError(f"observation is missing {STATE!r}")
    if TASK in obs:
        texts = [obs[TASK]] if isinstance(obs[TASK], str) else list(obs[TASK])
        for i, text in enumerate(texts):
            check_instruction(text, where=f"{TASK}[{i}]")


def features(cameras, size: int, state_dim: int, action_dim: int):
    """The `datasets.Features` of the demonstration table."""
    from datasets import Features, List, Value

    # Images as nested fixed-length lists: 3 bytes a pixel on disk. (datasets' Array3D
    # stores variable-length lists, with a 4-byte offset per pixel: 7 bytes a pixel.)
    image = List(List(List(Value("uint8"), length=3), length=size), length=size)
    cols = {image_key(c): image for c in cameras}
    cols[STATE] = List(Value("float32"), length=state_dim)
    cols[ACTION] = List(Value("float32"), length=action_dim)
    cols[TASK] = Value("string")
    cols[EPISODE] = Value("int64")
    cols[FRAME] = Value("int64")
    cols[SUCCESS] = Value("bool")
    return Features(cols)
