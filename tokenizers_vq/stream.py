"""TokenStream: what every tokenizer's `encode` returns and every `decode` accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class TokenStream:
    """A batch of token grids.

    ids:    [B, *shape] int64, each in [0, vocab_size)
    shape:  the per-example token grid, e.g. (H, W) for images, (T', H, W) for video,
            (T', Q) for residual motion codes, (chunk, dims) for actions, (N,) for text
    values: optional [B, *shape, D] continuous vector per token (e.g. the
            pre-quantization latent, or the residual inside an action bin)
    mask:   optional [B, *shape] bool, True where the token is real (padding False)
    """

    ids: torch.Tensor
    shape: tuple[int, ...]
    values: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if self.ids.dtype != torch.long:
            raise TypeError(f"TokenStream.ids: expected int64, got {self.ids.dtype}")
        if tuple(self.ids.shape[1:]) != self.shape:
            raise ValueError(f"TokenStream.ids: shape {tuple(self.ids.shape)} is not [B, *{self.shape}]")
        if self.values is not None and tuple(self.values.shape[:-1]) != tuple(self.ids.shape):
            raise ValueError(f"TokenStream.values: shape {tuple(self.values.shape)} is not "
                             f"[*ids.shape, D] with ids.shape {tuple(self.ids.shape)}")

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    @property
    def length(self) -> int:
        return math.prod(self.shape)

    def flat(self) -> torch.Tensor:
        """ids as [B, N] in row-major order: what the diffusion model reads."""
        return self.ids.reshape(self.batch_size, self.length)

    @classmethod
    def from_flat(cls, ids: torch.Tensor, shape: tuple[int, ...]) -> "TokenStream":
        """The inverse of `flat`: [B, N] ids laid back onto the grid `shape`."""
        shape = tuple(shape)
        if ids.ndim != 2 or ids.shape[1] != math.prod(shape):
            raise ValueError(f"ids: expected [B, {math.prod(shape)}] for grid {shape}, got {tuple(ids.shape)}")
        return cls(ids.long().reshape(ids.shape[0], *shape), shape)
