"""Texts -> one token stream -> fixed-length chunks (as MDLM packs OpenWebText).

Each text's ids are followed by the end-of-text id and all are concatenated in order; the
stream is cut into rows of `length` tokens and the tail that fills no row is dropped. Every
position of a chunk is a real token, so neither the diffusion ELBO nor the autoregressive
likelihood has padding to leave out, and both count exactly the same tokens.
"""

from __future__ import annotations

import torch


def pack(rows: list[list[int]], eos_id: int, length: int) -> torch.Tensor:
    """Id lists -> chunks [C, length] of the stream `r0 eos r1 eos ...` (the last partial chunk dropped)."""
    if length < 1:
        raise ValueError(f"length: expected >= 1, got {length}")
    stream = [i for r in rows for i in (*r, eos_id)]
    count = len(stream) // length
    if count == 0:
        raise ValueError(f"pack: {len(rows)} texts make {len(stream)} tokens, fewer than one chunk of {length}")
    return torch.tensor(stream[:count * length], dtype=torch.long).reshape(count, length)


def long_rows(chunks: torch.Tensor, length: int) -> torch.Tensor:
    """Consecutive chunks joined into rows of `length` tokens (a multiple of the chunk length not
    needed): [R, length] from the stream the chunks were cut from."""
    stream = chunks.reshape(-1)
    count = len(stream) // length
    if count == 0:
        raise ValueError(f"long_rows: the stream has {len(stream)} tokens, fewer than {length}")
    return stream[:count * length].reshape(count, length)


def evenly_spaced(rows: torch.Tensor, count: int) -> torch.Tensor:
    """`count` rows spread evenly from first to last (every row, if there are no more than `count`):
    samples of the whole book, not of its first chapters."""
    if count >= len(rows):
        return rows
    return rows[torch.linspace(0, len(rows) - 1, count).round().long()]
