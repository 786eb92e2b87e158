"""Generation beyond one unconditional window: infilling a hidden span, and text longer than the
model's length in semi-autoregressive windows (SSD-LM, MDLM's semi-AR sampling).

Both keep given tokens with `ddm.sampling.Fixed`: the sampler conditions on them at every step and
never changes them. A long text is made window by window: each window of N tokens starts with the
last `context` tokens made so far (fixed) and fills the rest; the first window holds the prompt, or
nothing. The autoregressive baseline makes long text with the same windows (its prompt: the same
context), so both see the same amount of context.
"""

from __future__ import annotations

import dataclasses

import torch

from ddm.sampling import Fixed, Sampler, sample_many


def check_infill_mask(hidden: torch.Tensor, ids: torch.Tensor) -> None:
    """hidden [B, N] bool: the tokens to fill. Every row must hide something and keep something."""
    if not isinstance(hidden, torch.Tensor) or hidden.dtype != torch.bool:
        raise ValueError(f"infill mask: expected a bool tensor, got {getattr(hidden, 'dtype', type(hidden).__name__)}")
    if hidden.shape != ids.shape:
        raise ValueError(f"infill mask: shape {tuple(hidden.shape)} differs from the ids' {tuple(ids.shape)}")
    empty = (~hidden.any(1)).nonzero()
    if len(empty):
        raise ValueError(f"infill mask: row {int(empty[0])} hides no token; there is nothing to fill")
    full = hidden.all(1).nonzero()
    if len(full):
        raise ValueError(f"infill mask: row {int(full[0])} hides every token; with nothing kept that is "
                         "unconditional generation, not infilling")


def span_mask(count: int, length: int, start: int, span: int) -> torch.Tensor:
    """[count, length] bool hiding tokens start .. start+span-1 of every row."""
    if span < 1:
        raise ValueError(f"infill span: {span} tokens hides nothing; expected >= 1")
    if start < 0 or start + span > length:
        raise ValueError(f"infill span: tokens {start}..{start + span - 1} do not lie inside a row of {length}")
    hidden = torch.zeros(count, length, dtype=torch.bool)
    hidden[:, start:start + span] = True
    return hidden


@torch.no_grad()
def infill(model, ids: torch.Tensor, hidden: torch.Tensor, sampler: Sampler, batch_size: int,
           generator: torch.Generator) -> torch.Tensor:
    """ids [B, N] with the `hidden` tokens drawn by the model given all the others: [B, N]."""
    check_infill_mask(hidden, ids)
    model.eval()
    return sample_many(model, len(ids), batch_size, sampler=sampler, fixed=Fixed(ids, ~hidden),
                       generator=generator).ids


def check_prompt(prompt: torch.Tensor | None, window: int, context: int) -> None:
    if prompt is None:
        return
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt: empty (shape {tuple(prompt.shape)}); give at least one token, or no prompt "
                         "for unconditional text")
    if prompt.shape[1] >= window:
        raise ValueError(f"prompt: {prompt.shape[1]} tokens leave nothing to generate in a window of {window}")


def window_plan(length: int, window: int, context: int, given: int = 0) -> list[tuple[int, int]]:
    """(context kept, tokens made) per window to reach `length` tokens from `given` prompt tokens: the
    first window keeps the prompt, every later one the last `context` tokens."""
    if not 1 <= context < window:
        raise ValueError(f"context: {context} tokens; expected 1 .. {window - 1} (the window is {window})")
    if length <= given:
        raise ValueError(f"length: {length} tokens is not longer than the {given} given")
    if given >= window:
        raise ValueError(f"prompt: {given} tokens leave nothing to generate in a window of {window}")
    plan, made = [], given
    while made < length:
        kept = made if not plan else context  # the first window holds the whole prompt
        new = min(window - kept, length - made)
        plan.append((kept, new))
        made += new
    return plan


@torch.no_grad()
def semi_autoregressive(model, sampler: Sampler, count: int, length: int, context: int, batch_size: int,
                        generator: torch.Generator, prompt: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """`count` texts of `length` tokens (prompt included) from a diffusion model of window N, in
    windows that keep the last `context` tokens: (ids [count, length], NFE per text). Each window
    gets the sampler's steps in proportion to the tokens it makes."""
    n = model.config.seq_len
    check_prompt(prompt, n, context)
    if prompt is not None and prompt.shape[0] not in (1, count):
        raise ValueError(f"prompt: {prompt.shape[0]} rows for {count} texts")
    text = (prompt.expand(count, -1) if prompt is not None else torch.zeros(count, 0, dtype=torch.long)).clone()
    model.eval()
    nfe = 0
    for kept, new in window_plan(length, n, context, text.shape[1]):
        ids = torch.zeros(count, n, dtype=torch.long)
        given = torch.zeros(count, n, dtype=torch.bool)
        ids[:, :kept] = text[:, text.shape[1] - kept:]
        given[:, :kept] = True  # a last, short window still fills all N tokens; the extra are dropped
        steps = max(1, round(sampler.steps * (n - kept) / n))
        result = sample_many(model, count, batch_size, sampler=dataclasses.replace(sampler, steps=steps),
                             fixed=Fixed(ids, given), generator=generator)
        text = torch.cat((text, result.ids[:, kept:kept + new]), dim=1)
        nfe += result.nfe
    return text, nfe


@torch.no_grad()
def autoregressive_long(sample_fn, count: int, length: int, window: int, context: int) -> tuple[torch.Tensor, int]:
    """The same windows for the autoregressive baseline: `sample_fn(count, prompt, index)` -> (ids
    [count, N], NFE) draws window `index` (prompt None: from nothing; the index lets it seed each
    window apart, so that windows do not repeat one another's random draws)."""
    text = torch.zeros(count, 0, dtype=torch.long)
    nfe = 0
    for index, (kept, new) in enumerate(window_plan(length, window, context)):
        ids, calls = sample_fn(count, text[:, text.shape[1] - kept:] if kept else None, index)
        text = torch.cat((text, ids[:, kept:kept + new]), dim=1)
        nfe += calls
    return text, nfe
