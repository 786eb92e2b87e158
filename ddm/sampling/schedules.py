"""How many tokens to commit per step.

A *step schedule* plans the revealed fraction alpha_i of a block's tokens after step i
(alpha_0 = 0, alpha_K = 1), like a diffusers scheduler's `set_timesteps`. A *count rule*
turns it into a number of tokens per row at each step; the order then picks which.

Step schedules:
* linear: alpha_i = i / K, the same number each step (MDLM's uniform times on a linear schedule).
* cosine: alpha_i = 1 - cos(pi/2 * i/K), few tokens first and many last (MaskGIT).
* times: explicit model times t_0 = 1 > ... > t_J = 0, e.g. a learned schedule; alpha = alpha(t)
  of the masking process, with t interpolated piecewise-linearly when K != J.

Count rules (remasked tokens are added back, so the plan still ends with nothing masked):
* schedule: deterministic; reveal down to round(free * (1 - alpha_{i+1})) masked, at least one.
* ancestral: MDLM's exact posterior step between times t > s: every masked token is revealed
  independently with probability (alpha_s - alpha_t) / (1 - alpha_t) (plus the remasked share).
* threshold: every candidate whose drawn token has probability > threshold, and at least
  enough to finish in the steps left (so at least one; threshold 1.0 still terminates).

A step that reveals nothing is cheap: with `reuse_predictions` the next step reuses the
model's output (MDLM's caching), so ancestral sampling may use more steps than tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..registry import Registry
from ..schedules import LogLinearSchedule, Schedule
from .state import StepInfo

STEP_SCHEDULES = Registry("step schedule")  # sample.count_schedule
COUNTS = Registry("count rule")  # sample.count


class StepSchedule:
    def alphas(self, steps: int) -> list[float]:
        """Planned revealed fraction after each of `steps` steps, [steps + 1] from 0 to 1."""
        raise NotImplementedError


@STEP_SCHEDULES.register("linear")
class LinearSteps(StepSchedule):
    def alphas(self, steps: int) -> list[float]:
        return [i / steps for i in range(steps + 1)]

    def __repr__(self) -> str:
        return "LinearSteps()"


@STEP_SCHEDULES.register("cosine")
class CosineSteps(StepSchedule):
    def alphas(self, steps: int) -> list[float]:
        out = [1.0 - math.cos(0.5 * math.pi * i / steps) for i in range(steps + 1)]
        out[-1] = 1.0
        return out

    def __repr__(self) -> str:
        return "CosineSteps()"


@STEP_SCHEDULES.register("times")
class TimeSteps(StepSchedule):
    def __init__(self, times: list[float], process: Schedule | None = None):
        times = [float(t) for t in times]
        if len(times) < 2 or times[0] != 1.0 or times[-1] != 0.0 or any(a <= b for a, b in zip(times, times[1:])):
            raise ValueError(f"times: expected strictly decreasing times from 1.0 to 0.0, got {times}")
        self.times = times
        self.process = process or LogLinearSchedule()

    def alphas(self, steps: int) -> list[float]:
        knots = torch.linspace(0, 1, len(self.times), dtype=torch.float64)
        u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        # piecewise-linear t(u) through the given times at equally spaced knots
        j = torch.searchsorted(knots, u, right=True).clamp(1, len(self.times) - 1)
        t0, t1 = torch.tensor(self.times, dtype=torch.float64)[j - 1], torch.tensor(self.times, dtype=torch.float64)[j]
        w = (u - knots[j - 1]) / (knots[j] - knots[j - 1])
        alpha = self.process.alpha(t0 + w * (t1 - t0)).clamp(0.0, 1.0).cummax(0).values
        alpha[0], alpha[-1] = 0.0, 1.0  # start all masked, end all revealed, whatever alpha(0), alpha(1) are
        return alpha.tolist()

    def __repr__(self) -> str:
        return f"TimeSteps({self.times})"


class CountRule:
    """Number of tokens to reveal per row at a step."""

    name: str

    def usable_steps(self, steps: int, max_tokens: int) -> int:
        """Rules that reveal at least one token per step cannot use more steps than tokens."""
        return min(steps, max_tokens)

    def __call__(self, info: StepInfo, remasked: Tensor, token_p: Tensor, candidates: Tensor,
                 generator: torch.Generator) -> Tensor:
        raise NotImplementedError


@COUNTS.register("schedule")
class ScheduleCount(CountRule):
    name = "schedule"

    def __call__(self, info, remasked, token_p, candidates, generator):
        target = torch.round(info.free * (1.0 - info.alpha_next)).long()  # masked after the step
        k = info.masked + remasked - target
        return torch.minimum(k.clamp_min(1), info.masked)


@COUNTS.register("ancestral")
class AncestralCount(CountRule):
    name = "ancestral"

    def usable_steps(self, steps: int, max_tokens: int) -> int:
        return steps  # steps that reveal nothing cost no model call (reuse_predictions)

    def __call__(self, info, remasked, token_p, candidates, generator):
        a_t, a_s = info.alpha_now, info.alpha_next
        # ReMDM: masked tokens are revealed more often to make up for the remasked share r.
        r = remasked / info.committed.clamp_min(1)
        p = ((a_s - a_t + r * a_t) / max(1.0 - a_t, 1e-12)).clamp(0.0, 1.0)
        u = torch.rand(candidates.shape, generator=generator, dtype=torch.float64,
                       device=generator.device).to(candidates.device)
        return ((u < p[:, None]) & candidates).sum(1)


@COUNTS.register("threshold")
class ThresholdCount(CountRule):
    name = "threshold"

    def __init__(self, threshold: float = 0.9):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold: expected a probability in [0, 1], got {threshold}")
        self.threshold = threshold

    def __call__(self, info, remasked, token_p, candidates, generator):
        above = ((token_p > self.threshold) & candidates).sum(1)
        steps_left = info.steps - info.index
        needed = torch.div(info.masked + remasked + steps_left - 1, steps_left, rounding_mode="floor")  # ceil
        return torch.minimum(torch.maximum(above, needed.clamp_min(1)), info.masked)


def build_step_schedule(name: str, times: list[float] | None = None, process: Schedule | None = None) -> StepSchedule:
    return STEP_SCHEDULES.build(name, "sample.count_schedule", times=times or [], process=process)


def build_count(name: str, threshold: float = 0.9) -> CountRule:
    return COUNTS.build(name, "sample.count", threshold=threshold)
