"""Sampling: one decoding loop (`loop.sample`) with small, swappable parts.

    from ddm.sampling import Sampler
    sampler = Sampler.from_pretrained(model, steps=8)       # as trained: its schedule, its sampler
    sampler = Sampler.from_config(cfg.sample, cfg.diffusion)  # or named by a config
    result = sampler(model, 16, cond=cond, generator=torch.Generator().manual_seed(0))
    result.ids, result.nfe

Parts: `orders` (which tokens first), `schedules` (how many per step), `remasking`,
`guidance` (classifier-free), `posterior` (fixed tokens, measurement guidance with anchoring),
`constraints` (logits processors: allowed tokens per position, a count steered to a target),
`filters` (temperature, top-k, top-p), `denoise` (model calls: prefix cache, reuse, NFE).
Orders, count rules, step schedules and remasking rules are registered by name (`ddm.registry`).
"""

from __future__ import annotations

from .constraints import AllowedTokens, ExpectedCount, LogitsProcessor, apply_processors
from .denoise import Denoise
from .filters import draw_tokens, filter_logits
from .guidance import ClassifierFreeGuidance
from .loop import Sampler, sample, sample_many
from .orders import ORDERS, Order, top_k_positions
from .posterior import Fixed, MeasurementGuidance, VisibleError
from .remasking import REMASKING, ReMDMRemasking, RecheckRemasking, Remasking, build_remasking
from .schedules import (COUNTS, STEP_SCHEDULES, AncestralCount, CosineSteps, CountRule, LinearSteps, ScheduleCount,
                        StepSchedule, ThresholdCount, TimeSteps, build_count, build_step_schedule)
from .state import SampleResult, SamplingState, StepInfo, Trace


__all__ = [
    "AllowedTokens", "COUNTS", "ExpectedCount", "LogitsProcessor", "REMASKING", "STEP_SCHEDULES", "apply_processors",
    "AncestralCount", "ClassifierFreeGuidance", "CosineSteps", "CountRule", "Denoise", "Fixed", "LinearSteps",
    "MeasurementGuidance", "VisibleError", "ORDERS", "Order", "ReMDMRemasking", "RecheckRemasking", "Remasking", "SampleResult",
    "Sampler", "SamplingState", "ScheduleCount", "StepInfo", "StepSchedule", "ThresholdCount", "TimeSteps",
    "Trace", "build_count", "build_remasking", "build_step_schedule", "draw_tokens",
    "filter_logits", "sample", "sample_many", "top_k_positions",
]
