"""The policy behind LeRobot's policy contract, importable without LeRobot.

LeRobot cannot be installed beside torch 2.13 here (it caps torch below 2.12), so this
class does not subclass its `PreTrainedPolicy`; it has the same method names, batch
keys and return values, so that a `lerobot_policy_ddm_vla` package can wrap it in a few
lines:

    reset()                           new episode: drop queued actions
    select_action(batch) -> [B, A]    one action per call: the `PolicyRunner` plays n_action_steps of
                                      each chunk (temporal ensembling with `ensemble` > 0)
    predict_action_chunk(batch)       -> [B, chunk, A]
    forward(batch) -> (loss, dict)    training loss; batch["action"] [B, chunk, A]
                                      (+ "action_is_pad" [B, chunk]) as LeRobot's delta timestamps give
    get_optim_params()                the trainable parameters (the encoders are frozen)

Batch keys: `observation.images.<camera>` (LeRobot's float [B, 3, H, W] in [0, 1], or
uint8 [B, H, W, 3]), `observation.state` [B, S], `task` (list of sentences).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from . import schema
from .config import PolicyConfig
from .features import ObservationEncoder
from .policy import VLAPolicy
from .runner import PolicyRunner


@dataclass
class DDMVLAConfig:
    """LeRobot-style config: the policy's own config plus what LeRobot's loop reads."""

    type: str = "ddm_vla"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    n_action_steps: int = 4  # actions of each chunk played by select_action before re-planning
    ensemble: float = 0.0  # temporal ensembling of overlapping chunks (see tasks.vla.runner)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.n_action_steps <= self.policy.chunk:
            raise ValueError(f"n_action_steps: {self.n_action_steps} is not in [1, {self.policy.chunk}] (policy.chunk)")

    @property
    def image_features(self) -> list[str]:
        return [schema.image_key(c) for c in self.policy.cameras]

    @property
    def chunk_size(self) -> int:
        return self.policy.chunk


def to_uint8_images(x) -> np.ndarray:
    """LeRobot float [B, 3, H, W] in [0, 1] (or uint8 [B, H, W, 3]) -> uint8 [B, H, W, 3]."""
    x = x.detach().cpu() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if x.dtype == torch.uint8:
        return x.numpy()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images: expected float [B, 3, H, W] in [0, 1] or uint8 [B, H, W, 3], got {tuple(x.shape)}")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class DDMVLAPolicy(nn.Module):
    config_class = DDMVLAConfig
    name = "ddm_vla"

    def __init__(self, config: DDMVLAConfig, model: VLAPolicy | None = None):
        super().__init__()
        self.config = config
        self.model = model if model is not None else VLAPolicy(config.policy)
        if self.model.config != config.policy:
            raise ValueError("DDMVLAPolicy: the model's config differs from config.policy")
        self._encoder: ObservationEncoder | None = None  # frozen, loaded on first use, not a submodule
        self._runner: PolicyRunner | None = None  # acts (made on first use: it puts the model in eval mode)
        self._step = 0

    @classmethod
    def from_pretrained(cls, directory: str | Path, n_action_steps: int | None = None) -> "DDMVLAPolicy":
        model = VLAPolicy.from_pretrained(directory)
        return cls(DDMVLAConfig(policy=model.config, n_action_steps=n_action_steps or model.config.execute), model)

    def save_pretrained(self, directory: str | Path) -> Path:
        return self.model.save_pretrained(directory)

    @property
    def encoder(self) -> ObservationEncoder:
        if self._encoder is None:
            c = self.config.policy
            self._encoder = ObservationEncoder.for_policy(c)
        return self._encoder

    @property
    def runner(self) -> PolicyRunner:
        if self._runner is None:
            c = self.config
            self._runner = PolicyRunner(self.model, self.encoder, execute=c.n_action_steps, ensemble=c.ensemble,
                                        seed=c.seed)
        return self._runner

    def _observation(self, batch: dict) -> dict:
        """LeRobot's batch -> the runner's observation (uint8 HWC images, numpy state, sentences)."""
        schema.check_observation(batch, self.config.policy.cameras)
        obs = {k: to_uint8_images(batch[k]) for k in self.config.image_features}
        state = batch[schema.STATE]
        obs[schema.STATE] = state.detach().cpu().numpy() if isinstance(state, Tensor) else state
        if schema.TASK not in batch:
            raise KeyError(f"batch is missing {schema.TASK!r} (the instruction sentences)")
        obs[schema.TASK] = batch[schema.TASK]
        return obs

    def get_optim_params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def reset(self) -> None:
        self.runner.reset()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict) -> Tensor:
        return torch.as_tensor(self.runner.predict_chunk(self._observation(batch)))

    @torch.no_grad()
    def select_action(self, batch: dict) -> Tensor:
        return torch.as_tensor(self.runner.select_action(self._observation(batch)))

    def forward(self, batch: dict) -> tuple[Tensor, dict]:
        c = self.config.policy
        actions = torch.as_tensor(batch[schema.ACTION], dtype=torch.float32)
        if actions.ndim != 3 or tuple(actions.shape[1:]) != (c.chunk, c.action_dim):
            raise ValueError(f"batch['action']: expected [B, {c.chunk}, {c.action_dim}] (chunk, action dims), "
                             f"got {tuple(actions.shape)}")
        pad = batch.get("action_is_pad")
        if pad is not None:
            # padded steps (past the episode's end) repeat the last real action, as in our own demos
            keep = (~pad.bool()).long().cumsum(1).clamp_min(1) - 1
            actions = actions.gather(1, keep[..., None].expand_as(actions))
        targets = self.model.targets(actions)
        feats = self.encoder(self._observation(batch))
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self._step)
        self._step += 1
        loss, metrics = self.model({**feats, **targets}, generator)
        return loss, {"loss": float(loss.detach()), **metrics}
