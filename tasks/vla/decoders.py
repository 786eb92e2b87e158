"""The ways the policy turns its condition into an action chunk, on one transformer body.

Each is an `ActionDecoder` registered by name (`policy.decoder`, `task.decoders`):

* diffusion: masked discrete diffusion over the chunk's bin tokens, decoded by the project's
  one sampling loop (confidence order, optional secondary remasking, the condition prefix
  encoded once per chunk); a few model calls per chunk.
* autoregressive: the same transformer with causal attention, one token per call with a
  key/value cache (`ddm.autoregressive`): chunk x dims calls per chunk (the OpenVLA way).
* regression: the same transformer given an all-masked chunk, its continuous head read as
  the normalised actions, trained with MSE: one call per chunk.
* hybrid: the diffusion decoder's bins plus a continuous value inside each chosen bin. The
  bins are decoded in steps - 1 calls; one more call, on the completed chunk, reads the
  within-bin residual of every bin token from the continuous head (trained in the same
  pass as the bins, at the positions whose true bin is shown), clamped to its bin. Same
  calls per chunk as diffusion.
* joint: the joint continuous + discrete process of `ddm.continuous` on actions (CCDD): each
  token carries its bin and its normalised value, both noised and denoised together; with
  independent clocks the bins are done in steps - 1 calls and the last call finishes the
  values. The action is the value (clamped to [-1, 1]); gripper dimensions take their token.

Bin dimensions may only hold bin tokens and gripper dimensions only the two gripper tokens
(`ActionBinTokenizer`): the policy passes that as an `AllowedTokens` logits processor to
training and decoding alike, so no sampler can draw a token that does not decode.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ddm.autoregressive import AutoregressiveObjective, sample_autoregressive
from ddm.config import DiffusionConfig, ModelConfig
from ddm.model import Condition
from ddm.objectives import DiffusionObjective
from ddm.process import MaskingProcess
from ddm.registry import Registry
from ddm.sampling import LogitsProcessor, Sampler

from .config import PolicyConfig

DECODERS = Registry("VLA action decoder")
# (token ids [B, chunk*dims] or None, continuous [B, chunk, dims] or None, NFE). The continuous part is
# the normalised actions when there are no ids, else each bin's residual in bin widths (or None).
Decoded = tuple[Tensor | None, Tensor | None, int]


class ActionDecoder:
    """How a chunk is trained and decoded; subclasses set the body's layout and the two steps."""

    causal = False  # the body attends causally (autoregressive decoding)
    continuous = False  # the body has a continuous head (one value per token)
    joint = False  # the continuous head is the joint process's (noisy values in, told their time)

    def model_config(self, cfg: PolicyConfig) -> ModelConfig:
        """The transformer: chunk x dims tokens, the observation as a prefix of embeddings."""
        return ModelConfig(vocab_size=cfg.num_bins + 2, shape=[cfg.chunk, cfg.action_dim], d_model=cfg.d_model,
                           depth=cfg.depth, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout,
                           positions="axial", causal=self.causal, cond_embed_dim=cfg.d_model,
                           continuous_dim=1 if self.continuous else 0, time_conditioning=self.joint)

    def diffusion(self, cfg: PolicyConfig) -> DiffusionConfig:
        """The body's diffusion section: a continuous head that is not the joint process's is a plain
        regression head (no noisy values in)."""
        if self.continuous and not self.joint:
            return dataclasses.replace(cfg.diffusion, continuous_loss="regression")
        return cfg.diffusion

    def target(self, batch: dict, cond: Condition) -> dict:
        """The objective's batch: the chunk's ids and the observation prefix (decoders may add values)."""
        return {"ids": batch["ids"], "cond_embeddings": cond.embeddings}

    def loss(self, cfg: PolicyConfig, model, cond: Condition, batch: dict, generator: torch.Generator,
             processors: Sequence[LogitsProcessor]) -> tuple[Tensor, dict]:
        """The loss on a batch with `ids` [B, chunk*dims] and `normalised` [B, chunk, dims]."""
        raise NotImplementedError

    def decode(self, cfg: PolicyConfig, model, cond: Condition, generator: torch.Generator,
               processors: Sequence[LogitsProcessor]) -> Decoded:
        raise NotImplementedError


@DECODERS.register("diffusion")
class DiffusionDecoder(ActionDecoder):
    def loss(self, cfg, model, cond, batch, generator, processors):
        process = MaskingProcess.from_config(model.diffusion, model.config.mask_id)
        return DiffusionObjective(process, model.diffusion, processors)(model, self.target(batch, cond), generator)

    def decode(self, cfg, model, cond, generator, processors):
        result = Sampler.from_pretrained(model)(model, cond=cond, generator=generator, processors=processors)
        return result.ids, None, result.nfe


@DECODERS.register("autoregressive")
class AutoregressiveDecoder(ActionDecoder):
    causal = True

    def loss(self, cfg, model, cond, batch, generator, processors):
        return AutoregressiveObjective(processors=processors)(model, self.target(batch, cond), generator)

    def decode(self, cfg, model, cond, generator, processors):
        s = cfg.sample
        result = sample_autoregressive(model, cond=cond, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                       generator=generator, processors=processors)
        return result.ids, None, result.nfe


@DECODERS.register("regression")
class RegressionDecoder(ActionDecoder):
    continuous = True

    def _predict(self, model, cond: Condition) -> Tensor:
        ids = torch.full((cond.batch_size, model.config.seq_len), model.config.mask_id, dtype=torch.long,
                         device=cond.embeddings.device)
        return model(ids, cond=cond).continuous[..., 0]

    def loss(self, cfg, model, cond, batch, generator, processors):
        loss = F.mse_loss(self._predict(model, cond), batch["normalised"].flatten(1))
        return loss, {"mse": float(loss.detach())}

    def decode(self, cfg, model, cond, generator, processors):
        pred = self._predict(model, cond).clamp(-1.0, 1.0)
        return None, pred.view(-1, cfg.chunk, cfg.action_dim), 1


@DECODERS.register("hybrid")
class HybridDecoder(DiffusionDecoder):
    continuous = True

    def diffusion(self, cfg):  # the residual is trained where the true bin is shown, as decoding reads it
        return dataclasses.replace(cfg.diffusion, continuous_loss="regression", continuous_where="visible")

    def target(self, batch, cond):
        return {**super().target(batch, cond), "values": batch["residual"][..., None]}

    def decode(self, cfg, model, cond, generator, processors):
        if model.sample.steps < 2:
            raise ValueError(f"hybrid decoder: sample.steps={model.sample.steps}; it needs at least 2 calls "
                             "(the bins, then their residuals)")
        sampler = Sampler.from_pretrained(model, steps=model.sample.steps - 1)
        result = sampler(model, cond=cond, generator=generator, processors=processors)
        residual = model(result.ids, cond=cond).continuous[..., 0].clamp(-0.5, 0.5)
        residual = torch.where(result.ids < cfg.num_bins, residual, 0.0)  # gripper tokens have none
        return result.ids, residual.view(-1, cfg.chunk, cfg.action_dim), result.nfe + 1


@DECODERS.register("joint")
class JointDecoder(DiffusionDecoder):
    continuous = True
    joint = True

    def diffusion(self, cfg):
        return dataclasses.replace(cfg.diffusion, continuous_loss="flow")

    def target(self, batch, cond):
        return {**super().target(batch, cond), "values": batch["normalised"].flatten(1)[..., None]}

    def decode(self, cfg, model, cond, generator, processors):
        result = Sampler.from_pretrained(model)(model, cond=cond, generator=generator, processors=processors)
        values = result.continuous[..., 0].clamp(-1.0, 1.0).view(-1, cfg.chunk, cfg.action_dim)
        return None, _with_gripper_tokens(cfg, values, result.ids), result.nfe


def _with_gripper_tokens(cfg: PolicyConfig, values: Tensor, ids: Tensor) -> Tensor:
    """Normalised actions whose gripper dimensions are +-1 from their (closed / open) tokens."""
    ids = ids.view(-1, cfg.chunk, cfg.action_dim)
    closed = (ids == cfg.num_bins + 1).to(values) * 2 - 1
    grip = torch.zeros(cfg.action_dim, dtype=torch.bool, device=values.device)
    grip[list(cfg.gripper_dims)] = True
    return torch.where(grip, closed, values)
