"""Train a policy on the demonstrations through the project's one trainer.

    demos (recorded once) -> frozen features (cached) -> chunks + tokens -> Trainer.train_to_end(save_to)

Every decoder (diffusion and the two baselines) is trained on the same frames, features,
steps and batch size: only `policy.decoder` differs. The trainer's checkpoints go to
<run_dir>/train_<decoder> (resumed when present), the final policy to <run_dir>/policy_<decoder>
(a folder replaced atomically, so it cannot hold the checkpoints).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from ddm.config import ConfigError, changed_fields
from ddm.training import Trainer

from .config import DemoSection, VLAExperiment
from .data import ChunkDataset, action_chunks, identity_collate
from .features import dataset_features
from .policy import VLAPolicy


def ensure_demos(exp: VLAExperiment, progress: bool = True) -> Path:
    """The demo dataset of the experiment, recorded first if it is not there yet."""
    from .demos import collect, format_report

    report = exp.demos_dir / "demos_report.json"
    if not (exp.demos_dir / "dataset_info.json").is_file():
        print(format_report(collect(exp.demos, exp.demos_dir, progress=progress)))
    elif report.is_file():  # demos recorded for other tasks, cameras or episodes are never reused
        # a field added after the demos were recorded counts as its default
        recorded = {**dataclasses.asdict(DemoSection()), **json.loads(report.read_text())["config"]}
        differ = [f"{k}: {a!r} -> {b!r}" for k, a, b in changed_fields(recorded, exp.demos, "demos")
                  if k != "demos.workers"]
        if differ:
            raise ConfigError(f"{exp.demos_dir} holds demos recorded with another config ({'; '.join(differ)}); "
                              "use a new run_dir, or delete that folder to record them again")
    return exp.demos_dir


def build_training_data(exp: VLAExperiment, policy: VLAPolicy, progress: bool = True) -> ChunkDataset:
    """Features of every demo frame, the chunk ahead of it; fits the policy's bins and state scaling."""
    c = exp.policy
    feats = dataset_features(ensure_demos(exp, progress), exp.features_path, c.cameras, exp.encoder.pool,
                             exp.encoder.batch_size, progress=progress, stage=c.image_stage)
    if feats["action"].shape[1] != c.action_dim:
        raise ValueError(f"policy.action_dim: {c.action_dim}, but the demos' actions have "
                         f"{feats['action'].shape[1]} dimensions")
    chunks = action_chunks(feats["action"], feats["episode"], c.chunk)
    policy.fit_statistics(chunks, feats["state"])
    return ChunkDataset(feats, policy.targets(chunks))


def _policy_loss(model, batch, generator):
    return model(batch, generator)


def train_policy(exp: VLAExperiment, decoder: str | None = None, progress: bool = True) -> Path:
    """Train the policy with `decoder` (default: policy.decoder); returns its saved folder."""
    cfg = dataclasses.replace(exp.policy, decoder=decoder or exp.policy.decoder)
    out = exp.policy_dir(cfg.decoder)
    torch.manual_seed(exp.train.seed)  # the initial weights follow the seed
    policy = VLAPolicy(cfg)
    data = build_training_data(exp, policy, progress)
    print(f"policy ({cfg.decoder}): {policy.num_parameters / 1e6:.2f}M parameters, {len(data)} frames, "
          f"{exp.train.steps} steps")
    train_cfg = dataclasses.replace(exp.train, progress=exp.train.progress and progress)
    checkpoints = Path(exp.run_dir) / f"train_{exp.decoder_name(cfg.decoder)}"
    trainer = Trainer(policy, _policy_loss, data, train_cfg, checkpoints,
                      collate_fn=identity_collate)
    start = time.perf_counter()
    result = trainer.train_to_end(save_to=out)
    loss = "resumed: nothing left to train" if result.loss is None else f"final loss {result.loss:.4f}"
    print(f"trained {result.step} steps in {time.perf_counter() - start:.0f} s, {loss}; saved {out}")
    return out
