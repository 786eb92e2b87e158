"""Recheck after sampling: redraw the tokens that tokens of the same parallel step made misfit.

The valence processor judges each slot given the tokens decided *before* a step; tokens
revealed together in one step can overfill an atom. Inside the loop `sample.remasking:
recheck` masks them again (the processor gives a misfit probability 0), but a block's last
step is never rechecked. Here the misfits left are masked and redrawn with everything else
given, one token per step where `max_steps` allows, so each is drawn under the processor
knowing all the others; with more misfits than steps some share a step and a second round
takes what is left.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ddm.sampling import Fixed, Remasking, sample

from .valence import MoleculeConstraints


def misfits(constraints: MoleculeConstraints, ids: Tensor) -> Tensor:
    """[B, N] bool: decided tokens the processor forbids given every other decided token."""
    v = constraints.vocab
    logits = torch.zeros(*ids.shape, v)
    out = constraints(logits, ids, torch.arange(ids.shape[1]))
    decided = ids < v
    return decided & torch.isneginf(out.gather(-1, ids.clamp_max(v - 1)[..., None])[..., 0])


def redraw_misfits(model, ids: Tensor, sampler, cond, constraints: MoleculeConstraints, generator: torch.Generator,
                   rounds: int = 2, max_steps: int = 64) -> tuple[Tensor, int]:
    """ids with their misfits redrawn (at most `rounds` times); returns (ids, model calls per sample
    spent, counted over every sample as the largest a row needed)."""
    ids, nfe = ids.clone(), 0
    plain = dataclasses.replace(sampler, remasking=Remasking())  # one token a step needs no remasking
    for _ in range(rounds):
        bad = misfits(constraints, ids)
        rows = bad.any(1).nonzero()[:, 0]
        if not len(rows):
            break
        steps = min(int(bad[rows].sum(1).max()), max_steps)
        c = None if cond is None else cond.select(rows)
        result = sample(model, len(rows), sampler=dataclasses.replace(plain, steps=steps), cond=c,
                        fixed=Fixed(ids[rows], ~bad[rows]), generator=generator, processors=[constraints])
        ids[rows] = result.ids
        nfe += result.nfe
    return ids, nfe
