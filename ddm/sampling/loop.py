"""The one decoding loop. Every sampler in ddm is this loop with different parts.

Each step, for the positions of the current block:
  1. predict: one model call on the current tokens (or its reused output), with guidance;
  2. posterior: optional measurement tilt of the logits, and anchoring of committed tokens;
  3. filter: temperature / top-k / top-p, then draw a token (float64) for each masked position;
  4. remask: committed tokens picked by the remasking rule become masked again;
  5. reveal: the count rule says how many masked tokens to commit, the order says which;
  6. a joint model's vectors (`ddm.continuous`) move to the time of the new token state.
The model sees time t = schedule.inverse(revealed fraction of the tokens to generate), so a
time-conditioned model gets the time at which its input is most typical (a joint model on the
independent clock sees its vectors' time instead, `ddm.continuous`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..config import DiffusionConfig, SampleConfig, from_dict, to_dict
from ..continuous import ContinuousSampler
from ..model import Condition, Denoiser
from ..schedules import LogLinearSchedule, Schedule, get_schedule
from .constraints import LogitsProcessor, apply_processors
from .denoise import Denoise
from .filters import draw_tokens, filter_logits, mix_previous
from .guidance import GUIDANCE_SCHEDULES, ClassifierFreeGuidance, guidance_at
from .orders import Order, top_k_positions
from .posterior import Fixed, MeasurementGuidance, check_fixed
from .remasking import Remasking, build_remasking
from .schedules import CountRule, LinearSteps, ScheduleCount, StepSchedule, build_count, build_step_schedule
from .state import SampleResult, SamplingState, StepInfo, Trace


@dataclass
class Sampler:
    """The parts of a sampler; `Sampler.from_config(SampleConfig)` makes one from names."""

    steps: int = 64  # step budget per sample, split evenly over the blocks
    order: Order = field(default_factory=Order)
    count: CountRule = field(default_factory=ScheduleCount)
    step_schedule: StepSchedule = field(default_factory=LinearSteps)
    remasking: Remasking = field(default_factory=Remasking)
    temperature: float = 1.0
    mixing: float = 0.0  # each step's prediction moved along its change since the step before (filters.mix_previous)
    top_k: int = 0
    top_p: float = 1.0
    guidance_scale: float = 0.0
    guidance_schedule: str = "constant"  # the scale over a block's steps (ddm.sampling.guidance)
    block_size: int = 0  # 0: the whole target is one block
    cache_prefix: bool = True
    reuse_predictions: bool = True
    cache_targets: bool = False  # approximate: run only masked and changed tokens (ddm.sampling.denoise)
    cache_refresh: int = 0  # with cache_targets: run every token every this many calls (0: only the first)
    skip_blocks: tuple[int, ...] = ()  # approximate: blocks that reuse their last change between refreshes
    skip_refresh: int = 2  # with skip_blocks: every block runs every this many calls (1: every call, exact)
    process: Schedule = field(default_factory=LogLinearSchedule)  # the training masking schedule
    step_temperatures: tuple[float, ...] = ()  # learned (ddm.distill): one temperature per step of a block
    step_guidance: tuple[float, ...] = ()  # learned: one guidance scale per step of a block (replaces the schedule)
    step_mixing: tuple[float, ...] = ()  # learned: one mixing weight per step of a block
    continuous_noise: float = 0.0  # joint models: share of the vectors' noise redrawn per step (0: the ODE)

    def __post_init__(self) -> None:
        checks = [("steps", self.steps >= 1, ">= 1"), ("temperature", self.temperature >= 0, ">= 0"),
                  ("mixing", self.mixing >= -1 and all(w >= -1 for w in self.step_mixing), ">= -1"),
                  ("top_k", self.top_k >= 0, ">= 0 (0: off)"), ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
                  ("guidance_scale", self.guidance_scale >= 0, ">= 0"),
                  ("guidance_schedule", self.guidance_schedule in GUIDANCE_SCHEDULES,
                   f"one of {', '.join(GUIDANCE_SCHEDULES)}"),
                  ("continuous_noise", 0 <= self.continuous_noise <= 1, "in [0, 1]"),
                  ("block_size", self.block_size >= 0, ">= 0 (0: one block)"),
                  ("cache_refresh", self.cache_refresh >= 0, ">= 0 (0: only the first call)"),
                  ("skip_refresh", self.skip_refresh >= 1, ">= 1 (1: every call runs every block)")]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"sampler.{name}: {getattr(self, name)!r} is out of range; expected {allowed}")

    def __call__(self, model, num_samples: int | None = None, **kwargs) -> SampleResult:
        return sample(model, num_samples, sampler=self, **kwargs)

    @classmethod
    def from_config(cls, cfg: SampleConfig, diffusion: DiffusionConfig | None = None) -> "Sampler":
        """The sampler a `SampleConfig` names, for a model trained with the `DiffusionConfig`
        `diffusion` (its schedule maps the revealed fraction to the model's time)."""
        process = get_schedule(diffusion.schedule, diffusion.power) if diffusion is not None else None
        return cls(steps=cfg.steps, order=Order(cfg.order, cfg.gumbel_temperature),
                   count=build_count(cfg.count, cfg.threshold),
                   step_schedule=build_step_schedule(cfg.count_schedule, cfg.times, process),
                   remasking=build_remasking(cfg.remasking, cfg.remask_threshold, cfg.remask_drop,
                                             cfg.remask_eta, tuple(cfg.remask_window)),
                   temperature=cfg.temperature, mixing=cfg.mixing, top_k=cfg.top_k, top_p=cfg.top_p,
                   guidance_scale=cfg.guidance_scale, guidance_schedule=cfg.guidance_schedule,
                   block_size=cfg.block_size, cache_prefix=cfg.cache_prefix,
                   reuse_predictions=cfg.reuse_predictions, continuous_noise=cfg.continuous_noise,
                   cache_targets=cfg.cache_targets, cache_refresh=cfg.cache_refresh,
                   skip_blocks=tuple(cfg.skip_blocks), skip_refresh=cfg.skip_refresh,
                   **({} if process is None else {"process": process}))

    @classmethod
    def from_pretrained(cls, model: Any, sample: SampleConfig | None = None, **overrides: Any) -> "Sampler":
        """The sampler a trained denoiser was saved with: its own diffusion schedule and its default
        `sample` section (or the `sample` given), with `overrides` of SampleConfig fields (e.g.
        steps=8). `model` is a loaded denoiser or its folder (read without loading the weights)."""
        from ..hub import read_folder_sections

        sections = (read_folder_sections(model) if isinstance(model, (str, os.PathLike)) else
                    {"diffusion": getattr(model, "diffusion", None), "sample": getattr(model, "sample", None)})
        diffusion, base = sections.get("diffusion"), sample or sections.get("sample")
        if diffusion is None or base is None:
            raise ValueError(f"{model if isinstance(model, (str, os.PathLike)) else type(model).__name__}: "
                             "not a trained denoiser (no diffusion / sample sections); build the sampler from "
                             "a SampleConfig with Sampler.from_config")
        if overrides:
            base = from_dict(SampleConfig, {**to_dict(base), **overrides}, "sample")
        if base.learned:
            if isinstance(model, (str, os.PathLike)):
                raise ValueError("sample.learned: pass the loaded model (its weights are checked against the "
                                 "learned file), not its folder")
            return cls.for_model(model, base)
        return cls.from_config(base, diffusion)

    @classmethod
    def for_model(cls, model: Any, cfg: SampleConfig) -> "Sampler":
        """The sampler `cfg` names for a trained denoiser: its schedule, and with `cfg.learned` the
        coefficients distilled for it at cfg.steps (`ddm distill`), read from its folder."""
        sampler = cls.from_config(cfg, model.diffusion)
        if not cfg.learned:
            return sampler
        from .learned import load_learned

        return sampler.with_coefficients(load_learned(model, cfg), cfg.order)

    def with_coefficients(self, coefficients: Any, base_order: str) -> "Sampler":
        """This sampler with learned per-step parts (`ddm.sampling.learned.StepCoefficients`)."""
        from .learned import LearnedOrder, LearnedSteps

        if self.block_size:
            raise ValueError("learned sampler: per step of one block; sample.block_size must be 0")
        if coefficients.steps != self.steps:
            raise ValueError(f"learned sampler: made for {coefficients.steps} steps, the sampler has {self.steps}")
        parts = {"order": LearnedOrder(base_order, coefficients.order_weight, coefficients.spread_weight),
                 "step_temperatures": tuple(coefficients.temperature),
                 "step_mixing": tuple(coefficients.mixing or ())}
        if coefficients.guidance is not None:
            if not self.guidance_scale > 0:
                raise ValueError("learned sampler: per-step guidance scales need a guided sampler "
                                 "(sample.guidance_scale > 0, a model trained with condition dropout)")
            parts["step_guidance"] = tuple(coefficients.guidance)
        if coefficients.alphas is not None:
            parts["step_schedule"] = LearnedSteps(coefficients.alphas)
        return dataclasses.replace(self, **parts)


@torch.no_grad()
def sample(model: Denoiser, num_samples: int | None = None, *, sampler: Sampler | None = None,
           cond: Condition | None = None, fixed: Fixed | tuple[Tensor, Tensor] | None = None,
           measurement: MeasurementGuidance | None = None, generator: torch.Generator | None = None,
           processors: Sequence[LogitsProcessor] = (), return_trace: bool = False,
           forced: Tensor | None = None) -> SampleResult:
    """Decode a batch of fully masked targets (apart from `fixed`) into tokens.

    The batch size is `num_samples`, or the rows of `cond` / `fixed` (a single row is
    repeated). `SampleResult.nfe` counts the calls of the batch, `row_nfe` each sample's.
    `generator` (default: a CPU generator seeded 0) drives every random draw, so the same
    seed gives the same sample. `processors` (`ddm.sampling.constraints`) rewrite
    the logits of every step, e.g. to forbid tokens per position. `forced` [B, N] (teacher
    forcing): every step commits these ids in place of drawn ones, so `confidence` holds the
    sampler's probability of each (`ddm.distill` scores the teacher's samples with it). Call
    `model.eval()` first if it has dropout.
    """
    sampler = sampler or Sampler()
    cfg = model.config
    vocab, n = cfg.vocab_size, cfg.seq_len
    device = _device(model)
    batch = _batch_size(num_samples, cond, fixed)
    if cond is not None and not cond.is_empty() and cond.batch_size != batch:
        cond = cond.repeat(batch)  # one condition for every sample
    fixed = check_fixed(fixed, batch, n, vocab) if fixed is not None else None
    if forced is not None:
        if tuple(forced.shape) != (batch, n):
            raise ValueError(f"forced: shape {tuple(forced.shape)}; expected ({batch}, {n}), one id per position")
        forced = forced.to(device)
    guidance = None
    if sampler.guidance_scale > 0:
        ClassifierFreeGuidance.check(model, cond)
        guidance = ClassifierFreeGuidance(sampler.guidance_scale)
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    state = SamplingState.start(batch, n, cfg.mask_id, device, *(fixed or (None, None)))
    denoise = Denoise(model, cond, guidance, sampler.cache_prefix, sampler.reuse_predictions,
                      sampler.cache_targets, sampler.cache_refresh, sampler.skip_blocks, sampler.skip_refresh)
    # A joint model's vectors (`ddm.continuous`), carried from step to step. On their own clock (`lag`),
    # the ids take all but the last call, which finishes the vectors given every id.
    flow = ContinuousSampler.for_model(model, sampler.continuous_noise)
    values = None if flow is None else flow.start(batch, n, cfg.continuous_dim, generator, device)
    lag = flow is not None and flow.independent and sampler.steps >= 2
    plan = _plan(dataclasses.replace(sampler, steps=sampler.steps - 1) if lag else sampler, state.fixed)
    calls = sum(p[2] for p in plan) + lag
    trace = Trace() if return_trace else None
    step = 0
    for lo, hi, steps in plan:
        active = torch.zeros(n, dtype=torch.bool, device=device)
        active[lo:hi] = True
        free = (~state.fixed & active).sum(1)
        alphas = sampler.step_schedule.alphas(steps)
        previous = None  # the block's last prediction, for mixing
        for i in range(steps):
            candidates = state.masked & active
            if not candidates.any():
                break
            committed = state.committed & active
            info = StepInfo(i, steps, alphas[i], alphas[i + 1], free, candidates.sum(1), committed.sum(1),
                            tuple(cfg.shape))

            t = sampler.process.inverse(state.visible_fraction().double()).float()
            if lag:
                t = flow.clock(step, calls, batch, device)
            scale = sampler.step_guidance[i] if sampler.step_guidance else \
                guidance_at(sampler.guidance_scale, sampler.guidance_schedule, i, steps)
            logits, continuous = denoise(state.ids, t, values, scale)
            logits = apply_processors(processors, logits, state.ids)
            mixing = sampler.step_mixing[i] if sampler.step_mixing else sampler.mixing
            if mixing or sampler.step_mixing:
                logits, previous = mix_previous(logits, previous, mixing), logits
            remask = torch.zeros_like(candidates)
            if measurement is not None:
                logits, weight = measurement(logits, state.ids, state.masked)
                if not info.final:
                    remask = committed & (weight < measurement.anchor_threshold)

            temperature = sampler.step_temperatures[i] if sampler.step_temperatures else sampler.temperature
            probs = filter_logits(logits, temperature, sampler.top_k, sampler.top_p).exp()
            tokens = state.ids.clone()  # committed positions keep their token: token_p is its current probability
            tokens[candidates] = forced[candidates] if forced is not None else \
                draw_tokens(probs[candidates], generator, greedy=temperature == 0)
            token_p = probs.gather(-1, tokens.clamp_max(vocab - 1)[..., None])[..., 0]

            if sampler.remasking.active(info):
                remask |= sampler.remasking(state, token_p, committed, info, generator)
            scores = sampler.order.scores(probs, token_p, info, generator)
            k = sampler.count(info, remask.sum(1), token_p, candidates, generator)
            reveal = top_k_positions(scores, candidates, k)
            state.remask(remask)
            state.commit(reveal, tokens, token_p, step, None if flow else continuous)
            if flow is not None:  # the vectors move to the time of the next call
                state.continuous = flow.data(values, continuous, t)
                t_next = flow.clock(step + 1, calls, batch, device) if lag else \
                    sampler.process.inverse(state.visible_fraction().double()).float()
                values = flow.step(values, state.continuous, t, t_next, generator)

            if trace is not None:
                trace.ids.append(state.ids.clone())
                trace.probs.append(probs.float())
                trace.revealed.append(reveal)
                trace.remasked.append(remask)
                trace.times.append(t)
            step += 1

    if lag:  # every id is visible: the last call is the vectors'
        t = flow.clock(step, calls, batch, device)
        state.continuous = flow.data(values, denoise(state.ids, t, values)[1], t)
    if state.masked.any():  # the last step of every block reveals all its tokens
        raise RuntimeError("sampling ended with masked tokens; this is a bug in a count rule")
    if trace is not None:
        trace.committed_at = state.committed_at
    return SampleResult(state.ids, denoise.nfe, trace, state.continuous, state.confidence, state.committed_at,
                        denoise.row_nfe, denoise.positions_run / max(denoise.positions_total, 1))


def sample_many(model: Denoiser, num_samples: int, batch_size: int, *, sampler: Sampler | None = None,
                cond: Condition | None = None, fixed: Fixed | tuple[Tensor, Tensor] | None = None,
                generator: torch.Generator | None = None, **kwargs) -> SampleResult:
    """`sample` in batches of at most `batch_size` rows, one generator throughout.

    `cond` / `fixed` hold one row for all samples or one row per sample; a processor or a
    measurement with per-sample data gives each batch its rows (`select`). The NFE returned
    is the largest of the batches' (they are equal unless the count rule is adaptive); `row_nfe`
    is every sample's own.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    parts = []
    for start in range(0, num_samples, batch_size):
        rows = torch.arange(start, min(start + batch_size, num_samples))
        c = cond if cond is None or cond.batch_size == 1 else cond.select(rows)
        f = fixed if fixed is None or fixed[1].dim() == 1 or fixed[1].shape[0] == 1 else \
            (fixed[0][rows], fixed[1][rows])
        processors = [p.select(rows) if hasattr(p, "select") else p for p in kwargs.get("processors", ())]
        measurement = kwargs.get("measurement")
        measurement = measurement.select(rows) if measurement is not None else None
        parts.append(sample(model, len(rows), sampler=sampler, cond=c, fixed=f, generator=generator,
                            **{**kwargs, "processors": processors, "measurement": measurement}))
    continuous = None if parts[0].continuous is None else torch.cat([p.continuous for p in parts])
    run = sum(p.positions_run * p.ids.shape[0] for p in parts) / num_samples
    return SampleResult(torch.cat([p.ids for p in parts]), max(p.nfe for p in parts), None, continuous,
                        torch.cat([p.confidence for p in parts]), None, torch.cat([p.row_nfe for p in parts]), run)


# --------------------------------------------------------------------------- helpers


def _device(model) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _batch_size(num_samples: int | None, cond: Condition | None, fixed) -> int:
    rows = num_samples
    if rows is not None and rows < 1:
        raise ValueError(f"num_samples: must be >= 1, got {rows}")
    given = [("cond", None if cond is None else cond.batch_size)]
    if fixed is not None and isinstance(fixed, (tuple, list)) and len(fixed) == 2 and isinstance(fixed[1], Tensor):
        given.append(("fixed", fixed[1].shape[0] if fixed[1].dim() == 2 else None))
    for name, r in given:
        if r is None or (r == 1 and rows is not None):
            continue
        if rows is None:
            rows = r
        elif r != rows:
            raise ValueError(f"{name}: {r} rows, but the batch has {rows} (num_samples or the other inputs)")
    if rows is None:
        raise ValueError("sample: the batch size is unknown; pass num_samples, a condition or fixed tokens")
    return rows


def _plan(sampler: Sampler, fixed: Tensor) -> list[tuple[int, int, int]]:
    """(start, stop, steps) per block: the budget split evenly, clamped where a rule cannot use it."""
    n = fixed.shape[1]
    size = sampler.block_size if 0 < sampler.block_size < n else n
    bounds = [(lo, min(lo + size, n)) for lo in range(0, n, size)]
    if sampler.steps < len(bounds):
        raise ValueError(f"steps: {sampler.steps} steps cannot cover {len(bounds)} blocks "
                         f"(block_size={sampler.block_size} over {n} tokens); every block needs a step")
    plan, clamped = [], False
    for b, (lo, hi) in enumerate(bounds):
        steps = sampler.steps // len(bounds) + (b < sampler.steps % len(bounds))
        tokens = int((~fixed[:, lo:hi]).sum(1).max())
        usable = sampler.count.usable_steps(steps, tokens)
        clamped |= usable < steps and tokens > 0
        plan.append((lo, hi, usable))
    if clamped:
        warnings.warn(f"sampling: {sampler.steps} steps is more than the tokens to generate; count="
                      f"{sampler.count.name!r} reveals at least one token per step, so it runs "
                      f"{sum(p[2] for p in plan)} steps (count='ancestral' can spend more)", stacklevel=3)
    return plan
