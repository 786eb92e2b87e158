"""Motion in-betweening: keep the frames at both ends of a window, generate the ones between.

Frames map to token steps (`downsample` frames each, every group / level of a step alike); a
token is generated where its step covers any hidden frame and fixed to the real motion's own
token elsewhere (`ddm.sampling.Fixed`), so the kept poses come back as the tokenizer
reconstructs them and the sampler fills the gap conditioned on both ends. The kept frames are
then given back as they are, and `blend_seams` moves the generated frames by the decoder's own
error on the kept frames beside them, so the two meet without a jump.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddm.sampling import Fixed


def ends_kept(batch: int, frames: int, keep: int) -> Tensor:
    """[B, frames] bool, True = hidden: every frame but the first `keep` and the last `keep`."""
    if keep < 1 or 2 * keep >= frames:
        raise ValueError(f"keep: {keep} frames at each end of {frames} leaves nothing between (need 1 <= keep < "
                         f"{(frames + 1) // 2})")
    hidden = torch.ones(batch, frames, dtype=torch.bool)
    hidden[:, :keep] = False
    hidden[:, frames - keep:] = False
    return hidden


def token_mask(hidden: Tensor, downsample: int, tokens_per_step: int) -> Tensor:
    """Hidden frames [B, T] -> [B, (T / downsample) * tokens_per_step] bool, True = generated. A mask
    that hides nothing or everything is an error: that is sampling or copying, not in-betweening."""
    if hidden.dtype != torch.bool or hidden.ndim != 2:
        raise ValueError(f"hidden: expected a bool mask [B, T] of hidden frames, got {hidden.dtype} "
                         f"{tuple(hidden.shape)}")
    b, t = hidden.shape
    if t % downsample:
        raise ValueError(f"hidden: {t} frames is not a multiple of the tokenizer's downsample {downsample}")
    steps = hidden.reshape(b, t // downsample, downsample).any(-1)
    if not steps.any(1).all():
        raise ValueError(f"hidden: row {int((~steps.any(1)).nonzero()[0])} hides no frame; nothing to in-between")
    if steps.all(1).any():
        raise ValueError(f"hidden: row {int(steps.all(1).nonzero()[0])} hides every token step; in-betweening "
                         f"needs kept frames at the ends (each token covers {downsample} frames)")
    return steps.repeat_interleave(tokens_per_step, dim=1)


def fixed_tokens(ids: Tensor, generated: Tensor) -> Fixed:
    """The real motion's ids [B, N] fixed wherever a token is not generated."""
    return Fixed(ids, ~generated)


def blend_seams(filled: Tensor, x: Tensor, hidden: Tensor) -> Tensor:
    """Decoded motions `filled` [B, T, D] moved, in each hidden frame, by the decoder's error on the
    nearest kept frames, `x - filled` there, interpolated linearly between the kept frames on either
    side (the one side's error where the gap reaches an end). The kept frames are known exactly, so
    the decoder's error next to a gap is measured, not guessed: the generated frames then meet the
    kept ones without a jump at the seams (offset blending, as keyframe in-betweening does)."""
    b, t, _ = filled.shape
    frames = torch.arange(t, device=filled.device).expand(b, t)
    kept = ~hidden
    if not kept.any(1).all():
        raise ValueError(f"hidden: row {int((~kept.any(1)).nonzero()[0])} hides every frame; there is no kept "
                         "frame to blend from")
    # index of the last kept frame at or before each frame, and of the first at or after it (-1 / t: none)
    before = torch.where(kept, frames, -1).cummax(1).values
    after = torch.where(kept, frames, t).flip(1).cummin(1).values.flip(1)
    before_ok, after_ok = before >= 0, after < t
    error = x - filled
    e_before = error.gather(1, before.clamp(min=0)[..., None].expand_as(error))
    e_after = error.gather(1, after.clamp(max=t - 1)[..., None].expand_as(error))
    span = (after - before).clamp(min=1).to(filled.dtype)
    w = ((frames - before).to(filled.dtype) / span)[..., None]  # 0 at the frame before, 1 at the one after
    offset = torch.where((before_ok & after_ok)[..., None], (1 - w) * e_before + w * e_after,
                         torch.where(before_ok[..., None], e_before, e_after))
    return torch.where(hidden[..., None], filled + offset, x)
