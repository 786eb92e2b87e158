"""Posterior sampling: given tokens that never change, and guidance from a measurement.

`Fixed(ids, mask)`: positions where `mask` is True keep `ids` (inpainting, prompts,
prefixes); the model conditions on them at every step and the sampler never touches them.

`MeasurementGuidance` (anchored posterior sampling, after APS, Rout et al. 2025) for an
inverse problem y = A(x) on the decoded output:
* tilt: q = one-hot of the visible tokens and softmax(logits) at masked positions (the
  expected token), x = decode(q) (e.g. q @ codebook, then a decoder), loss = measurement_loss(x);
  the masked positions' logits move by -scale * d loss / d logits.
* anchor: a committed token is kept when it agrees with the measurement and remasked
  otherwise. Its first-order loss decrease from switching it to the best other token is
  delta = g[token] - min_v g[v] with g = d loss / d q; in the tilt's units the token keeps the
  weight exp(-scale * delta) of the best one, and is remasked when that is below
  `anchor_threshold` (0: no anchoring). Never on a block's last step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class Fixed(NamedTuple):
    ids: Tensor  # [B, N] long; only the positions in mask are read
    mask: Tensor  # [B, N] bool: True = given, never changes

    @classmethod
    def prompt(cls, tokens: Tensor, seq_len: int) -> "Fixed":
        """The first P target positions given by tokens [B, P] (a prompt / prefix to continue)."""
        b, p = tokens.shape
        ids = torch.zeros(b, seq_len, dtype=torch.long, device=tokens.device)
        ids[:, :p] = tokens
        mask = torch.zeros(b, seq_len, dtype=torch.bool, device=tokens.device)
        mask[:, :p] = True
        return cls(ids, mask)


def check_fixed(fixed, batch: int | None, seq_len: int, vocab_size: int) -> Fixed:
    """The fixed tokens as a `Fixed` of shape [batch, seq_len], with errors that name the problem."""
    if not isinstance(fixed, (tuple, list)) or len(fixed) != 2:
        raise ValueError("fixed: expected (ids [B, N], mask [B, N]) or a Fixed")
    ids, mask = fixed
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"fixed.mask: expected a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"fixed.ids: expected an integer tensor, got {getattr(ids, 'dtype', type(ids).__name__)}")
    rows = batch if batch is not None else mask.shape[0]
    if mask.dim() == 1:
        mask = mask.expand(rows, -1)
    if ids.dim() == 1:
        ids = ids.expand(rows, -1)
    if mask.dim() != 2 or mask.shape[1] != seq_len:
        raise ValueError(f"fixed.mask: expected shape [batch, {seq_len}], got {tuple(mask.shape)}")
    if ids.shape != mask.shape:
        raise ValueError(f"fixed.ids: shape {tuple(ids.shape)} differs from fixed.mask {tuple(mask.shape)}")
    if mask.shape[0] == 1 and rows > 1:
        ids, mask = ids.expand(rows, -1), mask.expand(rows, -1)
    if mask.shape[0] != rows:
        raise ValueError(f"fixed: {mask.shape[0]} rows, the batch has {rows}")
    given = ids[mask]
    if given.numel() and (given.min() < 0 or given.max() >= vocab_size):
        bad = int(given[(given < 0) | (given >= vocab_size)][0])
        raise ValueError(f"fixed.ids: token id {bad} at a fixed position is outside the model's "
                         f"vocabulary [0, {vocab_size}) (the mask id {vocab_size} cannot be fixed)")
    return Fixed(ids.long(), mask)


class VisibleError:
    """A measurement loss: the squared error of decoded outputs x [B, ...] against `target` [B, ...]
    where `hidden` ([1 or B, ...] bool) is False, summed per sample (inpainting, video completion).
    Holds one target per sample, so `sample_many` gives each batch its rows (`select`)."""

    def __init__(self, target: Tensor, hidden: Tensor) -> None:
        self.target, self.hidden = target, hidden

    def __call__(self, x: Tensor) -> Tensor:
        return (((x - self.target) * (~self.hidden).to(x.dtype)) ** 2).flatten(1).sum(1)

    def select(self, rows: Tensor) -> "VisibleError":
        return VisibleError(self.target[rows], self.hidden if self.hidden.shape[0] == 1 else self.hidden[rows])


@dataclass
class MeasurementGuidance:
    decode: Callable[[Tensor], Tensor]  # probs [B, N, V] float32 -> x, differentiable
    loss: Callable[[Tensor], Tensor]  # x -> [B] measurement loss
    scale: float = 1.0  # step size of the tilt on the logits
    anchor_threshold: float = 0.0  # remask committed tokens whose measurement weight falls below this

    def __post_init__(self) -> None:
        if self.scale < 0:
            raise ValueError(f"measurement guidance: scale must be >= 0, got {self.scale}")
        if not 0.0 <= self.anchor_threshold <= 1.0:
            raise ValueError(f"measurement guidance: anchor_threshold must lie in [0, 1], got {self.anchor_threshold}")

    def select(self, rows: Tensor) -> "MeasurementGuidance":
        """The guidance for some samples' rows (`sample_many`'s batches): a loss that holds per-sample
        measurements gives their rows through its own `select(rows)`; another loss is shared."""
        return replace(self, loss=self.loss.select(rows)) if hasattr(self.loss, "select") else self

    def __call__(self, logits: Tensor, ids: Tensor, masked: Tensor) -> tuple[Tensor, Tensor]:
        """logits [B, N, V] -> (tilted logits, weight [B, N] of each visible token vs the best one)."""
        vocab = logits.shape[-1]
        with torch.enable_grad():
            leaf = logits.detach().float().requires_grad_(True)
            onehot = F.one_hot(ids.masked_fill(masked, 0), vocab).float().requires_grad_(True)
            q = torch.where(masked[..., None], leaf.softmax(-1), onehot)
            loss = self.loss(self.decode(q))
            if loss.dim() != 1 or loss.shape[0] != ids.shape[0]:
                raise ValueError(f"measurement loss: expected shape [{ids.shape[0]}], got {tuple(loss.shape)}")
            g_logits, g_q = torch.autograd.grad(loss.sum(), (leaf, onehot))
        tilted = logits - self.scale * g_logits.to(logits.dtype)
        delta = g_q.gather(-1, ids.masked_fill(masked, 0)[..., None])[..., 0] - g_q.min(-1).values
        weight = torch.exp(-self.scale * delta.double()).masked_fill(masked, 1.0)
        return tilted, weight
