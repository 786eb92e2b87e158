"""One experiment front end: every YAML names its task, one loader types and checks it.

    task: {name: image, ...}     # a registered task (or package.module:Class) and its own fields
    train: {...}                 # ddm.config.TrainConfig: every experiment trains something
    run_dir: runs/image_mnist    # where everything it makes goes (default runs/<task name>)
    ...                          # the sections of the task's kind, e.g. for a denoiser task:
    model: {...}                 #   ddm.config.ModelConfig
    diffusion: {...}             #   ddm.config.DiffusionConfig
    sample: {...}                #   ddm.config.SampleConfig

A task class names its `Experiment` schema (a dataclass deriving from `Experiment`) and
its `Config` (the `task:` section); tokenizer fitting, the denoiser tasks and the robot
policy are kinds of experiment behind the same verbs (`ddm prepare|train|eval|sample|run`).
Built-in tasks live outside the core, in other packages, so they are found through the
`ddm.tasks` entry-point group (pyproject.toml); a task in a user's own module is named by
its import path, `task: {name: mymodule:MyTask}`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (ConfigError, DiffusionConfig, ModelConfig, SampleConfig, TrainConfig, apply_overrides, brief,
                     changed_fields, convert, read_yaml, to_dict)
from .registry import Registry, RegistryError

TASKS = Registry("task", entry_points="ddm.tasks")
RECORD = "config.yaml"  # the experiment a run folder was trained with
# What may change between two `ddm train`s in one run_dir (prefixes of dotted fields): how long it
# trains, how it logs and checkpoints, how it samples and evaluates; nothing its checkpoints depend on.
RESUMABLE = ("train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
             "train.keep_checkpoints", "train.progress", "train.compile", "train.sparse_head",
             "train.fused_optimizer", "train.channels_last", "sample.", "eval.", "run_dir")


@dataclass
class Experiment:
    """What every experiment has; a kind adds its own sections by deriving from this."""

    task: Any  # the task's Config dataclass (has a `name`)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = ""  # default: runs/<task name>

    def __post_init__(self) -> None:
        if not self.run_dir.strip():
            self.run_dir = f"runs/{self.task.name.replace(':', '_')}"
        if Path(self.run_dir).exists() and not Path(self.run_dir).is_dir():
            raise ConfigError(f"run_dir: {self.run_dir} is a file, not a folder")


@dataclass
class DiffusionExperiment(Experiment):
    """A masked-diffusion denoiser trained on a task's token streams."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.diffusion.continuous_time != "coupled" and not self.model.time_conditioning:
            raise ConfigError(f"diffusion.continuous_time: {self.diffusion.continuous_time} times need "
                              "model.time_conditioning=true (the model is told the vectors' time; the tokens' "
                              "shows in the mask)")


def task_class(name: Any) -> type:
    if not isinstance(name, str):
        raise ConfigError(f"task.name: expected a string, got {name!r}")
    try:
        return TASKS.get(name, "task.name")
    except RegistryError as e:
        raise ConfigError(str(e)) from None


def build_experiment(data: dict) -> Experiment:
    """The typed experiment of plain data (YAML + overrides): every key, type and range checked."""
    task_data = data.get("task")
    if not isinstance(task_data, dict) or "name" not in task_data:
        raise ConfigError(f"task.name: missing; every experiment names its task (registered: "
                          f"{', '.join(TASKS.names())})")
    cls = task_class(task_data["name"])
    task_config = convert(cls.Config, task_data, "task")
    schema = cls.Experiment
    types = {**typing.get_type_hints(schema), **cls.section_types(task_config)}
    names = [f.name for f in dataclasses.fields(schema)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config key; a {task_data['name']} experiment has "
                          f"{', '.join(names)}")
    sections = {name: convert(types[name], data[name], name) for name in names if name in data and name != "task"}
    return schema(task=task_config, **sections)


def load_experiment(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Read a YAML experiment, apply `a.b=value` overrides, and check every field."""
    return build_experiment(apply_overrides(read_yaml(path), list(overrides)))


def experiment_of_folder(directory: str | Path, overrides: list[str] = ()) -> Experiment:
    """The experiment a trained denoiser folder records (its task, model, diffusion process and
    sampler; run_dir its parent folder): `ddm sample --model DIR` needs no YAML."""
    from .hub import read_folder_sections, read_pretrained_config

    directory = Path(directory)
    sections = read_folder_sections(directory)  # a format-1 folder is refused with the way to convert it
    if sections.get("task") is None:
        raise ConfigError(f"{directory}: the folder records no task (saved outside `ddm train`), so there is "
                          "nothing to rebuild; pass the experiment with --config")
    data = {"task": sections["task"], "model": read_pretrained_config(directory)["config"],
            "diffusion": to_dict(sections["diffusion"]), "sample": to_dict(sections["sample"]),
            "run_dir": str(directory.parent)}
    return build_experiment(apply_overrides(data, list(overrides)))


def check_resume(experiment: Experiment, resumable: tuple[str, ...] = RESUMABLE) -> list[str]:
    """Compare the experiment with the one recorded in its run_dir, before anything is written there.

    Where the run_dir holds trained weights (a checkpoint, a model, a tokenizer, a policy), raises
    ConfigError naming every changed field they depend on (old and new values); returns the
    allowed changes (e.g. more steps) as lines to print."""
    record = Path(experiment.run_dir) / RECORD
    if not record.is_file() or not any(Path(experiment.run_dir).rglob("model.safetensors")):
        return []  # nothing trained there yet (a run that failed early): nothing to protect
    import yaml

    recorded = yaml.safe_load(record.read_text()) or {}
    try:  # read as a config, so that a field added since the run was recorded counts as its default
        recorded = to_dict(build_experiment(recorded))
    except (ConfigError, RegistryError, ValueError):  # a field since removed or renamed: compare as written
        pass
    changes = changed_fields(recorded, to_dict(experiment))
    refused = [c for c in changes if not c[0].startswith(resumable)]
    if refused:
        lines = "; ".join(f"{k}: {brief(a)} -> {brief(b)}" for k, a, b in refused)
        raise ConfigError(f"run_dir {experiment.run_dir} holds a run of another experiment ({lines}); its "
                          f"checkpoints would mean nothing to this one. Train in a new run_dir, or start over "
                          f"with --force (deletes {experiment.run_dir}). Fields that may change on resume: "
                          f"{', '.join(resumable)}")
    return [f"{k}: {brief(a)} -> {brief(b)}" for k, a, b in changes]


def record_experiment(experiment: Experiment) -> None:
    """Write the experiment into its run_dir (after `check_resume` passed)."""
    from .io import atomic_write_text
    import yaml

    Path(experiment.run_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(experiment.run_dir) / RECORD, yaml.safe_dump(to_dict(experiment), sort_keys=False))
