"""One save / load format for every model in the project, in the Hugging Face manner.

A pretrained folder holds `config.json` (the class name, its typed config, a format
version and the class's `sections`) and `model.safetensors` (the weights). Weights are
never unpickled. A folder is written atomically, so a crash leaves either the old or the
new folder, never a mix.

Sections are what it takes to use the weights as trained, saved beside the model config:
a denoiser's diffusion process (schedule, condition dropout) and default sampler, and
the task it was trained for, so that `Sampler.from_pretrained(folder)` and
`ddm sample --model folder` need no YAML.

    model.save_pretrained("runs/x/model")
    model = MaskedDiffusionTransformer.from_pretrained("runs/x/model")
    model = ddm.hub.load_pretrained("runs/x/model")   # any registered class
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save_model

from .config import ConfigError, brief, changed_fields, from_dict, to_dict
from .io import atomic_directory, atomic_write_json, read_json, read_tensors
from .registry import Registry

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2  # 2: sections saved beside the config (format 1 had none)

# Every PretrainedModel subclass, by class name: what a folder's config.json names.
MODEL_CLASSES = Registry("model class")
T = TypeVar("T", bound="PretrainedModel")


class PretrainedModel(torch.nn.Module):
    """A module built from a typed config dataclass, saved as safetensors + JSON.

    Subclasses set `config_class` and take the config as their first constructor argument;
    `sections` (name -> config dataclass, or `dict` for plain data) are attributes of the
    same names, saved with the config and set again on loading.
    """

    config_class: type
    sections: dict[str, type] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        MODEL_CLASSES.register(cls.__name__, replace=True)(cls)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json and model.safetensors into `directory`, atomically."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            meta = {"class": type(self).__name__, "format_version": FORMAT_VERSION,
                    "config": to_dict(self.config),
                    **{name: to_dict(getattr(self, name)) for name in self.sections
                       if getattr(self, name, None) is not None}}
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
        """Build the model from `directory`/config.json and load its weights; in eval mode.

        `expected_config`, when given, must equal the saved config (e.g. the run's
        config when sampling from a checkpoint): a difference is an error naming
        the fields that differ.
        """
        directory = Path(directory)
        meta = read_pretrained_config(directory)
        if meta["class"] != cls.__name__ and cls is not PretrainedModel:
            raise ValueError(f"{directory}: holds a {meta['class']}, not a {cls.__name__}")
        target = MODEL_CLASSES.get(meta["class"]) if cls is PretrainedModel else cls
        config = from_dict(target.config_class, meta["config"], "config")
        if expected_config is not None:
            diff = config_diff(expected_config, config)
            wanted = getattr(expected_config, "continuous_dim", 0)
            if wanted and not getattr(config, "continuous_dim", 0):
                raise ValueError(f"{directory}: a discrete-only model (model.continuous_dim=0) cannot be loaded as a "
                                 f"joint one (model.continuous_dim={wanted}): it has no continuous head; train one")
            if diff:
                raise ValueError(f"{directory}: checkpoint was made with another config; "
                                 f"differing fields: {'; '.join(diff)}")
        model = target(config)
        for name, value in read_sections(directory, meta, target).items():
            setattr(model, name, value)
        load_weights(model, directory / WEIGHTS_FILE, map_location)
        model.load_files(directory)
        model.pretrained_dir = directory  # where its learned samplers live (ddm.sampling.learned)
        return model.eval()  # loaded to be used, as `transformers` does: no dropout, no codebook updates


def read_pretrained_config(directory: Path) -> dict:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such pretrained folder")
    meta = read_json(directory / CONFIG_FILE)
    for key in ("class", "config", "format_version"):
        if key not in meta:
            raise ValueError(f"{directory / CONFIG_FILE}: missing key {key!r}; not a ddm pretrained folder")
    if meta["format_version"] not in (1, FORMAT_VERSION):
        raise ValueError(f"{directory}: format version {meta['format_version']}, this ddm reads 1 and {FORMAT_VERSION}")
    if meta["class"] not in MODEL_CLASSES:
        raise ValueError(f"{directory}: unknown model class {meta['class']!r}; "
                         f"known: {', '.join(MODEL_CLASSES.names())} (is its package imported?)")
    return meta


def read_sections(directory: Path, meta: dict, cls: type) -> dict[str, Any]:
    """The class's sections from a folder's config.json, typed; format-1 folders have none."""
    if meta["format_version"] == 1 and cls.sections:
        raise ValueError(f"{directory}: saved by an older ddm (format 1), which did not record the "
                         f"{' and '.join(cls.sections)} sections a {cls.__name__} is sampled with; convert it once "
                         f"with `ddm convert {directory} --config <the experiment YAML it was trained with>`")
    out = {}
    for name, section in cls.sections.items():
        if name in meta:
            out[name] = dict(meta[name]) if section is dict else from_dict(section, meta[name], name)
    return out


def read_folder_sections(directory: str | os.PathLike) -> dict[str, Any]:
    """The typed sections of a pretrained folder, without building the model or reading weights."""
    directory = Path(directory)
    meta = read_pretrained_config(directory)
    return read_sections(directory, meta, MODEL_CLASSES.get(meta["class"]))


def load_weights(model: torch.nn.Module, path: Path, map_location: str = "cpu") -> None:
    """Load a safetensors file into `model`, with errors that name the file and the tensor."""
    state = read_tensors(path, map_location, "weights file")
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
    """Dotted fields whose values differ between two configs, as `field: a != b`."""
    return [f"{where}: {brief(x)} != {brief(y)}" for where, x, y in changed_fields(a, b)]


def convert_folder(directory: str | os.PathLike, sections: dict[str, Any]) -> Path:
    """Rewrite a format-1 folder's config.json in the current format, adding `sections`
    (name -> config); the weights are not touched."""
    directory = Path(directory)
    meta = read_pretrained_config(directory)
    cls = MODEL_CLASSES.get(meta["class"])
    missing = sorted(set(cls.sections) - set(sections) - set(meta))
    if missing:
        raise ValueError(f"{directory}: converting a {cls.__name__} needs the sections {missing}")
    meta.update({name: to_dict(value) for name, value in sections.items() if name in cls.sections})
    meta["format_version"] = FORMAT_VERSION
    read_sections(directory, meta, cls)  # every section must parse before anything is written
    atomic_write_json(directory / CONFIG_FILE, meta)
    return directory


def load_pretrained(directory: str | os.PathLike, **kwargs: Any) -> PretrainedModel:
    """Load any registered model class from its pretrained folder."""
    return PretrainedModel.from_pretrained(directory, **kwargs)


__all__ = ["PretrainedModel", "load_pretrained", "load_weights", "config_diff", "convert_folder", "ConfigError"]
