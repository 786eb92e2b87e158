"""The quantizers, from `vector-quantize-pytorch`, behind one small wrapper chosen by config.

    q = Quantizer(QuantizerConfig(kind="rvq", codebook_size=256, num_quantizers=4), dim=64)
    zq, codes, aux = q(z)            # z [B, N, dim] -> codes [B, N, Q]
    zq = q.decode_codes(codes)

Quantization always runs in float32, outside any autocast (FSQ codes collapse in bf16).
Codes of residual levels are separate codebooks; `codes_to_ids` offsets level q by
q * codebook_size so that one token vocabulary of Q * codebook_size holds them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from vector_quantize_pytorch import FSQ, LFQ, GroupedResidualFSQ, ResidualFSQ, ResidualVQ, VectorQuantize

from ddm.config import ConfigError, bounded, positive, registered
from ddm.registry import Registry

# kind -> build(config, dim) -> a vector-quantize-pytorch module
QUANTIZERS = Registry("quantizer kind")


@dataclass
class QuantizerConfig:
    kind: str = registered("tokenizers_vq.quantizers:QUANTIZERS", "vq")  # vq, rvq, fsq, rfsq, lfq
    codebook_size: int = positive(512)  # vq / rvq (per level) / lfq (a power of two)
    num_quantizers: int = positive(1)  # rvq / rfsq residual levels
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # fsq / rfsq levels per latent dim
    groups: int = positive(1)  # rfsq: split the latent into groups quantized apart (groups * levels tokens)
    codebook_dim: int = bounded(0, 0)  # vq / rvq: project to this dim before lookup (0: none)
    decay: float = bounded(0.99, 0.0, 1.0)  # EMA decay of the codebook
    commitment_weight: float = bounded(0.25, 0.0)
    kmeans_init: bool = True  # initialise the codebook by k-means on the first batch
    dead_code_threshold: float = bounded(2.0, 0.0)  # codes used fewer times per batch are replaced
    use_cosine_sim: bool = False
    entropy_loss_weight: float = bounded(0.1, 0.0)  # lfq

    def __post_init__(self) -> None:
        if self.kind == "lfq" and self.codebook_size & (self.codebook_size - 1):
            raise ConfigError(f"quantizer.codebook_size: lfq needs a power of two, got {self.codebook_size}")
        if self.kind in ("fsq", "rfsq") and (not self.levels or any(v < 2 for v in self.levels)):
            raise ConfigError(f"quantizer.levels: fsq needs levels >= 2 per dim, got {self.levels}")
        if self.kind != "rfsq" and self.groups != 1:
            raise ConfigError(f"quantizer.groups: only rfsq has groups, got {self.groups} for kind {self.kind!r}")
        if self.kind not in ("rvq", "rfsq") and self.num_quantizers != 1:
            raise ConfigError(f"quantizer.num_quantizers: only rvq and rfsq have levels, got {self.num_quantizers} "
                              f"for kind {self.kind!r}")


def _vq_args(c: QuantizerConfig, dim: int) -> dict:
    return dict(dim=dim, codebook_size=c.codebook_size, decay=c.decay, commitment_weight=c.commitment_weight,
                kmeans_init=c.kmeans_init, threshold_ema_dead_code=c.dead_code_threshold,
                use_cosine_sim=c.use_cosine_sim, codebook_dim=c.codebook_dim or None)


@QUANTIZERS.register("vq")
def build_vq(config: QuantizerConfig, dim: int) -> nn.Module:
    return VectorQuantize(**_vq_args(config, dim))


@QUANTIZERS.register("rvq")
def build_rvq(config: QuantizerConfig, dim: int) -> nn.Module:
    return ResidualVQ(num_quantizers=config.num_quantizers, **_vq_args(config, dim))


@QUANTIZERS.register("fsq")
def build_fsq(config: QuantizerConfig, dim: int) -> nn.Module:
    return FSQ(levels=list(config.levels), dim=dim)


@QUANTIZERS.register("rfsq")
def build_rfsq(config: QuantizerConfig, dim: int) -> nn.Module:
    # each level quantizes the previous residual on a grid 1/level finer: no codebook to learn,
    # no dead codes, and latents unlike the training ones still land on a fine grid
    if dim % config.groups:
        raise ConfigError(f"quantizer.groups: {config.groups} does not divide the latent dim {dim}")
    args = dict(levels=list(config.levels), num_quantizers=config.num_quantizers)
    if config.groups > 1:
        return GroupedResidualFSQ(dim=dim, groups=config.groups, **args)
    return ResidualFSQ(dim=dim, **args)


@QUANTIZERS.register("lfq")
def build_lfq(config: QuantizerConfig, dim: int) -> nn.Module:
    return LFQ(dim=dim, codebook_size=config.codebook_size, entropy_loss_weight=config.entropy_loss_weight)


class Quantizer(nn.Module):
    def __init__(self, config: QuantizerConfig, dim: int) -> None:
        super().__init__()
        self.config = config
        self.impl = QUANTIZERS.build(config.kind, "quantizer.kind", config=config, dim=dim)

    @property
    def num_codebooks(self) -> int:
        return self.config.num_quantizers * self.config.groups

    @property
    def codebook_size(self) -> int:
        return math.prod(self.config.levels) if self.config.kind in ("fsq", "rfsq") else self.config.codebook_size

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size] * self.num_codebooks

    @property
    def vocab_size(self) -> int:
        """Size of the joint token vocabulary over all levels."""
        return self.codebook_size * self.num_codebooks

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, N, dim] -> (quantized [B, N, dim], codes [B, N, Q], auxiliary loss scalar)."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            out = self.impl(z.float())
        zq, codes = out[0], out[1]
        if self.config.groups > 1:  # [groups, B, N, levels] -> [B, N, groups * levels], group-major
            codes = codes.movedim(0, -2).flatten(-2)
        aux = out[2].sum() if len(out) > 2 else zq.new_zeros(())
        if codes.ndim == z.ndim - 1:
            codes = codes.unsqueeze(-1)
        return zq, codes.long(), aux

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [..., Q] -> quantized vectors [..., dim]."""
        with torch.autocast(device_type=codes.device.type, enabled=False):
            if self.config.groups > 1:
                return self.impl.get_output_from_indices(codes.unflatten(-1, (self.config.groups, -1)).movedim(-2, 0))
            if self.config.kind in ("rvq", "rfsq"):
                return self.impl.get_output_from_indices(codes)
            codes = codes.squeeze(-1)
            if self.config.kind == "vq":
                return self.impl.get_output_from_indices(codes)
            return self.impl.indices_to_codes(codes)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """[..., Q] codes -> [..., Q] ids in one vocabulary (level q offset by q * codebook_size)."""
        offsets = torch.arange(self.num_codebooks, device=codes.device) * self.codebook_size
        return codes + offsets

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(self.num_codebooks, device=ids.device) * self.codebook_size
        codes = ids - offsets
        if (codes < 0).any() or (codes >= self.codebook_size).any():
            raise ValueError(f"ids: an id does not belong to its level's range "
                             f"[q * {self.codebook_size}, (q + 1) * {self.codebook_size})")
        return codes
