"""Inpainting: hide a region of an image, keep the tokens that see only the visible part,
and let the sampler fill the rest (fixed tokens + anchored posterior sampling).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddm.sampling import Fixed, MeasurementGuidance, VisibleError


def half_mask(batch: int, size: int, side: str = "bottom") -> Tensor:
    """[B, 1, size, size] bool pixel mask, True = hidden: the bottom (or right) half."""
    hidden = torch.zeros(batch, 1, size, size, dtype=torch.bool)
    if side == "bottom":
        hidden[..., size // 2:, :] = True
    elif side == "right":
        hidden[..., :, size // 2:] = True
    else:
        raise ValueError(f"side: expected 'bottom' or 'right', got {side!r}")
    return hidden


def token_mask(hidden: Tensor, grid: tuple[int, int]) -> Tensor:
    """[B, 1, H, W] hidden pixels -> [B, h*w] bool, True where a token's cell touches the hidden region
    (those tokens are generated; the others are fixed to the image's own tokens)."""
    b, _, h, w = hidden.shape
    if h % grid[0] or w % grid[1]:
        raise ValueError(f"mask: {h}x{w} pixels do not tile into the {grid[0]}x{grid[1]} token grid")
    cells = hidden.float().reshape(b, grid[0], h // grid[0], grid[1], w // grid[1]).amax(dim=(2, 4))
    return cells.bool().reshape(b, -1)


def fixed_tokens(ids: Tensor, hidden: Tensor, grid: tuple[int, int]) -> Fixed:
    """The image's tokens [B, N] fixed wherever their cell is fully visible."""
    return Fixed(ids, ~token_mask(hidden, grid))


def visible_pixels_guidance(tokenizer, image: Tensor, hidden: Tensor, scale: float,
                            anchor_threshold: float) -> MeasurementGuidance:
    """APS-style guidance: the decoded expected tokens should match the visible pixels."""
    return MeasurementGuidance(decode=tokenizer.decode_soft, loss=VisibleError(image, hidden), scale=scale,
                               anchor_threshold=anchor_threshold)
