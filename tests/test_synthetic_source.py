"""Tests for the exact synthetic source (tasks/synthetic/source.py).

Small sources are checked against brute-force enumeration of all V^L sequences,
with sequence probabilities computed by an independent scalar loop; the default
source is checked by Monte Carlo.
"""

import itertools
import math

import pytest
import torch

from tasks.synthetic.source import (
    SourceSpec,
    UnifilarHMM,
    empirical_pair_stats,
    pair_tv,
    unigram_nll,
)

TINY_SPECS = [
    SourceSpec(num_states=2, vocab_size=3, support=3, seed=1),
    # support < vocab: some sequences are impossible (probability exactly 0)
    SourceSpec(num_states=3, vocab_size=3, support=2, seed=2),
]
TINY_LENGTH = 5


def enumerate_sequences(source: UnifilarHMM, length: int):
    """All V^L sequences and their probabilities, by a plain per-sequence walk."""
    seqs = list(itertools.product(range(source.vocab_size), repeat=length))
    probs = []
    for seq in seqs:
        p, s = 1.0, source.start_state
        for tok in seq:
            p *= float(source.emit[s, tok])
            s = int(source.next_state[s, tok])
        probs.append(p)
    return torch.tensor(seqs, dtype=torch.long), torch.tensor(probs, dtype=torch.float64)


def entropy_of(p: torch.Tensor) -> float:
    return float(-torch.special.xlogy(p, p).sum())


@pytest.fixture(scope="module")
def default_source():
    return UnifilarHMM.random(SourceSpec())


@pytest.fixture(scope="module")
def default_samples(default_source):
    return default_source.sample(20_000, 32, torch.Generator().manual_seed(123))


# ---------------------------------------------------------------- exact quantities vs enumeration


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_log_prob_and_entropy_match_enumeration(spec):
    source = UnifilarHMM.random(spec)
    seqs, probs = enumerate_sequences(source, TINY_LENGTH)
    assert math.isclose(float(probs.sum()), 1.0, abs_tol=1e-12)
    logp = source.log_prob(seqs)
    torch.testing.assert_close(logp.exp(), probs, rtol=1e-12, atol=1e-15)
    assert (probs == 0).any() == (spec.support < spec.vocab_size)
    assert torch.isneginf(logp[probs == 0]).all()
    assert math.isclose(source.entropy(TINY_LENGTH), entropy_of(probs), rel_tol=1e-12)

    # entropy(Lp) is the entropy of the length-Lp prefix of a longer sequence.
    for prefix_len in range(TINY_LENGTH + 1):
        prefix_ids = torch.zeros(len(seqs), dtype=torch.long)
        for t in range(prefix_len):
            prefix_ids = prefix_ids * spec.vocab_size + seqs[:, t]
        prefix_probs = torch.zeros(spec.vocab_size**prefix_len, dtype=torch.float64)
        prefix_probs.index_add_(0, prefix_ids, probs)
        assert math.isclose(source.entropy(prefix_len), entropy_of(prefix_probs), rel_tol=1e-12, abs_tol=1e-14)


def test_monte_carlo_entropy(default_source, default_samples):
    nll = -default_source.log_prob(default_samples)
    assert torch.isfinite(nll).all()
    exact = default_source.entropy(32)
    stderr = float(nll.std()) / math.sqrt(len(nll))
    print(f"MC NLL {float(nll.mean()):.4f} +- {stderr:.4f} vs exact {exact:.4f} nats")
    assert abs(float(nll.mean()) - exact) < 4 * stderr


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_marginals_match_enumeration(spec):
    source = UnifilarHMM.random(spec)
    L, V = TINY_LENGTH, spec.vocab_size
    seqs, probs = enumerate_sequences(source, L)
    gen = torch.Generator().manual_seed(7)
    x = source.sample(1, L, gen)[0]

    masks = [torch.zeros(L, dtype=torch.bool), torch.ones(L, dtype=torch.bool)]
    for i in range(L):  # all visible but one
        mask = torch.ones(L, dtype=torch.bool)
        mask[i] = False
        masks.append(mask)
    masks += [torch.rand(L, generator=gen) < 0.5 for _ in range(6)]
    visible = torch.stack(masks)
    # Hidden positions hold a mask id outside the vocabulary: it must be ignored.
    x_in = torch.where(visible, x, torch.full_like(x, V))
    got = source.marginals(x_in, visible)

    for row, mask in enumerate(masks):
        consistent = (seqs[:, mask] == x[mask]).all(1)
        weights = probs * consistent
        weights = weights / weights.sum()
        expected = torch.zeros(L, V, dtype=torch.float64)
        for t in range(L):
            expected[t].index_add_(0, seqs[:, t], weights)
        torch.testing.assert_close(got[row], expected, rtol=1e-10, atol=1e-12)


def test_marginals_long_sequences(default_source):
    """At L=256 (no underflow), single-hidden-token posteriors match ratios of log_prob."""
    src, L, V = default_source, 256, default_source.vocab_size
    gen = torch.Generator().manual_seed(5)
    x = src.sample(6, L, gen)
    positions = torch.tensor([0, 1, 100, 200, 254, 255])
    visible = torch.ones(6, L, dtype=torch.bool)
    visible[torch.arange(6), positions] = False
    got = src.marginals(x, visible)
    assert torch.isfinite(got).all()
    for row, i in enumerate(positions.tolist()):
        candidates = x[row].repeat(V, 1)
        candidates[:, i] = torch.arange(V)
        expected = torch.softmax(src.log_prob(candidates), 0)
        torch.testing.assert_close(got[row, i], expected, rtol=1e-9, atol=1e-12)

    # Random masks: valid distributions, one-hot at visible positions.
    visible = torch.rand(6, L, generator=gen) < 0.3
    got = src.marginals(x, visible)
    torch.testing.assert_close(got.sum(-1), torch.ones(6, L, dtype=torch.float64))
    onehot = torch.nn.functional.one_hot(x, V).to(torch.float64)
    torch.testing.assert_close(got[visible], onehot[visible])
    # True tokens have positive posterior probability.
    assert (got.gather(-1, x[..., None]) > 0).all()

    # Nothing visible: the posterior is the prior marginal of each position.
    nothing = src.marginals(x[:1], torch.zeros(1, L, dtype=torch.bool))[0]
    torch.testing.assert_close(nothing, src.state_marginals(L) @ src.emit)


def test_marginals_reject_impossible_evidence(default_source):
    src = default_source
    impossible = int((src.emit[src.start_state] == 0).nonzero()[0])
    x = torch.full((1, 4), impossible)
    visible = torch.tensor([[True, False, False, False]])
    with pytest.raises(ValueError, match="probability 0"):
        src.marginals(x, visible)


@pytest.mark.parametrize("spec", TINY_SPECS)
def test_pair_and_unigram_stats_match_enumeration(spec):
    source = UnifilarHMM.random(spec)
    L, V = TINY_LENGTH, spec.vocab_size
    seqs, probs = enumerate_sequences(source, L)

    unigram = torch.zeros(V, dtype=torch.float64)
    for t in range(L):
        unigram.index_add_(0, seqs[:, t], probs / L)
    torch.testing.assert_close(source.unigram_stats(L), unigram, rtol=1e-12, atol=1e-15)
    assert math.isclose(unigram_nll(source, L), entropy_of(unigram), rel_tol=1e-12)

    lags = [1, 2, L - 1]
    expected = torch.zeros(len(lags), V * V, dtype=torch.float64)
    for j, lag in enumerate(lags):
        for i in range(L - lag):
            expected[j].index_add_(0, seqs[:, i] * V + seqs[:, i + lag], probs / (L - lag))
    torch.testing.assert_close(source.pair_stats(L, lags), expected.view(-1, V, V), rtol=1e-12, atol=1e-15)

    # empirical_pair_stats on the whole enumeration, weighted by multiplicity, gives the same.
    counts = torch.round(probs * 1e6).long()
    keep = counts > 0
    weighted = seqs[keep].repeat_interleave(counts[keep], dim=0)
    approx = empirical_pair_stats(weighted, lags, V)
    assert pair_tv(approx, source.pair_stats(L, lags)) < 1e-4


def test_pair_stats_match_samples(default_source, default_samples):
    src, x, L, V = default_source, default_samples, 32, default_source.vocab_size
    lags = [1, 2, 4, 16, 31]
    exact = src.pair_stats(L, lags)
    torch.testing.assert_close(exact.sum((1, 2)), torch.ones(len(lags), dtype=torch.float64))
    tv = pair_tv(empirical_pair_stats(x, lags, V), exact)
    # An independent-tokens model with the right unigram is far off at short lags,
    # so the sample check is discriminative.
    unigram = src.unigram_stats(L)
    independent = (unigram[:, None] * unigram[None, :]).expand(len(lags), V, V)
    tv_independent = pair_tv(independent[:2], exact[:2])
    print(f"pair TV samples vs exact {tv:.4f}; independent vs exact (lags 1,2) {tv_independent:.4f}")
    assert tv < 0.02
    assert tv_independent > 0.3

    empirical_unigram = torch.bincount(x.reshape(-1), minlength=V).double() / x.numel()
    assert float(0.5 * (empirical_unigram - unigram).abs().sum()) < 0.01


def test_pair_tv_extremes():
    p = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = p / p.sum((1, 2), keepdim=True)
    assert pair_tv(p, p) == 0.0
    a = torch.zeros(2, 4, 4, dtype=torch.float64)
    b = torch.zeros(2, 4, 4, dtype=torch.float64)
    a[:, :2] = 1 / 8
    b[:, 2:] = 1 / 8
    assert math.isclose(pair_tv(a, b), 1.0)
    with pytest.raises(ValueError):
        pair_tv(a, b[:1])


# ---------------------------------------------------------------- the default source


def test_default_spec_is_high_entropy_and_structured(default_source):
    src, L = default_source, 32
    entropy_per_token = src.entropy(L) / L
    unigram = unigram_nll(src, L)
    print(
        f"default source: entropy {entropy_per_token / math.log(2):.3f} bits/token, "
        f"unigram NLL {unigram / math.log(2):.3f} bits/token, ratio {unigram / entropy_per_token:.2f}"
    )
    assert entropy_per_token >= math.log(2)
    assert unigram >= 1.5 * entropy_per_token
    assert src.is_strongly_connected()
    # Every state is actually visited within a sequence.
    assert (src.state_marginals(L).sum(0) > 0).all()


def test_random_is_deterministic_and_seed_dependent():
    a, b = UnifilarHMM.random(SourceSpec(seed=3)), UnifilarHMM.random(SourceSpec(seed=3))
    c = UnifilarHMM.random(SourceSpec(seed=4))
    assert torch.equal(a.emit, b.emit) and torch.equal(a.next_state, b.next_state)
    assert a.start_state == b.start_state
    assert not torch.equal(a.emit, c.emit)
    assert (a.emit > 0).sum(1).eq(SourceSpec().support).all()
    xa = a.sample(5, 10, torch.Generator().manual_seed(0))
    xb = a.sample(5, 10, torch.Generator().manual_seed(0))
    assert torch.equal(xa, xb) and xa.dtype == torch.long and xa.shape == (5, 10)


@pytest.mark.parametrize("spec", [SourceSpec(num_states=s, seed=k) for s in (1, 2, 5, 20) for k in range(3)])
def test_random_sources_are_strongly_connected(spec):
    src = UnifilarHMM.random(spec)
    assert src.is_strongly_connected()
    assert (src.state_marginals(3 * spec.num_states).sum(0) > 0).all()


# ---------------------------------------------------------------- input validation


def test_log_prob_rejects_bad_tokens(default_source):
    V = default_source.vocab_size
    with pytest.raises(ValueError, match=f"token id {V}"):
        default_source.log_prob(torch.tensor([[0, V, 1]]))
    with pytest.raises(ValueError, match="token id -1"):
        default_source.log_prob(torch.tensor([[0, -1]]))
    with pytest.raises(ValueError, match="2-D"):
        default_source.log_prob(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        default_source.log_prob(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=f"token id {V}"):
        default_source.marginals(torch.tensor([[V, 0]]), torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match="shape"):
        default_source.marginals(torch.tensor([[0, 0]]), torch.tensor([[True]]))


def test_constructor_and_spec_validation():
    emit = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    nxt = torch.tensor([[0, 1], [1, 0]])
    UnifilarHMM(emit, nxt)  # valid
    with pytest.raises(ValueError, match="row 1 sums to"):
        UnifilarHMM(torch.tensor([[0.5, 0.5], [0.9, 0.0]], dtype=torch.float64), nxt)
    with pytest.raises(ValueError, match="non-negative"):
        UnifilarHMM(torch.tensor([[1.5, -0.5], [1.0, 0.0]], dtype=torch.float64), nxt)
    with pytest.raises(ValueError, match="next_state entries"):
        UnifilarHMM(emit, torch.tensor([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="next_state shape"):
        UnifilarHMM(emit, nxt[:1])
    with pytest.raises(ValueError, match="start_state"):
        UnifilarHMM(emit, nxt, start_state=2)
    with pytest.raises(ValueError, match="support"):
        UnifilarHMM.random(SourceSpec(vocab_size=4, support=5))
    with pytest.raises(ValueError, match="concentration"):
        UnifilarHMM.random(SourceSpec(concentration=0.0))
    with pytest.raises(ValueError, match="lag"):
        UnifilarHMM(emit, nxt).pair_stats(4, [4])
