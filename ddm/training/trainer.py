"""The project's one training loop, for every model (denoisers, tokenizers, ...).

It knows nothing about the model: `loss_fn(model, batch, generator)` returns the
scalar loss and extra metrics and draws all its noise from `generator` (a CPU
generator, whatever the model's device: draw there, then move the draws). Data
order and noise are functions of (seed, step, micro-batch, process), so a run
resumed from a checkpoint ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, send_to_device
from torch import nn
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from ddm.config import TrainConfig, check_ranges, to_dict
from ddm.io import atomic_write_text
from ddm.training import checkpoint as ckpt
from ddm.training.data import StepSampler, derive_seed, fetch
from ddm.training.ema import EMA
from ddm.training.interrupt import StopRequest

LossFn = Callable[[nn.Module, Any, torch.Generator], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], dict[str, float]]


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; nothing was saved for that step."""


@dataclass
class TrainResult:
    step: int  # optimizer steps completed
    loss: float | None  # loss of the last step run (None if none ran)
    interrupted: bool  # stopped by Ctrl-C / SIGTERM (a checkpoint was saved)
    metrics: dict[str, float] = field(default_factory=dict)  # last logged metrics and eval results


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: not biases, norm gains (1-D) or embedding tables."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def conv_memory_format(model: nn.Module, channels_last: bool) -> None:
    """Convolution weights (4-D, 5-D) in channels-last order (oneDNN's faster CPU kernels; the
    activations follow them), or back to the default order (safetensors saves only that)."""
    for p in model.parameters():
        if p.dim() in (4, 5):
            fmt = torch.contiguous_format
            if channels_last:
                fmt = torch.channels_last if p.dim() == 4 else torch.channels_last_3d
            p.data = p.data.contiguous(memory_format=fmt)  # the same Parameter: optimizer references hold


def end_processes(wait: bool = True) -> None:
    """Leave the process group (under `accelerate launch`) before the interpreter exits: gloo's
    threads still running at exit abort the process ("terminate called without an active
    exception"), failing a run that finished. `wait`: first wait for every process (not after
    an error, when the others may never arrive). Call it once the trainer is dropped: a DDP
    wrapper still alive keeps the group (and its threads) alive until the interpreter is torn
    down, which aborts all the same."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if wait:
            torch.distributed.barrier()
        gc.collect()  # a dropped trainer in a reference cycle would still hold the group
        torch.distributed.destroy_process_group()


class Trainer:
    """Train `model` on `train_data` by minimising `loss_fn`; see the module docstring.

    loss_fn(model, batch, generator) -> (scalar loss, {name: float}) gets the prepared
    (possibly DDP-wrapped) model. eval_fn(model) -> {name: float} gets the plain model,
    with the EMA weights swapped in when EMA is on, every `eval_every` steps and at the end.
    `tokens_per_example` turns the throughput figure into tokens/s.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, train_data: Any, config: TrainConfig,
                 out_dir: str | Path, collate_fn: Callable[[list], Any] | None = None,
                 eval_fn: EvalFn | None = None, tokens_per_example: int | None = None) -> None:
        if len(train_data) == 0:
            raise ValueError("Trainer: the training data is empty (0 examples)")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"Trainer: the model ({type(model).__name__}) has no trainable parameters")
        check_ranges(config, "train")
        self.config = config
        self.loss_fn = loss_fn
        self.eval_fn = eval_fn
        self.train_data = train_data
        self.collate_fn = collate_fn or default_collate
        self.tokens_per_example = tokens_per_example
        self.out_dir = Path(out_dir)
        self.checkpoint_root = self.out_dir / "checkpoints"
        self.metrics_path = self.out_dir / "metrics.jsonl"

        # Conditional models hold parameters a batch may not use (e.g. the null condition
        # without condition dropout): DDP must not wait for their gradients.
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision,
                                       gradient_accumulation_steps=config.grad_accum,
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        if config.channels_last:
            conv_memory_format(model, True)
        optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr,
                                      betas=(config.betas[0], config.betas[1]), fused=config.fused_optimizer or None)
        self.model = model  # the plain module; DDP (when launched) wraps it in `self._wrapped`
        self._wrapped, self.optimizer = self.accelerator.prepare(model, optimizer)
        if config.compile:  # what loss_fn runs; the plain module (same parameters) is saved and evaluated
            self._wrapped = torch.compile(self._wrapped)
        # Not prepared: accelerate would step it once per process; ours steps once per optimizer step.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer.optimizer, self._lr_lambda)
        self.ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        self.sampler = StepSampler(len(train_data), config.seed, config.batch_size, config.grad_accum,
                                   self.accelerator.num_processes)

    def _lr_lambda(self, step: int) -> float:
        c = self.config
        return lr_factor(step, c.warmup_steps, c.steps, c.min_lr_ratio)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def train_to_end(self, save_to: str | Path | None = None) -> TrainResult:
        """The one "train, then save" path: train (resuming), leave the weights to use in the
        model (the EMA weights when EMA is on) and, with `save_to`, write its pretrained folder
        from the main process only. An interruption raises KeyboardInterrupt after its
        checkpoint is saved, so a half-trained model is never saved as if it were finished."""
        result = self.train()
        if result.interrupted:
            raise KeyboardInterrupt(f"interrupted at step {result.step}; checkpoint saved, run again to resume")
        if self.ema is not None:
            self.ema.copy_to(self.model)
        if self.config.channels_last:
            conv_memory_format(self.model, False)
        self.model.eval()
        if save_to is not None:
            if self.is_main:
                self.model.save_pretrained(save_to)
            self.accelerator.wait_for_everyone()
        return result

    def copy_ema_to(self, model: nn.Module) -> None:
        """Load the EMA weights into `model` (e.g. a fresh copy for sampling)."""
        if self.ema is None:
            raise ValueError("Trainer: EMA is off (train.ema_decay = 0)")
        self.ema.copy_to(model)

    # ------------------------------------------------------------------ checkpoints

    def _save(self, step: int, elapsed: float) -> None:
        # Skipped when this state is on disk already (e.g. Ctrl-C right after a periodic save).
        saved = ckpt.checkpoint_dir(self.checkpoint_root, step) in ckpt.list_checkpoints(self.checkpoint_root)
        if self.is_main and not saved:
            weights = {"model": self.model.state_dict()}
            if self.ema is not None:
                weights["ema"] = self.ema.state_dict()
            states = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            info = {"config": to_dict(self.config), "elapsed": elapsed}
            ckpt.save_checkpoint(self.checkpoint_root, step, weights, states, info)
            ckpt.prune_checkpoints(self.checkpoint_root, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> tuple[int, float]:
        """Load the newest complete checkpoint; returns (step, elapsed seconds)."""
        if self.is_main:
            ckpt.remove_leftovers(self.checkpoint_root)
        folder = ckpt.latest_checkpoint(self.checkpoint_root)
        step, elapsed = 0, 0.0
        if folder is not None:
            info = ckpt.load_info(folder)
            step, elapsed = info["step"], info.get("elapsed", 0.0)
            try:
                self.model.load_state_dict(ckpt.load_weights(folder, "model"))
            except RuntimeError as e:
                first = str(e).splitlines()[0]
                raise ValueError(f"{folder}: the checkpoint holds another model than this one ({first} ...); "
                                 "train in a new run_dir, or delete the old checkpoints") from None
            if self.ema is not None:
                ema = ckpt.load_weights(folder, "ema")
                if ema is None:
                    raise ValueError(f"{folder}: no EMA weights, but train.ema_decay > 0")
                self.ema.load_state_dict(ema)
            self.optimizer.load_state_dict(ckpt.load_state(folder, "optimizer"))
            self.scheduler.load_state_dict(ckpt.load_state(folder, "scheduler"))
            # The next lr follows this run's schedule (which may be longer than the saved run's).
            for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                group["lr"] = base_lr * self._lr_lambda(step)
                group["fused"] = self.config.fused_optimizer or None  # this run's switch, not the saved one
        if self.is_main:
            self._truncate_metrics(step)
        self.accelerator.wait_for_everyone()
        return step, elapsed

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines past the resumed step (about to be redone) and any line torn by a kill."""
        if not self.metrics_path.is_file():
            return
        lines = self.metrics_path.read_text().splitlines()
        kept = [line for line in lines if _logged_step(line) is not None and _logged_step(line) <= step]
        if len(kept) != len(lines):
            atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))

    def _log(self, entry: dict[str, Any]) -> None:
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    # ------------------------------------------------------------------ one optimizer step

    def _train_step(self, step: int) -> tuple[float, float, dict[str, float]]:
        """Run grad_accum micro-batches and one optimizer update; returns (loss, grad_norm, extras)."""
        acc, c = self.accelerator, self.config
        process = acc.process_index
        total_loss = torch.zeros((), device=acc.device)
        extras: dict[str, float] = {}
        for micro in range(c.grad_accum):
            seed = derive_seed(c.seed, "noise", step, micro, process)
            _seed_global_rng(seed, acc.device)  # dropout and anything else drawing from it
            # noise is drawn on the CPU and moved (as every objective expects): a GPU run masks
            # exactly the tokens a CPU run masks
            generator = torch.Generator().manual_seed(seed)
            batch = send_to_device(fetch(self.train_data, self.sampler.indices(step, micro, process),
                                         self.collate_fn), acc.device)
            with acc.accumulate(self._wrapped):
                with acc.autocast():
                    loss, metrics = self.loss_fn(self._wrapped, batch, generator)
                acc.backward(loss)
            total_loss += loss.detach().float()
            for k, v in metrics.items():
                extras[k] = extras.get(k, 0.0) + float(v) / c.grad_accum
        # After the last micro-batch the gradients are all-reduced across processes.
        grad_norm = acc.clip_grad_norm_(self._wrapped.parameters(), c.grad_clip or math.inf)
        stats = acc.reduce(torch.stack([total_loss / c.grad_accum, grad_norm.float()]), "mean")
        loss_value, norm_value = stats.tolist()
        for name, value in (("loss", loss_value), ("gradient norm", norm_value)):
            if not math.isfinite(value):
                # Steps count from 1, as in metrics.jsonl and the progress bar.
                raise TrainingDiverged(f"{name} is {value} at step {step + 1}; stopped without "
                                       "saving, so the last checkpoint is the last good state")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, step)
        return loss_value, norm_value, extras

    def _agreed(self, flag: bool) -> bool:
        """True on every process when any of them has it true (one tiny all-reduce)."""
        votes = torch.tensor([float(flag)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(votes, "sum").item() > 0)

    def _evaluate(self, step: int) -> dict[str, float]:
        """eval_fn on every process (it may shard work), EMA weights swapped in; main logs."""
        self.model.eval()
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            if self.ema is not None:
                stack.enter_context(self.ema.swapped_in(self.model))
            results = {f"eval/{k}": float(v) for k, v in self.eval_fn(self.model).items()}
        self.model.train()
        self._log({"step": step, **results})
        return results

    # ------------------------------------------------------------------ the loop

    def _summary(self, step: int, lr: float, window: list[tuple[float, float, dict[str, float]]],
                 seconds: float, elapsed: float) -> dict[str, Any]:
        """The metrics.jsonl entry for the steps in `window` (means over the window)."""
        c = self.config
        examples = c.batch_size * c.grad_accum * self.accelerator.num_processes * len(window)
        rate_name = "tokens_per_s" if self.tokens_per_example else "examples_per_s"
        entry = {"step": step, "loss": _mean([w[0] for w in window]), "lr": lr,
                 "grad_norm": _mean([w[1] for w in window]),
                 rate_name: examples * (self.tokens_per_example or 1) / max(seconds, 1e-9),
                 "elapsed": elapsed}
        for k in window[-1][2]:
            entry[k] = _mean([w[2][k] for w in window if k in w[2]])
        return entry

    def train(self) -> TrainResult:
        """Train to config.steps, resuming from the newest complete checkpoint in out_dir."""
        c = self.config
        step, elapsed_before = self._resume()
        if step >= c.steps:
            return TrainResult(step=step, loss=None, interrupted=False)
        self.accelerator.step = 0  # accelerate's micro-batch counter: each optimizer step starts afresh
        self.model.train()
        bar = tqdm(total=c.steps, initial=step, desc="train", dynamic_ncols=True,
                   disable=not (c.progress and self.is_main))
        postfix: dict[str, str] = {}
        start = window_start = time.perf_counter()
        window: list[tuple[float, float, dict[str, float]]] = []
        result = TrainResult(step=step, loss=None, interrupted=False)
        stop = StopRequest(self.accelerator.num_processes)
        try:
            with stop.handlers():
                while step < c.steps:
                    lr = self.optimizer.param_groups[0]["lr"]
                    loss, grad_norm, extras = self._train_step(step)
                    step += 1
                    result.step, result.loss = step, loss
                    window.append((loss, grad_norm, extras))
                    postfix.update(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                    if step % c.log_every == 0 or step == c.steps:
                        now = time.perf_counter()
                        entry = self._summary(step, lr, window, now - window_start,
                                              elapsed_before + now - start)
                        self._log(entry)
                        result.metrics.update(entry)
                        rate = entry.get("tokens_per_s", entry.get("examples_per_s"))
                        postfix["tok/s" if self.tokens_per_example else "ex/s"] = f"{rate:.0f}"
                        window, window_start = [], now
                    bar.set_postfix(postfix, refresh=False)
                    bar.update(1)
                    if self.eval_fn is not None and (
                            (c.eval_every and step % c.eval_every == 0) or step == c.steps):
                        result.metrics.update(self._evaluate(step))
                    if (c.checkpoint_every and step % c.checkpoint_every == 0) or step == c.steps:
                        self._save(step, elapsed_before + time.perf_counter() - start)
                    if stop.deferred and self._agreed(stop.requested):
                        self._save(step, elapsed_before + time.perf_counter() - start)
                        result.interrupted = True
                        break
        except KeyboardInterrupt:
            # The half-accumulated step is dropped; the weights are those after `step` steps.
            self.model.zero_grad(set_to_none=True)
            self._save(step, elapsed_before + time.perf_counter() - start)
            result.interrupted = True
        finally:
            bar.close()
        return result


def _seed_global_rng(seed: int, device: torch.device) -> None:
    # Not torch.manual_seed: on a CPU-only run its lazy CUDA seeding costs milliseconds per call.
    torch.default_generator.manual_seed(seed)
    if device.type != "cpu":
        torch.get_device_module(device).manual_seed(seed)


def _logged_step(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
