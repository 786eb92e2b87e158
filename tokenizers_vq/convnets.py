"""Small convolutional encoders / decoders shared by the image and video tokenizers.

Each spatial level halves (encoder) or doubles (decoder) height and width; the video
tokenizer adds temporal levels that do the same along time. No normalisation layers:
these nets are small and shallow, and batch statistics would make encode depend on
the batch.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn

from ddm.config import ConfigError

from .base import LearnedTokenizer, as_ids
from .stats import codebook_stats
from .stream import TokenStream


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), in 2-D or 3-D."""

    def __init__(self, channels: int, dims: int = 2, kernel: int | tuple[int, ...] = 3) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        ks = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
        pad = tuple(k // 2 for k in ks)
        self.body = nn.Sequential(nn.SiLU(), conv(channels, channels, ks, padding=pad),
                                  nn.SiLU(), conv(channels, channels, ks, padding=pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def level_widths(width: int, levels: int) -> list[int]:
    """Channels at each resolution, full resolution first: halved per level up from `width`.

    Most of the compute is at full resolution, so the channels are fewest there.
    """
    return [max(width >> (levels - i), 8) for i in range(levels + 1)]


def encoder_2d(in_channels: int, width: int, levels: int, res_blocks: int, latent_dim: int) -> nn.Sequential:
    """[N, in, H, W] -> [N, latent_dim, H / 2^levels, W / 2^levels]."""
    widths = level_widths(width, levels)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [nn.SiLU(), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
    layers += [ResBlock(width) for _ in range(res_blocks)]
    layers += [nn.SiLU(), nn.Conv2d(width, latent_dim, 1)]
    return nn.Sequential(*layers)


def decoder_2d(latent_dim: int, width: int, levels: int, res_blocks: int, out_channels: int) -> nn.Sequential:
    """[N, latent_dim, h, w] -> [N, out, h * 2^levels, w * 2^levels] (unbounded values)."""
    widths = level_widths(width, levels)[::-1]
    layers: list[nn.Module] = [nn.Conv2d(latent_dim, width, 1)]
    layers += [ResBlock(width) for _ in range(res_blocks)]
    for c_in, c_out in zip(widths, widths[1:]):
        # nearest upsampling + conv rather than a transposed conv: no checkerboard artefacts
        layers += [nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)]
    layers += [nn.SiLU(), nn.Conv2d(widths[-1], out_channels, 3, padding=1)]
    return nn.Sequential(*layers)


def levels_of(factor: int, name: str) -> int:
    """log2 of a power-of-two downsampling factor; a clear error otherwise."""
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"{name}: expected a power of two (1, 2, 4, ...), got {factor}")
    return factor.bit_length() - 1


def check_factor(name: str, factor: int, size_name: str, size: int) -> None:
    """A config's downsampling factor `tokenizer.<name>`: a power of two dividing `tokenizer.<size_name>`."""
    try:
        levels_of(factor, f"tokenizer.{name}")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if size % factor:
        raise ConfigError(f"tokenizer.{name}: {factor} does not divide tokenizer.{size_name}={size}")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the block, the previous mode restored afterwards.

    encode / decode go through this so that they never update the codebook (EMA and
    dead-code replacement run in training mode) whatever mode the caller left.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class ConvTokenizer(LearnedTokenizer):
    """Encoder -> quantizer -> decoder over a grid of latent vectors; images and video share it.

    A subclass builds `self.encoder` (x -> [B, D, *grid]), `self.decoder` (the inverse),
    `self.quantizer`, sets `self.grid` (the latent grid) and implements `check_input`.
    Token ids come as [B, *grid] (or [B, *grid, Q] for residual VQ with Q levels).
    Reconstructions are clamped to [0, 1] by `decode` and `evaluate`, not in training:
    a clamp would stop the gradient on pixels the decoder overshoots.
    """

    grid: tuple[int, ...]

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check_pixels(self, x: torch.Tensor, expected: tuple[int, ...], layout: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a float tensor {layout}, got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"x: expected float pixels in [0, 1], got {x.dtype} (divide uint8 images by 255)")
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x: expected {layout} = [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x: contains NaN or infinite values")
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"x: pixel values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        return x.float()

    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size

    @property
    def stream_shape(self) -> tuple[int, ...]:
        q = self.quantizer.num_codebooks
        return self.grid if q == 1 else (*self.grid, q)

    def _quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(self.check_input(x))
        b, d = z.shape[:2]
        zq, codes, aux = self.quantizer(z.reshape(b, d, -1).transpose(1, 2))
        return zq, codes.reshape(b, *self.grid, -1), aux

    def _decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        """[B, N, D] quantized vectors -> pixels."""
        b, _, d = zq.shape
        return self.decoder(zq.transpose(1, 2).reshape(b, d, *self.grid))

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zq, codes, aux = self._quantize(x)
        return self._decode_latent(zq), codes, aux

    def encode(self, x: torch.Tensor) -> TokenStream:
        with eval_mode(self):
            _, codes, _ = self._quantize(x)
        ids = self.quantizer.codes_to_ids(codes)
        return TokenStream(ids.reshape(ids.shape[0], *self.stream_shape), self.stream_shape)

    def decode(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        ids = self.check_ids(as_ids(stream), self.stream_shape)
        codes = self.quantizer.ids_to_codes(ids.reshape(ids.shape[0], -1, self.quantizer.num_codebooks))
        with eval_mode(self):
            return self._decode_latent(self.quantizer.decode_codes(codes)).clamp(0, 1)

    @torch.no_grad()
    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's vectors before quantization, one per token: [B, N, D] (a joint model's
        continuous half)."""
        with eval_mode(self):
            z = self.encoder(self.check_input(x))
        return z.reshape(*z.shape[:2], -1).transpose(1, 2)

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """[B, N, D] vectors (quantized or not) -> pixels in [0, 1]."""
        d = self.config.latent_dim
        if z.ndim != 3 or z.shape[1] != math.prod(self.grid) or z.shape[2] != d:
            raise ValueError(f"latents: expected [B, {math.prod(self.grid)}, {d}], got {tuple(z.shape)}")
        with eval_mode(self):
            return self._decode_latent(z).clamp(0, 1)

    def decode_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, N, V] over a single-codebook vocabulary -> pixels, differentiable in probs.

        The decoder reads the expected code vector of each token: what measurement guidance
        (posterior sampling for inverse problems) differentiates through. Call in eval mode."""
        if self.quantizer.num_codebooks != 1:
            raise ValueError("decode_soft: needs a single-codebook quantizer (a residual level's "
                             "expectation is not a token's)")
        if probs.ndim != 3 or probs.shape[-1] != self.vocab_size:
            raise ValueError(f"probs: expected [B, N, {self.vocab_size}], got {tuple(probs.shape)}")
        with torch.no_grad():
            table = self.quantizer.decode_codes(torch.arange(self.vocab_size, device=probs.device)[:, None])
        return self._decode_latent(probs @ table)

    def evaluate(self, heldout, batch_size: int = 100) -> dict[str, float]:
        """PSNR (dB, mean over examples of 10 log10(1 / that example's MSE)), MSE, codebook stats."""
        errors, all_codes = [], []
        with eval_mode(self):
            for start in range(0, len(heldout), batch_size):
                x = heldout[start:start + batch_size]["x"]
                x_hat, codes, _ = self.reconstruct(x)
                errors.append((x_hat.clamp(0, 1) - x).pow(2).flatten(1).mean(1))
                all_codes.append(codes)
        mse = torch.cat(errors)
        psnr = -10 * torch.log10(mse.clamp_min(1e-10))
        stats = codebook_stats(torch.cat(all_codes), self.quantizer.codebook_sizes)
        return {"psnr": float(psnr.mean()), "mse": float(mse.mean()), **stats}
