"""The sampler's model calls: cached condition prefix, guidance rows, reuse, and the NFE count.

NFE (number of function evaluations) is counted per sample: one call of the denoiser on a
batch evaluates each row once and adds 1; a guided call evaluates every row twice
(conditional and unconditional, batched into one call of 2B rows) and adds 2. A reused
prediction adds 0. Encoding the condition prefix is not counted: it runs once per sample
(with `cache_prefix`) and costs less than a call on the target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model import Condition
from .guidance import ClassifierFreeGuidance


class Denoise:
    def __init__(self, model, cond: Condition | None, guidance: ClassifierFreeGuidance | None = None,
                 cache_prefix: bool = True, reuse: bool = True):
        self.model = model
        self.guidance = guidance
        self.cond = guidance.rows(cond) if guidance is not None else cond
        self.prefix = None
        if cache_prefix and getattr(model, "supports_prefix_cache", False) and self.cond is not None:
            # Exact: the prefix never attends to the target, so its keys/values do not change.
            self.prefix = model.encode_prefix(self.cond)
        self.reuse = reuse
        self.nfe = 0
        self._last: tuple[Tensor, Tensor, Tensor | None] | None = None

    def __call__(self, ids: Tensor, t: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """ids [B, N] (and a joint model's noisy vectors [B, N, C]) -> (logits or guided log-probs
        [B, N, V], continuous [B, N, C] or None)."""
        if self.reuse and self._last is not None and torch.equal(self._last[0], ids) and values is None:
            # Nothing changed since the last call, and t is a function of ids: same prediction.
            return self._last[1], self._last[2]
        rows, times, vectors = ids, t, values
        if self.guidance is not None:
            rows, times = torch.cat([ids, ids]), torch.cat([t, t])
            vectors = None if values is None else torch.cat([values, values])
        extra = {} if vectors is None else {"values": vectors}  # a discrete-only denoiser need not take values
        if self.prefix is not None:
            out = self.model(rows, t=times, prefix=self.prefix, **extra)
        else:
            out = self.model(rows, t=times, cond=self.cond, **extra)
        self.nfe += rows.shape[0] // ids.shape[0]
        logits, continuous = out.logits, out.continuous
        vocab = self.model.config.vocab_size
        if logits.shape != (*rows.shape, vocab):
            raise ValueError(f"model: returned logits of shape {tuple(logits.shape)}, expected "
                             f"{(*rows.shape, vocab)} (model.config.vocab_size={vocab})")
        if self.guidance is not None:
            logits = self.guidance.combine(logits)
            continuous = None if continuous is None else self.guidance.combine_continuous(continuous)
        self._last = (ids.clone(), logits, continuous)
        return logits, continuous
