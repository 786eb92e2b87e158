"""Which masked tokens to commit first: a score per position, higher goes first.

* random: uniform scores; with the `ancestral` count this is MDLM's exact posterior step.
* confidence: log-probability of the token drawn for the position (MaskGIT, LLaDA).
* margin: top-1 minus top-2 probability.
* entropy: negative entropy of the predicted distribution.

`gumbel_temperature` > 0 adds Gumbel noise to the scores, annealed linearly to zero over the
block's steps (MaskGIT's choice temperature): early choices explore, late ones are greedy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..registry import Registry
from .filters import gumbel
from .state import StepInfo

# name -> scores(probs [B, N, V], token_p [B, N], generator) -> [B, N], higher goes first
ORDERS = Registry("sampler order")


@ORDERS.register("random")
def random_scores(probs: Tensor, token_p: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(token_p.shape, generator=generator, dtype=torch.float64,
                      device=generator.device).to(token_p.device)


@ORDERS.register("confidence")
def confidence_scores(probs: Tensor, token_p: Tensor, generator: torch.Generator) -> Tensor:
    return token_p.log()  # log so that added Gumbel noise matches MaskGIT


@ORDERS.register("margin")
def margin_scores(probs: Tensor, token_p: Tensor, generator: torch.Generator) -> Tensor:
    if probs.shape[-1] < 2:
        return torch.ones_like(token_p)
    top = probs.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


@ORDERS.register("entropy")
def entropy_scores(probs: Tensor, token_p: Tensor, generator: torch.Generator) -> Tensor:
    return -torch.special.entr(probs).sum(-1)  # entr: 0 log 0 = 0 for filtered-out tokens


class Order:
    def __init__(self, name: str = "random", gumbel_temperature: float = 0.0):
        self.score_fn = ORDERS.get(name, "order")
        if gumbel_temperature < 0:
            raise ValueError(f"order: gumbel_temperature must be >= 0, got {gumbel_temperature}")
        self.name = name
        self.gumbel_temperature = gumbel_temperature

    def scores(self, probs: Tensor, token_p: Tensor, info: StepInfo, generator: torch.Generator) -> Tensor:
        """probs [B, N, V] float64, token_p [B, N] probability of each drawn token -> scores [B, N]."""
        s = self.score_fn(probs, token_p, generator)
        temperature = self.gumbel_temperature * (1.0 - info.progress)
        if self.name != "random" and temperature > 0:
            s = s + temperature * gumbel(s.shape, generator, s.device)
        return s

    def __repr__(self) -> str:
        return f"Order({self.name!r}, gumbel_temperature={self.gumbel_temperature})"


def top_k_positions(scores: Tensor, candidates: Tensor, k: Tensor) -> Tensor:
    """[B, N] bool: the k[b] best-scoring candidates of each row (ties: the lower position)."""
    scores = scores.masked_fill(~candidates, float("-inf"))
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                             .expand_as(order))
    return (ranks < k[:, None]) & candidates
