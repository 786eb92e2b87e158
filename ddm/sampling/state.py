"""What the decoding loop carries from step to step, and what it hands to the parts."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class SamplingState:
    """Every target position is fixed (given), committed (decoded) or masked (ids == mask_id)."""

    ids: Tensor  # [B, N] long; mask_id where masked
    fixed: Tensor  # [B, N] bool: given tokens (prompt, inpainting context); never change
    mask_id: int
    confidence: Tensor  # [B, N] float64: probability of the token when it was committed (1 for fixed)
    committed_at: Tensor  # [B, N] long: step that committed the current token (-1: fixed or masked)
    # [B, N, C]: a regression head's prediction when the token was committed; a joint model's clean-vector
    # estimate of the latest step (`ddm.continuous`)
    continuous: Tensor | None = None

    @classmethod
    def start(cls, batch: int, seq_len: int, mask_id: int, device, fixed_ids: Tensor | None = None,
              fixed_mask: Tensor | None = None) -> "SamplingState":
        ids = torch.full((batch, seq_len), mask_id, dtype=torch.long, device=device)
        fixed = torch.zeros(batch, seq_len, dtype=torch.bool, device=device)
        if fixed_mask is not None:
            fixed = fixed_mask.to(device)
            ids = torch.where(fixed, fixed_ids.to(device).long(), ids)
        confidence = fixed.double()
        committed_at = torch.full((batch, seq_len), -1, dtype=torch.long, device=device)
        return cls(ids, fixed, mask_id, confidence, committed_at)

    @property
    def masked(self) -> Tensor:
        return self.ids == self.mask_id

    @property
    def committed(self) -> Tensor:
        return ~self.fixed & ~self.masked

    def visible_fraction(self) -> Tensor:
        """[B] fraction of the tokens to generate (not fixed) that are visible now."""
        free = (~self.fixed).sum(1)
        frac = self.committed.sum(1) / free.clamp_min(1)
        return torch.where(free > 0, frac, torch.ones_like(frac))  # nothing to generate: done

    def commit(self, where: Tensor, tokens: Tensor, confidence: Tensor, step: int,
               continuous: Tensor | None = None) -> None:
        self.ids = torch.where(where, tokens, self.ids)
        self.confidence = torch.where(where, confidence, self.confidence)
        self.committed_at = self.committed_at.masked_fill(where, step)
        if continuous is not None:
            if self.continuous is None:
                self.continuous = torch.zeros_like(continuous)
            update = where | self.fixed  # fixed positions take the latest prediction
            self.continuous = torch.where(update[..., None], continuous, self.continuous)

    def remask(self, where: Tensor) -> None:
        self.ids = self.ids.masked_fill(where, self.mask_id)
        self.confidence = self.confidence.masked_fill(where, 0.0)
        self.committed_at = self.committed_at.masked_fill(where, -1)


@dataclass
class StepInfo:
    """Where a step sits in its block's schedule; `alpha_*` are revealed fractions of the block."""

    index: int  # step within the block
    steps: int  # steps of the block
    alpha_now: float  # planned revealed fraction before the step ...
    alpha_next: float  # ... and after it (1.0 on the block's last step)
    free: Tensor  # [B] tokens to generate in the block
    masked: Tensor  # [B] masked tokens of the block before the step
    committed: Tensor  # [B] committed tokens of the block before the step
    shape: tuple[int, ...] = ()  # the target's token grid (model.shape); () is one axis

    @property
    def final(self) -> bool:
        return self.index == self.steps - 1

    @property
    def progress(self) -> float:
        """Fraction of the block's steps done after this one (MaskGIT's ratio)."""
        return (self.index + 1) / self.steps


@dataclass
class Trace:
    """Per-step record of a sample (for sampler distillation and pictures of the decoding order)."""

    ids: list[Tensor] = field(default_factory=list)  # [B, N] after each step
    probs: list[Tensor] = field(default_factory=list)  # [B, N, V] float32: the distribution each step sampled from
    revealed: list[Tensor] = field(default_factory=list)  # [B, N] bool: committed at the step
    remasked: list[Tensor] = field(default_factory=list)  # [B, N] bool: masked again at the step
    times: list[Tensor] = field(default_factory=list)  # [B] model time given at the step
    committed_at: Tensor | None = None  # [B, N] step that committed each final token (-1: fixed)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class SampleResult:
    ids: Tensor  # [B, N] long, no mask id left
    nfe: int  # calls of the batch, so the most any sample had (see ddm.sampling.denoise)
    trace: Trace | None = None
    continuous: Tensor | None = None  # [B, N, C] vectors (data, never a velocity) when the model has a continuous head
    confidence: Tensor | None = None  # [B, N] probability of each token when committed (1 for fixed)
    committed_at: Tensor | None = None  # [B, N] step that committed each token (-1: fixed)
    row_nfe: Tensor | None = None  # [B] calls per sample (rows leave the calls once their tokens stop changing)
    positions_run: float = 1.0  # share of the target positions the calls ran (< 1 with cache_targets)

    @property
    def calls_per_sample(self) -> float:
        """Mean model calls per sample (`nfe` counts the calls of the batch)."""
        return self.nfe if self.row_nfe is None else float(self.row_nfe.float().mean())
