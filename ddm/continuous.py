"""The continuous half of the joint process: a vector per token position, noised beside the ids.

Every position carries a discrete id and a continuous vector x (CCDD's joint state). Training
corrupts both on one clock t: each id is masked with probability 1 - alpha(t) (the tokens'
schedule), and every vector is interpolated towards Gaussian noise,

    x_t = a(t) x_0 + (1 - a(t)) eps,    a = the continuous schedule (`diffusion.continuous_schedule`,
                                        default: the tokens' own alpha, so both carry the same signal),

and the one model, given (ids_t, x_t), predicts the clean ids and the flow velocity
v = x_0 - eps (flow matching on the straight path).

Three clocks (`diffusion.continuous_time`):
* coupled: the vectors' time is the tokens' t. The model needs no time input, and training
  sees exactly the pairs of noise levels that sampling meets. But the vectors a step finishes
  are predicted before that step's ids are drawn, so at few steps a vector is an average over
  the ids its token could take (`benchmarks/joint_toy.py` shows it).
* independent: the vectors get their own uniform time, which the model is told (its time
  input, so `model.time_conditioning`); the mask shows the tokens' time. The sampler then
  reveals every id within K - 1 calls and spends the K-th on the vectors alone, given every
  id, each half on its own clock.
* trailing: as independent, but the vectors' time is drawn between the tokens' time and 1, so
  the vectors are never less noisy than the ids, as on the sampler's path (the ids lead, the
  vectors finish one call later). Independent times spend about half of training on pairs
  with cleaner vectors than ids, where the ids can be read off the vectors: states the sampler
  never meets, which teach the discrete head nothing it uses.

Sampling keeps x_t from step to step: x_1 is noise; after each model call the clean vector is
estimated as x0 = x_t + (1 - a) v, and x_t moves to the next step's time along the
deterministic path (DDIM's update, the flow ODE in x0 form) or, with `noise` = eta > 0, DDIM's
stochastic update (eta = 1: the posterior of the Markov chain with these marginals). The last
step lands on a = 1, so what the user gets is data, never a velocity.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .schedules import Schedule, get_schedule


def continuous_schedule(diffusion) -> Schedule | None:
    """The schedule of a jointly trained model's vectors (`diffusion.continuous_loss == "flow"`), or None."""
    if diffusion is None or diffusion.continuous_loss != "flow":
        return None
    return get_schedule(diffusion.continuous_schedule or diffusion.schedule, diffusion.power)


def is_joint(model) -> bool:
    """A model with a continuous head trained on the joint process: it needs its noisy vectors as input.
    (Checked on every forward call: reads two fields, builds nothing.)"""
    return bool(model.config.continuous_dim) and getattr(getattr(model, "diffusion", None), "continuous_loss",
                                                         None) == "flow"


def vector_times(clock: str, t: Tensor, draw: Callable[[], Tensor]) -> Tensor:
    """The vectors' time for tokens at time t (`diffusion.continuous_time`); `draw()` gives uniform times."""
    if clock == "coupled":
        return t
    u = draw()
    return u if clock == "independent" else t + (1 - t) * u


def _level(schedule: Schedule, t: Tensor, like: Tensor) -> Tensor:
    """a(t) per row, shaped to broadcast over [B, N, C]."""
    return schedule.alpha(t.double()).clamp(0.0, 1.0).to(like)[:, None, None]


def corrupt_values(schedule: Schedule, x0: Tensor, t: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(x_t, velocity target x0 - eps) for clean vectors x0 [B, N, C] at times t [B]."""
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0)
    a = _level(schedule, t, x0)
    return a * x0 + (1 - a) * eps, x0 - eps


class ContinuousSampler:
    """The sampler's continuous state update (see the module note)."""

    def __init__(self, schedule: Schedule, noise: float = 0.0, independent: bool = False):
        self.schedule = schedule
        self.noise = noise
        self.independent = independent

    @classmethod
    def for_model(cls, model, noise: float = 0.0) -> "ContinuousSampler | None":
        """The update for a joint model (None for any other)."""
        if not is_joint(model):
            return None
        return cls(continuous_schedule(model.diffusion), noise, model.diffusion.continuous_time != "coupled")

    @staticmethod
    def clock(call: int, calls: int, batch: int, device) -> Tensor:
        """The vectors' own time at model call `call` of `calls` (their own clock): 1 -> 0 in even steps."""
        return torch.full((batch,), 1.0 - min(call, calls) / calls, device=device)

    def start(self, batch: int, length: int, dim: int, generator: torch.Generator, device) -> Tensor:
        return torch.randn(batch, length, dim, generator=generator, dtype=torch.float32).to(device)

    def data(self, xt: Tensor, velocity: Tensor, t: Tensor) -> Tensor:
        """The clean vectors the model's velocity points to: x0 = x_t + (1 - a(t)) v."""
        return xt + (1 - _level(self.schedule, t, xt)) * velocity

    def step(self, xt: Tensor, x0: Tensor, t: Tensor, t_next: Tensor, generator: torch.Generator) -> Tensor:
        """x_t -> x_{t_next} given the estimate x0 (DDIM's update with eta = `noise`: 0 is the ODE, 1 draws
        from the posterior q(x_next | x_t, x0) of the Markov chain with these marginals). A step back to a
        noisier time (tokens were remasked) keeps the same noise estimate, deterministically."""
        a, a_next = _level(self.schedule, t, xt), _level(self.schedule, t_next, xt)
        s, s_next = 1 - a, 1 - a_next  # noise scales
        eps = (xt - a * x0) / s.clamp_min(1e-6)
        if self.noise == 0:
            return a_next * x0 + s_next * eps
        # posterior spread: sigma_{t|s}^2 sigma_s^2 / sigma_t^2 with sigma_{t|s}^2 = sigma_t^2 - (a_t / a_s)^2 sigma_s^2
        ratio = a / a_next.clamp_min(1e-6)
        var = ((s ** 2 - ratio ** 2 * s_next ** 2).clamp_min(0) * s_next ** 2 / (s ** 2).clamp_min(1e-12))
        c = self.noise * var.sqrt() * (a_next > a)
        fresh = torch.randn(xt.shape, generator=generator, dtype=torch.float32).to(xt)
        return a_next * x0 + (s_next ** 2 - c ** 2).clamp_min(0).sqrt() * eps + c * fresh
