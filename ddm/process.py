"""The absorbing-state forward process q(x_t | x_0) and its time sampling.

Each token is independently replaced by the mask id with probability 1 - alpha_i(t)
(alpha from `ddm.schedules`, per token when priority masking is on).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .schedules import Schedule, get_schedule, priority_exponents, token_alpha, token_weight


class MaskingProcess:
    def __init__(self, schedule: Schedule, mask_id: int, priority_strength: float = 0.0,
                 antithetic: bool = True, t_min: float = 1e-4):
        self.schedule = schedule
        self.mask_id = mask_id
        self.priority_strength = priority_strength
        self.antithetic = antithetic
        # Times below t_min carry almost no masked tokens but a huge weight (1/t):
        # clipping them removes a variance spike at a negligible bias.
        self.t_min = t_min

    @classmethod
    def from_config(cls, cfg, mask_id: int) -> "MaskingProcess":
        """Build from a `ddm.config.DiffusionConfig`."""
        return cls(get_schedule(cfg.schedule, cfg.power), mask_id,
                   priority_strength=cfg.priority_strength, antithetic=cfg.antithetic)

    def sample_times(self, batch: int, generator: torch.Generator, device=None) -> Tensor:
        """t ~ U(t_min, 1); antithetic: one uniform offset shifted by i / batch (low discrepancy)."""
        if self.antithetic:
            u0 = torch.rand(1, generator=generator, dtype=torch.float64)
            u = (u0 + torch.arange(batch, dtype=torch.float64) / batch) % 1.0
        else:
            u = torch.rand(batch, generator=generator, dtype=torch.float64)
        t = self.t_min + (1.0 - self.t_min) * u
        return t.to(device=device, dtype=torch.float32)

    def exponents(self, importance: Tensor | None) -> Tensor | None:
        if importance is None or self.priority_strength == 0:
            return None
        return priority_exponents(importance.float(), self.priority_strength)

    def corrupt(self, x0: Tensor, t: Tensor, generator: torch.Generator,
                importance: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Sample x_t ~ q(x_t | x_0); returns (x_t, masked) with masked a bool [B, N]."""
        alpha = token_alpha(self.schedule, t.double(), self.exponents(importance))
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
        masked = u.to(alpha.device) >= alpha
        return x0.masked_fill(masked, self.mask_id), masked

    def weights(self, t: Tensor, importance: Tensor | None = None) -> Tensor:
        """ELBO weight per token, [B, 1] or [B, N]."""
        return token_weight(self.schedule, t, self.exponents(importance)).float()
