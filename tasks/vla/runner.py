"""The policy acting, in one object: observations in, actions out, chunks played with a receding horizon.

    runner = PolicyRunner.from_pretrained("runs/vla/policy_diffusion", action_dim=env.action_space.shape[0])
    runner.reset()
    action = runner.act({"observation.images.corner3": img, ..., "observation.state": s, "task": text})
    actions = runner.select_action(batch)       # [B, dims]: one action per row of a batch

A chunk of `chunk` actions is decoded, its first `execute` are played, then the policy
re-plans from the new observation (`execute = chunk` plays whole chunks). With temporal
ensembling (`ensemble` > 0, ACT's idea) every step's action is the weighted mean of all
the still-open chunks' predictions for that step, weight exp(-ensemble * age) where age
counts chunks back from the newest: smoother motion at no extra decoding. The LeRobot,
SimplerEnv and LIBERO adapters and the closed-loop evaluation all act through this. The
runner counts what evaluation reports: chunks decoded, decoder calls (NFE) per chunk, and
the seconds spent encoding and decoding.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .features import ObservationEncoder
from .policy import VLAPolicy


def check_action_dim(policy: VLAPolicy, action_dim: int, where: str = "environment") -> None:
    if policy.config.action_dim != action_dim:
        raise ValueError(f"action dimension mismatch: the policy (checkpoint) outputs {policy.config.action_dim}-d "
                         f"actions, the {where} takes {action_dim}-d actions")


@dataclass
class RunnerStats:
    actions: int = 0  # actions played (a batch of B rows plays B per step)
    chunks: int = 0
    nfe: int = 0  # decoder calls, summed over chunks
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def nfe_per_chunk(self) -> float:
        return self.nfe / max(self.chunks, 1)

    @property
    def ms_per_action(self) -> float:
        return 1000 * (self.encode_seconds + self.decode_seconds) / max(self.actions, 1)


class PolicyRunner:
    def __init__(self, policy: VLAPolicy, encoder: ObservationEncoder | None = None, action_dim: int | None = None,
                 execute: int | None = None, ensemble: float = 0.0, seed: int = 0):
        if action_dim is not None:
            check_action_dim(policy, action_dim)
        self.policy = policy.eval()
        c = policy.config
        self.encoder = encoder or ObservationEncoder.for_policy(c)
        enc = self.encoder
        if enc.cameras != list(c.cameras) or enc.image_tokens != c.image_tokens or enc.stage != c.image_stage:
            raise ValueError(f"encoder: cameras {enc.cameras} with {enc.image_tokens} {enc.stage!r} tokens "
                             f"each, the policy was trained on {c.cameras} with {c.image_tokens} {c.image_stage!r}")
        self.execute = execute or c.execute
        if not 1 <= self.execute <= c.chunk:
            raise ValueError(f"execute: {self.execute} is not in [1, {c.chunk}] (the policy's chunk)")
        if not ensemble >= 0.0:
            raise ValueError(f"ensemble: {ensemble} must be >= 0 (0: off)")
        self.ensemble = ensemble
        self.generator = torch.Generator().manual_seed(seed)
        self.plans: deque[tuple[int, np.ndarray]] = deque()  # (step of its first action, [B, chunk, dims])
        self.step = 0
        self.stats = RunnerStats()

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> "PolicyRunner":
        return cls(VLAPolicy.from_pretrained(directory), **kwargs)

    def reset(self, seed: int | None = None) -> None:
        """Forget the planned actions (a new episode); `seed` restarts the decoder's randomness."""
        self.plans.clear()
        self.step = 0
        if seed is not None:
            self.generator.manual_seed(seed)

    def predict_chunk(self, obs: Mapping) -> np.ndarray:
        """Observation (one frame or a batch) -> action chunks [B, chunk, dims] (float32)."""
        start = time.perf_counter()
        features = self.encoder(obs)
        mid = time.perf_counter()
        actions, nfe = self.policy.predict_chunk(features, self.generator)
        self.stats.encode_seconds += mid - start
        self.stats.decode_seconds += time.perf_counter() - mid
        self.stats.chunks += 1
        self.stats.nfe += nfe
        return actions.numpy()

    def select_action(self, obs: Mapping) -> np.ndarray:
        """The next action of every row [B, dims], re-planning every `execute` steps."""
        if self.step % self.execute == 0:
            chunk = self.predict_chunk(obs)
            if self.plans and chunk.shape[0] != self.plans[-1][1].shape[0]:
                raise ValueError(f"select_action: a batch of {chunk.shape[0]} observations in an episode of "
                                 f"{self.plans[-1][1].shape[0]}; call reset() between episodes")
            self.plans.append((self.step, chunk))
        while self.step - self.plans[0][0] >= self.plans[0][1].shape[1]:
            self.plans.popleft()  # chunks that end before this step
        start, newest = self.plans[-1]
        action = newest[:, self.step - start]
        if self.ensemble > 0 and len(self.plans) > 1:
            weights = [np.exp(-self.ensemble * age) for age in range(len(self.plans))][::-1]
            action = sum(w * plan[:, self.step - s] for w, (s, plan) in zip(weights, self.plans)) / sum(weights)
        self.step += 1
        self.stats.actions += action.shape[0]
        return np.asarray(action, dtype=np.float32)

    def act(self, obs: Mapping) -> np.ndarray:
        """The next action [dims] for one observation."""
        action = self.select_action(obs)
        if action.shape[0] != 1:
            raise ValueError(f"act: expected one observation, got a batch of {action.shape[0]}")
        return action[0]
