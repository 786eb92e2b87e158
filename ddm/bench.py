"""`ddm bench`: one model's ways of decoding side by side in one run, quality beside cost.

    ddm bench --config C [--model DIR] [--batch 500] [--rounds 2] [--singles 20] [--modes ...] [overrides]

Modes, each the config's sampler unless it says otherwise:
  plain           no reuse: every call runs every row and token, and the condition prefix again
  cached          exact reuse: the condition prefix once per sample; rows whose tokens did not
                  change leave the call (the default sampler)
  approximate     `sample.cache_targets`: only masked and changed tokens run (`ddm.sampling.denoise`)
  skip            `sample.skip_blocks`: between refreshes (`sample.skip_refresh`) the listed blocks
                  reuse their last change (`ddm.sampling.denoise`); the config's blocks, or the
                  middle half of the blocks (no other mode skips any)
  int8            the cached sampler on an int8 copy of the model (`ddm.quantize`)
  learned         the sampler `ddm distill` learned for these steps, if the model folder has one
  autoregressive  the task's causal baseline with its key/value cache, if run_dir/baseline has one

Per mode: the task's own metrics (`sample_metrics`) over rounds x batch samples, drawn on the
same seeds and conditions by every mode; ms per sample at batch N and at batch 1; model calls
per batch (NFE, a guided call counts 2) and per sample; generated tokens per call (tokens given
as fixed are not generated); the share of target positions the calls ran; generated tokens per
second at batch N; and the peak resident memory a batch-N draw adds (Linux VmHWM, reset before
the draw). The modes take turns within every round, so a slow phase of a shared machine hits
them alike; each cost is the median over the rounds.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

MODES = ("plain", "cached", "approximate", "skip", "int8", "learned", "autoregressive")


@dataclass
class Mode:
    name: str
    draw: Callable[..., Any]  # (count, batch_size, cond, fixed, seed) -> (ids [count, N], SampleResult or None)
    ms_batch: list[float] = field(default_factory=list)
    ms_single: list[float] = field(default_factory=list)
    ids: list[torch.Tensor] = field(default_factory=list)
    vectors: list[torch.Tensor] = field(default_factory=list)  # a joint model's sampled vectors
    nfe: float = 0.0
    calls_per_sample: list[float] = field(default_factory=list)
    positions_run: list[float] = field(default_factory=list)
    peak_mb: float | None = None


def build_modes(task, model, names: list[str]) -> tuple[list[Mode], list[str]]:
    """The modes asked for that this model has; and a note for each one it has not."""
    from .sampling import Sampler, sample_many

    cfg, processors, notes = task.config.sample, task.processors(), []

    def diffusion(name: str, denoiser, **overrides) -> Mode:
        # only the skip mode skips blocks, so `sample.skip_blocks=[...]` on the command line sets its blocks
        sampler = Sampler.for_model(denoiser, task.sample_config(**{"skip_blocks": [], **overrides}))

        def draw(count, batch_size, cond, fixed, seed):
            result = sample_many(denoiser, count, batch_size, sampler=sampler, cond=cond, fixed=fixed,
                                 generator=torch.Generator().manual_seed(seed), processors=processors)
            return result.ids, result
        return Mode(name, draw)

    modes = []
    for name in names:
        if name in ("plain", "cached", "approximate"):
            modes.append(diffusion(name, model, **mode_sampler(name, cfg, model)))
        elif name == "skip":
            if not getattr(model, "supports_block_reuse", False):
                notes.append(f"skip: skipped (the model, {type(model).__name__}, cannot skip its blocks)")
                continue
            modes.append(diffusion(name, model, **mode_sampler(name, cfg, model)))
        elif name == "int8":
            from .quantize import quantize

            modes.append(diffusion(name, quantize(model, "int8"), **mode_sampler(name, cfg, model)))
        elif name == "learned":
            try:
                modes.append(diffusion(name, model, **mode_sampler(name, cfg, model)))
            except (FileNotFoundError, ValueError) as e:
                notes.append(f"learned: skipped ({e})")
        elif name == "autoregressive":
            missing = task.baseline_missing()
            if missing:
                notes.append(f"autoregressive: skipped ({missing})")
                continue
            if task.sample_fixed(1) is not None:
                notes.append("autoregressive: skipped (the task fixes tokens the raster order cannot take as given)")
                continue
            baseline = task.baseline_model()

            def draw(count, batch_size, cond, fixed, seed, baseline=baseline):
                ids, nfe = task.baseline_sample(baseline, count, cond=cond, seed=seed, processors=processors,
                                                batch_size=batch_size)
                return ids, nfe
            modes.append(Mode(name, draw))
        else:
            hint = " (a config override: put it before --modes, which takes every word after it)" if "=" in name else ""
            raise ValueError(f"bench --modes: unknown mode {name!r}{hint}; expected some of {', '.join(MODES)}")
    return modes, notes


def mode_sampler(name: str, cfg, model) -> dict | None:
    """The sampler fields a mode changes in the config's sampler `cfg` (int8 changes the model instead);
    None for the autoregressive mode, which has another model and no such sampler."""
    if name == "skip":
        return {"skip_blocks": list(cfg.skip_blocks) or middle_blocks(len(model.blocks))}
    return {"plain": {"cache_prefix": False, "reuse_predictions": False}, "cached": {}, "int8": {},
            "approximate": {"cache_targets": True}, "learned": {"learned": True}}.get(name)


def middle_blocks(depth: int) -> list[int]:
    """The skip mode's default blocks: the middle half (1 and 2 of 4; every block of a model with
    fewer than 4). The first block reads the tokens that changed, the last feeds the heads."""
    return list(range(depth // 4, depth - depth // 4))


def bench(task, model, names: list[str], batch: int, rounds: int, singles: int) -> dict[str, dict[str, float]]:
    """Run the modes (see the module docstring) and return {mode: {figure: value}}; prints both tables."""
    if batch < 1 or rounds < 1 or singles < 0:
        raise ValueError(f"bench: --batch and --rounds must be >= 1 and --singles >= 0, got {batch}, {rounds}, {singles}")
    modes, notes = build_modes(task, model, names)
    seed = task.config.sample.seed
    total = rounds * batch
    cond, fixed = task.sample_conditions(total), task.sample_fixed(total)
    # generated tokens per sample: fixed ones are given, not generated
    generated = model.config.seq_len if fixed is None else float((~fixed.mask).sum(1).float().mean())
    for r in range(rounds):
        rows = torch.arange(r * batch, (r + 1) * batch)
        c, f = _take(cond, rows), _take(fixed, rows)
        for mode in modes:
            print(f"bench round {r + 1}/{rounds}: {mode.name}, {batch} samples at batch {batch}"
                  f"{f' and {singles} at batch 1' if singles else ''}", flush=True)
            with _peak_memory() as peak:
                start = time.perf_counter()
                ids, result = mode.draw(batch, batch, c, f, seed + r)
                mode.ms_batch.append(1000 * (time.perf_counter() - start) / batch)
            if mode.peak_mb is None:
                mode.peak_mb = peak.mb
            mode.ids.append(ids)
            if getattr(result, "continuous", None) is not None:
                mode.vectors.append(result.continuous)
            _count_calls(mode, result)
            if singles:
                one = torch.arange(r * batch, r * batch + min(singles, batch))
                start = time.perf_counter()
                mode.draw(len(one), 1, _take(cond, one), _take(fixed, one), seed + r)
                mode.ms_single.append(1000 * (time.perf_counter() - start) / len(one))
    figures = {}
    print("quality (the task's own metrics, the same seeds and conditions for every mode):")
    for mode in modes:
        ids = torch.cat(mode.ids)
        quality = task.sample_metrics(ids, cond)
        if mode.vectors:  # a joint model's samples are its vectors too (e.g. images decoded from them)
            quality.update(task.continuous_metrics(torch.cat(mode.vectors), ids, cond))
        figures[mode.name] = {**quality, **_costs(mode, generated)}
    _print(figures, modes, batch)
    for note in notes:
        print(note)
    return figures


# --------------------------------------------------------------------------- helpers


def _take(x, rows):
    """Rows of a Condition or a Fixed (None stays None)."""
    if x is None:
        return None
    if hasattr(x, "select"):
        return x.select(rows)
    return type(x)(x.ids[rows], x.mask[rows])


def _count_calls(mode: Mode, result) -> None:
    if isinstance(result, int):  # the autoregressive baseline: one cached call per token (x2 guided)
        mode.nfe = result
        mode.calls_per_sample.append(float(result))
        return
    mode.nfe = max(mode.nfe, result.nfe)
    mode.calls_per_sample.append(result.calls_per_sample)
    mode.positions_run.append(result.positions_run)


def _costs(mode: Mode, generated: float) -> dict[str, float]:
    ms = statistics.median(mode.ms_batch)
    calls = statistics.mean(mode.calls_per_sample)
    costs = {"nfe_per_batch": float(mode.nfe), "calls_per_sample": calls, "tokens_per_call": generated / calls,
             "ms_per_sample_batch": ms, "generated_tokens_per_s": 1000 * generated / ms}
    if mode.positions_run:
        costs["positions_run"] = statistics.mean(mode.positions_run)
    if mode.ms_single:
        costs["ms_per_sample_single"] = statistics.median(mode.ms_single)
    if mode.peak_mb is not None:
        costs["peak_mb"] = mode.peak_mb
    return costs


def _print(figures: dict, modes: list[Mode], batch: int) -> None:
    quality = [k for k in figures[modes[0].name] if not k.startswith(_COST_KEYS)]
    print(f"  {'mode':<15}" + "".join(f"{k[:16]:>17}" for k in quality))
    for m in modes:
        print(f"  {m.name:<15}" + "".join(f"{figures[m.name].get(k, float('nan')):>17.4f}" for k in quality))
    base = figures.get("plain") or figures[modes[0].name]
    print(f"cost (medians over the rounds; speed-ups against {'plain' if 'plain' in figures else modes[0].name}):")
    head = ["NFE/batch", "calls/sample", "tokens/call", "positions run", f"ms b={batch}", "x",
            "ms b=1", "x", "gen tok/s", "peak MB"]
    print(f"  {'mode':<15}" + "".join(f"{h:>14}" for h in head))
    for m in modes:
        f = figures[m.name]
        single = f.get("ms_per_sample_single")
        cells = [f"{f['nfe_per_batch']:.0f}", f"{f['calls_per_sample']:.2f}", f"{f['tokens_per_call']:.2f}",
                 f"{f['positions_run']:.3f}" if "positions_run" in f else "-",
                 f"{f['ms_per_sample_batch']:.3f}", f"{base['ms_per_sample_batch'] / f['ms_per_sample_batch']:.2f}",
                 "-" if single is None else f"{single:.2f}",
                 "-" if single is None else f"{base['ms_per_sample_single'] / single:.2f}",
                 f"{f['generated_tokens_per_s']:.0f}", "-" if f.get("peak_mb") is None else f"{f['peak_mb']:.0f}"]
        print(f"  {m.name:<15}" + "".join(f"{c:>14}" for c in cells))


_COST_KEYS = ("nfe_per_batch", "calls_per_sample", "tokens_per_call", "ms_per_sample", "generated_tokens_per_s",
              "positions_run", "peak_mb")


class _peak_memory:
    """Peak resident memory a block adds, from Linux's VmHWM (reset by /proc/self/clear_refs)."""

    def __enter__(self):
        self.mb = None
        _release_free_memory()  # memory freed by an earlier mode would otherwise hide this one's growth
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start = _status_kb("VmRSS")
        except OSError:
            self.start = None
        return self

    def __exit__(self, *exc):
        if self.start is not None and not exc[0]:
            self.mb = (_status_kb("VmHWM") - self.start) / 1024
        return False


def _release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc's malloc_trim), where there is glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field_name}")
