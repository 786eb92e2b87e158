"""Secondary remasking: committed tokens may be masked again and decoded later.

* recheck (Discrete Diffusion VLA): re-check each committed token's probability under the
  current prediction; remask it if that fell below `threshold`, or dropped by more than
  `drop` since the token was committed. Meaningful only for a model whose predictions at
  visible positions are trained (a denoiser trained on masked positions only says nothing there).
* cap / rescale / conf (ReMDM, Wang et al. 2025): each committed token is remasked with
  probability sigma, bounded by sigma_max = min(1, (1 - alpha_s) / alpha_t) so that the
  step stays a valid posterior of the masking process:
  cap: sigma = min(eta, sigma_max); rescale: sigma = eta * sigma_max;
  conf: sigma_l = softmax_l(-psi) * sigma_max over the committed tokens of the row, psi the
  probability at commit time (the budget goes to the least confident tokens).

Remasking only runs inside `window` (a range of the block's progress, ReMDM's switch) and
never on a block's last step, which reveals every token left: the loop always ends unmasked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import Registry
from .state import SamplingState, StepInfo

REMASKING = Registry("remasking rule")  # sample.remasking


@REMASKING.register("none")
class Remasking:
    name = "none"

    def __init__(self, window: tuple[float, float] = (0.0, 1.0)):
        start, stop = window
        if not 0.0 <= start < stop <= 1.0:
            raise ValueError(f"remask_window: expected 0 <= start < stop <= 1, got {list(window)}")
        self.window = (start, stop)

    def active(self, info: StepInfo) -> bool:
        progress = info.index / info.steps
        return not info.final and self.window[0] <= progress < self.window[1]

    def __call__(self, state: SamplingState, current_p: Tensor, eligible: Tensor, info: StepInfo,
                 generator: torch.Generator) -> Tensor:
        """current_p [B, N]: probability of each position's token under the current prediction;
        eligible [B, N]: committed tokens of the block. Returns [B, N] bool, a subset of eligible."""
        return torch.zeros_like(eligible)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(window={list(self.window)})"


@REMASKING.register("recheck")
class RecheckRemasking(Remasking):
    name = "recheck"

    def __init__(self, threshold: float = 0.1, drop: float = 1.0, window=(0.0, 1.0)):
        super().__init__(window)
        if not (0.0 <= threshold <= 1.0 and 0.0 <= drop <= 1.0):
            raise ValueError(f"recheck remasking: threshold and drop must lie in [0, 1], got {threshold}, {drop}")
        self.threshold, self.drop = threshold, drop

    def __call__(self, state, current_p, eligible, info, generator):
        low = current_p < self.threshold
        dropped = state.confidence - current_p > self.drop
        return (low | dropped) & eligible


@REMASKING.register("cap", "rescale", "conf")
class ReMDMRemasking(Remasking):
    def __init__(self, name: str = "cap", eta: float = 0.05, window=(0.0, 1.0)):
        mode = name
        super().__init__(window)
        if mode not in ("cap", "rescale", "conf"):
            raise ValueError(f"ReMDM remasking: unknown mode {mode!r}; expected cap, rescale or conf")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"ReMDM remasking: eta must lie in [0, 1], got {eta}")
        self.name, self.mode, self.eta = mode, mode, eta

    def sigma(self, state: SamplingState, eligible: Tensor, info: StepInfo) -> Tensor:
        """[B, N] remasking probability of each eligible token."""
        a_t, a_s = info.alpha_now, info.alpha_next
        sigma_max = min(1.0, (1.0 - a_s) / a_t) if a_t > 0 else 1.0
        if self.mode == "cap":
            sigma = torch.full(eligible.shape, min(self.eta, sigma_max), dtype=torch.float64, device=eligible.device)
        elif self.mode == "rescale":
            sigma = torch.full(eligible.shape, self.eta * sigma_max, dtype=torch.float64, device=eligible.device)
        else:
            weights = torch.softmax((-state.confidence).masked_fill(~eligible, float("-inf")), dim=1)
            sigma = weights.nan_to_num(0.0) * sigma_max  # rows with nothing committed: 0/0
        return sigma.masked_fill(~eligible, 0.0)

    def __call__(self, state, current_p, eligible, info, generator):
        u = torch.rand(eligible.shape, generator=generator, dtype=torch.float64,
                       device=generator.device).to(eligible.device)
        return (u < self.sigma(state, eligible, info)) & eligible

    def __repr__(self) -> str:
        return f"ReMDMRemasking({self.mode!r}, eta={self.eta}, window={list(self.window)})"


def build_remasking(name: str, threshold: float = 0.1, drop: float = 1.0, eta: float = 0.05,
                    window=(0.0, 1.0)) -> Remasking:
    return REMASKING.build(name, "sample.remasking", threshold=threshold, drop=drop, eta=eta, window=tuple(window))
