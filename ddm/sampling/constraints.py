"""Constraints on what a position may hold: logits processors, a sampler part.

A logits processor (the `transformers` `LogitsProcessor` idea) rewrites the model's
logits before anything is drawn from them:

    processor(logits [B, M, V], ids [B, N], positions [M]) -> logits [B, M, V]

`positions` are the target positions the M rows of logits belong to (all N in a diffusion
step, one in an autoregressive step); `ids` is the current state of the whole target
(the mask id where nothing is decided yet), so a processor can look at what is already
there (valence left on an atom, the mirror entry of an adjacency matrix). Set a logit to
-inf to forbid a token. The same processors run in the diffusion loop, the
autoregressive sampler and, to train on the same support, the objectives.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor


class LogitsProcessor(Protocol):
    def __call__(self, logits: Tensor, ids: Tensor, positions: Tensor) -> Tensor: ...


class AllowedTokens:
    """Per-position allowed tokens: `allowed` [N, V] (every row alike) or [B, N, V] bool."""

    def __init__(self, allowed: Tensor):
        if allowed.dtype != torch.bool or allowed.dim() not in (2, 3):
            raise ValueError(f"allowed: expected a bool tensor [N, V] or [B, N, V], got "
                             f"{allowed.dtype} {tuple(allowed.shape)}")
        if not allowed.any(-1).all():
            raise ValueError("allowed: a position allows no token at all")
        self.allowed = allowed

    def __call__(self, logits: Tensor, ids: Tensor, positions: Tensor) -> Tensor:
        allowed = self.allowed.to(logits.device)[..., positions.to(logits.device), :]
        if allowed.shape[-1] != logits.shape[-1]:
            raise ValueError(f"allowed: {allowed.shape[-1]} tokens per position, the logits have {logits.shape[-1]}")
        return logits.masked_fill(~allowed, float("-inf"))

    def __repr__(self) -> str:
        return f"AllowedTokens({tuple(self.allowed.shape)})"


def apply_processors(processors: Sequence[LogitsProcessor], logits: Tensor, ids: Tensor,
                     positions: Tensor | None = None) -> Tensor:
    """Run each processor in turn; a result of another shape is an error naming the processor."""
    if not processors:
        return logits
    if positions is None:
        positions = torch.arange(logits.shape[1], device=logits.device)
    for processor in processors:
        out = processor(logits, ids, positions)
        if not isinstance(out, Tensor) or out.shape != logits.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            name = getattr(processor, "__name__", None) or repr(processor)
            raise ValueError(f"logits processor {name}: returned {got}, expected the shape of the "
                             f"logits it was given, {tuple(logits.shape)} [batch, positions, vocab]")
        logits = out
    blocked = torch.isneginf(logits).all(-1)
    if blocked.any():
        row, col = (int(i) for i in blocked.nonzero()[0])
        raise ValueError(f"logits processors: every token is forbidden at row {row}, position "
                         f"{int(positions[col])}; the constraints leave nothing to draw")
    return logits
