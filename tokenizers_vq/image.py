"""Image tokenizer: a small conv encoder / decoder around a quantizer (VQ, RVQ, FSQ or LFQ).

    tok = ImageTokenizer(ImageTokenizerConfig(downsample=4))
    stream = tok.encode(x)      # x float [B, 1, 28, 28] in [0, 1] -> ids [B, 7, 7]
    x_hat = tok.decode(stream)  # [B, 1, 28, 28] in [0, 1]

With residual VQ of Q levels the ids are [B, 7, 7, Q]. Data: `tokenizers_vq.data.images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ddm.config import bounded, positive

from .convnets import ConvTokenizer, check_factor, decoder_2d, encoder_2d, levels_of
from .data.images import image_splits
from .pictures import save_rows
from .quantizers import Quantizer, QuantizerConfig
from .registry import TOKENIZERS


@dataclass
class ImageTokenizerConfig:
    image_size: int = positive(28)  # square images, image_size x image_size
    channels: int = positive(1)
    downsample: int = positive(4)  # a power of two dividing image_size; grid = image_size / downsample
    width: int = positive(64)  # conv channels
    res_blocks: int = bounded(1, 0)  # residual blocks at the token resolution, in each of encoder / decoder
    latent_dim: int = positive(32)  # dimension of the vector each token quantizes
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        check_factor("downsample", self.downsample, "image_size", self.image_size)


@dataclass
class ImageDataConfig:
    name: Literal["mnist", "animals"] = "mnist"
    seed: int = 0  # seed of the stratified split
    heldout_fraction: float = bounded(0.1, 0.01, 0.9)
    limit: int = bounded(0, 0)  # keep only the first `limit` examples of each split (0: all)


@TOKENIZERS.register("image")
class ImageTokenizer(ConvTokenizer):
    config_class = ImageTokenizerConfig
    DataConfig = ImageDataConfig

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        self.config = c = config
        levels = levels_of(c.downsample, "downsample")
        self.grid = (c.image_size // c.downsample,) * 2
        self.encoder = encoder_2d(c.channels, c.width, levels, c.res_blocks, c.latent_dim)
        self.decoder = decoder_2d(c.latent_dim, c.width, levels, c.res_blocks, c.channels)
        self.quantizer = Quantizer(c.quantizer, c.latent_dim)

    def check_input(self, x):
        c = self.config
        return self._check_pixels(x, (c.channels, c.image_size, c.image_size), "[B, C, H, W]")

    @classmethod
    def build_data(cls, data_config: ImageDataConfig) -> dict:
        d = data_config
        return image_splits(d.name, d.seed, d.heldout_fraction, d.limit)

    def save_pictures(self, heldout, out_dir: Path, count: int = 16) -> list[Path]:
        """reconstructions.png: held-out originals (top row) over their reconstructions."""
        # evenly spaced examples: the held-out set is sorted by source index, which groups classes
        x = heldout[np.linspace(0, len(heldout) - 1, min(count, len(heldout))).round().astype(int).tolist()]["x"]
        x_hat = self.decode(self.encode(x))
        # the grid shows the first channel (the data here are grey)
        return [save_rows(Path(out_dir) / "reconstructions.png", [x[:, 0], x_hat[:, 0]],
                          ["original", "reconstruction"])]
