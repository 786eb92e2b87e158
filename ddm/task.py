"""Tasks: what the verbs `ddm prepare|train|eval|sample|run --config` do with an experiment.

A `Task` is one kind of experiment; `DiffusionTask` is the kind every denoiser task
shares (synthetic, image, your own token data): a data set of token streams, a denoiser
trained on them through the one trainer and saved as a folder that samples as trained,
held-out ELBO and samples for `ddm eval`, ids written by `ddm sample`. A task fills its
data hooks; everything else has a default.

    @register_task("mytask")
    class MyTask(DiffusionTask):
        Config = MyTaskConfig                    # the `task:` section (has a `name`)
        def train_dataset(self): ...             # a datasets.Dataset with an `ids` column
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .config import ConfigError, SampleConfig, changed_fields, from_dict, to_dict
from .experiment import RECORD, RESUMABLE, TASKS, DiffusionExperiment, Experiment, check_resume, record_experiment
from .io import atomic_directory, atomic_write_json

MODEL_DIR = "model"
register_task = TASKS.register


@dataclass
class TaskConfig:
    name: str = ""


class Task:
    """One kind of experiment, registered by name (`@register_task("name")`). Subclasses set
    `Config` and `Experiment` and the verbs they have."""

    Config: type = TaskConfig  # the `task:` section
    Experiment: type = Experiment  # the whole YAML
    resumable: tuple[str, ...] = RESUMABLE  # fields that may change between runs in one run_dir

    def __init__(self, config: Experiment):
        self.config = config
        self.run_dir = Path(config.run_dir)
        self._prepared = False

    @classmethod
    def section_types(cls, task_config: Any) -> dict[str, type]:
        """Types of sections that depend on the task section (e.g. a tokenizer kind's own config)."""
        return {}

    def check(self) -> None:
        """Raise ConfigError where sections do not fit together (e.g. model vs task)."""

    def prepare(self) -> None:
        """Build what the verbs stand on (data, a tokenizer, demonstrations), once per process."""
        if not self._prepared:
            self.setup()
            self._prepared = True

    def setup(self) -> None:
        """What `prepare` does; fitted things go under run_dir."""

    def begin_run(self) -> None:
        """Before training writes anything: refuse a run_dir that holds a run of another experiment
        (naming each changed field), build what training stands on, then record the experiment."""
        for change in check_resume(self.config, self.resumable):
            print(f"resuming {self.run_dir} with a changed {change}")
        self.prepare()
        record_experiment(self.config)

    def start_over(self) -> None:
        """`ddm train --force`: delete the run folder (it must be one: it holds a recorded experiment)."""
        if self.run_dir.exists():
            if not (self.run_dir / RECORD).is_file():
                raise ConfigError(f"--force: {self.run_dir} holds no {RECORD}, so it is not a run folder; "
                                  "nothing was deleted")
            shutil.rmtree(self.run_dir)

    def _unsupported(self, verb: str) -> ConfigError:
        return ConfigError(f"task {self.config.task.name!r}: `ddm {verb}` is not defined for this kind of experiment")

    def train(self) -> Any:
        raise self._unsupported("train")

    def evaluate(self, model_dir: str | Path | None = None) -> dict[str, float]:
        raise self._unsupported("eval")

    def sample(self, model_dir: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
        raise self._unsupported("sample")

    def distill(self, steps: int, plus: bool = False, teacher_steps: int = 128,
                model_dir: str | Path | None = None, **options: Any) -> dict[str, Any]:
        raise self._unsupported("distill")

    def bench(self, model_dir: str | Path | None = None, modes: tuple[str, ...] = (), batch: int = 500,
              rounds: int = 2, singles: int = 20, train: bool = False) -> dict:
        raise self._unsupported("bench")

    def encode_file(self, source: str, target: str, model_dir: str | Path | None = None) -> str:
        raise self._unsupported("encode")

    def decode_file(self, source: str, target: str, model_dir: str | Path | None = None) -> str:
        raise self._unsupported("decode")


def build_task(config: Experiment) -> Task:
    from .experiment import task_class

    task = task_class(config.task.name)(config)
    task.check()
    return task


class DiffusionTask(Task):
    """A masked-diffusion denoiser on a task's token streams; see the module docstring."""

    Experiment = DiffusionExperiment

    # ------------------------------------------------------------------ data hooks
    def train_dataset(self):
        """A map-style data set (a `datasets.Dataset` in torch format) with `ids` and optional
        `classes`, `cond_ids` (+ `cond_mask`), `padding` (see `ddm.objectives`)."""
        raise NotImplementedError(f"{type(self).__name__}.train_dataset")

    def eval_dataset(self):
        """Held-out examples in the training set's format (None: no held-out ELBO)."""
        return None

    def processors(self) -> list:
        """Logits processors (`ddm.sampling.constraints`) for training and sampling alike."""
        return []

    def sample_conditions(self, n: int):
        """The `Condition` for n samples (None: unconditional)."""
        return None

    def sample_fixed(self, n: int):
        """Tokens every sample keeps (a `Fixed`, e.g. the padding of a chosen length), or None."""
        return None

    def sample_metrics(self, ids: torch.Tensor, cond) -> dict[str, float]:
        """What the task can say about samples `ids` drawn under `cond`."""
        return {}

    def continuous_metrics(self, values: torch.Tensor, ids: torch.Tensor, cond) -> dict[str, float]:
        """What the task can say about the sampled vectors [B, N, C] of a model with a continuous head."""
        return {}

    def write_samples(self, ids: torch.Tensor, cond, out: Path | None, continuous: torch.Tensor | None = None) -> Path:
        """Save sampled ids (default: run_dir/samples/samples.safetensors, key `ids`; `continuous`: the vectors)."""
        folder = Path(out) if out else self.run_dir / "samples"
        tensors = {"ids": ids.contiguous()}
        if continuous is not None:
            tensors["continuous"] = continuous.float().contiguous()
        with atomic_directory(folder) as tmp:
            save_file(tensors, str(tmp / "samples.safetensors"))
        return folder / "samples.safetensors"

    def describe_samples(self, result, cond) -> dict[str, float]:
        """`sample_metrics`, and `continuous_metrics` where the samples carry vectors."""
        metrics = self.sample_metrics(result.ids, cond)
        if result.continuous is not None:
            metrics.update(self.continuous_metrics(result.continuous, result.ids, cond))
        return metrics

    def tokens_per_example(self) -> int:
        return self.config.model.seq_len

    def model_task_section(self) -> dict:
        """The task section recorded in the model folder (what `ddm sample --model` rebuilds)."""
        return to_dict(self.config.task)

    # ------------------------------------------------------------------ model
    def build_model(self) -> torch.nn.Module:
        from .model import build_denoiser

        cfg = self.config
        return build_denoiser(cfg.model, cfg.diffusion, cfg.sample, self.model_task_section())

    def process(self):
        from .process import MaskingProcess

        return MaskingProcess.from_config(self.config.diffusion, self.config.model.mask_id)

    def loss_fn(self):
        from .objectives import DiffusionObjective

        return DiffusionObjective(self.process(), self.config.diffusion, self.processors(),
                                  sparse_head=self.config.train.sparse_head)

    def model_dir(self, model_dir: str | Path | None = None) -> Path:
        return Path(model_dir) if model_dir else self.run_dir / MODEL_DIR

    def load_model(self, model_dir: str | Path | None = None, quantized: bool = True):
        """The trained denoiser; its folder must agree with this experiment's model and diffusion.
        With sample.quantize=int8 (and `quantized`), an int8 copy of it (`ddm.quantize`)."""
        from .hub import load_pretrained

        directory = self.model_dir(model_dir)
        if not directory.exists():
            raise FileNotFoundError(f"no trained model at {directory}; run `ddm train` with this config first "
                                    f"or pass --model DIR")
        model = load_pretrained(directory, expected_config=self.config.model)
        differ = [f"{k}: the config says {asked!r}, the model was trained with {saved!r}"
                  for k, asked, saved in changed_fields(self.config.diffusion, model.diffusion, "diffusion")]
        if differ:
            raise ConfigError(f"the config contradicts the model at {directory}: {'; '.join(differ)}. A model "
                              f"samples with the process it was trained with: drop the override, or sample "
                              f"from the folder alone (`ddm sample --model {directory}`)")
        mode = self.config.sample.quantize
        if quantized and mode != "none":
            if self.config.sample.learned:
                raise ConfigError(f"sample.quantize: {mode} with sample.learned=true: a learned sampler is checked "
                                  "against the float32 weights; sample it unquantized (sample.quantize=none)")
            from .quantize import quantize

            return quantize(model.eval(), mode)
        return model.eval()

    def train(self):
        """`ddm train`: train the denoiser (resuming from run_dir) and save run_dir/model."""
        from .training import Trainer

        self.begin_run()
        cfg = self.config
        torch.manual_seed(cfg.train.seed)  # the initial weights, like everything else, follow the seed
        model = self.build_model()
        print(f"task {cfg.task.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
              f"run dir {self.run_dir}")
        m = cfg.model
        if m.body == "ddm" and not (m.learned_positions or m.num_classes or m.cond_vocab_size or m.cond_embed_dim):
            print("note: an unconditional model with rotary positions only predicts the same at every position "
                  "while all tokens are masked (the first sampling step); model.learned_positions=true fixes that")
        trainer = Trainer(model, self.loss_fn(), self.train_dataset(), cfg.train, self.run_dir,
                          eval_fn=self.eval_during_training if cfg.train.eval_every else None,
                          tokens_per_example=self.tokens_per_example())
        result = trainer.train_to_end(save_to=self.run_dir / MODEL_DIR)
        loss = "nothing left to train" if result.loss is None else f"final loss {result.loss:.4f}"
        print(f"trained {result.step} steps, {loss}; model saved to {self.run_dir / MODEL_DIR}")
        return result

    def baseline_missing(self) -> str | None:
        """Why `ddm bench` has no trained autoregressive baseline to compare (None: it has one)."""
        if (self.run_dir / "baseline" / "model" / "config.json").is_file():
            return None
        return (f"no trained baseline in {self.run_dir / 'baseline'}; the task's `ddm eval` trains one where it "
                "has one")

    def baseline_model(self):
        """The autoregressive baseline: the same model config but causal, the same data and training;
        trained once into run_dir/baseline (an interrupted one resumes, and is never saved as finished)."""
        from .autoregressive import AutoregressiveObjective
        from .hub import load_pretrained
        from .model import build_denoiser
        from .training import Trainer

        directory = self.run_dir / "baseline" / "model"
        cfg = dataclasses.replace(self.config.model, causal=True)
        if (directory / "config.json").is_file():
            return load_pretrained(directory, expected_config=cfg).eval()
        torch.manual_seed(self.config.train.seed)
        model = build_denoiser(cfg, self.config.diffusion, self.config.sample)  # its cond_dropout: guidance
        print(f"training the autoregressive baseline ({model.num_parameters / 1e6:.2f}M parameters, "
              f"{self.config.train.steps} steps)")
        trainer = Trainer(model, AutoregressiveObjective(self.config.diffusion.cond_dropout), self.train_dataset(),
                          self.config.train, self.run_dir / "baseline", tokens_per_example=model.config.seq_len)
        trainer.train_to_end(save_to=directory)
        return model.eval()

    def baseline_sample(self, baseline, count: int, cond=None, prompt: torch.Tensor | None = None,
                        seed: int = 0, processors=(), batch_size: int | None = None) -> tuple[torch.Tensor, int]:
        """`count` samples of the autoregressive baseline under the config's sampler settings, in
        batches of `batch_size` (default sample.batch_size): (ids [count, N], NFE per sample). `cond`
        (a `Condition`) and `prompt` (given first tokens) hold one row per sample; `processors`
        constrain every step."""
        from .autoregressive import sample_autoregressive

        s = self.config.sample
        baseline.eval()
        generator = torch.Generator().manual_seed(seed)
        parts, nfe, size = [], 0, batch_size or s.batch_size
        for start in range(0, count, size):
            rows = torch.arange(start, min(start + size, count))
            result = sample_autoregressive(baseline, len(rows), cond=None if cond is None else cond.select(rows),
                                           temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                           guidance_scale=s.guidance_scale, generator=generator,
                                           prompt=None if prompt is None else prompt[rows], processors=processors)
            parts.append(result.ids)
            nfe = result.nfe
        return torch.cat(parts), nfe

    # ------------------------------------------------------------------ sampling
    def sample_config(self, **overrides: Any) -> SampleConfig:
        base = self.config.sample
        return from_dict(SampleConfig, {**to_dict(base), **overrides}, "sample") if overrides else base

    def generate(self, model, **sampler_overrides: Any):
        """Draw `sample.num_samples` samples with the configured sampler (the model's own schedule).

        Returns (SampleResult, condition, seconds)."""
        from .sampling import Sampler, sample_many

        cfg = self.sample_config(**sampler_overrides)
        sampler = Sampler.for_model(model, cfg)
        cond, fixed = self.sample_conditions(cfg.num_samples), self.sample_fixed(cfg.num_samples)
        model.eval()
        start = time.perf_counter()
        result = sample_many(model, cfg.num_samples, cfg.batch_size, sampler=sampler, cond=cond, fixed=fixed,
                             generator=torch.Generator().manual_seed(cfg.seed), processors=self.processors())
        return result, cond, time.perf_counter() - start

    def sample(self, model_dir: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
        """`ddm sample`: generate, write the ids, describe them."""
        self.prepare()
        model = self.load_model(model_dir)
        result, cond, seconds = self.generate(model)
        path = self.write_samples(result.ids, cond, Path(out) if out else None, result.continuous)
        n = result.ids.shape[0]
        return {"samples": n, "nfe": result.nfe, "ms_per_sample": 1000 * seconds / n,
                **self.describe_samples(result, cond), "written": str(path)}

    def bench(self, model_dir: str | Path | None = None, modes: tuple[str, ...] = ("plain", "cached", "approximate"),
              batch: int = 500, rounds: int = 2, singles: int = 20, train: bool = False) -> dict[str, dict[str, float]]:
        """`ddm bench`: the model's decoding modes side by side, quality beside cost (`ddm.bench`); with
        `train`, then the training tokens/s and MFU of its size against a BERT body (`ddm.throughput`)."""
        from .bench import bench

        self.prepare()
        model = self.load_model(model_dir, quantized=False)
        figures = bench(self, model, list(modes), batch, rounds, singles) if modes else {}
        if train:
            from .throughput import compare, model_pair

            print(f"training throughput at this model's size, batch {self.config.train.batch_size}:")
            compare(model_pair(model.config), ["ddm", "ddm:sparse+fused", "hf"], self.config.train.batch_size,
                    steps=10)
        return figures

    def distill(self, steps: int, plus: bool = False, teacher_steps: int = 128, model_dir: str | Path | None = None,
                **options: Any) -> dict[str, Any]:
        """`ddm distill`: learn a `steps`-step sampler for the trained model (`ddm.distill`) and save it
        in the model folder, where `sample.learned=true` finds it."""
        from .distill import DistillConfig, distill_to_folder

        options = DistillConfig(steps=steps, plus=plus, teacher_steps=teacher_steps, **options)
        options.check()  # before any loading
        self.prepare()
        model = self.load_model(model_dir, quantized=False)  # distilled for (and fingerprinted by) its float32 weights
        return distill_to_folder(model, self.model_dir(model_dir), self.config.sample, options,
                                 self.sample_conditions, self.sample_fixed, self.processors())

    # ------------------------------------------------------------------ evaluation
    def heldout_elbo(self, model, repeats: int = 1, seed: int = 0, batch_size: int = 500, data=None) -> float | None:
        """Negative ELBO in bits per token on `data` or `eval_dataset()` (None where the task has none)."""
        from .objectives import elbo_bits_per_token

        data = self.eval_dataset() if data is None else data
        if data is None:
            return None
        device = next(model.parameters()).device
        batches = [{k: v.to(device) for k, v in data[i:i + batch_size].items()}
                   for i in range(0, len(data), batch_size)]
        return elbo_bits_per_token(model, batches, self.process(), torch.Generator().manual_seed(seed), repeats)

    def eval_during_training(self, model) -> dict[str, float]:
        elbo = self.heldout_elbo(model)
        return {} if elbo is None else {"heldout_elbo_bits_per_token": elbo}

    def evaluate(self, model_dir: str | Path | None = None) -> dict[str, float]:
        """`ddm eval`: the task's figures of the trained model, printed and saved to run_dir/metrics.json."""
        self.prepare()
        metrics = self.evaluate_model(self.load_model(model_dir))
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        return metrics

    def evaluate_model(self, model) -> dict[str, float]:
        """Held-out ELBO and a description of samples; tasks with better measures override this."""
        metrics: dict[str, float] = {}
        elbo = self.heldout_elbo(model)
        if elbo is not None:
            metrics["heldout_elbo_bits_per_token"] = elbo
        result, cond, seconds = self.generate(model)
        n = result.ids.shape[0]
        metrics.update(samples=n, nfe=float(result.nfe), ms_per_sample=1000 * seconds / n,
                       **self.describe_samples(result, cond))
        s = self.config.sample
        print(f"task {self.config.task.name}: {n} samples, {s.order} order, {s.steps} steps")
        for key, value in metrics.items():
            print(f"  {key:<34} {value:.4f}" if isinstance(value, float) and math.isfinite(value) else
                  f"  {key:<34} {value}")
        return metrics
