"""Tests for the sampling loop and its parts (ddm/sampling) and the oracle denoiser.

Small random-init transformers (with a randomised discrete head: it is zero-initialised,
which would make every prediction uniform) check the mechanics; the exact synthetic source
behind `OracleDenoiser` checks that random-order sampling is exact.
"""

import itertools

import pytest
import torch

from ddm.config import ConfigError, SampleConfig, from_dict
from ddm.model import Condition, MaskedDiffusionTransformer
from ddm.sampling import (
    AncestralCount, ClassifierFreeGuidance, Fixed, MeasurementGuidance, Order, ReMDMRemasking, Sampler,
    SamplingState, StepInfo, ThresholdCount, build_remasking, filter_logits, sample_many,
)
from ddm.sampling.guidance import guidance_at
from ddm.sampling.orders import spread_ranks
from conftest import make_tiny_denoiser
from tasks.synthetic.oracle import OracleDenoiser
from tasks.synthetic.source import SourceSpec, UnifilarHMM, empirical_pair_stats, pair_tv

V, N, B = 8, 12, 3


def tiny_model(**overrides) -> MaskedDiffusionTransformer:
    return make_tiny_denoiser(V, N, **overrides)


class Counting(torch.nn.Module):
    """Wraps a denoiser and counts the rows it evaluates (NFE = rows / batch)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config
        self.supports_prefix_cache = getattr(model, "supports_prefix_cache", False)
        self.diffusion = model.diffusion
        self.calls = 0
        self.rows = 0

    def encode_prefix(self, cond):
        return self.model.encode_prefix(cond)

    def forward(self, ids, t=None, cond=None, prefix=None):
        self.calls += 1
        self.rows += ids.shape[0]
        return self.model(ids, t=t, cond=cond, prefix=prefix)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only adds synchronisation


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def cond_model():
    m = tiny_model(cond_vocab_size=5, cond_len=6, num_classes=3)
    m.diffusion.cond_dropout = 0.1  # as if trained for guidance
    return m


def some_fixed(batch=B):
    g = gen(7)
    mask = torch.rand(batch, N, generator=g) < 0.3
    ids = torch.randint(0, V, (batch, N), generator=g)
    return Fixed(ids, mask)


def some_cond(batch=B):
    g = gen(3)
    tokens = torch.randint(0, 5, (batch, 6), generator=g)
    lengths = torch.tensor([6, 3, 1, 4, 2, 5][:batch])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    return Condition(tokens=tokens, token_mask=mask, classes=torch.arange(batch) % 3)


# ---------------------------------------------------------------- every sampler ends unmasked


ORDERS = ["random", "confidence", "margin", "entropy", "spread"]
REMASKING = ["none", "recheck", "cap", "rescale", "conf"]
COUNTS = ["schedule", "ancestral", "threshold"]


@pytest.mark.parametrize("order,remasking,count", list(itertools.product(ORDERS, REMASKING, COUNTS)))
def test_every_sampler_unmasks_keeps_fixed_and_counts_nfe(model, order, remasking, count):
    cfg = SampleConfig(steps=6, order=order, remasking=remasking, count=count, count_schedule="cosine",
                       gumbel_temperature=1.0, remask_threshold=0.5, remask_drop=0.2, remask_eta=0.5,
                       threshold=0.3, top_k=5, top_p=0.9)
    counted = Counting(model)
    fixed = some_fixed()
    result = Sampler.from_config(cfg)(counted, B, fixed=fixed, generator=gen(1))
    assert result.ids.shape == (B, N)
    assert ((result.ids >= 0) & (result.ids < V)).all()  # never the mask id
    assert torch.equal(result.ids[fixed.mask], fixed.ids[fixed.mask])
    assert result.nfe == counted.calls  # calls of the batch; rows whose tokens stopped changing leave them
    assert int(result.row_nfe.sum()) == counted.rows and int(result.row_nfe.max()) <= result.nfe
    assert result.nfe in range(1, 7)  # at least one call, at most the 6-step budget
    again = Sampler.from_config(cfg)(model, B, fixed=fixed, generator=gen(1))
    assert torch.equal(result.ids, again.ids)  # same seed, same sample


@pytest.mark.parametrize("block_size,count,remasking", [(4, "schedule", "none"), (5, "threshold", "cap"),
                                                         (4, "ancestral", "conf"), (3, "schedule", "recheck")])
def test_blocks_decode_left_to_right(model, block_size, count, remasking):
    sampler = Sampler.from_config(SampleConfig(steps=8, block_size=block_size, count=count, remasking=remasking,
                                         remask_eta=0.5, remask_threshold=0.5, order="confidence"))
    fixed = some_fixed()
    result = sampler(model, B, fixed=fixed, generator=gen(2), return_trace=True)
    assert ((result.ids >= 0) & (result.ids < V)).all()
    assert torch.equal(result.ids[fixed.mask], fixed.ids[fixed.mask])
    at = result.trace.committed_at
    starts = list(range(0, N, block_size))
    for lo, hi in zip(starts, starts[1:]):
        done = at[:, lo:hi].masked_fill(fixed.mask[:, lo:hi], -1).amax(1)
        later = at[:, hi:].masked_fill(fixed.mask[:, hi:], 10**6).amin(1)
        assert (done < later).all()


def test_time_conditioned_model_and_continuous_head():
    m = tiny_model(time_conditioning=True, continuous_dim=2)
    result = Sampler(steps=4, order=Order("margin"))(m, B, fixed=some_fixed(), generator=gen())
    assert ((result.ids >= 0) & (result.ids < V)).all()
    assert result.continuous.shape == (B, N, 2)


def test_seeds_change_samples(model):
    a = Sampler(steps=6)(model, 8, generator=gen(0)).ids
    b = Sampler(steps=6)(model, 8, generator=gen(1)).ids
    assert not torch.equal(a, b)


def test_greedy_with_confidence_order_is_deterministic(model):
    s = Sampler(steps=4, order=Order("confidence"), temperature=0.0)
    assert torch.equal(s(model, 4, generator=gen(0)).ids, s(model, 4, generator=gen(5)).ids)


def test_threshold_one_still_terminates(model):
    counted = Counting(model)
    sampler = Sampler(steps=N, order=Order("confidence"), count=ThresholdCount(1.0))
    result = sampler(counted, B, generator=gen())
    assert ((result.ids >= 0) & (result.ids < V)).all()
    assert result.nfe == counted.calls == N  # nothing exceeds 1.0: one token per step


def test_threshold_commits_confident_tokens_at_once(model):
    result = Sampler(steps=N, order=Order("confidence"), count=ThresholdCount(0.0))(model, B, generator=gen())
    assert result.nfe == 1


def test_trace_records_every_step(model):
    fixed = some_fixed()
    result = Sampler(steps=5, order=Order("entropy"))(model, B, fixed=fixed, generator=gen(), return_trace=True)
    trace = result.trace
    assert len(trace) == 5 == result.nfe
    assert torch.equal(trace.ids[-1], result.ids)
    for probs in trace.probs:
        assert probs.shape == (B, N, V)
        assert torch.allclose(probs.sum(-1), torch.ones(B, N), atol=1e-5)
    assert (trace.committed_at[fixed.mask] == -1).all()
    free_steps = trace.committed_at[~fixed.mask]
    assert ((free_steps >= 0) & (free_steps < 5)).all()
    revealed = torch.stack(trace.revealed).sum(0)
    assert torch.equal(revealed, (~fixed.mask).long())  # each free token revealed once


def test_sample_many_batches(model):
    result = sample_many(model, 7, 3, sampler=Sampler(steps=4), generator=gen())
    assert result.ids.shape == (7, N) and result.nfe == 4


# ---------------------------------------------------------------- guidance and cached prefixes


def test_guidance_scale_zero_is_the_conditional_sampler(cond_model):
    cond = some_cond()
    plain = Sampler(steps=6, order=Order("confidence"))(cond_model, cond=cond, generator=gen(4))
    counted = Counting(cond_model)
    zero = Sampler(steps=6, order=Order("confidence"), guidance_scale=0.0)(counted, cond=cond, generator=gen(4))
    assert torch.equal(plain.ids, zero.ids)
    assert zero.nfe == counted.rows // B == 6


def test_guidance_batches_conditional_and_null_rows(cond_model):
    cond = some_cond()
    counted = Counting(cond_model)
    guided = Sampler(steps=6, guidance_scale=3.0)(counted, cond=cond, generator=gen(4))
    assert counted.calls == 6 and counted.rows == 2 * B * 6
    assert guided.nfe == counted.rows // B == 12
    plain = Sampler(steps=6)(cond_model, cond=cond, generator=gen(4))
    assert not torch.equal(guided.ids, plain.ids)


@pytest.mark.parametrize("cache_targets,skip_blocks,skip_refresh", [(False, (), 2), (True, (), 2),
                                                                   (False, (0,), 1), (False, (0,), 2)])
def test_linear_guidance_schedule(cond_model, cache_targets, skip_blocks, skip_refresh):
    cond = some_cond()
    counted = Counting(cond_model)
    kwargs = dict(steps=6, guidance_scale=2.0, cache_prefix=False, cache_targets=cache_targets,
                  skip_blocks=skip_blocks, skip_refresh=skip_refresh)
    if cache_targets:
        counted.forward_cached = cond_model.forward_cached
    if skip_blocks:
        counted = cond_model
    linear = Sampler(guidance_schedule="linear", **kwargs)(counted, cond=cond, generator=gen(4), return_trace=True)
    if counted is not cond_model and not cache_targets:  # the first call (scale 0) runs B rows, the other five 2B
        assert counted.calls == 6 and counted.rows == B + 2 * B * 5
    assert linear.nfe == 11 and linear.row_nfe.tolist() == [11] * B
    assert [guidance_at(2.0, "linear", i, 6) for i in range(6)] == pytest.approx([0, 0.8, 1.6, 2.4, 3.2, 4.0])
    trace = linear.trace
    exact = not cache_targets and skip_refresh == 1
    with torch.no_grad():
        masks = torch.full((B, N), cond_model.config.mask_id)
        first = cond_model(masks, t=trace.times[0], cond=cond).logits.double().softmax(-1)
        assert torch.allclose(trace.probs[0], first.float(), atol=1e-5)  # scale 0: the conditional model's own
        # a later step at its own scale, from the state before it
        before, w = trace.ids[2], guidance_at(2.0, "linear", 3, 6)
        both = cond_model(torch.cat([before, before]), t=torch.cat([trace.times[3]] * 2),
                          cond=ClassifierFreeGuidance.rows(cond)).logits
        guided = ClassifierFreeGuidance(w).combine(both).double().softmax(-1).float()
    masked = before == cond_model.config.mask_id
    if exact or not (cache_targets or skip_blocks):
        assert torch.allclose(trace.probs[3][masked], guided[masked], atol=1e-5)
    constant = Sampler(**kwargs)(cond_model, cond=cond, generator=gen(4))
    assert constant.nfe == 12 and not torch.equal(linear.ids, constant.ids)


def test_learned_guidance_per_step(cond_model):
    """Per-step guidance scales (a learned coefficient) are the scales the loop uses: the linear
    schedule's own scales give its samples, and a scale of 0 at a step runs the conditional rows."""
    from ddm.sampling.learned import StepCoefficients

    cond = some_cond()
    plain = StepCoefficients([1.0] * 6, [0.0] * 6)
    linear = Sampler(steps=6, guidance_scale=2.0, guidance_schedule="linear").with_coefficients(plain, "random")
    scales = [guidance_at(2.0, "linear", i, 6) for i in range(6)]
    learned = Sampler(steps=6, guidance_scale=2.0).with_coefficients(
        StepCoefficients([1.0] * 6, [0.0] * 6, guidance=scales), "random")
    a, b = (s(cond_model, cond=cond, generator=gen(4)) for s in (linear, learned))
    assert torch.equal(a.ids, b.ids) and a.nfe == b.nfe == 11
    constant = Sampler(steps=6, guidance_scale=2.0).with_coefficients(plain, "random")(cond_model, cond=cond,
                                                                                      generator=gen(4))
    assert constant.nfe == 12 and not torch.equal(constant.ids, a.ids)
    with pytest.raises(ValueError, match="guidance scales for 6 steps"):
        StepCoefficients([1.0] * 6, [0.0] * 6, guidance=[1.0] * 5)
    with pytest.raises(ValueError, match="each >= 0"):
        StepCoefficients([1.0] * 6, [0.0] * 6, guidance=[-1.0] + [1.0] * 5)
    with pytest.raises(ValueError, match="need a guided sampler"):
        Sampler(steps=6).with_coefficients(StepCoefficients([1.0] * 6, [0.0] * 6, guidance=scales), "random")


def test_guidance_schedule_is_checked():
    with pytest.raises(ValueError, match="guidance_schedule"):
        Sampler(guidance_schedule="cosine")
    with pytest.raises(ConfigError, match="sample.guidance_schedule"):
        from_dict(SampleConfig, {"guidance_schedule": "cosine"}, "sample")


def test_guidance_formula():
    cond, uncond = torch.randn(2, 1, 4, 5).unbind(0)
    out = ClassifierFreeGuidance(2.0).combine(torch.cat([cond, uncond]))
    lc, lu = cond.log_softmax(-1), uncond.log_softmax(-1)
    assert torch.allclose(out, lu + 3.0 * (lc - lu), atol=1e-6)


@pytest.mark.parametrize("guidance_scale", [0.0, 2.0])
def test_prefix_cache_gives_the_same_samples(cond_model, guidance_scale):
    cond = some_cond()
    kwargs = dict(steps=6, order=Order("confidence"), guidance_scale=guidance_scale,
                  remasking=build_remasking("cap", eta=0.3))
    cached = Sampler(cache_prefix=True, **kwargs)(cond_model, cond=cond, generator=gen(9))
    counted = Counting(cond_model)
    plain = Sampler(cache_prefix=False, **kwargs)(counted, cond=cond, generator=gen(9))
    assert torch.equal(cached.ids, plain.ids)
    assert cached.nfe == plain.nfe == counted.rows // B
    ids = cached.ids.masked_fill(torch.rand(B, N, generator=gen()) < 0.5, V)
    t = torch.rand(B)
    with torch.no_grad():
        a = cond_model(ids, t=t, cond=cond).logits
        b = cond_model(ids, t=t, prefix=cond_model.encode_prefix(cond)).logits
    assert torch.equal(a, b)


def test_one_condition_for_all_rows(cond_model):
    cond = some_cond(1)
    result = Sampler(steps=4)(cond_model, 5, cond=cond, generator=gen())
    assert result.ids.shape == (5, N)


# ---------------------------------------------------------------- exactness with the oracle


@pytest.fixture(scope="module")
def small_source():
    return UnifilarHMM.random(SourceSpec(num_states=6, vocab_size=16, support=4, seed=3))


def test_oracle_matches_source_marginals(small_source):
    oracle = OracleDenoiser(small_source, 16)
    x = small_source.sample(200, 16, gen())
    visible = torch.rand(200, 16, generator=gen(1)) < 0.5
    ids = x.masked_fill(~visible, 16)
    exact = small_source.marginals(ids, visible)
    assert torch.allclose(oracle.posteriors(ids, visible)[~visible], exact[~visible], atol=1e-12)
    onehot = OracleDenoiser(small_source, 16, visible="onehot")
    assert torch.allclose(onehot.posteriors(ids, visible), exact, atol=1e-12)
    impossible = ids.clone()
    impossible[0] = 0
    impossible[0, 1] = 1  # some pair of tokens the source cannot emit together
    out = oracle(impossible)  # no error: prior marginals for impossible rows
    assert torch.isfinite(out.logits.logsumexp(-1)).all()


def test_random_order_one_token_per_step_is_exact(small_source):
    n, length, lags = 3000, 16, [1, 2, 3, 5]
    oracle = OracleDenoiser(small_source, length)
    result = Sampler(steps=length)(oracle, n, generator=gen(11))
    assert result.nfe == length
    nll = -small_source.log_prob(result.ids)
    ratio = float(nll.mean()) / small_source.entropy(length)
    assert abs(ratio - 1.0) < 0.03, ratio
    exact = small_source.pair_stats(length, lags)
    tv = pair_tv(empirical_pair_stats(result.ids, lags, 16), exact)
    floor = pair_tv(empirical_pair_stats(small_source.sample(n, length, gen(12)), lags, 16), exact)
    assert tv < 1.3 * floor + 0.005, (tv, floor)


def test_spread_order_is_the_bit_reversal_order_and_spreads_over_a_grid():
    assert spread_ranks((8,)).argsort().tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    assert sorted(spread_ranks((5,)).tolist()) == [0, 1, 2, 3, 4]  # a permutation on any length
    grid = spread_ranks((6, 5)).view(6, 5)
    first = grid < 9  # the first 9 of a 6 x 5 grid: every other row and column
    assert first.nonzero().tolist() == [[r, c] for r in (0, 2, 4) for c in (0, 2, 4)]


def test_spread_order_draws_far_apart_tokens_together_and_fewer_impossible_samples(small_source):
    # With the exact conditionals, only the order differs: tokens drawn in one step are
    # independent draws, and far-apart tokens of the chain depend least on each other.
    oracle = OracleDenoiser(small_source, 16)
    impossible = {}
    for order in ("random", "spread"):
        result = Sampler(steps=4, order=Order(order))(oracle, 2000, generator=gen(5), return_trace=True)
        impossible[order] = float(torch.isinf(small_source.log_prob(result.ids)).double().mean())
    first = result.trace.revealed[0][0].nonzero()[:, 0].tolist()
    assert first == [0, 4, 8, 12]
    assert impossible["spread"] < 0.7 * impossible["random"], impossible


def test_inpainting_with_the_oracle_is_exact_posterior(small_source):
    length = 16
    oracle = OracleDenoiser(small_source, length)
    x = small_source.sample(1, length, gen(5))
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[0, ::3] = True
    result = Sampler(steps=int((~mask).sum()))(oracle, 2000, fixed=Fixed(x, mask), generator=gen(6))
    assert torch.equal(result.ids[:, mask[0]], x[:, mask[0]].expand(2000, -1))
    assert torch.isfinite(small_source.log_prob(result.ids)).all()  # never an impossible completion
    # Empirical marginals of the free positions match the exact posterior.
    exact = small_source.marginals(x.masked_fill(~mask, 16), mask)[0]
    empirical = torch.nn.functional.one_hot(result.ids, 16).double().mean(0)
    assert (empirical - exact)[~mask[0]].abs().max() < 0.05


def test_ancestral_reuses_predictions_when_nothing_changed(small_source):
    oracle = OracleDenoiser(small_source, 16)
    result = Sampler(steps=64, count=AncestralCount())(oracle, 4, generator=gen())
    assert result.nfe == oracle.calls < 64
    oracle.calls = 0
    no_reuse = Sampler(steps=64, count=AncestralCount(), reuse_predictions=False)(oracle, 4, generator=gen())
    assert no_reuse.nfe == oracle.calls > result.nfe  # one call per step until nothing is masked
    assert torch.equal(result.ids, no_reuse.ids)  # reuse is exact


# ---------------------------------------------------------------- posterior sampling with a measurement


def test_measurement_guidance_and_anchoring(small_source):
    length, n = 16, 400
    oracle = OracleDenoiser(small_source, length)
    codebook = torch.randn(16, 4, generator=gen(8))
    truth = small_source.sample(1, length, gen(9))
    target = codebook[truth[0, :6]]

    def decode(q):  # expected token embedding
        return q @ codebook

    def loss(x):  # observe the first six embeddings
        return ((x[:, :6] - target) ** 2).sum((1, 2))

    plain = Sampler(steps=length)(oracle, n, generator=gen(1)).ids
    guided = Sampler(steps=length)(oracle, n, generator=gen(1),
                                   measurement=MeasurementGuidance(decode, loss, scale=20.0)).ids
    match = lambda ids: float((ids[:, :6] == truth[:, :6]).float().mean())
    assert match(guided) > match(plain) + 0.3

    # Anchoring: a committed token that disagrees with the measurement gets a small weight.
    ids = torch.full((2, length), 16)
    ids[0, 0] = truth[0, 0]
    ids[1, 0] = (truth[0, 0] + 1) % 16
    masked = ids == 16
    logits = torch.zeros(2, length, 16)
    _, weight = MeasurementGuidance(decode, loss, scale=20.0)(logits, ids, masked)
    assert weight[0, 0] == 1.0 and weight[1, 0] < 0.01
    anchored = Sampler(steps=length)(oracle, n, generator=gen(1), measurement=MeasurementGuidance(
        decode, loss, scale=20.0, anchor_threshold=0.5))
    assert ((anchored.ids >= 0) & (anchored.ids < 16)).all()
    assert match(anchored.ids) > match(guided)  # remasking what disagrees helps


def test_the_visible_error_counts_visible_entries_and_gives_a_batch_its_rows():
    from ddm.sampling import VisibleError

    target = torch.arange(12.0).reshape(3, 4)
    hidden = torch.tensor([[False, False, True, True]])  # shared by every sample
    loss = VisibleError(target, hidden)
    x = target + 1.0
    assert loss(x).tolist() == [2.0, 2.0, 2.0]  # two visible entries, each off by one
    rows = torch.tensor([2, 0])
    assert torch.equal(loss.select(rows)(x[rows]), loss(x)[rows])
    own = VisibleError(target, torch.tensor([[True] * 4, [False] * 4, [True, False, True, False]]))
    assert own(x).tolist() == [0.0, 4.0, 2.0] and own.select(rows)(x[rows]).tolist() == [2.0, 0.0]
    guidance = MeasurementGuidance(lambda q: q, own, scale=1.0)
    assert guidance.select(rows).loss.target.shape == (2, 4)


# ---------------------------------------------------------------- parts


def test_explicit_times_schedule(model):
    from ddm.schedules import LinearSchedule
    from ddm.sampling import TimeSteps
    steps = TimeSteps([1.0, 0.5, 0.2, 0.0], LinearSchedule())
    assert steps.alphas(3) == pytest.approx([0.0, 0.5, 0.8, 1.0])
    finer = steps.alphas(7)
    assert finer[0] == 0.0 and finer[-1] == 1.0 and finer == sorted(finer)
    sampler = Sampler.from_config(SampleConfig(steps=5, count_schedule="times", times=[1.0, 0.7, 0.3, 0.0]))
    result = sampler(model, B, generator=gen())
    assert ((result.ids >= 0) & (result.ids < V)).all() and result.nfe == 5


def test_filters():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert torch.isfinite(filter_logits(logits, top_k=2)).sum() == 2
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).sum() == 1
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).sum() == 4
    assert torch.allclose(filter_logits(logits, temperature=0.5).exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_remdm_sigma_bounds():
    state = SamplingState.start(2, 6, 8, "cpu")
    state.ids[:, :3] = 1
    state.confidence[:, :3] = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    eligible = state.committed
    info = StepInfo(1, 4, 0.5, 0.75, torch.tensor([6, 6]), torch.tensor([3, 3]), torch.tensor([3, 3]))
    sigma_max = min(1.0, (1 - 0.75) / 0.5)
    cap = ReMDMRemasking("cap", eta=0.9).sigma(state, eligible, info)
    assert torch.allclose(cap[eligible], torch.tensor(sigma_max, dtype=torch.float64))
    rescale = ReMDMRemasking("rescale", eta=0.5).sigma(state, eligible, info)
    assert torch.allclose(rescale[eligible], torch.tensor(0.5 * sigma_max, dtype=torch.float64))
    conf = ReMDMRemasking("conf").sigma(state, eligible, info)
    assert torch.allclose(conf.sum(1), torch.full((2,), sigma_max, dtype=torch.float64))
    assert (conf[:, 2] > conf[:, 1]).all() and (conf[:, 1] > conf[:, 0]).all()  # least confident first
    assert (conf[~eligible] == 0).all()


def test_recheck_remasks_dropped_tokens():
    state = SamplingState.start(1, 4, 8, "cpu")
    state.ids[0, :3] = 1
    state.confidence[0, :3] = torch.tensor([0.9, 0.9, 0.3], dtype=torch.float64)
    current = torch.tensor([[0.85, 0.4, 0.05, 0.0]], dtype=torch.float64)
    info = StepInfo(0, 4, 0.0, 0.25, torch.tensor([4]), torch.tensor([1]), torch.tensor([3]))
    out = build_remasking("recheck", threshold=0.1, drop=0.3)(state, current, state.committed, info, gen())
    assert out.tolist() == [[False, True, True, False]]


# ---------------------------------------------------------------- bad input


def test_config_errors_name_the_field():
    for data, field in [({"steps": 0}, "steps"), ({"order": "left"}, "order"), ({"top_p": 0.0}, "top_p"),
                        ({"count": "all"}, "count"), ({"remasking": "x"}, "remasking"),
                        ({"count_schedule": "times", "times": [0.5, 0.0]}, "times"),
                        ({"remask_window": [0.5, 0.2]}, "remask_window"), ({"guidance_scale": -1.0}, "guidance_scale")]:
        with pytest.raises(ConfigError, match=field):
            from_dict(SampleConfig, data, "sample")


def test_bad_input_errors(model, cond_model):
    with pytest.raises(ValueError, match="steps"):
        Sampler(steps=0)
    with pytest.raises(ValueError, match="fixed.mask"):
        Sampler(steps=4)(model, B, fixed=Fixed(torch.zeros(B, N + 1, dtype=torch.long),
                                               torch.zeros(B, N + 1, dtype=torch.bool)))
    with pytest.raises(ValueError, match="fixed.mask"):
        Sampler(steps=4)(model, B, fixed=(torch.zeros(B, N, dtype=torch.long), torch.zeros(B, N)))
    bad = some_fixed()
    with pytest.raises(ValueError, match="vocabulary"):
        Sampler(steps=4)(model, B, fixed=Fixed(bad.ids.masked_fill(bad.mask, V), bad.mask))
    with pytest.raises(ValueError, match="rows"):
        Sampler(steps=4)(model, 5, fixed=some_fixed(3))
    untrained = tiny_model(num_classes=3)
    with pytest.raises(ValueError, match="condition dropout"):
        Sampler(steps=4, guidance_scale=1.0)(untrained, cond=Condition(classes=torch.arange(3)))
    with pytest.raises(ValueError, match="needs a condition"):
        Sampler(steps=4, guidance_scale=1.0)(cond_model, B)
    with pytest.raises(ValueError, match="blocks"):
        Sampler(steps=2, block_size=4)(model, B)
    with pytest.raises(ValueError, match="batch size"):
        Sampler(steps=4)(model)
    with pytest.raises(ValueError, match="cond: 3 rows"):
        Sampler(steps=4)(cond_model, 5, cond=some_cond(3))

    class WrongVocab(Counting):
        def forward(self, ids, t=None, cond=None, prefix=None):
            out = super().forward(ids, t, cond, prefix)
            return type(out)(torch.cat([out.logits, out.logits[..., :1]], -1))

    with pytest.raises(ValueError, match="vocab_size"):
        Sampler(steps=4)(WrongVocab(model), B)


def test_more_steps_than_tokens_clamps_with_a_warning(model):
    with pytest.warns(UserWarning, match="runs 12 steps"):
        result = Sampler(steps=50)(model, B, generator=gen())
    assert result.nfe == N

