"""One save / load format for every model in the project, in the Hugging Face manner.

A pretrained folder holds `config.json` (the class name, its typed config and a format
version) and `model.safetensors` (the weights). Weights are never unpickled. A folder
is written atomically, so a crash leaves either the old or the new folder, never a mix.

    model.save_pretrained("runs/x/model")
    model = MaskedDiffusionTransformer.from_pretrained("runs/x/model")
    model = ddm.hub.load_pretrained("runs/x/model")   # any registered class
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from .config import ConfigError, from_dict, to_dict
from .io import atomic_directory, atomic_write_json, read_json

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

_CLASSES: dict[str, type] = {}
T = TypeVar("T", bound="PretrainedModel")


class PretrainedModel(torch.nn.Module):
    """A module built from a typed config dataclass, saved as safetensors + JSON.

    Subclasses set `config_class` and take the config as their only constructor argument.
    """

    config_class: type
    # Facts about how the weights were trained that users of the model need (e.g. whether
    # the condition was dropped, which guidance requires); saved with the weights.
    training_attributes: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json and model.safetensors into `directory`, atomically."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            meta = {"class": type(self).__name__, "format_version": FORMAT_VERSION,
                    "config": to_dict(self.config),
                    "training": {k: getattr(self, k) for k in self.training_attributes if hasattr(self, k)}}
            atomic_write_json(tmp / CONFIG_FILE, meta)
            save_model(self, str(tmp / WEIGHTS_FILE))  # save_model handles tied weights
            self.save_files(tmp)
        return directory

    def save_files(self, directory: Path) -> None:
        """Write files other than weights (e.g. a text tokenizer's model); called inside the atomic folder."""

    def load_files(self, directory: Path) -> None:
        """Read what `save_files` wrote; called after the weights are loaded."""

    @classmethod
    def from_pretrained(cls: type[T], directory: str | os.PathLike, expected_config: Any = None,
                        map_location: str = "cpu") -> T:
        """Build the model from `directory`/config.json and load its weights.

        `expected_config`, when given, must equal the saved config (e.g. the run's
        config when sampling from a checkpoint): a difference is an error naming
        the fields that differ.
        """
        directory = Path(directory)
        meta = read_pretrained_config(directory)
        if meta["class"] != cls.__name__ and cls is not PretrainedModel:
            raise ValueError(f"{directory}: holds a {meta['class']}, not a {cls.__name__}")
        target = _CLASSES[meta["class"]] if cls is PretrainedModel else cls
        config = from_dict(target.config_class, meta["config"], "config")
        if expected_config is not None:
            diff = config_diff(expected_config, config)
            if diff:
                raise ValueError(f"{directory}: checkpoint was made with another config; "
                                 f"differing fields: {'; '.join(diff)}")
        model = target(config)
        load_weights(model, directory / WEIGHTS_FILE, map_location)
        for key, value in meta.get("training", {}).items():
            if key in target.training_attributes:
                setattr(model, key, value)
        model.load_files(directory)
        return model


def read_pretrained_config(directory: Path) -> dict:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such pretrained folder")
    meta = read_json(directory / CONFIG_FILE)
    for key in ("class", "config", "format_version"):
        if key not in meta:
            raise ValueError(f"{directory / CONFIG_FILE}: missing key {key!r}; not a ddm pretrained folder")
    if meta["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{directory}: format version {meta['format_version']}, this ddm reads {FORMAT_VERSION}")
    if meta["class"] not in _CLASSES:
        raise ValueError(f"{directory}: unknown model class {meta['class']!r}; "
                         f"known: {', '.join(sorted(_CLASSES))} (is its package imported?)")
    return meta


def load_weights(model: torch.nn.Module, path: Path, map_location: str = "cpu") -> None:
    """Load a safetensors file into `model`, with errors that name the file and the tensor."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: corrupt or truncated safetensors file ({e})") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not _is_tied_alias(model, k, state)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"{path}: tensor {k!r} has shape {tuple(v.shape)}, "
                             f"the model expects {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)


def _is_tied_alias(model: torch.nn.Module, key: str, state: dict) -> bool:
    # save_model keeps one name per shared storage; the other names are aliases.
    params = dict(model.named_parameters(remove_duplicate=False))
    if key not in params:
        return False
    return any(params.get(other) is params[key] for other in state if other in params)


def config_diff(a: Any, b: Any) -> list[str]:
    """Dotted fields whose values differ between two configs."""
    da, db = to_dict(a), to_dict(b)
    out: list[str] = []

    def walk(x, y, where):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{where}.{k}" if where else k)
        elif x != y:
            out.append(f"{where}: {x!r} != {y!r}")

    walk(da, db, "")
    return out


def load_pretrained(directory: str | os.PathLike, **kwargs: Any) -> PretrainedModel:
    """Load any registered model class from its pretrained folder."""
    return PretrainedModel.from_pretrained(directory, **kwargs)


__all__ = ["PretrainedModel", "load_pretrained", "load_weights", "config_diff", "ConfigError"]
