"""Where each use's given part lies in a video tokenizer's stream (one layout per tokenizer kind).

- `GridLayout` (`tokenizers_vq.video`, tokens on a T' x H' x W' grid): a use gives whole token
  steps (prediction, interpolation) or all but a square of tokens (completion); `uses.py`.
- `SpriteLayout` (`tokenizers_vq.video_sprite`, a sprite's codes then a position per frame):
  prediction and interpolation give the sprite, read from the given frames only, and the given
  frames' positions. In completion a pixel hole does not hide whole tokens of an object that
  moves through it: the given tokens are what the visible pixels determine (the tokenizer's
  `encode_visible`, different for each video), and the visible pixels also steer the sampler
  (measurement guidance through the tokenizer's `decode_soft`: anchored posterior sampling).

Both say which pixels a use generated (`hidden_pixels`), what PSNR and SSIM are measured on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddm.config import ConfigError
from ddm.sampling import AllowedTokens, Fixed, MeasurementGuidance, VisibleError

from .uses import USES, check_use, draw_training_context, given_pixels, given_tokens


def _whole(value: int, factor: int, name: str, unit: str) -> int:
    if value % factor:
        raise ConfigError(f"task.{name}: {value} is not a whole number of tokens ({factor} {unit} a token)")
    return value // factor


class GridLayout:
    """The spatio-temporal grid: a use's context is whole token steps, its hole whole tokens."""

    guided_completion = False  # completion keeps the tokens outside the hole

    def __init__(self, tokenizer, context_frames: int, hole_pixels: int) -> None:
        c = tokenizer.config
        self.tokenizer, self.grid = tokenizer, tuple(tokenizer.grid)
        self.frames_per_step, self.pixels_per_token = c.temporal_downsample, c.downsample
        self.context = _whole(context_frames, c.temporal_downsample, "context_frames", "frames")
        self.hole = _whole(hole_pixels, c.downsample, "hole_pixels", "pixels")
        for use in USES:  # every use's mask is checked now, not after training
            self.given(use)

    def shape(self) -> list[int]:
        return list(self.grid)

    def given(self, use: str) -> Tensor:
        try:
            return given_tokens(use, self.grid, self.context, self.hole)
        except ValueError as e:
            raise ValueError(f"{e} (this tokenizer's token steps are {self.frames_per_step} frames, its tokens "
                             f"{self.pixels_per_token} pixels a side)") from None

    def training_context(self, uses: list[str], batch: int, generator: torch.Generator) -> Tensor:
        return draw_training_context(uses, self.grid, self.context, self.hole, batch, generator)

    def hidden_pixels(self, use: str) -> Tensor:
        return ~given_pixels(self.given(use), self.grid, self.frames_per_step, self.pixels_per_token)

    def fixed(self, videos: Tensor, use: str) -> Fixed:
        """The tokens of `videos` that `use` gives."""
        ids = self.tokenizer.encode(videos).flat()
        return Fixed(ids, self.given(use).expand(len(ids), -1))

    def processors(self) -> list:
        return []

    def measurement(self, videos: Tensor, use: str) -> MeasurementGuidance | None:
        return None


class SpriteLayout:
    """The sprite tokenizer's stream: a use gives the sprite and whole frames' positions."""

    guided_completion = True  # completion's given tokens are estimated, and the visible pixels steer the sampler

    def __init__(self, tokenizer, context_frames: int, hole_pixels: int, guidance: float, anchor: float) -> None:
        c = tokenizer.config
        self.tokenizer, self.frames, self.size = tokenizer, c.frames, c.image_size
        self.context, self.hole, self.guidance, self.anchor = context_frames, hole_pixels, guidance, anchor
        for use in USES:  # every use's masks are checked now, not after training
            self.hidden_pixels(use)
        self._given = {use: self._given_of(use) for use in USES}  # training draws them every step

    def shape(self) -> list[int]:
        return list(self.tokenizer.stream_shape)

    def given_frames(self, use: str) -> Tensor:
        """[T] bool: the frames a use gives whole (none for generation and completion)."""
        if use == "completion":
            return torch.zeros(self.frames, dtype=torch.bool)
        return given_tokens(use, (self.frames, 1, 1), self.context, 1, steps_are="frames")

    def given(self, use: str) -> Tensor:
        """[N] bool: the tokens `use` gives every video (none for completion, whose given tokens depend
        on each video: `fixed`; in training its examples give nothing, and the objective's random
        masking already trains on partial contexts)."""
        check_use(use)
        return self._given[use].clone()

    def _given_of(self, use: str) -> Tensor:
        frames = self.given_frames(use)
        given = self.tokenizer.frame_slots(frames)
        given[:self.tokenizer.content_tokens] = bool(frames.any())  # the sprite, seen in the given frames
        return given

    def training_context(self, uses: list[str], batch: int, generator: torch.Generator) -> Tensor:
        picks = torch.randint(0, len(uses), (batch,), generator=generator)
        return torch.stack([self._given[uses[int(i)]] for i in picks])

    def hidden_pixels(self, use: str) -> Tensor:
        """[1, T, H, W] bool: the pixels a use generates (completion: a centred square in every frame)."""
        check_use(use)
        hidden = torch.ones(1, self.frames, self.size, self.size, dtype=torch.bool)
        if use == "completion":
            if not 1 <= self.hole < self.size:
                raise ValueError(f"task.hole_pixels: completion needs a hole of 1 .. {self.size - 1} pixels a side "
                                 f"in {self.size}x{self.size} frames (0 hides nothing, the whole frame leaves no "
                                 f"context), got {self.hole}")
            hidden[:] = False
            top = (self.size - self.hole) // 2
            hidden[..., top:top + self.hole, top:top + self.hole] = True
        elif use != "generation":
            hidden[:, self.given_frames(use)] = False
        return hidden

    def fixed(self, videos: Tensor, use: str) -> Fixed:
        """The tokens of `videos` that `use` gives. Prediction and interpolation: the stream of `videos`
        with the frames not given blanked first, so that the sprite is read from the given frames
        alone. Completion: what the pixels outside the hole determine (`encode_visible`: the sprite's
        codes whose pixels some frame shows, the positions of frames that show enough of the sprite);
        it differs from video to video."""
        if use == "completion":
            return Fixed(*self.tokenizer.encode_visible(videos, ~self.hidden_pixels(use)[None]))
        if use in ("prediction", "interpolation"):
            videos = videos * self.given_frames(use).to(videos.dtype)[None, None, :, None, None]
        ids = self.tokenizer.encode(videos).flat()
        return Fixed(ids, self.given(use).expand(len(ids), -1))

    def given_shares(self, fixed: Fixed) -> tuple[float, float]:
        """(share of the sprite's codes, share of the positions) that `fixed` gives, over its videos."""
        n = self.tokenizer.content_tokens
        return float(fixed.mask[:, :n].float().mean()), float(fixed.mask[:, n:].float().mean())

    def processors(self) -> list:
        return [AllowedTokens(self.tokenizer.allowed_tokens())]

    def measurement(self, videos: Tensor, use: str) -> MeasurementGuidance | None:
        """Completion: the decoded expected video should match `videos` outside the hole."""
        if use != "completion":
            return None
        loss = VisibleError(videos, self.hidden_pixels(use)[None])
        return MeasurementGuidance(decode=self.tokenizer.decode_soft, loss=loss, scale=self.guidance,
                                   anchor_threshold=self.anchor)


def layout_for(kind: str, tokenizer, task_config) -> GridLayout | SpriteLayout:
    t = task_config
    if kind == "video":
        return GridLayout(tokenizer, t.context_frames, t.hole_pixels)
    if kind == "video_sprite":
        return SpriteLayout(tokenizer, t.context_frames, t.hole_pixels, t.completion_guidance, t.completion_anchor)
    raise ConfigError(f"task.tokenizer_config: a {kind!r} tokenizer; the video task reads 'video' or 'video_sprite'")
