"""Transformer building blocks: rotary positions (1-D or per axis) and a pre-norm block.

The block can run on the condition prefix alone (prefix attends to prefix) and then
on the target given the prefix's cached keys and values (target attends to both):
the two halves of one attention layout in which the prefix never sees the target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Rotary(nn.Module):
    """Rotary position embedding over one or several axes.

    With A axes the head dimension is split in A equal parts, each rotated by the
    token's coordinate along its own axis (a 2-D image grid, a time x joint grid, ...).
    """

    def __init__(self, head_dim: int, num_axes: int, base: float = 10000.0):
        super().__init__()
        part = head_dim // num_axes
        freqs = base ** (-torch.arange(0, part, 2, dtype=torch.float64) / part)
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.num_axes = num_axes

    def forward(self, coords: Tensor) -> tuple[Tensor, Tensor]:
        """coords [N, A] (float) -> cos, sin of shape [N, head_dim / 2]."""
        angles = (coords[:, :, None] * self.freqs[None, None, :]).flatten(1)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs (x[..., :D/2], x[..., D/2:]) of x [B, H, N, D] by the angles of each position."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, mlp_ratio: float, dropout: float, activation: str = "gelu_tanh"):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.RMSNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.norm2 = nn.RMSNorm(d_model)
        hidden = int(d_model * mlp_ratio)
        gelu = nn.GELU(approximate="tanh" if activation == "gelu_tanh" else "none")
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), gelu, nn.Linear(hidden, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor], past: tuple[Tensor, Tensor] | None = None,
                key_mask: Tensor | None = None, causal: bool = False) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x [B, N, D]; past = (keys, values) [B, H, P, Dh] to attend to besides x itself;
        key_mask [B, P + N] bool (True = attend) or None; causal: x[i] attends to x[<= i] (and
        all of past). Returns (x, (keys, values) of x)."""
        q, k, v = self.project(x, rope)
        keys, values = (k, v) if past is None else (torch.cat((past[0], k), 2), torch.cat((past[1], v), 2))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if causal and x.shape[1] > 1:
            n = x.shape[1]
            p = keys.shape[2] - n
            order = torch.ones(n, p + n, dtype=torch.bool, device=x.device).tril(p)
            mask = order if mask is None else mask & order
        return self.attend(x, q, keys, values, mask), (k, v)

    def project(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values [B, H, N, Dh] of x [B, N, D], rotated by rope (cos, sin of
        shape [N, Dh / 2], or [B, 1, N, Dh / 2] when each row has its own positions)."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def attend(self, x: Tensor, q: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> Tensor:
        """The rest of the block for x [B, N, D] given its queries and the keys/values it attends to."""
        b, n, d = x.shape
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(out.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t in [0, 1] followed by an MLP."""

    def __init__(self, d_model: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        angles = 1000.0 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat((angles.cos(), angles.sin()), dim=-1))
