"""The four uses of one video model, each a choice of which tokens are given (VDT, MotionAura):

- generation: nothing given;
- prediction: the first `context` token steps given (the first frames), the rest generated;
- interpolation: the first and the last `context` token steps given, the middle generated;
- completion: every token given except a square `hole` x `hole` of tokens in every step.

Masks are over the flat token grid (T, H, W) of the video tokenizer, True where the token
is given (the sampler's `Fixed.mask`, the objective's `context`). The same masks, scaled up
by the tokenizer's factors, say which pixels each use scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

USES = ("generation", "prediction", "interpolation", "completion")


def check_use(use: str) -> None:
    if use not in USES:
        raise ValueError(f"use: unknown use {use!r}; known: {', '.join(USES)}")


def given_tokens(use: str, grid: tuple[int, int, int], context: int, hole: int,
                 corner: tuple[int, int] | None = None, steps_are: str = "token steps") -> Tensor:
    """[T * H * W] bool, True where `use` gives the token. `corner`: the hole's top-left token
    (default: centred). A use that needs a context refuses a mask that hides nothing or everything
    (its error calls the T steps `steps_are`: a grid of (frames, 1, 1) gives whole frames)."""
    check_use(use)
    steps, height, width = grid
    given = torch.zeros(grid, dtype=torch.bool)
    if use == "prediction":
        if not 1 <= context < steps:
            raise ValueError(f"task.context_frames: prediction needs 1 .. {steps - 1} given {steps_are} of {steps} "
                             f"(0 gives no context, {steps} leaves nothing to predict), got {context}")
        given[:context] = True
    elif use == "interpolation":
        if not 1 <= context or 2 * context >= steps:
            raise ValueError(f"task.context_frames: interpolation needs 1 .. {(steps - 1) // 2} given {steps_are} at "
                             f"each end of {steps} (something given, something left between), got {context}")
        given[:context] = True
        given[-context:] = True
    elif use == "completion":
        if not 1 <= hole or (hole >= height and hole >= width):
            raise ValueError(f"task.hole_pixels: completion needs a hole of 1 .. {max(height, width) - 1} tokens a side in "
                             f"a {height}x{width} grid (0 hides nothing, the whole frame leaves no context), "
                             f"got {hole}")
        if hole > height or hole > width:
            raise ValueError(f"task.hole_pixels: {hole} tokens do not fit in the {height}x{width} token grid")
        top, left = corner if corner is not None else ((height - hole) // 2, (width - hole) // 2)
        if not (0 <= top <= height - hole and 0 <= left <= width - hole):
            raise ValueError(f"corner: a {hole}-token hole at {(top, left)} leaves the {height}x{width} grid")
        given[:] = True
        given[:, top:top + hole, left:left + hole] = False
    return given.flatten()


def given_pixels(given: Tensor, grid: tuple[int, int, int], frames_per_step: int, pixels_per_token: int) -> Tensor:
    """A token mask [T * H * W] (or [B, T * H * W]) -> the pixels it covers, [1, frames, H', W'] (or [B, ...])."""
    batched = given.dim() == 2
    g = given.reshape(-1, *grid)
    g = g.repeat_interleave(frames_per_step, 1).repeat_interleave(pixels_per_token, 2)
    g = g.repeat_interleave(pixels_per_token, 3).unsqueeze(1)
    return g if batched else g[0]


def draw_training_context(uses: list[str], grid: tuple[int, int, int], context: int, hole: int, batch: int,
                          generator: torch.Generator) -> Tensor:
    """[B, T * H * W] bool: each example's given tokens under a use drawn uniformly from `uses`
    (completion's hole at a random place), so that one model learns every use."""
    _, height, width = grid
    picks = torch.randint(0, len(uses), (batch,), generator=generator)
    rows = []
    for i in range(batch):
        use = uses[int(picks[i])]
        corner = None
        if use == "completion":
            corner = (int(torch.randint(0, height - hole + 1, (1,), generator=generator)),
                      int(torch.randint(0, width - hole + 1, (1,), generator=generator)))
        rows.append(given_tokens(use, grid, context, hole, corner))
    return torch.stack(rows)
