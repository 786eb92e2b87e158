"""The autoregressive baseline over the same token streams: same transformer, causal attention.

A fair comparison with masked diffusion uses the same body, parameter count, data and
training steps; only the attention layout (`model.causal=true`) and the objective differ.
Tokens are generated in raster order, one model call per token, with a key/value cache
(the condition prefix is encoded once, then every new token extends the cache).

    loss_fn = AutoregressiveObjective(cond_dropout=0.1)      # for the one trainer
    result = sample_autoregressive(model, 16, cond=cond, temperature=1.0, generator=g)

Logits processors (`ddm.sampling.constraints`) constrain both, as in the diffusion loop.

The start-of-sequence input is the mask id, which a causal model never sees elsewhere.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import Condition, Denoiser
from .objectives import condition_from_batch
from .sampling.constraints import LogitsProcessor, apply_processors
from .sampling.filters import draw_tokens, filter_logits
from .sampling.guidance import ClassifierFreeGuidance
from .sampling.state import SampleResult


def shift_right(ids: Tensor, start_id: int) -> Tensor:
    """[B, N] -> the inputs that predict them: [start, x_0, ..., x_{N-2}]."""
    return torch.cat((torch.full_like(ids[:, :1], start_id), ids[:, :-1]), dim=1)


class AutoregressiveObjective:
    """`loss_fn(model, batch, generator)`: next-token cross-entropy (nats/token) for the trainer."""

    def __init__(self, cond_dropout: float = 0.0, processors: Sequence[LogitsProcessor] = ()):
        self.cond_dropout = cond_dropout
        self.processors = processors

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict]:
        x0 = batch["ids"]
        cond = condition_from_batch(batch)
        if cond is not None and self.cond_dropout > 0:
            drop = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64) < self.cond_dropout
            cond = cond.dropped(drop.to(x0.device))
        mask_id = _unwrap(model).config.mask_id
        logits = model(shift_right(x0, mask_id), cond=cond).logits
        # one state cannot stand for every prefix at once: processors see nothing decided here
        logits = apply_processors(self.processors, logits, torch.full_like(x0, mask_id))
        loss = F.cross_entropy(logits.transpose(1, 2), x0)
        return loss, {"bits_per_token": float(loss.detach()) / math.log(2)}


def _unwrap(model):
    return getattr(model, "module", model)  # DDP


@torch.no_grad()
def sample_autoregressive(model: Denoiser, num_samples: int | None = None, *, cond: Condition | None = None,
                          temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                          guidance_scale: float = 0.0, generator: torch.Generator | None = None,
                          processors: Sequence[LogitsProcessor] = (), prompt: Tensor | None = None) -> SampleResult:
    """Raster-order sampling with a key/value cache; NFE = tokens (x2 with guidance). `prompt` [B, P]:
    the first P target tokens, given (read, not drawn: they cost calls but are not sampled)."""
    if not model.config.causal:
        raise ValueError("sample_autoregressive: the model is not causal (model.causal=false)")
    n = model.config.seq_len
    batch = num_samples if num_samples is not None else (cond.batch_size if cond is not None else None)
    if batch is None and prompt is not None:
        batch = prompt.shape[0]
    if batch is None:
        raise ValueError("sample_autoregressive: pass num_samples or a condition")
    if prompt is not None and (prompt.dim() != 2 or prompt.shape[0] != batch or prompt.shape[1] > n):
        raise ValueError(f"prompt: expected [batch={batch}, P <= {n}] token ids, got {tuple(prompt.shape)}")
    if cond is not None and not cond.is_empty() and cond.batch_size != batch:
        cond = cond.repeat(batch)
    guidance = None
    if guidance_scale > 0:
        ClassifierFreeGuidance.check(model, cond)
        guidance = ClassifierFreeGuidance(guidance_scale)
        cond = guidance.rows(cond)
    generator = generator or torch.Generator().manual_seed(0)
    rows = batch * (2 if guidance else 1)
    device = next(model.parameters()).device
    cache = model.encode_prefix(cond) if cond is not None else None
    ids = torch.full((batch, n), model.config.mask_id, dtype=torch.long, device=device)
    confidence = torch.empty(batch, n, dtype=torch.float64, device=device)
    token = torch.full((rows, 1), model.config.mask_id, dtype=torch.long, device=device)
    for i in range(n):
        out, cache = model.extend(token, i, cache)
        logits = out.logits[:, -1]
        if guidance is not None:
            logits = guidance.combine(logits[:, None])[:, 0]
        logits = apply_processors(processors, logits[:, None], ids, torch.tensor([i], device=device))[:, 0]
        probs = filter_logits(logits, temperature, top_k, top_p).exp()
        if prompt is not None and i < prompt.shape[1]:
            ids[:, i] = prompt[:, i].to(device)
        else:
            ids[:, i] = draw_tokens(probs, generator, greedy=temperature == 0)
        confidence[:, i] = probs.gather(1, ids[:, i:i + 1])[:, 0]
        token = ids[:, i:i + 1].repeat(2, 1) if guidance is not None else ids[:, i:i + 1]
    nfe = n * (2 if guidance else 1)
    return SampleResult(ids, nfe, None, None, confidence)
