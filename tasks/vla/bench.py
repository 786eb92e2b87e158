"""`ddm bench` for the robot policy: its diffusion decoder's ways of decoding side by side.

    ddm bench --config configs/vla/mt10_precise_cpu.yaml run_dir=runs/vla/mt10_precise_8k [eval.steps=2] \
        --modes plain cached skip int8 learned autoregressive

The one bench of `ddm.bench`, given a view of the policy that reads like a denoiser task: the
decoder is the model, and a sample is the action chunk decoded for the observation of a demo
frame (frozen features from the run's cache, frames drawn once with `policy.sample.seed`, the
same for every mode). The decoder's sampler is the saved policy's, with the evaluation's
sampler fields (`eval.steps`, `eval.learned`, `eval.cache_targets`, `eval.skip_blocks`) as
`ddm eval` would apply them. The autoregressive row is the run's trained autoregressive policy
(`task.decoders=[autoregressive]`), on the same frames through its own observation projector.

Quality is imitation of the expert on those frames: the share of action tokens equal to the
expert's, the share within one bin, the mean absolute error of the bin dimensions in normalised
units ([-1, 1] over the data's range), and the gripper tokens' agreement. Demo frames are
training frames, so these compare decodings of one policy; they are not a held-out score.
Closed-loop MT10 success is `ddm eval`'s: the bench prints, per mode, the success that `ddm
eval` recorded in the run folder for the same decoding, with its file, or the command that
measures it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor

from ddm.config import ConfigError, SampleConfig, from_dict, to_dict
from ddm.model import Condition

from .config import VLAExperiment
from .data import action_chunks
from .evaluate import results_name, sampler_overrides
from .features import dataset_features
from .policy import VLAPolicy
from .train import ensure_demos


@dataclass
class FrameCondition(Condition):
    """The diffusion policy's condition rows, and the demo frames they observe (for other policies)."""

    frames: Tensor | None = None  # [B] long, rows of the feature cache

    def select(self, rows: Tensor) -> "FrameCondition":
        return FrameCondition(**vars(super().select(rows)), frames=self.frames[rows])


class PolicyBench:
    """The diffusion policy as `ddm.bench` sees a task (see the module docstring)."""

    def __init__(self, exp: VLAExperiment, policy_dir: Path | None = None):
        self.exp = exp
        folder = Path(policy_dir) if policy_dir else exp.policy_dir("diffusion")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no trained policy; run `ddm train --config ... "
                                    "task.decoders=[diffusion]` first")
        self.policy_dir = folder
        self.policy = VLAPolicy.from_pretrained(folder).eval()
        if self.policy.config.decoder != "diffusion":
            raise ConfigError(f"{folder}: a {self.policy.config.decoder!r} policy; `ddm bench` compares the ways "
                              "of decoding of the diffusion decoder")
        self.overrides = sampler_overrides(exp.eval)
        self.policy.set_sampler(**self.overrides)
        self.run_dir = Path(exp.run_dir)
        self.config = SimpleNamespace(sample=self.policy.config.sample)
        c = self.policy.config
        self.features = dataset_features(ensure_demos(exp), exp.features_path, c.cameras, exp.encoder.pool,
                                         exp.encoder.batch_size, stage=c.image_stage)
        chunks = action_chunks(self.features["action"], self.features["episode"], c.chunk)
        self.expert = self.policy.targets(chunks)["ids"]  # [N, chunk * dims], in the policy's own bins
        self.order = torch.randperm(len(self.expert), generator=torch.Generator().manual_seed(c.sample.seed))

    @property
    def model(self):
        return self.policy.decoder

    # ------------------------------------------------------------- what ddm.bench asks of a task
    def processors(self) -> list:
        return self.policy.processors

    def sample_config(self, **overrides) -> SampleConfig:
        return from_dict(SampleConfig, {**to_dict(self.config.sample), **overrides}, "policy.sample")

    def sample_fixed(self, n: int):
        return None

    def sample_conditions(self, n: int) -> FrameCondition:
        if n > len(self.order):
            raise ValueError(f"bench: {n} samples asked, the demos have {len(self.order)} frames; lower --batch "
                             "or --rounds")
        frames = self.order[:n]
        with torch.no_grad():
            cond = self.policy.condition(self.observations(frames))
        return FrameCondition(embeddings=cond.embeddings, frames=frames)

    def observations(self, frames: Tensor) -> dict[str, Tensor]:
        f = self.features
        return {"images": f["images"][frames].float(), "text": f["text"][f["text_index"][frames]].float(),
                "state": f["state"][frames].float()}

    def sample_metrics(self, ids: Tensor, cond: FrameCondition) -> dict[str, float]:
        """Decoded chunks against the expert's on the same frames (see the module docstring)."""
        c = self.policy.config
        expert = self.expert[cond.frames].view(-1, c.chunk, c.action_dim)
        ids = ids.view(-1, c.chunk, c.action_dim)
        grip = torch.zeros(c.action_dim, dtype=torch.bool)
        grip[list(c.gripper_dims)] = True
        bins, expert_bins = ids[..., ~grip], expert[..., ~grip]
        metrics = {"token_accuracy": float((ids == expert).float().mean()),
                   "within_one_bin": float(((bins - expert_bins).abs() <= 1).float().mean()),
                   # bin centres are evenly spaced over [-1, 1] in normalised units
                   "action_mae": float((bins - expert_bins).abs().float().mean() * 2 / c.num_bins)}
        if grip.any():
            metrics["gripper_accuracy"] = float((ids[..., grip] == expert[..., grip]).float().mean())
        return metrics

    def baseline_missing(self) -> str | None:
        folder = self.exp.policy_dir("autoregressive")
        if (folder / "config.json").is_file():
            return None
        return (f"no autoregressive policy in {folder}; `ddm train --config ... task.decoders=[autoregressive]` "
                "trains one on the same demos")

    def baseline_model(self) -> VLAPolicy:
        baseline = VLAPolicy.from_pretrained(self.exp.policy_dir("autoregressive")).eval()
        if baseline.config.chunk != self.policy.config.chunk or baseline.config.num_bins != self.policy.config.num_bins:
            raise ConfigError(f"{self.exp.policy_dir('autoregressive')}: chunk {baseline.config.chunk} x "
                              f"{baseline.config.num_bins} bins, the diffusion policy's are {self.policy.config.chunk} x "
                              f"{self.policy.config.num_bins}; the two do not decode the same tokens")
        return baseline

    @torch.no_grad()
    def baseline_sample(self, baseline: VLAPolicy, count: int, cond: FrameCondition, seed: int = 0, processors=(),
                        batch_size: int | None = None) -> tuple[Tensor, int]:
        generator = torch.Generator().manual_seed(seed)
        parts, nfe, size = [], 0, batch_size or count
        for start in range(0, count, size):
            frames = cond.frames[start:start + size]
            ids, _, nfe = baseline.action_decoder.decode(baseline.config, baseline.decoder,
                                                         baseline.condition(self.observations(frames)), generator,
                                                         baseline.processors)
            parts.append(ids)
        return torch.cat(parts), nfe

    # ------------------------------------------------------------- closed-loop success, as recorded
    def recorded_success(self, modes: list[str]) -> list[str]:
        """Per mode, the MT10 success `ddm eval` recorded in the run folder for the same decoding."""
        from ddm.bench import mode_sampler

        lines = []
        for mode in modes:
            if mode == "autoregressive":
                name, command = "autoregressive", "task.decoders=[autoregressive]"
            elif mode == "int8":  # the model changes, not the sampler: `ddm eval` has no switch for it
                lines.append(f"  {mode:<15} not recorded by `ddm eval`; `benchmarks/quantize.py --mt10 int8 --config "
                             f"... --policy {self.policy_dir}` measures it")
                continue
            else:
                # the evaluation of the same decoding: the eval fields the mode sets (plain's own fields only
                # turn reuse off, which decodes the same), and no skipped blocks but the skip mode's
                changes = {k: v for k, v in mode_sampler(mode, self.config.sample, self.model).items()
                           if k in ("learned", "cache_targets", "skip_blocks")}
                sampler = sampler_overrides(dataclasses.replace(self.exp.eval, **{"skip_blocks": [], **changes}))
                name = results_name("diffusion", sampler, self.exp.eval.seed)
                command = "task.decoders=[diffusion]" + "".join(
                    f" eval.{k}={_value(v)}" for k, v in sampler.items())
            path = self.run_dir / f"eval_{name}.json"
            if path.is_file():
                s = json.loads(path.read_text())
                lines.append(f"  {mode:<15} {100 * s['average_success']:.1f}% over {s['episodes']} episodes "
                             f"(seeds {s['seeds'][0]}..{s['seeds'][1]} per task; {path})")
            else:
                lines.append(f"  {mode:<15} not recorded; `ddm eval --config ... run_dir={self.run_dir} {command}` "
                             "measures it")
        return lines


def _value(v) -> str:
    return "true" if v is True else f"[{','.join(map(str, v))}]" if isinstance(v, (list, tuple)) else str(v)


def bench_policy(exp: VLAExperiment, model_dir: str | Path | None, modes: tuple[str, ...], batch: int, rounds: int,
                 singles: int, train: bool) -> dict:
    """`ddm bench` on a VLA run: the decoding modes (`ddm.bench`), the recorded closed-loop success,
    and with `train` the training throughput of the decoder's size against a BERT body."""
    from ddm.bench import bench

    view = PolicyBench(exp, model_dir)
    s = view.config.sample
    print(f"policy {view.policy.config.decoder} ({view.policy.num_parameters / 1e6:.2f}M parameters): "
          f"{s.steps} steps, {s.order} order; the observations of {rounds * batch} demo frames")
    figures = bench(view, view.model, list(modes), batch, rounds, singles) if modes else {}
    if modes:
        print("MT10 success of the same decodings, as `ddm eval` recorded it in the run folder:")
        print("\n".join(view.recorded_success(list(figures))))  # the modes that ran
    if train:
        from ddm.throughput import compare, model_pair

        print(f"training throughput at the decoder's size, batch {exp.train.batch_size}:")
        compare(model_pair(view.model.config), ["ddm", "ddm:sparse+fused", "hf"],
                exp.train.batch_size, steps=10)
    return figures
