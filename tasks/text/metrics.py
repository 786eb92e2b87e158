"""Language-model figures: perplexities from token log-likelihoods, the autoregressive model as a
judge of samples (generative perplexity), and the unigram entropy of a sample (MDLM reports it
beside generative perplexity: a sampler that repeats itself scores a good perplexity and a low
entropy).

Every perplexity here is exp(mean negative log-likelihood in nats per token) = 2 ** (bits per token).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ddm.autoregressive import shift_right


def perplexity(nats_per_token: float) -> float:
    return math.exp(nats_per_token)


def perplexity_from_bits(bits_per_token: float) -> float:
    return 2.0 ** bits_per_token


@torch.no_grad()
def token_nll(ar_model, ids: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Negative log-likelihood in nats of every token of ids [B, N] under a causal model (the
    model's start input first, as in training): [B, N]. N must be the model's length."""
    if not ar_model.config.causal:
        raise ValueError("token_nll: the judge must be a causal (autoregressive) model")
    n = ar_model.config.seq_len
    if ids.ndim != 2 or ids.shape[1] != n:
        raise ValueError(f"ids: expected [B, {n}] (the model's length), got {tuple(ids.shape)}")
    ar_model.eval()
    out = []
    for start in range(0, len(ids), batch_size):
        x = ids[start:start + batch_size]
        logits = ar_model(shift_right(x, ar_model.config.mask_id)).logits
        out.append(F.cross_entropy(logits.transpose(1, 2).float(), x, reduction="none"))
    return torch.cat(out)


@torch.no_grad()
def sliding_token_nll(ar_model, ids: torch.Tensor, stride: int, batch_size: int = 64) -> torch.Tensor:
    """NLL [B, L] of every token of texts longer than the model's window N: windows of N tokens
    ending at N, N + stride, ..., L; each token is scored once, by the first window that ends after
    it (so, past the first window, with at least N - stride tokens of context)."""
    n, length = ar_model.config.seq_len, ids.shape[1]
    if length < n:
        raise ValueError(f"ids: {length} tokens, fewer than the model's window {n}")
    if not 1 <= stride <= n:
        raise ValueError(f"stride: expected 1..{n}, got {stride}")
    ends = list(range(n, length + 1, stride))
    if ends[-1] != length:
        ends.append(length)
    out = torch.empty(ids.shape, dtype=torch.float32)
    done = 0
    for end in ends:
        nll = token_nll(ar_model, ids[:, end - n:end], batch_size)
        out[:, done:end] = nll[:, n - (end - done):]
        done = end
    return out


def generative_perplexity(nll: torch.Tensor) -> float:
    """exp of the mean NLL over every token of every sample (MDLM's generative perplexity, with our
    autoregressive model as the judge)."""
    return perplexity(float(nll.double().mean()))


def unigram_entropy(ids: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row's token frequencies: [B]. A row of one repeated token gives 0; a
    row of N distinct tokens gives ln N (the most a row of N tokens can have)."""
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids: expected [B, N] with N >= 1, got {tuple(ids.shape)}")
    out = torch.empty(ids.shape[0], dtype=torch.float64)
    for b, row in enumerate(ids):
        counts = torch.unique(row, return_counts=True)[1].double()
        p = counts / counts.sum()
        out[b] = float(-(p * p.log()).sum())
    return out


def span_accuracy(filled: torch.Tensor, truth: torch.Tensor, hidden: torch.Tensor) -> float:
    """The share of hidden tokens filled with the true token."""
    if filled.shape != truth.shape or hidden.shape != truth.shape:
        raise ValueError(f"span_accuracy: shapes differ: {tuple(filled.shape)}, {tuple(truth.shape)}, "
                         f"{tuple(hidden.shape)}")
    count = int(hidden.sum())
    if count == 0:
        raise ValueError("span_accuracy: the mask hides no token")
    return float((filled == truth)[hidden].float().mean())


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (0 for a single value)."""
    t = torch.tensor(values, dtype=torch.float64)
    if len(t) < 2:
        return float(t.mean()), 0.0
    return float(t.mean()), float(t.std() / math.sqrt(len(t)))
