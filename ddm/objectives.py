"""Training objectives of the masked-diffusion denoiser.

- discrete: cross-entropy on masked positions, weighted by the continuous-time ELBO
  weight -alpha'(t)/(1-alpha(t)) (MDLM) or flat (MaskGIT: the mean over masked tokens);
- continuous: the joint process (`ddm.continuous`: flow matching on a per-token vector, noised
  on the tokens' clock or its own, velocity target), or plain regression of the vector;
- joint: their weighted sum;
- optionally (`visible_noise`), some visible tokens are swapped for uniform random ones and
  the prediction at every visible position is trained too, so that the model can say which
  committed tokens are doubtful (what secondary remasking reads while sampling).

A batch is a mapping with `ids` [B, N] and optionally `cond_ids` [B, P] (+ `cond_mask`),
`classes` [B], `cond_embeddings` [B, M, E], `importance` [B, N] in [0, 1] (priority
masking), `values` [B, N, C] (continuous targets), `padding` [B, N] bool: positions
that hold a pad id, which stay visible and are never a target (so the ELBO is per real
token), and `context` [B, N] bool: tokens given as context (what a sampler will be given
as fixed tokens: the first frames of a video to continue), visible and never a target. Logits
processors (`ddm.sampling.constraints`) given to the objective constrain the
predictions in training as the sampler does.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DiffusionConfig
from .continuous import continuous_schedule, corrupt_values, is_joint, vector_times
from .model import Condition, Denoiser
from .process import MaskingProcess
from .sampling.constraints import LogitsProcessor, apply_processors

LN2 = math.log(2.0)


def condition_from_batch(batch: Mapping[str, Tensor]) -> Condition | None:
    cond = Condition(tokens=batch.get("cond_ids"), token_mask=batch.get("cond_mask"),
                     classes=batch.get("classes"), embeddings=batch.get("cond_embeddings"))
    return None if cond.is_empty() else cond


def masked_cross_entropy(logits: Tensor, x0: Tensor, masked: Tensor, weight: Tensor | None,
                         padding: Tensor | None = None) -> Tensor:
    """Per-sequence sum of (weighted) CE over masked positions, divided by the length: [B]
    (the number of real tokens when `padding` marks pad positions)."""
    return sequence_loss(F.cross_entropy(logits.transpose(1, 2), x0, reduction="none"), x0, masked, weight, padding)


def sequence_loss(ce: Tensor, x0: Tensor, masked: Tensor, weight: Tensor | None,
                  padding: Tensor | None = None) -> Tensor:
    """`masked_cross_entropy` given the per-position CE [B, N]."""
    ce = torch.where(masked, ce, 0.0)  # not a product: a forbidden (-inf) token elsewhere would give inf * 0
    if weight is not None:
        ce = ce * weight
    return ce.sum(1) / (x0.shape[1] if padding is None else (~padding).sum(1).clamp_min(1))


def corrupt_batch(process: MaskingProcess, batch: Mapping[str, Tensor], t: Tensor,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """x_t ~ q(x_t | x_0) for the batch's `ids`; pad and context positions stay visible: (x_t, masked)."""
    x0 = batch["ids"]
    xt, masked = process.corrupt(x0, t, generator, batch.get("importance"))
    for key in ("padding", "context"):
        shown = batch.get(key)
        if shown is not None:
            if shown.shape != x0.shape or shown.dtype != torch.bool:
                raise ValueError(f"{key}: expected a bool mask of the ids' shape {tuple(x0.shape)}, got "
                                 f"{shown.dtype} {tuple(shown.shape)}")
            masked = masked & ~shown
            xt = torch.where(shown, x0, xt)
    return xt, masked


def check_values(values: Tensor, ids_shape: torch.Size, dim: int) -> None:
    """Continuous targets [B, N, C] must match the ids and the model's head, and be finite."""
    if not dim:
        raise ValueError("values: the batch has continuous values but the model has no continuous head "
                         "(model.continuous_dim=0)")
    if values.shape != (*ids_shape, dim):
        raise ValueError(f"values: expected shape {(*ids_shape, dim)} (ids {tuple(ids_shape)}, model.continuous_dim="
                         f"{dim}), got {tuple(values.shape)}")
    bad = ~torch.isfinite(values).flatten(1).all(1)
    if bad.any():
        raise ValueError(f"values: row {int(bad.nonzero()[0])} of the batch holds NaN or infinite values")


def swap_visible(xt: Tensor, masked: Tensor, rate: float, vocab_size: int, generator: torch.Generator) -> Tensor:
    """Replace each visible token, with probability `rate`, by a uniform token of [0, vocab_size)."""
    u = torch.rand(xt.shape, generator=generator, dtype=torch.float64).to(xt.device)
    noise = torch.randint(0, vocab_size, xt.shape, generator=generator).to(xt.device)
    return torch.where((u < rate) & ~masked, noise, xt)


class DiffusionObjective:
    """`loss_fn(model, batch, generator) -> (loss, metrics)` for the one trainer."""

    def __init__(self, process: MaskingProcess, cfg: DiffusionConfig, processors: Sequence[LogitsProcessor] = (),
                 sparse_head: bool = False):
        self.process = process
        self.cfg = cfg
        self.processors = processors
        # train.sparse_head: logits only where the loss reads them (processors read every position)
        self.sparse_head = sparse_head and not processors
        self.continuous = continuous_schedule(cfg)  # the joint process's vectors, or None (regression)

    def __call__(self, model, batch: Mapping[str, Tensor], generator: torch.Generator) -> tuple[Tensor, dict]:
        x0 = batch["ids"]
        b = x0.shape[0]
        t = self.process.sample_times(b, generator, x0.device)
        importance, padding = batch.get("importance"), batch.get("padding")
        xt, masked = corrupt_batch(self.process, batch, t, generator)
        kept = masked  # what visible-token noise leaves alone: targets, pads and the given context
        for key in ("padding", "context"):
            if batch.get(key) is not None:
                kept = kept | batch[key]
        if self.cfg.visible_noise > 0:
            # the mask id equals the vocabulary size
            xt = swap_visible(xt, kept, self.cfg.visible_noise, self.process.mask_id, generator)
        cond = condition_from_batch(batch)
        if cond is not None and self.cfg.cond_dropout > 0:
            drop = torch.rand(b, generator=generator, dtype=torch.float64) < self.cfg.cond_dropout
            cond = cond.dropped(drop.to(x0.device))

        values, velocity, model_t = None, None, t
        target_values = batch.get("values")
        if target_values is not None:
            check_values(target_values, x0.shape, getattr(model.config, "continuous_dim", 0))
            if padding is not None:  # a pad's vector means nothing: it must not reach the other positions
                target_values = target_values.masked_fill(padding[..., None], 0.0)
            if self.continuous is not None:  # on their own clock, the vectors' time is the one told to the model
                model_t = vector_times(self.cfg.continuous_time, t,
                                       lambda: self.process.sample_times(b, generator, x0.device))
                values, velocity = corrupt_values(self.continuous, target_values.float(), model_t, generator)

        visible = ~kept
        if self.sparse_head:
            where = masked | visible if self.cfg.visible_noise > 0 else masked  # the positions with loss
            out = model(xt, t=model_t, cond=cond, values=values, where=where)
            ce = torch.zeros(x0.shape, dtype=out.logits.dtype, device=x0.device).masked_scatter(
                where, F.cross_entropy(out.logits, x0[where], reduction="none"))
        else:
            out = model(xt, t=model_t, cond=cond, values=values)
            logits = apply_processors(self.processors, out.logits, xt)
            ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")  # [B, N]
        if self.cfg.weighting == "elbo":
            per_seq = sequence_loss(ce, x0, masked, self.process.weights(t, importance), padding)
            loss = per_seq.mean()
        else:
            loss = torch.where(masked, ce, 0.0).sum() / masked.sum().clamp_min(1)
        metrics = {"masked_frac": float(masked.float().mean())}
        if self.cfg.weighting == "elbo":
            metrics["elbo_bits_per_token"] = float(loss.detach()) / LN2
        if self.cfg.visible_noise > 0:
            visible_ce = torch.where(visible, ce, 0.0).sum() / visible.sum().clamp_min(1)
            metrics["visible_ce"] = float(visible_ce.detach())
            loss = loss + self.cfg.visible_weight * visible_ce

        if target_values is not None and out.continuous is not None:
            target = velocity if velocity is not None else target_values
            err = (out.continuous - target.to(out.continuous)).pow(2).mean(-1)  # [B, N]
            real = torch.ones_like(err) if padding is None else (~padding).to(err)
            if self.cfg.continuous_where == "visible":  # only where the true token is shown
                real = real * (xt == x0).to(err)
            cont = (err * real).sum() / real.sum().clamp_min(1)  # pads are never a target
            metrics["continuous_loss"] = float(cont.detach())
            loss = loss + self.cfg.continuous_weight * cont
        return loss, metrics


@torch.no_grad()
def elbo_bits_per_token(model: Denoiser, batches, process: MaskingProcess, generator: torch.Generator,
                        repeats: int = 1) -> float:
    """Monte-Carlo estimate of the negative ELBO in bits per target token (antithetic times);
    pad positions (`padding` in a batch) are not tokens."""
    total, count = 0.0, 0.0
    continuous = continuous_schedule(getattr(model, "diffusion", None)) if is_joint(model) else None
    was_training = model.training
    model.eval()
    for _ in range(repeats):
        for batch in batches:
            x0, padding = batch["ids"], batch.get("padding")
            t = process.sample_times(x0.shape[0], generator, x0.device)
            xt, masked = corrupt_batch(process, batch, t, generator)
            values, model_t = None, t
            if continuous is not None and batch.get("values") is not None:  # the joint model's noisy vectors
                model_t = vector_times(model.diffusion.continuous_time, t,
                                       lambda: process.sample_times(x0.shape[0], generator, x0.device))
                values, _ = corrupt_values(continuous, batch["values"].float(), model_t, generator)
            out = model(xt, t=model_t, cond=condition_from_batch(batch), values=values)
            nelbo = masked_cross_entropy(out.logits, x0, masked, process.weights(t, batch.get("importance")))
            total += float(nelbo.sum()) * x0.shape[1]  # nats over the batch
            count += x0.numel() if padding is None else float((~padding).sum())
    model.train(was_training)
    return total / count / LN2
