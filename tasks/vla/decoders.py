"""The ways the policy turns its condition into an action chunk, on one transformer body.

Each is an `ActionDecoder` registered by name (`policy.decoder`, `task.decoders`):

* diffusion: masked discrete diffusion over the chunk's bin tokens, decoded by the project's
  one sampling loop (confidence order, optional secondary remasking, the condition prefix
  encoded once per chunk); a few model calls per chunk.
* autoregressive: the same transformer with causal attention, one token per call with a
  key/value cache (`ddm.autoregressive`): chunk x dims calls per chunk (the OpenVLA way).
* regression: the same transformer given an all-masked chunk, its continuous head read as
  the normalised actions, trained with MSE: one call per chunk.

Bin dimensions may only hold bin tokens and gripper dimensions only the two gripper tokens
(`ActionBinTokenizer`): the policy passes that as an `AllowedTokens` logits processor to
training and decoding alike, so no sampler can draw a token that does not decode.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ddm.autoregressive import AutoregressiveObjective, sample_autoregressive
from ddm.config import ModelConfig
from ddm.model import Condition
from ddm.objectives import DiffusionObjective
from ddm.process import MaskingProcess
from ddm.registry import Registry
from ddm.sampling import LogitsProcessor, Sampler

from .config import PolicyConfig

DECODERS = Registry("VLA action decoder")
Decoded = tuple[Tensor | None, Tensor | None, int]  # (token ids or None, normalised actions or None, NFE)


class ActionDecoder:
    """How a chunk is trained and decoded; subclasses set the body's layout and the two steps."""

    causal = False  # the body attends causally (autoregressive decoding)
    continuous = False  # the body has a continuous head (one value per token)

    def model_config(self, cfg: PolicyConfig) -> ModelConfig:
        """The transformer: chunk x dims tokens, the observation as a prefix of embeddings."""
        return ModelConfig(vocab_size=cfg.num_bins + 2, shape=[cfg.chunk, cfg.action_dim], d_model=cfg.d_model,
                           depth=cfg.depth, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout,
                           positions="axial", causal=self.causal, cond_embed_dim=cfg.d_model,
                           continuous_dim=1 if self.continuous else 0)

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
        process = MaskingProcess.from_config(cfg.diffusion, model.config.mask_id)
        target = {"ids": batch["ids"], "cond_embeddings": cond.embeddings}
        return DiffusionObjective(process, cfg.diffusion, processors)(model, target, generator)

    def decode(self, cfg, model, cond, generator, processors):
        result = Sampler.from_pretrained(model)(model, cond=cond, generator=generator, processors=processors)
        return result.ids, None, result.nfe


@DECODERS.register("autoregressive")
class AutoregressiveDecoder(ActionDecoder):
    causal = True

    def loss(self, cfg, model, cond, batch, generator, processors):
        target = {"ids": batch["ids"], "cond_embeddings": cond.embeddings}
        return AutoregressiveObjective(processors=processors)(model, target, generator)

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
