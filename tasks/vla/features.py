"""Observations -> frozen features, for one frame at a time or a whole demo dataset (cached).

`ObservationEncoder` turns a LeRobot-style observation (`observation.images.<camera>`
uint8 [B, H, W, 3], `observation.state` [B, S], `task` sentences) into the three inputs
of the policy: image tokens [B, cameras * pool^2, channels], instruction vectors [B, 384] and
the state [B, S]. It checks the observation first, naming a missing camera key or an
empty instruction.

The encoders are frozen, so a demo dataset's features never change: `dataset_features`
computes them once and keeps them in a safetensors file (image tokens in float16, half
the bytes), reused while the dataset and the encoder settings are the same. Training
then reads a few numbers per frame instead of running EfficientNet on every batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import schema
from .encoders import ImageEncoder, InstructionEncoder


class ObservationEncoder:
    def __init__(self, cameras, pool: int = 2, stage: str = "head"):
        self.cameras = list(cameras)
        self.images = ImageEncoder(pool, stage)
        self.text = InstructionEncoder()

    @classmethod
    def for_policy(cls, cfg) -> "ObservationEncoder":
        """The encoders a policy (its `PolicyConfig`) was trained on."""
        return cls(cfg.cameras, pool=int(round(cfg.image_tokens ** 0.5)), stage=cfg.image_stage)

    @property
    def image_tokens(self) -> int:
        return self.images.tokens

    @property
    def stage(self) -> str:
        return self.images.stage

    def __call__(self, obs: Mapping) -> dict[str, Tensor]:
        schema.check_observation(obs, self.cameras)
        if schema.TASK not in obs:
            raise KeyError(f"observation is missing {schema.TASK!r} (the instruction sentence)")
        tokens = [self.images(obs[schema.image_key(c)], where=schema.image_key(c)) for c in self.cameras]
        batch = tokens[0].shape[0]
        for cam, t in zip(self.cameras, tokens):
            if t.shape[0] != batch:
                raise ValueError(f"{schema.image_key(cam)}: {t.shape[0]} images, but "
                                 f"{schema.image_key(self.cameras[0])} has {batch}")
        state = torch.as_tensor(np.asarray(obs[schema.STATE], dtype=np.float32))
        if state.ndim == 1:
            state = state[None]
        texts = obs[schema.TASK]
        texts = [texts] * batch if isinstance(texts, str) else list(texts)
        if len(texts) != batch or state.shape[0] != batch:
            raise ValueError(f"observation: {batch} images per camera, {state.shape[0]} states "
                             f"({schema.STATE}) and {len(texts)} instructions ({schema.TASK}); they must match")
        return {"images": torch.cat(tokens, dim=1), "text": self.text(texts, where=schema.TASK), "state": state}


def arrow_images(column) -> np.ndarray:
    """A column of nested fixed-size uint8 lists (the demos' image format) -> [B, H, W, 3].

    Read straight from Arrow's flat buffer: going through datasets' numpy formatting builds
    every pixel as a Python object first, about 5,000x slower (4 s for 64 frames at 128 px)."""
    import pyarrow as pa

    values, shape = column.combine_chunks(), [len(column)]
    while pa.types.is_fixed_size_list(values.type):
        shape.append(values.type.list_size)
        values = values.flatten()
    return values.to_numpy(zero_copy_only=False).reshape(shape).copy()  # writable, for torch


def _fingerprint(data_dir: Path, cameras, pool: int, stage: str) -> str:
    """Changes when the dataset files or the encoder settings change."""
    settings = {"cameras": list(cameras), "pool": pool}
    if stage != "head":  # the head's caches predate the stage setting and stay valid
        settings["stage"] = stage
    h = hashlib.sha256(json.dumps(settings).encode())
    for f in sorted(data_dir.glob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def dataset_features(data_dir: str | Path, cache: str | Path, cameras, pool: int = 2, batch_size: int = 64,
                     progress: bool = True, stage: str = "head") -> dict[str, Tensor | list[str]]:
    """The frozen features of every frame of a demo dataset, computed once and cached.

    Returns images [N, C * pool^2, channels of `stage`] float16, text [T, 384] (one row per distinct
    instruction), text_index [N], state [N, S], action [N, A], episode [N], frame [N],
    and `instructions` (the T sentences).
    """
    from datasets import load_from_disk
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    data_dir, cache = Path(data_dir), Path(cache)
    key = _fingerprint(data_dir, cameras, pool, stage)
    meta_path = cache.with_suffix(".json")
    if cache.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == key:
            out: dict = dict(load_file(str(cache)))
            out["instructions"] = meta["instructions"]
            return out
    table = load_from_disk(str(data_dir))
    missing = [schema.image_key(c) for c in cameras if schema.image_key(c) not in table.column_names]
    if missing:
        raise KeyError(f"{data_dir}: the demos have no column(s) {missing}; they have "
                       f"{[c for c in table.column_names if c.startswith(schema.IMAGE_PREFIX)]}")
    encoder = ImageEncoder(pool, stage)
    text_encoder = InstructionEncoder()
    small = table.select_columns([schema.STATE, schema.ACTION, schema.EPISODE, schema.FRAME, schema.TASK])
    rows = small.with_format("numpy")[:]
    instructions = sorted(set(rows[schema.TASK].tolist()))
    index = {t: i for i, t in enumerate(instructions)}
    images = []
    pixels = table.select_columns([schema.image_key(c) for c in cameras]).with_format("arrow")
    for start in tqdm(range(0, len(table), batch_size), desc="image features", disable=not progress):
        part = pixels[start:start + batch_size]
        images.append(torch.cat([encoder(arrow_images(part.column(schema.image_key(c)))) for c in cameras],
                                dim=1).half())
    out = {
        "images": torch.cat(images),
        "text": text_encoder(instructions),
        "text_index": torch.tensor([index[t] for t in rows[schema.TASK].tolist()], dtype=torch.long),
        "state": torch.as_tensor(rows[schema.STATE], dtype=torch.float32),
        "action": torch.as_tensor(rows[schema.ACTION], dtype=torch.float32),
        "episode": torch.as_tensor(rows[schema.EPISODE], dtype=torch.long),
        "frame": torch.as_tensor(rows[schema.FRAME], dtype=torch.long),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".tmp-{cache.name}")
    save_file({k: v.contiguous() for k, v in out.items()}, str(tmp))
    tmp.replace(cache)  # the tensors first, then the key that marks them valid
    meta_path.write_text(json.dumps({"fingerprint": key, "instructions": instructions, "frames": len(table),
                                     "cameras": list(cameras), "pool": pool, "stage": stage}, indent=2) + "\n")
    out["instructions"] = instructions
    return out
