"""Tokenizer fitting as a kind of experiment, and fit-or-load for every task that needs a tokenizer.

    ddm train  --config configs/tokenizers/mnist.yaml     # fit, save, held-out figures, pictures
    ddm eval   --config configs/tokenizers/mnist.yaml     # held-out figures and codebook usage again
    ddm encode --config ... --input x.safetensors --output ids.safetensors
    ddm decode --config ... --input ids.safetensors --output x.safetensors

A tokenizer experiment:

    task: {name: tokenizer, kind: image}   # a registered tokenizer kind (tokenizers_vq.registry)
    tokenizer: {...}                       # that class's config dataclass
    data: {...}                            # that class's DataConfig
    train: {...}                           # ddm.config.TrainConfig (learned tokenizers)
    run_dir: runs/tokenizers/mnist

The fitted tokenizer goes to <run_dir>/tokenizer, the held-out figures to
<run_dir>/metrics.json, pictures beside them. Encode / decode read and write safetensors
files (key "x" for inputs, "ids" for token ids); where the modality's inputs are not
tensors (text, SMILES, graphs) the tokenizer's `read_input` / `write_output` say what.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from safetensors.torch import save_file

from ddm.config import ConfigError, changed_fields, registered
from ddm.experiment import Experiment, load_experiment
from ddm.io import atomic_write_json, read_tensors, tensor_entry
from ddm.task import Task, register_task

from .base import Tokenizer
from .registry import TOKENIZERS, load_tokenizer

TOKENIZER_DIR = "tokenizer"


@dataclass
class TokenizerTaskConfig:
    name: str = "tokenizer"
    kind: str = registered("tokenizers_vq.registry:TOKENIZERS", "")  # e.g. image, video, motion, text


@dataclass
class TokenizerExperiment(Experiment):
    tokenizer: Any = None  # the kind's config dataclass
    data: Any = None  # the kind's DataConfig


def fit_tokenizer(exp: TokenizerExperiment, directory: str | Path) -> tuple[Tokenizer, dict]:
    """Fit the tokenizer an experiment describes and save it to `directory` (main process only).
    Returns (tokenizer, data splits)."""
    cls = TOKENIZERS.get(exp.task.kind)
    run_dir = Path(exp.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(exp.train.seed)
    splits = cls.build_data(exp.data)
    tok = cls(exp.tokenizer)
    if cls.learned:
        tok.fit(splits["train"], exp.train, run_dir, heldout=splits.get("heldout"), save_to=directory)
    else:
        tok.fit(splits["train"])
        if PartialState().is_main_process:
            tok.save_pretrained(directory)
    print(f"tokenizer saved to {directory}")
    return tok.eval(), splits


def fit_or_load(config: str | Path, directory: str | Path, kind: str | None = None, run_dir: str | Path | None = None
                ) -> Tokenizer:
    """The tokenizer at `directory`, or, where there is none yet, the one the tokenizer experiment
    `config` describes, fitted into it (its checkpoints under `run_dir`, default the config's).
    `kind`, when given, is the tokenizer kind the caller needs."""
    directory = Path(directory)
    exp = load_experiment(config, [f"run_dir={run_dir}"] if run_dir else [])
    if not isinstance(exp, TokenizerExperiment):
        raise ConfigError(f"{config}: a {exp.task.name!r} experiment, not a tokenizer one (task: {{name: tokenizer}})")
    if kind is not None and exp.task.kind != kind:
        raise ConfigError(f"{config}: a {exp.task.kind!r} tokenizer; this task needs kind {kind!r}")
    if (directory / "config.json").is_file():
        tok = load_tokenizer(directory).eval()
        if type(tok) is TOKENIZERS.get(exp.task.kind):
            differ = [f"{where}: {asked!r} != {saved!r}" for where, asked, saved in changed_fields(exp.tokenizer, tok.config)
                      if not (where in tok.fitted_fields and asked in ([], "", None))]
        else:
            differ = ["kind"]
        if differ:  # never reuse a tokenizer that another config made
            raise ConfigError(f"the tokenizer at {directory} was fitted by another config than {config} "
                              f"({'; '.join(differ)}); delete it to fit the new one, or use a new run_dir")
        return tok
    print(f"fitting the {exp.task.kind} tokenizer ({config}) into {directory}")
    tok, splits = fit_tokenizer(exp, directory)
    heldout = tok.evaluate(splits["heldout"])
    print("tokenizer held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in heldout.items()))
    return tok


def tokenizer_for_task(config: str | Path, path: str | Path | None, run_dir: str | Path, kind: str) -> Tokenizer:
    """A task's tokenizer: the user's own folder `path` (used as it is, but it must be of `kind`),
    or else the one the tokenizer experiment `config` describes, fitted into <run_dir>/tokenizer
    the first time (`fit_or_load`)."""
    run_dir = Path(run_dir)
    if path:
        directory = Path(path)
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"task.tokenizer_path: no tokenizer at {directory}")
        tok = load_tokenizer(directory).eval()
        if type(tok) is not TOKENIZERS.get(kind):
            raise ConfigError(f"task.tokenizer_path: {directory} holds a {type(tok).__name__}; this task needs a "
                              f"{kind!r} tokenizer")
        return tok
    return fit_or_load(config, run_dir / "tokenizer", kind=kind, run_dir=run_dir / "tokenizer_training")


@register_task("tokenizer")
class TokenizerTask(Task):
    Config = TokenizerTaskConfig
    Experiment = TokenizerExperiment

    @classmethod
    def section_types(cls, task_config: TokenizerTaskConfig) -> dict[str, type]:
        try:
            kind = TOKENIZERS.get(task_config.kind, "task.kind")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return {"tokenizer": kind.config_class, "data": kind.DataConfig}

    def _directory(self, model_dir: str | Path | None = None) -> Path:
        return Path(model_dir) if model_dir else self.run_dir / TOKENIZER_DIR

    def _load(self, model_dir: str | Path | None = None) -> Tokenizer:
        directory = self._directory(model_dir)
        if not directory.exists():
            raise FileNotFoundError(f"no tokenizer at {directory}; run `ddm train` with this config first")
        return load_tokenizer(directory).eval()

    def _report(self, tok: Tokenizer, heldout: Any) -> dict[str, float]:
        metrics = tok.evaluate(heldout)
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        print(f"{self.config.task.kind} tokenizer, held-out data (vocab {tok.vocab_size}):")
        width = max((len(k) for k in metrics), default=0)
        for k, v in metrics.items():
            print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
        for path in tok.save_pictures(heldout, self.run_dir):
            print(f"picture: {path}")
        return metrics

    def train(self) -> dict[str, float]:
        self.begin_run()  # a tokenizer of another experiment in run_dir is refused, never replaced
        if (self._directory() / "config.json").is_file():
            print(f"the tokenizer at {self._directory()} is fitted already (start over with --force)")
            return self.evaluate()
        tok, splits = fit_tokenizer(self.config, self._directory())
        return self._report(tok, splits["heldout"])

    def evaluate(self, model_dir: str | Path | None = None) -> dict[str, float]:
        tok = self._load(model_dir)
        return self._report(tok, type(tok).build_data(self.config.data)["heldout"])

    def encode_file(self, source: str, target: str, model_dir: str | Path | None = None) -> str:
        tok = self._load(model_dir)
        x = tok.read_input(source) if hasattr(tok, "read_input") else tensor_entry(read_tensors(source), "x", source)
        stream = tok.encode(x)
        tensors = {"ids": stream.ids.contiguous(), "shape": torch.tensor(stream.shape)}
        if stream.values is not None:
            tensors["values"] = stream.values.contiguous()
        save_file(tensors, target)
        return f"encoded {stream.batch_size} examples into ids of shape {tuple(stream.ids.shape)}: {target}"

    def decode_file(self, source: str, target: str, model_dir: str | Path | None = None) -> str:
        tok = self._load(model_dir)
        ids = tensor_entry(read_tensors(source), "ids", source)
        x = tok.decode(ids)
        if hasattr(tok, "write_output"):
            tok.write_output(x, target)
        else:
            save_file({"x": x.contiguous()}, target)
        return f"decoded {ids.shape[0]} examples: {target}"
