"""Video tokenizer: per-frame conv layers, then temporal compression, around a quantizer.

    tok = VideoTokenizer(VideoTokenizerConfig(downsample=4, temporal_downsample=2))
    stream = tok.encode(x)      # x float [B, 1, 16, 64, 64] (channels, frames, H, W) in [0, 1]
    stream.ids                  # [B, 8, 16, 16]: (frames / 2, H / 4, W / 4)
    x_hat = tok.decode(stream)  # [B, 1, 16, 64, 64] in [0, 1]

Space is compressed frame by frame with 2-D convolutions (most of the pixels, cheapest
per pixel); time is compressed at the low resolution with strided 3-D convolutions, where
a 3-D kernel costs little. Data: `tokenizers_vq.data.moving_mnist`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ddm.config import ConfigError, bounded, positive

from .convnets import ConvTokenizer, ResBlock, check_factor, decoder_2d, encoder_2d, levels_of
from .data.moving_mnist import moving_mnist_splits
from .pictures import save_rows
from .quantizers import Quantizer, QuantizerConfig
from .registry import TOKENIZERS


@dataclass
class VideoTokenizerConfig:
    frames: int = positive(16)
    image_size: int = positive(64)  # square frames
    channels: int = positive(1)
    downsample: int = positive(4)  # spatial, a power of two dividing image_size
    temporal_downsample: int = positive(2)  # a power of two dividing frames
    width: int = positive(64)  # conv channels at the token resolution
    res_blocks: int = bounded(1, 0)  # 2-D residual blocks per frame, in each of encoder / decoder
    st_blocks: int = bounded(1, 0)  # 3-D (space-time) residual blocks at the token resolution
    latent_dim: int = positive(32)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        check_factor("downsample", self.downsample, "image_size", self.image_size)
        check_factor("temporal_downsample", self.temporal_downsample, "frames", self.frames)


@dataclass
class MovingMNISTConfig:
    num_train: int = positive(2000)  # videos; frames are drawn when read, so this costs no memory
    num_heldout: int = positive(200)
    seed: int = 0  # seed of the trajectories
    digit_seed: int = 0  # seed of the MNIST train / held-out digit split
    frames: int = positive(16)
    size: int = bounded(64, 1)  # the canvas, at least digit_size
    num_digits: int = positive(2)
    digit_size: int = bounded(28, 1, 28)  # pixels; < 28 shrinks the digits (and their speed) by area averaging

    def __post_init__(self) -> None:
        if self.size < self.digit_size:
            raise ConfigError(f"data.size: a {self.size}-pixel canvas cannot hold a {self.digit_size}-pixel digit")


class FoldTime(nn.Module):
    """[B, C, T, H, W] -> [B * T / k, C * k, H, W]: each k consecutive frames become one image."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return x.reshape(b, c, t // self.k, self.k, h, w).permute(0, 2, 1, 3, 4, 5).reshape(-1, c * self.k, h, w)


class UnfoldTime(nn.Module):
    """The inverse of FoldTime: [B * steps, C * k, H, W] -> [B, C, steps * k, H, W]."""

    def __init__(self, k: int, steps: int) -> None:
        super().__init__()
        self.k, self.steps = k, steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, ck, h, w = x.shape
        c = ck // self.k
        x = x.reshape(-1, self.steps, c, self.k, h, w).permute(0, 2, 1, 3, 4, 5)
        return x.reshape(-1, c, self.steps * self.k, h, w)


class FramesToVolume(nn.Module):
    """[B * T, C, H, W] -> [B, C, T, H, W] (and back with `inverse`) for T time steps."""

    def __init__(self, steps: int, inverse: bool = False) -> None:
        super().__init__()
        self.steps, self.inverse = steps, inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverse:
            return x.transpose(1, 2).flatten(0, 1)
        return x.reshape(-1, self.steps, *x.shape[1:]).transpose(1, 2)


@TOKENIZERS.register("video")
class VideoTokenizer(ConvTokenizer):
    config_class = VideoTokenizerConfig
    DataConfig = MovingMNISTConfig

    def __init__(self, config: VideoTokenizerConfig) -> None:
        super().__init__()
        self.config = c = config
        levels = levels_of(c.downsample, "downsample")
        self.grid = (c.frames // c.temporal_downsample, c.image_size // c.downsample, c.image_size // c.downsample)
        # Time is compressed first, by stacking each group of `temporal_downsample` frames as
        # channels: the 2-D layers then run on T / k images instead of T, the dearest part.
        k, steps, w = c.temporal_downsample, self.grid[0], c.width
        enc: list[nn.Module] = [FoldTime(k), encoder_2d(c.channels * k, w, levels, c.res_blocks, w),
                                FramesToVolume(steps)]
        enc += [ResBlock(w, dims=3) for _ in range(c.st_blocks)]  # mixes neighbouring groups of frames
        enc += [nn.SiLU(), nn.Conv3d(w, c.latent_dim, 1)]
        dec: list[nn.Module] = [nn.Conv3d(c.latent_dim, w, 1)]
        dec += [ResBlock(w, dims=3) for _ in range(c.st_blocks)]
        dec += [FramesToVolume(steps, inverse=True), decoder_2d(w, w, levels, c.res_blocks, c.channels * k),
                UnfoldTime(k, steps)]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.quantizer = Quantizer(c.quantizer, c.latent_dim)

    def check_input(self, x):
        c = self.config
        return self._check_pixels(x, (c.channels, c.frames, c.image_size, c.image_size), "[B, C, T, H, W]")

    @classmethod
    def build_data(cls, data_config: MovingMNISTConfig) -> dict:
        d = data_config
        return moving_mnist_splits(d.num_train, d.num_heldout, d.seed, d.frames, d.size, d.num_digits, d.digit_seed,
                                   digit_size=d.digit_size)

    def save_pictures(self, heldout, out_dir: Path, count: int = 2) -> list[Path]:
        """frames.png: for each of `count` held-out videos, its frames over their reconstructions."""
        x = heldout[:count]["x"]
        x_hat = self.decode(self.encode(x))
        rows, labels = [], []
        for i in range(len(x)):  # the first channel of each frame (the data here are grey)
            rows += [x[i, 0], x_hat[i, 0]]
            labels += [f"video {i}", f"reconstruction {i}"]
        return [save_rows(Path(out_dir) / "frames.png", rows, labels, scale=1)]
