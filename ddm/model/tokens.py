"""What enters and leaves a denoiser body: embeddings of the target and the condition,
the discrete and continuous heads, and the checks at the public boundary.

Shared by our transformer and the `transformers` adapter, so both read the same
inputs and produce the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .condition import Condition, Prefix
from .layers import TimeEmbedding


@dataclass
class DenoiserOutput:
    logits: Tensor  # [B, N, V] over the target vocabulary; the mask id is never predicted
    continuous: Tensor | None = None  # [B, N, C] from the continuous head


class TargetEmbedding(nn.Module):
    """Token ids (mask id included), optional noisy continuous values and time -> [B, N, D]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab_size + 1, cfg.d_model)  # + the mask id
        self.values = nn.Linear(cfg.continuous_dim, cfg.d_model) if cfg.continuous_dim else None
        self.time = TimeEmbedding(cfg.d_model) if cfg.time_conditioning else None
        self.positions = nn.Parameter(torch.zeros(cfg.seq_len, cfg.d_model)) if cfg.learned_positions else None
        self.entities = None  # a vector per entity, summed over each position's entities
        if cfg.position_entities:
            index = torch.tensor(cfg.position_entities, dtype=torch.long)
            self.register_buffer("entity_index", index, persistent=False)
            self.entities = nn.Embedding(int(index.max()) + 1, cfg.d_model)

    def forward(self, ids: Tensor, t: Tensor | None, values: Tensor | None, start: int = 0,
                index: Tensor | None = None) -> Tensor:
        """`start`: the target position of ids[:, 0] (incremental decoding runs a slice); or
        `index` [B, M]: the target position of each of ids' tokens (a sampler recomputing a few)."""
        x = self.tokens(ids)
        if self.positions is not None:
            x = x + (self.positions[start:start + ids.shape[1]] if index is None else self.positions[index])
        if self.entities is not None:
            rows = self.entity_index[start:start + ids.shape[1]] if index is None else self.entity_index[index]
            x = x + self.entities(rows).sum(-2)
        if values is not None and self.values is not None:
            x = x + self.values(values)
        if self.time is not None:
            x = x + self.time(t)[:, None, :]
        return x


class ConditionEmbedding(nn.Module):
    """Condition -> prefix vectors [B, P, D] and their validity mask [B, P] (None: all valid).

    Each kind of condition has a learned null, used where `Condition.drop` is set, so a
    model trained with condition dropout gives classifier-free guidance its
    unconditional prediction from the same prefix layout.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.classes = nn.Embedding(cfg.num_classes + 1, d) if cfg.num_classes else None
        self.tokens = nn.Embedding(cfg.cond_vocab_size + 1, d) if cfg.cond_vocab_size else None
        self.project = nn.Linear(cfg.cond_embed_dim, d) if cfg.cond_embed_dim else None
        self.null_embedding = nn.Parameter(torch.zeros(d)) if cfg.cond_embed_dim else None
        self.num_classes = cfg.num_classes
        self.cond_vocab_size = cfg.cond_vocab_size

    def forward(self, cond: Condition) -> tuple[Tensor, Tensor | None]:
        parts, masks = [], []
        drop = cond.drop
        if cond.classes is not None:
            classes = cond.classes if drop is None else cond.classes.masked_fill(drop, self.num_classes)
            parts.append(self.classes(classes)[:, None, :])
            masks.append(torch.ones(classes.shape[0], 1, dtype=torch.bool, device=classes.device))
        if cond.embeddings is not None:
            e = self.project(cond.embeddings.to(self.project.weight.dtype))
            if drop is not None:
                e = torch.where(drop[:, None, None], self.null_embedding.to(e.dtype), e)
            parts.append(e)
            masks.append(torch.ones(e.shape[:2], dtype=torch.bool, device=e.device))
        if cond.tokens is not None:
            tokens = cond.tokens if drop is None else cond.tokens.masked_fill(drop[:, None], self.cond_vocab_size)
            parts.append(self.tokens(tokens))
            masks.append(cond.token_mask if cond.token_mask is not None else torch.ones_like(tokens, dtype=torch.bool))
        mask = torch.cat(masks, dim=1)
        return torch.cat(parts, dim=1), (None if cond.token_mask is None else mask)


class Heads(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model)
        self.discrete = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.continuous = nn.Linear(cfg.d_model, cfg.continuous_dim) if cfg.continuous_dim else None
        # Zero-initialised discrete head: the untrained model predicts the uniform distribution.
        nn.init.zeros_(self.discrete.weight)
        nn.init.zeros_(self.discrete.bias)

    def forward(self, h: Tensor, where: Tensor | None = None) -> DenoiserOutput:
        """h [B, N, D]; where [B, N] bool: the discrete head at those positions only, logits [M, V]
        (a training loss that reads only them skips the rest of the largest output matmul)."""
        h = self.norm(h)
        return DenoiserOutput(self.discrete(h if where is None else h[where]).float(),
                              None if self.continuous is None else self.continuous(h).float())


def check_inputs(cfg: ModelConfig, ids: Tensor, t: Tensor | None, cond: Condition | None,
                 values: Tensor | None, prefix: Prefix | None = None, joint: bool = False) -> None:
    """Shape, dtype and range checks at the public boundary, with errors that name the input;
    `joint`: the model was trained on the joint process (`ddm.continuous`) and needs its vectors."""
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"ids: expected a tensor of rank 2 [batch, {cfg.seq_len}], got {shape}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"ids: expected integer token ids, got dtype {ids.dtype}")
    if ids.shape[1] != cfg.seq_len:
        raise ValueError(f"ids: expected {cfg.seq_len} tokens per row (model.shape={cfg.shape}), got {ids.shape[1]}")
    # The range check reads values; under torch.compile (train.compile) it would break the graph.
    lo, hi = (0, 0) if torch.compiler.is_compiling() else (int(ids.min()), int(ids.max()))
    if lo < 0 or hi > cfg.mask_id:
        bad = lo if lo < 0 else hi
        raise ValueError(f"ids: token id {bad} is outside the vocabulary [0, {cfg.vocab_size}) "
                         f"(mask id {cfg.mask_id})")
    b = ids.shape[0]
    if cfg.time_conditioning and (t is None or t.shape != (b,)):
        raise ValueError(f"t: the model is time-conditioned and needs t of shape [{b}], got "
                         f"{None if t is None else tuple(t.shape)}")
    if values is None and joint:
        raise ValueError(f"values: this model was trained on the joint process (diffusion.continuous_loss=flow) and "
                         f"needs its noisy continuous state [{b}, {cfg.seq_len}, {cfg.continuous_dim}] at every call; "
                         "sample it with ddm.sampling (Sampler.from_pretrained), which carries that state")
    if values is not None:
        if not cfg.continuous_dim:
            raise ValueError("values: the model has no continuous input (model.continuous_dim=0)")
        if values.shape != (b, cfg.seq_len, cfg.continuous_dim):
            raise ValueError(f"values: expected shape {(b, cfg.seq_len, cfg.continuous_dim)}, got {tuple(values.shape)}")
    needs = cfg.num_classes or cfg.cond_vocab_size or cfg.cond_embed_dim
    if prefix is not None:
        rows = prefix.hidden.shape[0] if prefix.hidden is not None else prefix.keys[0].shape[0]
        if rows != b:
            raise ValueError(f"prefix: encoded for {rows} rows, ids has {b}")
        return
    if cond is None or cond.is_empty():
        if needs:
            raise ValueError("cond: the model is conditional (classes, condition tokens or embeddings); "
                             "pass a Condition")
        return
    check_condition(cfg, cond, b)


def check_condition(cfg: ModelConfig, cond: Condition, batch: int | None = None) -> None:
    b = cond.batch_size if batch is None else batch
    if (cond.classes is None) != (not cfg.num_classes):
        raise ValueError(f"cond.classes: the model expects {'class ids' if cfg.num_classes else 'none'}")
    if (cond.tokens is None) != (not cfg.cond_vocab_size):
        raise ValueError(f"cond.tokens: the model expects {'condition tokens' if cfg.cond_vocab_size else 'none'}")
    if (cond.embeddings is None) != (not cfg.cond_embed_dim):
        raise ValueError(f"cond.embeddings: the model expects {'embeddings' if cfg.cond_embed_dim else 'none'}")
    if cond.classes is not None:
        if cond.classes.shape != (b,):
            raise ValueError(f"cond.classes: expected shape [{b}], got {tuple(cond.classes.shape)}")
        bad = cond.classes[(cond.classes < 0) | (cond.classes >= cfg.num_classes)]
        if bad.numel():
            raise ValueError(f"cond.classes: class id {int(bad[0])} is unknown; the model knows "
                             f"classes 0..{cfg.num_classes - 1}")
    if cond.tokens is not None:
        if cond.tokens.dim() != 2 or cond.tokens.shape[0] != b:
            raise ValueError(f"cond.tokens: expected shape [{b}, <= {cfg.cond_len}], got {tuple(cond.tokens.shape)}")
        if cond.tokens.shape[1] > cfg.cond_len:
            raise ValueError(f"cond.tokens: {cond.tokens.shape[1]} tokens, the model takes at most {cfg.cond_len}")
        bad = cond.tokens[(cond.tokens < 0) | (cond.tokens >= cfg.cond_vocab_size)]
        if bad.numel():
            raise ValueError(f"cond.tokens: token id {int(bad[0])} is outside the condition vocabulary "
                             f"[0, {cfg.cond_vocab_size})")
        if cond.token_mask is not None:
            if cond.token_mask.shape != cond.tokens.shape:
                raise ValueError(f"cond.token_mask: expected shape {tuple(cond.tokens.shape)}, "
                                 f"got {tuple(cond.token_mask.shape)}")
            if cond.classes is None and cond.embeddings is None and not cond.token_mask.any(1).all():
                raise ValueError("cond.token_mask: every row needs at least one condition token")
    if cond.embeddings is not None:
        if cond.embeddings.dim() != 3 or cond.embeddings.shape[0] != b or cond.embeddings.shape[2] != cfg.cond_embed_dim:
            raise ValueError(f"cond.embeddings: expected shape [{b}, M, {cfg.cond_embed_dim}], "
                             f"got {tuple(cond.embeddings.shape)}")
    if cond.drop is not None and cond.drop.shape != (b,):
        raise ValueError(f"cond.drop: expected shape [{b}], got {tuple(cond.drop.shape)}")
