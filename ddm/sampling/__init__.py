"""Sampling: one decoding loop (`loop.sample`) with small, swappable parts.

    from ddm.sampling import build_sampler
    sampler = build_sampler(cfg.sample, process=get_schedule(cfg.diffusion.schedule))
    result = sampler(model, 16, cond=cond, generator=torch.Generator().manual_seed(0))
    result.ids, result.nfe

Parts: `orders` (which tokens first), `schedules` (how many per step), `remasking`,
`guidance` (classifier-free), `posterior` (fixed tokens, measurement guidance with anchoring),
`filters` (temperature, top-k, top-p), `denoise` (model calls: prefix cache, reuse, NFE).
"""

from __future__ import annotations

from ..config import SampleConfig
from ..schedules import Schedule
from .denoise import Denoise
from .filters import draw_tokens, filter_logits
from .guidance import ClassifierFreeGuidance
from .loop import Sampler, sample, sample_many
from .orders import ORDERS, Order, top_k_positions
from .posterior import Fixed, MeasurementGuidance
from .remasking import ReMDMRemasking, RecheckRemasking, Remasking, build_remasking
from .schedules import (AncestralCount, CosineSteps, CountRule, LinearSteps, ScheduleCount, StepSchedule,
                        ThresholdCount, TimeSteps, build_count, build_step_schedule)
from .state import SampleResult, SamplingState, StepInfo, Trace


def build_sampler(cfg: SampleConfig, process: Schedule | None = None) -> Sampler:
    """The sampler named by a `SampleConfig`; `process` is the model's training masking schedule
    (it maps the revealed fraction to the model's time, and `times` to fractions)."""
    kwargs = {} if process is None else {"process": process}
    return Sampler(
        steps=cfg.steps,
        order=Order(cfg.order, cfg.gumbel_temperature),
        count=build_count(cfg.count, cfg.threshold),
        step_schedule=build_step_schedule(cfg.count_schedule, cfg.times, process),
        remasking=build_remasking(cfg.remasking, cfg.remask_threshold, cfg.remask_drop, cfg.remask_eta,
                                  tuple(cfg.remask_window)),
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        guidance_scale=cfg.guidance_scale,
        block_size=cfg.block_size,
        cache_prefix=cfg.cache_prefix,
        reuse_predictions=cfg.reuse_predictions,
        **kwargs,
    )


__all__ = [
    "AncestralCount", "ClassifierFreeGuidance", "CosineSteps", "CountRule", "Denoise", "Fixed", "LinearSteps",
    "MeasurementGuidance", "ORDERS", "Order", "ReMDMRemasking", "RecheckRemasking", "Remasking", "SampleResult",
    "Sampler", "SamplingState", "ScheduleCount", "StepInfo", "StepSchedule", "ThresholdCount", "TimeSteps",
    "Trace", "build_count", "build_remasking", "build_sampler", "build_step_schedule", "draw_tokens",
    "filter_logits", "sample", "sample_many", "top_k_positions",
]
