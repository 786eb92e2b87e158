"""Classifier-free guidance: conditional and unconditional predictions in one batched call.

    log p_guided = log p_uncond + (1 + w) (log p_cond - log p_uncond)

and the same extrapolation of a continuous head's prediction (a flow velocity or the vectors).

w = 0 is the plain conditional sampler (and makes no unconditional call at all); w > 0
sharpens towards the condition. The unconditional rows use the model's learned null
condition (`Condition.dropped()`), so the model must have been trained with condition
dropout, which it records in its diffusion section (`model.diffusion.cond_dropout`).

The scale may change over a block's steps (`guidance_schedule`): `constant`, or `linear` from 0
at the first step to 2w at the last, the same mean (Muse's increasing guidance; Wang et al.
2024 analyse such schedules). Guidance at the most masked steps, where the layout is decided,
narrows the samples; later it sharpens the details. A step at scale 0 runs the conditional rows
alone, so `linear` also saves one call of the unconditional rows per block.
"""

from __future__ import annotations

from torch import Tensor

from ..model import Condition

GUIDANCE_SCHEDULES = ("constant", "linear")


def guidance_at(scale: float, schedule: str, step: int, steps: int) -> float:
    """The guidance scale of `step` (0-based) of a block of `steps`."""
    if schedule == "linear" and steps > 1:
        return scale * 2.0 * step / (steps - 1)
    return scale


class ClassifierFreeGuidance:
    def __init__(self, scale: float):
        if scale < 0:
            raise ValueError(f"guidance_scale: must be >= 0, got {scale}")
        self.scale = scale

    @staticmethod
    def check(model, cond: Condition | None) -> None:
        if cond is None or cond.is_empty():
            raise ValueError("guidance: classifier-free guidance needs a condition (cond=None)")
        diffusion = getattr(model, "diffusion", None)
        if not getattr(diffusion, "cond_dropout", 0.0) > 0:
            raise ValueError("guidance: the model was not trained with condition dropout "
                             "(model.diffusion.cond_dropout is 0), so it has no unconditional prediction to "
                             "guide with; set guidance_scale=0 or train with diffusion.cond_dropout > 0")

    @staticmethod
    def rows(cond: Condition) -> Condition:
        """The condition for the doubled batch: B conditional rows, then B null rows."""
        return Condition.cat([cond, cond.dropped()])

    def combine(self, logits: Tensor, scale: float | None = None) -> Tensor:
        """[2B, N, V] (conditional rows first) -> guided log-probabilities [B, N, V] (float32), at
        `scale` (default: this guidance's)."""
        return self._extrapolate(logits.float().log_softmax(-1), scale)

    def combine_continuous(self, continuous: Tensor, scale: float | None = None) -> Tensor:
        """[2B, N, C] (conditional rows first) -> the same extrapolation of the continuous prediction [B, N, C]."""
        return self._extrapolate(continuous, scale)

    def _extrapolate(self, rows: Tensor, scale: float | None) -> Tensor:
        cond, uncond = rows.chunk(2)
        return uncond + (1.0 + (self.scale if scale is None else scale)) * (cond - uncond)

    def __repr__(self) -> str:
        return f"ClassifierFreeGuidance(scale={self.scale})"
