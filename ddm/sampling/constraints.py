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

A processor that holds data per sample (one row of `allowed` or one target per sample) has
`select(rows)`, the same processor for those samples only; `sample_many` calls it per batch.

`ExpectedCount` steers a count (edges of a graph, atoms of a kind) toward a target per sample
rather than forbidding anything: a soft constraint, from the statistic the samples should have.
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

    def select(self, rows: Tensor) -> "AllowedTokens":
        return self if self.allowed.dim() == 2 else AllowedTokens(self.allowed[rows])

    def __repr__(self) -> str:
        return f"AllowedTokens({tuple(self.allowed.shape)})"


class ExpectedCount:
    """Tilt one token's logits so that the expected count of that token meets a target per sample.

    A diffusion step draws its masked positions independently, so a statistic of the whole sample
    (the number of edges a condition asked for) drifts with every parallel draw. Each step, this
    adds one number b per sample to `token`'s logit at every masked position it counts, b chosen so
    that the tokens committed so far plus the expected number among the masked ones equal the target:

        committed + sum_m sigmoid(a_m + b) = target,   a_m = logit(token) - logsumexp(other logits).

    The tilt is the I-projection of the step's factorised prediction onto the distributions with
    that expected count (exponential tilting: the least change in KL; the other tokens keep their
    ratios). It is solved again every step from what was committed, so later steps make up for the
    drift of earlier ones, and the count's final spread is that of the last step's draws. A soft
    constraint: nothing is forbidden, and a target out of reach saturates b at +-`max_shift`.

    targets [B] float, NaN where a sample has none; counted [N] or [B, N] bool, the positions whose
    token counts (default: all). It runs before temperature, so a temperature other than 1 moves
    the expectation. Run it after the processors that forbid tokens, so it counts on what is left.
    """

    def __init__(self, token: int, targets: Tensor, mask_id: int, counted: Tensor | None = None,
                 max_shift: float = 30.0, iterations: int = 40):
        targets = torch.as_tensor(targets, dtype=torch.float32)
        if targets.dim() != 1:
            raise ValueError(f"targets: expected one count per sample [B], got shape {tuple(targets.shape)}")
        if (targets < 0).any():
            raise ValueError(f"targets: counts must be >= 0 (NaN: no target), got {targets.min().item()}")
        if counted is not None and (counted.dtype != torch.bool or counted.dim() not in (1, 2)):
            raise ValueError(f"counted: expected a bool tensor [N] or [B, N], got {counted.dtype} "
                             f"{tuple(counted.shape)}")
        if max_shift <= 0 or iterations < 1:
            raise ValueError(f"max_shift must be > 0 and iterations >= 1, got {max_shift}, {iterations}")
        self.token, self.targets, self.mask_id, self.counted = token, targets, mask_id, counted
        self.max_shift, self.iterations = max_shift, iterations

    def select(self, rows: Tensor) -> "ExpectedCount":
        counted = self.counted if self.counted is None or self.counted.dim() == 1 else self.counted[rows]
        return ExpectedCount(self.token, self.targets[rows], self.mask_id, counted, self.max_shift, self.iterations)

    def __call__(self, logits: Tensor, ids: Tensor, positions: Tensor) -> Tensor:
        b, m, v = logits.shape
        if b != len(self.targets):
            raise ValueError(f"ExpectedCount: {len(self.targets)} targets for a batch of {b} samples (sample_many "
                             "selects the rows of each batch)")
        if not 0 <= self.token < v:
            raise ValueError(f"ExpectedCount: token {self.token} is outside the vocabulary [0, {v})")
        device = logits.device
        targets = self.targets.to(device)
        counted = torch.ones_like(ids, dtype=torch.bool) if self.counted is None else \
            self.counted.to(device).expand(ids.shape)
        committed = ((ids == self.token) & counted).sum(1).float()
        free = ((ids[:, positions] == self.mask_id) & counted[:, positions] & ~targets.isnan()[:, None])
        if not free.any():
            return logits
        x = logits.float()
        others = torch.cat([x[..., :self.token], x[..., self.token + 1:]], -1).logsumexp(-1)
        a = (x[..., self.token] - others).nan_to_num(nan=float("-inf")).masked_fill(~free, float("-inf"))
        need = targets - committed
        lo = torch.full_like(need, -self.max_shift)
        hi = torch.full_like(need, self.max_shift)
        for _ in range(self.iterations):  # bisection: the expected count grows with b
            mid = (lo + hi) / 2
            short = torch.sigmoid(a + mid[:, None]).sum(1) < need
            lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
        shift = ((lo + hi) / 2).nan_to_num(nan=0.0)
        out = logits.clone()
        out[..., self.token] += torch.where(free, shift[:, None], 0.0).to(logits.dtype)
        return out

    def __repr__(self) -> str:
        return f"ExpectedCount(token={self.token}, {len(self.targets)} targets)"


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
