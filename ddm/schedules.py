"""Masking schedules alpha(t): the probability that a token is still visible at time t.

alpha(0) = 1 (clean data), alpha(1) = 0 (or a tiny floor: all masked). The continuous-
time ELBO of the absorbing process weights the cross-entropy of a masked token by

    w(t) = -alpha'(t) / (1 - alpha(t))

(MDLM, Sahoo et al. 2024, eq. 10). Each schedule gives alpha and w in closed form.

Priority masking gives every token its own schedule alpha_i(t) = alpha(t) ** k_i with
k_i = 2 ** (-strength * (2 s_i - 1)) for an importance s_i in [0, 1]: important tokens
(small k_i) stay visible longest in the forward process, so a sampler that follows the
reverse process generates them first. Each token still follows a valid absorbing
process, so the ELBO stays exact with the per-token weight -alpha_i'/(1 - alpha_i).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .registry import Registry

SCHEDULES = Registry("masking schedule")


class Schedule:
    """alpha(t) and the ELBO weight w(t) = -alpha'(t) / (1 - alpha(t))."""

    name: str

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def alpha_derivative(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def weight(self, t: Tensor) -> Tensor:
        return -self.alpha_derivative(t) / (1.0 - self.alpha(t)).clamp_min(1e-12)

    def inverse(self, alpha: Tensor) -> Tensor:
        """The time t at which alpha(t) equals `alpha` (used to place sampler steps)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@SCHEDULES.register("linear")
class LinearSchedule(Schedule):
    name = "linear"

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def alpha_derivative(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def inverse(self, alpha: Tensor) -> Tensor:
        return 1.0 - alpha


@SCHEDULES.register("cosine")
class CosineSchedule(Schedule):
    name = "cosine"

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def alpha_derivative(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def inverse(self, alpha: Tensor) -> Tensor:
        return torch.arccos(alpha.clamp(0.0, 1.0)) * (2.0 / math.pi)


@SCHEDULES.register("loglinear")
class LogLinearSchedule(Schedule):
    """MDLM's default: total noise sigma(t) = -log(1 - (1 - eps) t), alpha = exp(-sigma).

    Linear in alpha, but it stops at alpha(1) = eps so that the weight stays finite
    at t = 1 and the model's input is never entirely without signal in training.
    """

    name = "loglinear"

    def __init__(self, eps: float = 1e-3):
        self.eps = eps

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def alpha_derivative(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1.0 - self.eps))

    def inverse(self, alpha: Tensor) -> Tensor:
        return ((1.0 - alpha) / (1.0 - self.eps)).clamp(0.0, 1.0)


@SCHEDULES.register("polynomial")
class PolynomialSchedule(Schedule):
    """alpha = 1 - t**p: p > 1 keeps tokens visible longer (fewer masks early)."""

    name = "polynomial"

    def __init__(self, power: float = 2.0):
        if power <= 0:
            raise ValueError(f"polynomial schedule: power must be > 0, got {power}")
        self.power = power

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t.pow(self.power)

    def alpha_derivative(self, t: Tensor) -> Tensor:
        return -self.power * t.pow(self.power - 1.0)

    def weight(self, t: Tensor) -> Tensor:
        # Closed form p / t avoids 0/0 at small t.
        return self.power / t.clamp_min(1e-12)

    def inverse(self, alpha: Tensor) -> Tensor:
        return (1.0 - alpha).clamp(0.0, 1.0).pow(1.0 / self.power)

    def __repr__(self) -> str:
        return f"PolynomialSchedule(power={self.power})"


def get_schedule(name: str, power: float = 2.0) -> Schedule:
    """The registered schedule `name` (`power` goes to the schedules that take one)."""
    return SCHEDULES.build(name, "diffusion.schedule", power=power)


def priority_exponents(importance: Tensor, strength: float) -> Tensor:
    """Per-token exponents k_i: alpha_i(t) = alpha(t) ** k_i (important -> small k -> visible longer)."""
    if importance.min() < 0 or importance.max() > 1:
        raise ValueError("importance scores must lie in [0, 1]")
    return torch.exp2(-strength * (2.0 * importance - 1.0))


def token_alpha(schedule: Schedule, t: Tensor, exponents: Tensor | None) -> Tensor:
    """alpha_i(t) per token: t is [B], exponents [B, N] or None; returns [B, 1] or [B, N]."""
    a = schedule.alpha(t)[:, None]
    return a if exponents is None else a.clamp_min(0.0).pow(exponents)


def token_weight(schedule: Schedule, t: Tensor, exponents: Tensor | None) -> Tensor:
    """ELBO weight -alpha_i'(t) / (1 - alpha_i(t)) per token (shape as token_alpha)."""
    if exponents is None:
        return schedule.weight(t)[:, None]
    a = schedule.alpha(t)[:, None].clamp_min(1e-12)
    da = schedule.alpha_derivative(t)[:, None]
    a_i = a.pow(exponents)
    return -(exponents * a_i / a * da) / (1.0 - a_i).clamp_min(1e-12)
