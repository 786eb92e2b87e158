"""The three ways the policy turns its condition into an action chunk, on one transformer body.

* diffusion: masked discrete diffusion over the chunk's bin tokens, decoded by the project's
  one sampling loop (confidence order, optional secondary remasking, the condition prefix
  encoded once per chunk); a few model calls per chunk.
* autoregressive: the same transformer with causal attention, one token per call with a
  key/value cache (`ddm.autoregressive`): chunk x dims calls per chunk (the OpenVLA way).
* regression: the same transformer given an all-masked chunk, its continuous head read as
  the normalised actions, trained with MSE: one call per chunk.

Bin dimensions may only hold bin tokens and gripper dimensions only the two gripper
tokens (`ActionBinTokenizer`): `ConstrainedDenoiser` gives every other token zero
probability, so no sampler can draw a token that does not decode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ddm.autoregressive import AutoregressiveObjective, sample_autoregressive
from ddm.config import ModelConfig
from ddm.model import Condition, DenoiserOutput
from ddm.objectives import DiffusionObjective
from ddm.process import MaskingProcess
from ddm.sampling import build_sampler
from ddm.schedules import get_schedule

from .config import PolicyConfig


def decoder_model_config(cfg: PolicyConfig) -> ModelConfig:
    """The transformer of the chosen decoder: chunk x dims tokens, the observation as a prefix."""
    return ModelConfig(vocab_size=cfg.num_bins + 2, shape=[cfg.chunk, cfg.action_dim], d_model=cfg.d_model,
                       depth=cfg.depth, heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout,
                       positions="axial", causal=cfg.decoder == "autoregressive", cond_embed_dim=cfg.d_model,
                       continuous_dim=1 if cfg.decoder == "regression" else 0)


def allowed_tokens(cfg: PolicyConfig) -> Tensor:
    """[chunk * dims, vocab] bool: the tokens each flat position may hold."""
    k = cfg.num_bins
    per_dim = torch.zeros(cfg.action_dim, k + 2, dtype=torch.bool)
    per_dim[:, :k] = True
    for d in cfg.gripper_dims:
        per_dim[d] = False
        per_dim[d, k:] = True
    return per_dim.repeat(cfg.chunk, 1)


class ConstrainedDenoiser:
    """The transformer with the logits of tokens a position may not hold set to -inf."""

    def __init__(self, model, allowed: Tensor):
        self.model = model
        self.config = model.config
        self.supports_prefix_cache = getattr(model, "supports_prefix_cache", False)
        self.trained_cond_dropout = getattr(model, "trained_cond_dropout", 0.0)
        self.allowed = allowed

    def parameters(self):
        return self.model.parameters()

    def buffers(self):
        return self.model.buffers()

    def _mask(self, out: DenoiserOutput, start: int = 0) -> DenoiserOutput:
        allowed = self.allowed[start:start + out.logits.shape[1]].to(out.logits.device)
        return DenoiserOutput(out.logits.masked_fill(~allowed, float("-inf")), out.continuous)

    def __call__(self, ids, t=None, cond=None, prefix=None, values=None) -> DenoiserOutput:
        return self._mask(self.model(ids, t=t, cond=cond, prefix=prefix, values=values))

    def encode_prefix(self, cond):
        return self.model.encode_prefix(cond)

    def extend(self, ids, start, cache):
        out, cache = self.model.extend(ids, start, cache)
        return self._mask(out, start), cache


def training_loss(cfg: PolicyConfig, model, cond: Condition, batch: dict, generator: torch.Generator
                  ) -> tuple[Tensor, dict]:
    """The decoder's loss on a batch with `ids` [B, chunk*dims] and `normalised` [B, chunk, dims]."""
    if cfg.decoder == "regression":
        ids = torch.full_like(batch["ids"], model.config.mask_id)
        pred = model(ids, cond=cond).continuous[..., 0]
        loss = F.mse_loss(pred, batch["normalised"].flatten(1))
        return loss, {"mse": float(loss.detach())}
    target = {"ids": batch["ids"], "cond_embeddings": cond.embeddings}
    if cfg.decoder == "autoregressive":
        return AutoregressiveObjective()(model, target, generator)
    process = MaskingProcess.from_config(cfg.diffusion, model.config.mask_id)
    return DiffusionObjective(process, cfg.diffusion)(model, target, generator)


@torch.no_grad()
def decode_chunk(cfg: PolicyConfig, model: ConstrainedDenoiser, cond: Condition, generator: torch.Generator
                 ) -> tuple[Tensor, Tensor | None, int]:
    """(token ids [B, chunk*dims] or None, normalised actions [B, chunk, dims] or None, NFE per chunk)."""
    if cfg.decoder == "regression":
        b = cond.batch_size
        ids = torch.full((b, model.config.seq_len), model.config.mask_id, dtype=torch.long,
                         device=cond.embeddings.device)
        pred = model(ids, cond=cond).continuous[..., 0].clamp(-1.0, 1.0)
        return None, pred.view(b, cfg.chunk, cfg.action_dim), 1
    if cfg.decoder == "autoregressive":
        s = cfg.sample
        result = sample_autoregressive(model, cond=cond, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                       generator=generator)
        return result.ids, None, result.nfe
    sampler = build_sampler(cfg.sample, process=get_schedule(cfg.diffusion.schedule, cfg.diffusion.power))
    result = sampler(model, cond=cond, generator=generator)
    return result.ids, None, result.nfe
