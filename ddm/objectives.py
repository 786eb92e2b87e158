"""Training objectives of the masked-diffusion denoiser.

- discrete: cross-entropy on masked positions, weighted by the continuous-time ELBO
  weight -alpha'(t)/(1-alpha(t)) (MDLM) or flat (MaskGIT: the mean over masked tokens);
- continuous: flow matching on a per-token vector (noise -> data along the same
  alpha(t) as the tokens, velocity target), or plain regression of the vector;
- joint: their weighted sum;
- optionally (`visible_noise`), some visible tokens are swapped for uniform random ones and
  the prediction at every visible position is trained too, so that the model can say which
  committed tokens are doubtful (what secondary remasking reads while sampling).

A batch is a mapping with `ids` [B, N] and optionally `cond_ids` [B, P] (+ `cond_mask`),
`classes` [B], `cond_embeddings` [B, M, E], `importance` [B, N] in [0, 1] (priority
masking) and `values` [B, N, C] (continuous targets).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DiffusionConfig
from .model import Condition
from .process import MaskingProcess

LN2 = math.log(2.0)


def condition_from_batch(batch: Mapping[str, Tensor]) -> Condition | None:
    cond = Condition(tokens=batch.get("cond_ids"), token_mask=batch.get("cond_mask"),
                     classes=batch.get("classes"), embeddings=batch.get("cond_embeddings"))
    return None if cond.is_empty() else cond


def masked_cross_entropy(logits: Tensor, x0: Tensor, masked: Tensor, weight: Tensor | None) -> Tensor:
    """Per-sequence sum of (weighted) CE over masked positions, divided by the length: [B]."""
    ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")  # [B, N]
    ce = ce * masked
    if weight is not None:
        ce = ce * weight
    return ce.sum(1) / x0.shape[1]


def swap_visible(xt: Tensor, masked: Tensor, rate: float, vocab_size: int, generator: torch.Generator) -> Tensor:
    """Replace each visible token, with probability `rate`, by a uniform token of [0, vocab_size)."""
    u = torch.rand(xt.shape, generator=generator, dtype=torch.float64).to(xt.device)
    noise = torch.randint(0, vocab_size, xt.shape, generator=generator).to(xt.device)
    return torch.where((u < rate) & ~masked, noise, xt)


class DiffusionObjective:
    """`loss_fn(model, batch, generator) -> (loss, metrics)` for the one trainer."""

    def __init__(self, process: MaskingProcess, cfg: DiffusionConfig):
        self.process = process
        self.cfg = cfg

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict]:
        x0 = batch["ids"]
        b = x0.shape[0]
        t = self.process.sample_times(b, generator, x0.device)
        importance = batch.get("importance")
        xt, masked = self.process.corrupt(x0, t, generator, importance)
        if self.cfg.visible_noise > 0:
            # the mask id equals the vocabulary size
            xt = swap_visible(xt, masked, self.cfg.visible_noise, self.process.mask_id, generator)
        cond = condition_from_batch(batch)
        if cond is not None and self.cfg.cond_dropout > 0:
            drop = torch.rand(b, generator=generator, dtype=torch.float64) < self.cfg.cond_dropout
            cond = cond.dropped(drop.to(x0.device))

        values, velocity = None, None
        target_values = batch.get("values")
        if target_values is not None and self.cfg.continuous_loss == "flow":
            noise = torch.randn(target_values.shape, generator=generator).to(target_values)
            a = self.process.schedule.alpha(t)[:, None, None].to(target_values)
            values = a * target_values + (1 - a) * noise  # same signal level as the tokens
            velocity = target_values - noise

        out = model(xt, t=t, cond=cond, values=values)
        if self.cfg.weighting == "elbo":
            per_seq = masked_cross_entropy(out.logits, x0, masked, self.process.weights(t, importance))
            loss = per_seq.mean()
        else:
            ce = F.cross_entropy(out.logits.transpose(1, 2), x0, reduction="none")
            loss = (ce * masked).sum() / masked.sum().clamp_min(1)
        metrics = {"masked_frac": float(masked.float().mean())}
        if self.cfg.weighting == "elbo":
            metrics["elbo_bits_per_token"] = float(loss.detach()) / LN2
        if self.cfg.visible_noise > 0:
            visible = ~masked
            ce = F.cross_entropy(out.logits.transpose(1, 2), x0, reduction="none")
            visible_ce = (ce * visible).sum() / visible.sum().clamp_min(1)
            metrics["visible_ce"] = float(visible_ce.detach())
            loss = loss + self.cfg.visible_weight * visible_ce

        if target_values is not None and out.continuous is not None:
            target = velocity if velocity is not None else target_values
            cont = F.mse_loss(out.continuous, target.to(out.continuous))
            metrics["continuous_loss"] = float(cont.detach())
            loss = loss + self.cfg.continuous_weight * cont
        return loss, metrics


@torch.no_grad()
def elbo_bits_per_token(model, batches, process: MaskingProcess, generator: torch.Generator,
                        repeats: int = 1) -> float:
    """Monte-Carlo estimate of the negative ELBO in bits per target token (antithetic times)."""
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for _ in range(repeats):
        for batch in batches:
            x0 = batch["ids"]
            t = process.sample_times(x0.shape[0], generator, x0.device)
            importance = batch.get("importance")
            xt, masked = process.corrupt(x0, t, generator, importance)
            out = model(xt, t=t, cond=condition_from_batch(batch))
            nelbo = masked_cross_entropy(out.logits, x0, masked, process.weights(t, importance))
            total += float(nelbo.sum())
            count += x0.shape[0]
    model.train(was_training)
    return total / count / LN2
