"""The denoiser: a bidirectional transformer over [condition prefix; target tokens].

Attention layout: the prefix attends to itself only; the target attends to the prefix
and to itself. So `encode_prefix` runs the prefix through every layer once and keeps
its keys and values, and `forward` on the target reuses them: a sampler pays for the
condition once per sample, not once per step, and the result is exactly the same as
recomputing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import DiffusionConfig, ModelConfig, SampleConfig
from ..continuous import is_joint
from ..hub import PretrainedModel
from .condition import Condition, Prefix
from .protocol import DENOISER_SECTIONS, attach_sections
from .layers import Block, Rotary
from .tokens import ConditionEmbedding, DenoiserOutput, Heads, TargetEmbedding, check_condition, check_inputs


def target_coordinates(cfg: ModelConfig) -> Tensor:
    """[N, A] coordinates of the target tokens: the flat index (rotary) or one per axis (axial)."""
    n = cfg.seq_len
    if cfg.positions == "rotary":
        return torch.arange(n, dtype=torch.float32)[:, None]
    grids = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in cfg.shape), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def prefix_coordinates(length: int, axes: int) -> Tensor:
    """The prefix sits before the target on the first axis: coordinates -P .. -1."""
    coords = torch.zeros(length, axes)
    coords[:, 0] = torch.arange(-length, 0, dtype=torch.float32)
    return coords


@dataclass
class BlockReuse:
    """Reuse of blocks across sampling steps (the Delta-DiT / Learning-to-Cache idea). `deltas[i]`
    [B, N, D] is how block i changed its input at the last call that ran it. A call with `skip`
    adds those changes in place of running the blocks in `blocks`; a call without runs every
    block and records the changes of those in `blocks`."""

    blocks: tuple[int, ...]
    deltas: dict[int, Tensor]
    skip: bool = False


class MaskedDiffusionTransformer(PretrainedModel):
    config_class = ModelConfig
    sections = DENOISER_SECTIONS
    supports_prefix_cache = True
    supports_block_reuse = True

    def __init__(self, config: ModelConfig, diffusion: DiffusionConfig | None = None,
                 sample: SampleConfig | None = None, task: dict | None = None):
        super().__init__()
        self.config = config
        attach_sections(self, diffusion, sample, task)
        axes = len(config.shape) if config.positions == "axial" else 1
        self.target_embedding = TargetEmbedding(config)
        self.condition_embedding = ConditionEmbedding(config)
        self.rotary = Rotary(config.d_model // config.heads, axes)
        self.blocks = nn.ModuleList(Block(config.d_model, config.heads, config.mlp_ratio, config.dropout,
                                          config.activation) for _ in range(config.depth))
        self.heads = Heads(config)
        self.register_buffer("target_coords", target_coordinates(config), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() >= 2 and not name.startswith("heads.discrete"):
                std = 0.02
                if name.endswith(("proj.weight", "mlp.2.weight")):
                    std /= math.sqrt(2 * self.config.depth)  # residual branches: keep the stream's scale
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def encode_prefix(self, cond: Condition | None) -> Prefix | None:
        """Run the condition through every layer once; its keys/values serve every step."""
        if cond is None or cond.is_empty():
            return None
        check_condition(self.config, cond)
        x, mask = self.condition_embedding(cond)
        rope = self.rotary(prefix_coordinates(x.shape[1], self.target_coords.shape[1]).to(x.device))
        keys, values = [], []
        for block in self.blocks:
            x, (k, v) = block(x, rope, key_mask=mask)
            keys.append(k)
            values.append(v)
        return Prefix(keys, values, mask)

    def forward(self, ids: Tensor, t: Tensor | None = None, cond: Condition | None = None,
                prefix: Prefix | None = None, values: Tensor | None = None,
                where: Tensor | None = None, reuse: BlockReuse | None = None) -> DenoiserOutput:
        """Predict the clean tokens (and continuous values) of every target position.

        ids [B, N] with masked positions set to `config.mask_id`; t [B] in [0, 1] (used
        when time-conditioned); either `cond` or its cached `prefix` (from
        `encode_prefix`); values [B, N, C] noisy continuous inputs, if any; where [B, N]
        bool: run the discrete head at these positions only (logits [M, V], row-major order);
        reuse: skip some blocks by their last output change, or record it (`BlockReuse`).
        """
        check_inputs(self.config, ids, t, cond, values, prefix, joint=is_joint(self))
        if prefix is None:
            prefix = self.encode_prefix(cond)
        x = self.target_embedding(ids, t, values)
        rope = self.rotary(self.target_coords)
        key_mask = None
        if prefix is not None and prefix.mask is not None:
            ones = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
            key_mask = torch.cat((prefix.mask, ones), dim=1)
        for i, block in enumerate(self.blocks):
            if reuse is not None and reuse.skip and i in reuse.blocks:
                x = x + reuse.deltas[i]
                continue
            past = None if prefix is None else (prefix.keys[i], prefix.values[i])
            out, _ = block(x, rope, past=past, key_mask=key_mask, causal=self.config.causal)
            if reuse is not None and i in reuse.blocks:
                reuse.deltas[i] = out - x
            x = out
        return self.heads(x, where)

    def forward_cached(self, ids: Tensor, t: Tensor | None, index: Tensor | None,
                       cache: list[tuple[Tensor, Tensor]] | None, prefix: Prefix | None = None
                       ) -> tuple[DenoiserOutput, list[tuple[Tensor, Tensor]]]:
        """Approximate reuse across sampling steps (the dKV-cache / Fast-dLLM idea): run only the
        target positions `index` [B, M] of ids [B, N] (the whole current state); every other
        position is attended to through the keys/values that `cache` (per layer, [B, H, N, Dh])
        holds from the last call that ran it. Those go stale as the tokens around them change,
        which is the approximation; with every position in `index` the call is exact. `index`
        may repeat a position (padding rows to one width). `cache=None`: run every position and
        build the cache. Returns the outputs at `index` (all positions when building) and the
        cache with the run positions' keys/values written in."""
        check_inputs(self.config, ids, t, None, None, prefix)
        if cache is None:
            index = None
        x = self.target_embedding(ids if index is None else ids.gather(1, index), t, None, index=index)
        cos, sin = self.rotary(self.target_coords)
        rope = (cos, sin) if index is None else (cos[index][:, None], sin[index][:, None])
        key_mask = None
        if prefix is not None and prefix.mask is not None:
            key_mask = torch.cat((prefix.mask, torch.ones(ids.shape, dtype=torch.bool, device=ids.device)), 1)
            key_mask = key_mask[:, None, None, :]
        written = []
        for i, block in enumerate(self.blocks):
            q, k, v = block.project(x, rope)
            if index is not None:  # write the run positions into the stale cache
                where = index[:, None, :, None].expand_as(k)
                k, v = cache[i][0].scatter(2, where, k), cache[i][1].scatter(2, where, v)
            written.append((k, v))
            if prefix is not None:
                k, v = torch.cat((prefix.keys[i], k), 2), torch.cat((prefix.values[i], v), 2)
            x = block.attend(x, q, k, v, key_mask)
        return self.heads(x), written

    def extend(self, ids: Tensor, start: int, cache: Prefix | None) -> tuple[DenoiserOutput, Prefix]:
        """Causal models: run target positions start .. start+M-1 (ids [B, M]) given `cache`,
        the keys/values of the condition prefix and of the targets before `start`; returns
        their outputs and the cache grown by them (incremental autoregressive decoding)."""
        if not self.config.causal:
            raise ValueError("extend: only a causal model (model.causal=true) decodes incrementally")
        x = self.target_embedding(ids, None, None, start)
        rope = self.rotary(self.target_coords[start:start + ids.shape[1]])
        key_mask = None
        if cache is not None and cache.mask is not None:
            ones = torch.ones(ids.shape[0], cache.length - cache.mask.shape[1] + ids.shape[1],
                              dtype=torch.bool, device=ids.device)
            key_mask = torch.cat((cache.mask, ones), dim=1)
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v) = block(x, rope, past=past, key_mask=key_mask, causal=True)
            keys.append(k if past is None else torch.cat((past[0], k), 2))
            values.append(v if past is None else torch.cat((past[1], v), 2))
        return self.heads(x), Prefix(keys, values, None if cache is None else cache.mask)
