"""Temperature, top-k and top-p on the predicted distribution, the mixing of a step's prediction
with the step before's, and float64 categorical draws."""

from __future__ import annotations

import torch
from torch import Tensor


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """[..., V] logits -> float64 log-probabilities after temperature, top-k and top-p.

    temperature 0 means greedy decoding: the distribution is left unscaled here (so the
    order scores stay informative) and `draw_tokens` takes its argmax.
    """
    logp = torch.log_softmax(logits.double() / (temperature if temperature > 0 else 1.0), dim=-1)
    if 0 < top_k < logp.shape[-1]:
        kth = logp.topk(top_k, dim=-1).values[..., -1:]
        logp = logp.masked_fill(logp < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        before = sorted_logp.exp().cumsum(-1) - sorted_logp.exp()  # mass of the tokens ranked above
        drop = before >= top_p  # the first token always stays (before = 0)
        logp = logp.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return torch.log_softmax(logp, dim=-1)


def mix_previous(logits: Tensor, previous: Tensor | None, weight: float) -> Tensor:
    """[..., V] log-probabilities log p + w (log p - log p_prev): how the prediction moved since the
    step before (which saw fewer tokens), scaled. w > 0 pushes further along that move, as
    classifier-free guidance does with the condition (here the context revealed since); -1 < w < 0
    goes back part of the way toward the earlier prediction (w = -1: the earlier prediction).
    The first step of a block has no earlier prediction and is left as it is, as is every token
    that either prediction rules out (-inf)."""
    if previous is None or weight == 0:
        return logits
    logp, before = torch.log_softmax(logits.double(), -1), torch.log_softmax(previous.double(), -1)
    mixed = torch.where(torch.isfinite(before) & torch.isfinite(logp), logp + weight * (logp - before), logp)
    return torch.log_softmax(mixed, -1)


def draw_tokens(probs: Tensor, generator: torch.Generator, greedy: bool = False) -> Tensor:
    """One token per row of probs [M, V] (float64): inverse CDF with one float64 uniform per row.

    u lies in (0, 1] and the search is for the first CDF entry >= u * total, so a token of
    probability zero (equal consecutive CDF entries) can never be chosen.
    """
    if greedy:
        return probs.argmax(-1)
    cdf = probs.cumsum(-1)
    u = 1.0 - torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64,
                         device=generator.device).to(probs.device)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1)
    return idx.clamp_max(probs.shape[-1] - 1)


def gumbel(shape, generator: torch.Generator, device) -> Tensor:
    """Standard Gumbel noise in float64."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float64).tiny))).to(device)
