"""Exponential moving average of a model's trainable weights."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


class EMA:
    """shadow <- d * shadow + (1 - d) * weights after every optimizer step, d = decay_at(step).

    The shadow copies stay in float32 whatever the training precision, so small
    updates are not rounded away.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in _trainable(model).items()}

    def decay_at(self, step: int) -> float:
        """Warm-up: (1 + step) / (10 + step) until it reaches `decay`, so the shadow averages
        over roughly the last tenth of the steps so far. (A plain running mean of all weights,
        1 - 1/(step + 1), lets early weights linger: with decay 0.999 a 1,200-step run ends
        as the mean of its whole trajectory, and its samples lose most of their quality.)"""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step `step` (0-based)."""
        decay = self.decay_at(step)
        for name, p in _trainable(model).items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's trainable weights with the averages."""
        params = _trainable(model)
        missing = sorted(set(self.shadow) - set(params))
        if missing:
            raise KeyError(f"EMA weights have no matching parameter in the model: {missing[:5]}")
        for name, value in self.shadow.items():
            params[name].copy_(value)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run with the EMA weights in `model`, then put the training weights back."""
        saved = {name: p.detach().clone() for name, p in _trainable(model).items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in _trainable(model).items():
                    p.copy_(saved[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            diff = sorted(set(state) ^ set(self.shadow))
            raise KeyError(f"EMA state does not match the model's parameters: {diff[:5]}")
        for name, value in state.items():
            self.shadow[name].copy_(value)
