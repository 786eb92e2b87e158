"""Tasks: what glues a data set, a model and its metrics together, found by name.

A task package registers itself under the `ddm.tasks` entry-point group (see
pyproject.toml), so the core finds `synthetic`, `image`, ... without importing
them: the arrows point inward (tasks -> ddm).

An experiment config is one YAML file:

    task: {name: synthetic, length: 32, ...}   # the task's own typed config
    model: {...}        # ddm.config.ModelConfig
    diffusion: {...}    # ddm.config.DiffusionConfig
    train: {...}        # ddm.config.TrainConfig
    sample: {...}       # ddm.config.SampleConfig
    run_dir: runs/synthetic
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .config import (ConfigError, DiffusionConfig, ModelConfig, SampleConfig, TrainConfig, apply_overrides,
                     from_dict, read_yaml, to_dict)
from .io import atomic_directory
from .sampling import build_sampler, sample_many
from .schedules import get_schedule


@dataclass
class ExperimentConfig:
    task: Any  # the task's config dataclass (has a `name`)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    run_dir: str = "runs/default"


class Task:
    """Base class of a task. Subclasses set `name` and `Config` and fill the hooks."""

    name: str = ""
    Config: type = object

    def __init__(self, config: ExperimentConfig):
        self.config = config

    # Hooks ---------------------------------------------------------------
    def check_config(self) -> None:
        """Raise ConfigError where the model config does not fit the task's data."""

    def prepare(self, run_dir: Path) -> None:
        """Build what the model stands on before train / sample / eval (e.g. fit the
        tokenizer into run_dir, or load it); may raise where it does not fit the model."""

    def train_dataset(self):
        """A map-style data set (a `datasets.Dataset` in torch format) of training examples."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        from .model import build_denoiser

        return build_denoiser(self.config.model)

    def loss_fn(self):
        from .objectives import DiffusionObjective
        from .process import MaskingProcess

        return DiffusionObjective(MaskingProcess.from_config(self.config.diffusion, self.config.model.mask_id),
                                  self.config.diffusion)

    def tokens_per_example(self) -> int:
        return self.config.model.seq_len

    def sample_conditions(self, n: int):
        """The `Condition` for n samples (None: unconditional)."""
        return None

    def sample_metrics(self, ids: torch.Tensor, cond) -> dict[str, float]:
        """What the task can say about samples `ids` drawn under `cond`."""
        return {}

    def generate(self, model: torch.nn.Module, **sampler_overrides):
        """Draw `sample.num_samples` samples with the configured sampler.

        Returns (SampleResult, condition, seconds)."""
        cfg = self.config
        sample_cfg = dataclasses.replace(cfg.sample, **sampler_overrides)
        sampler = build_sampler(sample_cfg, process=get_schedule(cfg.diffusion.schedule, cfg.diffusion.power))
        cond = self.sample_conditions(sample_cfg.num_samples)
        model.eval()
        start = time.perf_counter()
        result = sample_many(model, sample_cfg.num_samples, sample_cfg.batch_size, sampler=sampler, cond=cond,
                             generator=torch.Generator().manual_seed(sample_cfg.seed))
        return result, cond, time.perf_counter() - start

    def sample(self, model: torch.nn.Module, run_dir: Path) -> dict[str, float]:
        """`ddm sample`: generate, save the ids to run_dir/samples/samples.safetensors, describe them."""
        result, cond, seconds = self.generate(model)
        with atomic_directory(Path(run_dir) / "samples") as tmp:
            save_file({"ids": result.ids.contiguous()}, str(tmp / "samples.safetensors"))
        n = result.ids.shape[0]
        return {"samples": n, "nfe": result.nfe, "ms_per_sample": 1000 * seconds / n,
                **self.sample_metrics(result.ids, cond)}

    def evaluate(self, model: torch.nn.Module, run_dir: Path) -> dict[str, float]:
        """Full evaluation (sampling included): returns the metrics and prints a table."""
        raise NotImplementedError

    def eval_during_training(self, model: torch.nn.Module) -> dict[str, float]:
        """Cheap metrics for periodic evaluation inside the trainer."""
        return {}


_TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    _TASKS[cls.name] = cls
    return cls


def get_task_class(name: str) -> type[Task]:
    if name not in _TASKS:
        for ep in entry_points(group="ddm.tasks"):
            if ep.name == name:
                register_task(ep.load())
    if name not in _TASKS:
        known = sorted(set(_TASKS) | {ep.name for ep in entry_points(group="ddm.tasks")})
        raise ConfigError(f"task.name: unknown task {name!r}; known tasks: {', '.join(known) or 'none'}")
    return _TASKS[name]


def build_experiment(data: dict) -> ExperimentConfig:
    """A typed ExperimentConfig from plain data (YAML + overrides)."""
    task_data = data.get("task")
    if not isinstance(task_data, dict) or "name" not in task_data:
        raise ConfigError("task.name: missing; every experiment names its task")
    task_cls = get_task_class(task_data["name"])
    hints = {f.name: f.type for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config key; allowed keys at the top level: "
                          f"{', '.join(sorted(hints))}")
    return ExperimentConfig(
        task=from_dict(task_cls.Config, task_data, "task"),
        model=from_dict(ModelConfig, data.get("model"), "model"),
        diffusion=from_dict(DiffusionConfig, data.get("diffusion"), "diffusion"),
        train=from_dict(TrainConfig, data.get("train"), "train"),
        sample=from_dict(SampleConfig, data.get("sample"), "sample"),
        run_dir=str(data.get("run_dir", "runs/default")),
    )


def load_experiment(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment, apply `a.b=value` overrides, and check every field."""
    return build_experiment(apply_overrides(read_yaml(path), list(overrides)))


def build_task(config: ExperimentConfig) -> Task:
    task = get_task_class(config.task.name)(config)
    task.check_config()
    return task


def experiment_dict(config: ExperimentConfig) -> dict:
    return to_dict(config)
