"""Codebook usage and perplexity: is the tokenizer using the codes it pays for?"""

from __future__ import annotations

import torch


def codebook_stats(codes: torch.Tensor, codebook_sizes: list[int]) -> dict[str, float]:
    """Usage (distinct codes used / codebook size) and perplexity per codebook.

    codes: [..., Q] raw indices of Q codebooks (Q = 1 for plain VQ/FSQ/LFQ), each
    codebook's indices in [0, codebook_sizes[q]). Perplexity is exp(entropy) of the
    empirical code distribution: equal to the codebook size when every code is used
    equally often, 1 when a single code is used.
    """
    if codes.shape[-1] != len(codebook_sizes):
        raise ValueError(f"codes: last axis {codes.shape[-1]} != number of codebooks {len(codebook_sizes)}")
    flat = codes.reshape(-1, len(codebook_sizes))
    out: dict[str, float] = {}
    for q, size in enumerate(codebook_sizes):
        counts = torch.bincount(flat[:, q], minlength=size).double()
        p = counts / counts.sum().clamp_min(1)
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        suffix = "" if len(codebook_sizes) == 1 else f"_{q}"
        out[f"usage{suffix}"] = float((counts > 0).sum() / size)
        out[f"perplexity{suffix}"] = float(entropy.exp())
    if len(codebook_sizes) > 1:
        # means over codebooks, beside the per-codebook figures
        out["usage"] = sum(out[f"usage_{q}"] for q in range(len(codebook_sizes))) / len(codebook_sizes)
        out["perplexity"] = sum(out[f"perplexity_{q}"] for q in range(len(codebook_sizes))) / len(codebook_sizes)
    return out
