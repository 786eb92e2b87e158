"""Learned sampler coefficients (LSD / LSD+, see `ddm.distill`): per-step parts of the one loop.

A K-step sampler has, per step i:
* temperature[i]: the logit scale of the tokens drawn at that step;
* order_weight[i]: w_i in the order score w_i * s + Gumbel noise, s the base order's score
  (a `random` base order uses the entropy score): w = 0 is a random order, a large w the
  base order, a negative w its reverse (e.g. the least certain positions first). It replaces
  the annealed `gumbel_temperature` of the plain sampler;
* spread_weight[i]: v_i, a second term v_i * spread in that score, the `spread` order's
  position score (in steps): how much the step prefers positions far from each other;
* alphas (LSD+ only): the revealed fraction after each step, increasing from 0 to 1;
* guidance (guided samplers): the classifier-free guidance scale of each step, in place of the
  sampler's constant one (a step at 0 runs without the unconditional rows);
* mixing (`ddm distill --mixing`): the weight w_i of the step's change of prediction since the
  step before, log p + w_i (log p - log p_prev) (`filters.mix_previous`), in place of the
  sampler's constant `mixing`.

The coefficients live in a small JSON file inside the model folder,
`samplers/steps{K}-{key}.json`, keyed by K and by a hash of the sampler parts they were
distilled for (`sampler_key`); the file records a fingerprint of the weights, so that a
file made for another model is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import SampleConfig, to_dict
from ..io import atomic_write_json, read_json
from .filters import gumbel
from .orders import Order, spread_scores
from .schedules import StepSchedule
from .state import StepInfo

LEARNED_DIR = "samplers"
# Fields that do not change what a step does: not part of the key.
_NOT_PARTS = ("steps", "num_samples", "batch_size", "seed", "learned", "quantize")  # quantize: the model, not the sampler
# Parts added after learned files existed: part of the key only when set, so those files keep theirs.
_LATER_PARTS = {"continuous_noise": 0.0, "cache_targets": False, "cache_refresh": 0, "skip_blocks": [],
                "skip_refresh": 2, "guidance_schedule": "constant", "mixing": 0.0}


@dataclass
class StepCoefficients:
    temperature: list[float]
    order_weight: list[float]
    spread_weight: list[float] | None = None  # None: no position term
    alphas: list[float] | None = None  # LSD+: [K + 1], 0 ... 1
    guidance: list[float] | None = None  # per-step guidance scales; None: the sampler's own
    mixing: list[float] | None = None  # per-step mixing weights; None: the sampler's own

    def __post_init__(self) -> None:
        k = len(self.temperature)
        if k < 1 or len(self.order_weight) != k or len(self.spread_weight or [0.0] * k) != k:
            raise ValueError(f"learned sampler: {k} temperatures, {len(self.order_weight)} order weights and "
                             f"{len(self.spread_weight or [])} spread weights; expected one of each per step")
        if any(t < 0 for t in self.temperature):
            raise ValueError("learned sampler: temperatures must be >= 0")
        if self.guidance is not None and (len(self.guidance) != k or any(w < 0 for w in self.guidance)):
            raise ValueError(f"learned sampler: {len(self.guidance)} guidance scales for {k} steps; "
                             "expected one per step, each >= 0")
        if self.mixing is not None and (len(self.mixing) != k or any(w < -1 for w in self.mixing)):
            raise ValueError(f"learned sampler: {len(self.mixing)} mixing weights for {k} steps; "
                             "expected one per step, each >= -1")
        a = self.alphas
        if a is not None and (len(a) != k + 1 or a[0] != 0.0 or a[-1] != 1.0
                              or any(x >= y for x, y in zip(a, a[1:]))):
            raise ValueError(f"learned sampler: alphas must rise strictly from 0 to 1 in {k + 1} values, got {a}")

    @property
    def steps(self) -> int:
        return len(self.temperature)


class LearnedOrder(Order):
    """Score w_i * s + v_i * spread + Gumbel at step i: per-step weights of the base order's score
    and of the spread order's position score."""

    def __init__(self, base: str, weights: list[float], spread_weights: list[float] | None = None):
        super().__init__("entropy" if base == "random" else base)
        self.weights = list(weights)
        self.spread_weights = list(spread_weights or [0.0] * len(self.weights))

    def scores(self, probs: Tensor, token_p: Tensor, info: StepInfo, generator: torch.Generator) -> Tensor:
        s = self.weights[info.index] * self.score_fn(probs, token_p, info, generator)
        if self.spread_weights[info.index]:
            s = s + self.spread_weights[info.index] * spread_scores(probs, token_p, info, generator)
        return s + gumbel(s.shape, generator, s.device)

    def __repr__(self) -> str:
        return (f"LearnedOrder({self.name!r}, weights={[round(w, 3) for w in self.weights]}, "
                f"spread_weights={[round(w, 3) for w in self.spread_weights]})")


class LearnedSteps(StepSchedule):
    """LSD+'s revealed fractions for exactly the step budget they were learned for."""

    def __init__(self, alphas: list[float]):
        self.values = list(alphas)

    def alphas(self, steps: int) -> list[float]:
        if steps != len(self.values) - 1:
            raise ValueError(f"learned schedule: made for {len(self.values) - 1} steps per block, asked for {steps}")
        return self.values

    def __repr__(self) -> str:
        return f"LearnedSteps({[round(a, 3) for a in self.values]})"


def sampler_parts(cfg: SampleConfig) -> dict[str, Any]:
    return {k: v for k, v in to_dict(cfg).items()
            if k not in _NOT_PARTS and not (k in _LATER_PARTS and v == _LATER_PARTS[k])}


def sampler_key(cfg: SampleConfig) -> str:
    return hashlib.sha256(json.dumps(sampler_parts(cfg), sort_keys=True).encode()).hexdigest()[:12]


def learned_file(model_dir: str | os.PathLike, cfg: SampleConfig) -> Path:
    return Path(model_dir) / LEARNED_DIR / f"steps{cfg.steps}-{sampler_key(cfg)}.json"


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the weights (names, shapes, values): the same model gives the same print."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_learned(model_dir: str | os.PathLike, cfg: SampleConfig, model: torch.nn.Module,
                 coefficients: StepCoefficients, report: dict[str, Any]) -> Path:
    path = learned_file(model_dir, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"steps": cfg.steps, "parts": sampler_parts(cfg), "fingerprint": model_fingerprint(model),
                             "coefficients": {"temperature": coefficients.temperature,
                                              "order_weight": coefficients.order_weight,
                                              "spread_weight": coefficients.spread_weight,
                                              "alphas": coefficients.alphas,
                                              "guidance": coefficients.guidance,
                                              "mixing": coefficients.mixing},
                             "report": report})
    return path


def load_learned(model: torch.nn.Module, cfg: SampleConfig) -> StepCoefficients:
    """The coefficients distilled for this model and these sampler parts at cfg.steps. Read and
    checked once per loaded model (a policy builds its sampler for every action chunk)."""
    model_dir = getattr(model, "pretrained_dir", None)
    if model_dir is None:
        raise ValueError("sample.learned: the model was not loaded from a folder, so it has no learned samplers; "
                         "load it with from_pretrained(DIR)")
    path = learned_file(model_dir, cfg)
    if not path.is_file():
        made = sorted(p.name for p in (Path(model_dir) / LEARNED_DIR).glob("*.json"))
        raise FileNotFoundError(f"{path}: no sampler distilled for {cfg.steps} steps with these sampler parts; "
                                f"run `ddm distill --model {model_dir} --steps {cfg.steps}` with the same "
                                f"sample settings (learned samplers here: {', '.join(made) or 'none'})")
    stat = path.stat()
    version = (path, stat.st_mtime_ns, stat.st_size)  # a file distilled again is read again
    loaded = model.__dict__.setdefault("_learned_samplers", {})
    if version not in loaded:
        saved = read_json(path)
        check_learned(saved, path, model, cfg)
        loaded[version] = _coefficients(saved)
    return loaded[version]


def saved_coefficients(model_dir: str | os.PathLike, cfg: SampleConfig,
                       model: torch.nn.Module) -> StepCoefficients | None:
    """The coefficients already distilled for this model, sampler parts and budget, or None where
    there are none (or they were made for another model): a start for distilling again."""
    path = learned_file(model_dir, cfg)
    if not path.is_file():
        return None
    saved = read_json(path)
    try:
        check_learned(saved, path, model, cfg)
    except ValueError:
        return None
    return _coefficients(saved)


def _coefficients(saved: dict) -> StepCoefficients:
    c = saved["coefficients"]
    return StepCoefficients(c["temperature"], c["order_weight"], c.get("spread_weight"), c.get("alphas"),
                            c.get("guidance"), c.get("mixing"))


def check_learned(saved: dict, path: Path, model: torch.nn.Module, cfg: SampleConfig) -> None:
    for key in ("steps", "parts", "fingerprint", "coefficients"):
        if key not in saved:
            raise ValueError(f"{path}: missing key {key!r}; not a learned sampler file")
    if saved["fingerprint"] != model_fingerprint(model):
        raise ValueError(f"{path}: made for another model (weights fingerprint differs); distill this model again")
    parts = sampler_parts(cfg)
    changed = sorted(k for k in set(parts) | set(saved["parts"]) if parts.get(k) != saved["parts"].get(k))
    if saved["steps"] != cfg.steps or changed:
        raise ValueError(f"{path}: made for another sampler configuration (differs in: "
                         f"{', '.join(changed) or 'steps'})")


def check_distillable(cfg: SampleConfig) -> None:
    """What the coefficients cannot express (blocks are refused by `Sampler.with_coefficients`)."""
    if cfg.count != "schedule":
        raise ValueError(f"sample.count: learned samplers need count=schedule (a planned number per step), "
                         f"got {cfg.count!r}")
    if cfg.guidance_schedule != "constant" and cfg.guidance_scale > 0:
        raise ValueError(f"sample.guidance_schedule: learned samplers are distilled at a constant guidance scale "
                         f"(the teacher's), got {cfg.guidance_schedule!r}; set sample.guidance_schedule=constant")
