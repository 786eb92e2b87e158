"""Checkpoints as folders of safetensors and JSON files: no pickle anywhere.

    checkpoints/step_00001000/
        model.safetensors        model weights (state_dict)
        ema.safetensors          EMA weights (only when EMA is on)
        optimizer.safetensors    optimizer tensors, and
        optimizer.json           the optimizer state's structure and scalars
        scheduler.json           LR-scheduler state
        trainer.json             step, config, ...: read to recognise a checkpoint

A folder is written under a `.tmp-` name and renamed when complete
(`ddm.io.atomic_directory`), so a kill at any moment leaves only complete
`step_*` folders; readers ignore everything else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ddm.io import atomic_directory, read_json, read_tensors

_STEP_DIR = re.compile(r"step_(\d{8})")
_MARKER = "trainer.json"


def checkpoint_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.fullmatch(p.name) and (p / _MARKER).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


# --------------------------------------------------------------------------- nested state <-> JSON + tensors


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON form of `obj`; its tensors go to `tensors`, named by their path."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj
        return {"__tensor__": path}
    if isinstance(obj, dict):
        # Keys may be ints (optimizer state is keyed by parameter index): keep them as pairs.
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"{path}: cannot store a dict key of type {type(k).__name__}")
        return {"__dict__": [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{path}: cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
    return obj


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    # Copies on the CPU: safetensors refuses tensors that share memory (tied weights).
    save_file({k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}, str(path))


# --------------------------------------------------------------------------- save / load


def save_checkpoint(root: str | Path, step: int, weights: dict[str, dict[str, torch.Tensor]],
                    states: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write checkpoint `step` atomically and return its folder.

    weights: name -> flat tensor dict, stored as name.safetensors.
    states: name -> nested state (e.g. an optimizer state_dict), stored as
    name.json plus name.safetensors when it holds tensors.
    info: JSON-able facts (config, ...) stored with the step in trainer.json.
    """
    final = checkpoint_dir(root, step)
    with atomic_directory(final) as tmp:
        for name, tensors in weights.items():
            _save_tensors(tensors, tmp / f"{name}.safetensors")
        for name, state in states.items():
            tensors: dict[str, torch.Tensor] = {}
            structure = _encode(state, tensors, name)
            if tensors:
                _save_tensors(tensors, tmp / f"{name}.safetensors")
            (tmp / f"{name}.json").write_text(json.dumps(structure))
        # Written last; its presence marks the folder as a checkpoint.
        (tmp / _MARKER).write_text(json.dumps({"step": step, **info}, indent=2, sort_keys=True))
    return final


def load_info(folder: str | Path) -> dict[str, Any]:
    return read_json(Path(folder) / _MARKER)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_tensors(path, what=f"checkpoint file (delete its folder {path.parent.name} to resume from the "
                                   "one before)")


def load_weights(folder: str | Path, name: str) -> dict[str, torch.Tensor] | None:
    path = Path(folder) / f"{name}.safetensors"
    return _read_tensors(path) if path.is_file() else None


def load_state(folder: str | Path, name: str) -> Any:
    folder = Path(folder)
    structure = read_json(folder / f"{name}.json")
    tensor_file = folder / f"{name}.safetensors"
    tensors = _read_tensors(tensor_file) if tensor_file.is_file() else {}
    return _decode(structure, tensors)


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints; drop older ones and leftovers of killed writes.

    A checkpoint is first renamed out of the `step_*` names in one step, then deleted, so a
    kill in the middle never leaves a half-deleted folder that still looks like a checkpoint."""
    root = Path(root)
    for old in list_checkpoints(root)[:-keep]:
        trash = Path(tempfile.mkdtemp(prefix=f".trash-{old.name}-", dir=root))
        os.rmdir(trash)
        os.rename(old, trash)
    remove_leftovers(root)


def remove_leftovers(root: str | Path) -> None:
    """Delete what killed writes and prunes left behind (never a complete checkpoint)."""
    root = Path(root)
    for leftover in [*root.glob(".tmp-step_*"), *root.glob(".old-step_*"), *root.glob(".trash-step_*")]:
        shutil.rmtree(leftover, ignore_errors=True)
