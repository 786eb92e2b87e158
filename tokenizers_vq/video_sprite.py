"""Object-centric video tokenizer: one appearance per video, and a position per frame.

A video of one object moving on an empty background (Moving-MNIST with one digit, sprites) is
an appearance and a path: the content / motion split of DRNet (Denton & Birodkar 2017, shown on
Moving-MNIST) and CMD (Yu et al. 2024). Each frame's position is the centre of mass of its ink,
rounded to a pixel; the frames, each cut in a `sprite_size` window centred there, are averaged
(frames without ink left out) into one sprite, which a 2-D VQ encoder / decoder (learned, as the
image tokenizer's) turns into (sprite_size / downsample)^2 tokens. The stream is those tokens,
then each frame's (row, column), two tokens a frame with ids codebook_size + coordinate.

    tok = SpriteVideoTokenizer(SpriteVideoTokenizerConfig(image_size=32, sprite_size=16, downsample=2))
    stream = tok.encode(x)       # x float [B, 1, 16, 32, 32] -> ids [B, 64 + 2 * 16]
    x_hat = tok.decode(stream)   # [B, 1, 16, 32, 32]: the decoded sprite drawn at every position

Drawing is a product of matrices: frame = A_row @ sprite @ A_col^T, where A holds the one-hot
position (shifted along the sprite's rows or columns). `decode_soft` puts probabilities in the
place of the one-hot (the expected frame), which measurement guidance differentiates through.

What it cannot represent, by construction: an appearance that changes over time, a second
object, a background. Within a video the sprite is exact when the object is a fixed image
moved by whole pixels (Moving-MNIST's digits: their corners are whole pixels), so every frame of
a decoded video shows the same digit; what is lost is only the VQ's error on the sprite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
import torch.nn.functional as F

from ddm.config import ConfigError, positive

from .base import as_ids
from .convnets import ConvTokenizer, check_factor, decoder_2d, encoder_2d, eval_mode, levels_of
from .quantizers import Quantizer, QuantizerConfig
from .registry import TOKENIZERS
from .stream import TokenStream
from .video import MovingMNISTConfig, VideoTokenizer

INK = 1e-3  # a frame with less total ink than this holds no object


@dataclass
class SpriteVideoTokenizerConfig:
    frames: int = positive(16)
    image_size: int = positive(32)  # square frames
    channels: int = positive(1)
    sprite_size: int = positive(16)  # the window around each frame's centre of mass; holds the object
    downsample: int = positive(2)  # of the sprite, a power of two dividing sprite_size
    width: int = positive(64)
    res_blocks: int = 1
    latent_dim: int = positive(32)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        check_factor("downsample", self.downsample, "sprite_size", self.sprite_size)
        if self.sprite_size % 2 or self.sprite_size > 2 * self.image_size:
            raise ConfigError(f"tokenizer.sprite_size: expected an even size up to twice image_size "
                              f"({2 * self.image_size}), got {self.sprite_size}")
        if self.channels != 1:
            raise ConfigError("tokenizer.channels: the centre of mass is of grey ink; expected 1")


def positions(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Videos [B, 1, T, H, W] -> (each frame's ink centre of mass rounded to a pixel, [B, T, 2] long
    (row, column); the centre of the frame where it has no ink), (has ink [B, T] bool))."""
    frames = x[:, 0]
    mass = frames.sum((-1, -2))
    h, w = frames.shape[-2:]
    rows = (frames.sum(-1) * torch.arange(h, dtype=x.dtype)).sum(-1) / mass.clamp_min(INK)
    cols = (frames.sum(-2) * torch.arange(w, dtype=x.dtype)).sum(-1) / mass.clamp_min(INK)
    inked = mass > INK
    centre = torch.tensor([h // 2, w // 2], dtype=torch.long)
    pos = torch.stack((rows, cols), -1).round().long()
    pos = torch.where(inked[..., None], pos, centre)
    return torch.stack((pos[..., 0].clamp(0, h - 1), pos[..., 1].clamp(0, w - 1)), -1), inked


def shift_matrices(p: torch.Tensor, sprite_size: int) -> torch.Tensor:
    """Position probabilities p [..., L] along one axis -> [..., L, sprite_size]: entry (i, j) is the
    probability that sprite row j lands on frame row i (the sprite's centre at i - j + sprite_size / 2)."""
    length = p.shape[-1]
    index = torch.arange(length)[:, None] - torch.arange(sprite_size)[None, :] + sprite_size // 2
    inside = (index >= 0) & (index < length)
    return p[..., index.clamp(0, length - 1)] * inside


@TOKENIZERS.register("video_sprite")
class SpriteVideoTokenizer(ConvTokenizer):
    config_class = SpriteVideoTokenizerConfig
    DataConfig = MovingMNISTConfig

    def __init__(self, config: SpriteVideoTokenizerConfig) -> None:
        super().__init__()
        self.config = c = config
        levels = levels_of(c.downsample, "downsample")
        side = c.sprite_size // c.downsample
        self.grid = (side, side)  # the sprite's latent grid
        self.encoder = encoder_2d(c.channels, c.width, levels, c.res_blocks, c.latent_dim)
        self.decoder = decoder_2d(c.latent_dim, c.width, levels, c.res_blocks, c.channels)
        self.quantizer = Quantizer(c.quantizer, c.latent_dim)
        if self.quantizer.num_codebooks != 1:
            raise ConfigError("tokenizer.quantizer: the sprite tokenizer needs a single codebook (one id a token)")
        self.content_tokens = side * side

    # ------------------------------------------------------------------ the stream
    @property
    def codebook_size(self) -> int:
        return self.quantizer.vocab_size

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.config.image_size  # sprite codes, then coordinates

    @property
    def stream_shape(self) -> tuple[int, ...]:
        return (self.content_tokens + 2 * self.config.frames,)

    def motion_slots(self) -> torch.Tensor:
        """[N] bool: True at the coordinate tokens (the rest are sprite codes)."""
        slots = torch.zeros(self.stream_shape[0], dtype=torch.bool)
        slots[self.content_tokens:] = True
        return slots

    def allowed_tokens(self) -> torch.Tensor:
        """[N, V] bool: sprite codes where the stream holds sprite codes, coordinates elsewhere (for
        `ddm.sampling.AllowedTokens`)."""
        motion = self.motion_slots()[:, None]
        is_coordinate = torch.arange(self.vocab_size)[None, :] >= self.codebook_size
        return motion == is_coordinate

    def frame_slots(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T] bool -> [N] bool: the coordinate tokens of those frames."""
        slots = torch.zeros(self.stream_shape[0], dtype=torch.bool)
        slots[self.content_tokens:] = frames.repeat_interleave(2)
        return slots

    # ------------------------------------------------------------------ encoding
    check_input = VideoTokenizer.check_input

    def sprites(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Videos -> (sprites [B, 1, S, S]: the frames with ink, each cut around its position and
        averaged; positions [B, T, 2])."""
        x = self.check_input(x)
        pos, inked = positions(x)
        crops = self._crops(x[:, 0], pos)  # [B, T, S, S]
        weight = inked.to(x.dtype)[..., None, None]
        sprite = (crops * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        return sprite[:, None], pos

    def _quantize(self, x: torch.Tensor):
        sprite, pos = self.sprites(x)
        zq, codes, aux = self._quantize_sprite(sprite)
        return zq, codes, aux, pos

    def _quantize_sprite(self, sprite: torch.Tensor):
        z = self.encoder(sprite)
        b, d = z.shape[:2]
        zq, codes, aux = self.quantizer(z.reshape(b, d, -1).transpose(1, 2))
        return zq, codes.reshape(b, *self.grid, -1), aux

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zq, codes, aux, pos = self._quantize(x)
        size = self.config.image_size
        one_hot = F.one_hot(pos, size).to(zq.dtype)
        return self.draw(self._decode_latent(zq), one_hot[..., 0, :], one_hot[..., 1, :]), codes, aux

    def encode(self, x: torch.Tensor) -> TokenStream:
        with eval_mode(self):
            _, codes, _, pos = self._quantize(x)
        content = self.quantizer.codes_to_ids(codes).reshape(len(codes), -1)
        ids = torch.cat((content, self.codebook_size + pos.flatten(1)), 1)
        return TokenStream(ids, self.stream_shape)

    def encode_visible(self, x: torch.Tensor, visible: torch.Tensor, rounds: int = 3,
                       min_seen: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """Videos x [B, 1, T, H, W] seen only where `visible` ([1 or B, 1, T, H, W] bool) -> (ids [B, N],
        given [B, N] bool: the tokens the visible pixels determine).

        Alternates `rounds` times: the sprite as the per-pixel mean of the visible pixels of the
        reliable frames, each cut around its position; then each frame's position as the one where the
        sprite drawn best matches the frame's visible pixels (least squared error over every
        position: two correlations). A frame is reliable when at least `min_seen` of the sprite's ink
        falls on visible pixels there (at first: when it holds at least `min_seen` of the most visible
        ink of any frame of its video). Given: the positions of reliable frames, and the sprite codes
        whose pixels were all seen in some reliable frame; the rest is for the model to fill."""
        x = self.check_input(x)
        if visible.dtype != torch.bool or visible.dim() != 5 or visible.shape[1:] != x.shape[1:] \
                or visible.shape[0] not in (1, len(x)):
            raise ValueError(f"visible: expected a bool mask [1 or {len(x)}, {', '.join(map(str, x.shape[1:]))}], "
                             f"got {visible.dtype} {tuple(visible.shape)}")
        vis = visible.expand_as(x).to(x.dtype)[:, 0]  # [B, T, H, W]
        seen = x[:, 0] * vis
        mass = seen.sum((-1, -2))
        pos, _ = positions(seen[:, None])
        reliable = mass >= min_seen * mass.amax(1, keepdim=True).clamp_min(1e-6)
        for _ in range(rounds):
            sprite, coverage = self._visible_mean(seen, vis, pos, reliable)
            pos, share = self._match(seen, vis, sprite)
            reliable = share >= min_seen
        # the sprite and the positions are found up to a common shift: centre the sprite on its ink, as
        # `encode` does, so that the ids are the ones the model learned
        sprite, _ = self._visible_mean(seen, vis, pos, reliable)
        centre, _ = positions(sprite[:, None, None])
        pos = pos + (centre[:, 0] - self.config.sprite_size // 2)[:, None, :]
        pos = pos.clamp(0, self.config.image_size - 1)
        sprite, coverage = self._visible_mean(seen, vis, pos, reliable)
        with eval_mode(self):
            _, codes, _ = self._quantize_sprite(sprite[:, None])
        content = self.quantizer.codes_to_ids(codes).reshape(len(x), -1)
        ids = torch.cat((content, self.codebook_size + pos.flatten(1)), 1)
        d, side = self.config.downsample, self.grid[0]
        patch_seen = (coverage > 0).reshape(len(x), side, d, side, d).all(4).all(2).flatten(1)
        return ids, torch.cat((patch_seen, reliable.repeat_interleave(2, 1)), 1)

    def _crops(self, frames: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """frames [B, T, H, W] -> the sprite_size windows around pos [B, T, 2]: [B, T, S, S]."""
        s, half = self.config.sprite_size, self.config.sprite_size // 2
        padded = F.pad(frames, (half, half, half, half))
        offsets = torch.arange(s)
        rows = (pos[..., 0, None] + offsets)[..., :, None]
        cols = (pos[..., 1, None] + offsets)[..., None, :]
        b, t = torch.arange(frames.shape[0])[:, None, None, None], torch.arange(frames.shape[1])[None, :, None, None]
        return padded[b, t, rows, cols]

    def _visible_mean(self, seen, vis, pos, reliable) -> tuple[torch.Tensor, torch.Tensor]:
        """(sprite [B, S, S]: the mean of what reliable frames show of each pixel, 0 where none shows it;
        coverage [B, S, S]: how many reliable frames show it)."""
        weight = reliable.to(seen.dtype)[..., None, None]
        coverage = (self._crops(vis, pos) * weight).sum(1)
        return (self._crops(seen, pos) * weight).sum(1) / coverage.clamp_min(1.0), coverage

    def _match(self, seen, vis, sprite) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's position minimising the squared error of the drawn sprite on its visible pixels
        (sum over visible of -2 frame * drawn + drawn^2: two correlations with the sprite), and the share
        of the sprite's ink that falls on visible pixels there. [B, T, 2] long, [B, T]."""
        b, t, h, w = seen.shape
        half = self.config.sprite_size // 2
        kernel = sprite.repeat_interleave(t, 0)[:, None]  # one per frame: [B * T, 1, S, S]

        def correlate(image, k):
            padded = F.pad(image.reshape(1, b * t, h, w), (half, half, half, half))
            return F.conv2d(padded, k, groups=b * t)[0, :, :h, :w].reshape(b, t, h, w)

        error = correlate(vis, kernel ** 2) - 2 * correlate(seen, kernel)
        best = error.flatten(2).argmin(2)
        pos = torch.stack((best // w, best % w), -1)
        ink_seen = correlate(vis, kernel).flatten(2).gather(2, best[..., None])[..., 0]
        return pos, ink_seen / sprite.sum((-1, -2))[:, None].clamp_min(1e-6)

    # ------------------------------------------------------------------ decoding
    def draw(self, sprite: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """sprite [B, 1, S, S], position probabilities rows / cols [B, T, image_size] -> frames
        [B, 1, T, H, W]: the sprite drawn at each position, weighted by its probability."""
        s = self.config.sprite_size
        a_rows, a_cols = shift_matrices(rows, s), shift_matrices(cols, s)  # [B, T, H, S]
        return (a_rows @ sprite @ a_cols.transpose(-1, -2))[:, None]

    def _split(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        content, coords = ids[:, :self.content_tokens], ids[:, self.content_tokens:]
        n = self.content_tokens
        wrong = content >= self.codebook_size
        if wrong.any():
            b, i = map(int, wrong.nonzero()[0])
            raise ValueError(f"ids: position {i} of sample {b} holds {int(content[b, i])}, a coordinate id; positions "
                             f"0..{n - 1} hold sprite codes [0, {self.codebook_size})")
        wrong = coords < self.codebook_size
        if wrong.any():
            b, i = map(int, wrong.nonzero()[0])
            raise ValueError(f"ids: position {n + i} of sample {b} holds {int(coords[b, i])}, a sprite code; positions "
                             f"{n}.. hold coordinates [{self.codebook_size}, {self.vocab_size})")
        return content, (coords - self.codebook_size).reshape(len(ids), -1, 2)

    def decode(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        ids = self.check_ids(as_ids(stream), self.stream_shape)
        content, pos = self._split(ids)
        size = self.config.image_size
        with eval_mode(self):
            codes = self.quantizer.ids_to_codes(content[..., None])
            sprite = self._decode_latent(self.quantizer.decode_codes(codes)).clamp(0, 1)
            one_hot = F.one_hot(pos, size).to(sprite.dtype)
            return self.draw(sprite, one_hot[..., 0, :], one_hot[..., 1, :]).clamp(0, 1)

    def decode_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, N, V] -> frames, differentiable in probs: the expected sprite code of each sprite
        token, drawn at the expected positions (each token's probabilities over the ids its place can
        hold, renormalised)."""
        if probs.ndim != 3 or tuple(probs.shape[1:]) != (self.stream_shape[0], self.vocab_size):
            raise ValueError(f"probs: expected [B, {self.stream_shape[0]}, {self.vocab_size}], got "
                             f"{tuple(probs.shape)}")
        n, k = self.content_tokens, self.codebook_size
        content = probs[:, :n, :k]
        content = content / content.sum(-1, keepdim=True).clamp_min(1e-12)
        coords = probs[:, n:, k:]
        coords = (coords / coords.sum(-1, keepdim=True).clamp_min(1e-12)).reshape(len(probs), -1, 2, coords.shape[-1])
        with torch.no_grad():
            table = self.quantizer.decode_codes(torch.arange(k, device=probs.device)[:, None])
        sprite = self._decode_latent(content @ table)
        return self.draw(sprite, coords[:, :, 0], coords[:, :, 1])

    def latents(self, x):
        raise NotImplementedError("SpriteVideoTokenizer: its stream mixes codes and coordinates; no latent per token")

    decode_latents = latents

    # ------------------------------------------------------------------ data and pictures
    @classmethod
    def build_data(cls, data_config: MovingMNISTConfig) -> dict:
        if data_config.num_digits != 1:
            raise ConfigError(f"data.num_digits={data_config.num_digits}: the sprite tokenizer holds one object")
        return VideoTokenizer.build_data(data_config)

    save_pictures = VideoTokenizer.save_pictures  # frames.png: held-out frames over their reconstructions
