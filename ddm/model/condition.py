"""What a denoiser is conditioned on, and the cached encoding of it.

A condition becomes a *prefix* of vectors in front of the target tokens, in this
order: class token, projected external embeddings, condition tokens. The prefix never
attends to the target, so its keys and values (`Prefix`) are computed once per sample
and reused at every denoising step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


def soft_bins(values: Tensor, low: float, high: float, bins: int) -> Tensor:
    """Values [...] -> [..., bins] float64: Gaussian bumps exp(-(v - c_k)^2 / 2w^2) at `bins` evenly
    spaced centres c_k over [low, high] (w their spacing). Beside the value in a condition vector,
    they give each range of it its own direction in the prefix token: a linear projection of the
    value alone is one direction whose length the model must learn to read, and small models
    learn that poorly (the molecule and graph tasks measured it)."""
    centres = torch.linspace(low, high, bins, dtype=torch.float64)
    width = max(float(centres[1] - centres[0]), 1e-8) if bins > 1 else 1.0
    return torch.exp(-0.5 * ((values.double()[..., None] - centres) / width) ** 2)


@dataclass
class Condition:
    tokens: Tensor | None = None  # [B, P] long, condition token ids (prompt / prefix)
    token_mask: Tensor | None = None  # [B, P] bool, True = real token (rows may differ in length)
    classes: Tensor | None = None  # [B] long, class ids
    embeddings: Tensor | None = None  # [B, M, E] float, e.g. sentence / image encoder outputs
    drop: Tensor | None = None  # [B] bool, True = replace the whole condition by the learned null

    @property
    def batch_size(self) -> int | None:
        for x in (self.tokens, self.classes, self.embeddings):
            if x is not None:
                return x.shape[0]
        return None

    def is_empty(self) -> bool:
        return self.tokens is None and self.classes is None and self.embeddings is None

    def dropped(self, drop: bool | Tensor = True) -> "Condition":
        """The same condition with every row (or the rows in `drop`) replaced by the null condition."""
        b = self.batch_size
        if isinstance(drop, bool):
            drop = torch.full((b,), drop, dtype=torch.bool, device=self._device())
        return replace(self, drop=drop)

    def select(self, rows: Tensor) -> "Condition":
        return Condition(*(None if x is None else x[rows] for x in
                           (self.tokens, self.token_mask, self.classes, self.embeddings, self.drop)))

    def repeat(self, n: int) -> "Condition":
        """Each row repeated n times in place (row i -> rows i*n .. i*n+n-1)."""
        return Condition(*(None if x is None else x.repeat_interleave(n, dim=0) for x in
                           (self.tokens, self.token_mask, self.classes, self.embeddings, self.drop)))

    def filled(self) -> "Condition":
        """The same condition with `drop` and `token_mask` made explicit (for concatenation)."""
        drop = self.drop
        if drop is None:
            drop = torch.zeros(self.batch_size, dtype=torch.bool, device=self._device())
        mask = self.token_mask
        if mask is None and self.tokens is not None:
            mask = torch.ones_like(self.tokens, dtype=torch.bool)
        return replace(self, drop=drop, token_mask=mask)

    @staticmethod
    def cat(conds: list["Condition"]) -> "Condition":
        """Rows of several conditions of the same kind, stacked (e.g. conditional + null for guidance)."""
        conds = [c.filled() for c in conds]
        fields = ("tokens", "token_mask", "classes", "embeddings", "drop")
        return Condition(*(None if getattr(conds[0], f) is None
                           else torch.cat([getattr(c, f) for c in conds]) for f in fields))

    def _device(self):
        for x in (self.tokens, self.classes, self.embeddings):
            if x is not None:
                return x.device
        return None


@dataclass
class Prefix:
    """The encoded condition: per-layer keys/values (or plain embeddings for bodies without a cache)."""

    keys: list[Tensor]  # per layer [B, heads, P, head_dim]
    values: list[Tensor]
    mask: Tensor | None  # [B, P] bool, None = all valid
    hidden: Tensor | None = None  # [B, P, D] prefix embeddings (bodies that re-run the prefix)

    @property
    def length(self) -> int:
        if self.hidden is not None:
            return self.hidden.shape[1]
        return self.keys[0].shape[2] if self.keys else 0

    def select(self, rows: Tensor) -> "Prefix":
        """The prefix of the given batch rows."""
        pick = lambda x: None if x is None else x[rows]  # noqa: E731
        return Prefix([k[rows] for k in self.keys], [v[rows] for v in self.values], pick(self.mask), pick(self.hidden))
