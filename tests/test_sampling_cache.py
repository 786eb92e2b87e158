"""Reuse across denoising steps: rows that leave the call (exact), the approximate cache of
target keys/values (`sample.cache_targets`) and the reuse of blocks' changes between refreshes
(`sample.skip_blocks`): exact where they are meant to be, bounded where not."""

import pytest
import torch

from ddm.config import DiffusionConfig, SampleConfig
from ddm.model import Condition
from ddm.sampling import Order, Sampler
from ddm.sampling.denoise import Denoise

from conftest import make_tiny_denoiser

V, N, B = 8, 12, 6
pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def model(**overrides):
    return make_tiny_denoiser(V, N, head_std=1.0, **{"depth": 2, "learned_positions": True, **overrides})


def cond_model():
    return make_tiny_denoiser(V, N, head_std=1.0, depth=2, num_classes=3,
                              diffusion=DiffusionConfig(cond_dropout=0.1))


def masked_state(seed=0):
    ids = torch.randint(0, V, (B, N), generator=gen(seed))
    return ids.masked_fill(torch.rand(B, N, generator=gen(seed + 1)) < 0.5, V)


def test_forward_cached_is_exact_on_the_positions_it_runs():
    m, ids, t = cond_model(), masked_state(), torch.rand(B)
    prefix = m.encode_prefix(Condition(classes=torch.arange(B) % 3))
    with torch.no_grad():
        plain = m(ids, t=t, prefix=prefix).logits
        full, cache = m.forward_cached(ids, t, None, None, prefix)
        index = torch.stack([torch.randperm(N, generator=gen(r))[:5] for r in range(B)])
        part, _ = m.forward_cached(ids, t, index, cache, prefix)  # same state: nothing is stale
    assert torch.allclose(full.logits, plain, atol=1e-5)
    assert torch.allclose(part.logits, plain.gather(1, index[..., None].expand(-1, -1, V)), atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(count=None, order="random"), dict(count="ancestral", order="random")])
def test_rows_leave_the_call_without_changing_the_samples(kwargs):
    from ddm.sampling.schedules import build_count

    m = model()
    count = build_count("ancestral", 0.9) if kwargs["count"] else None
    parts = dict(steps=24 if count else N, order=Order(kwargs["order"]), **({"count": count} if count else {}))
    every = Sampler(reuse_predictions=False, **parts)(m, B, generator=gen(3))
    dropping = Sampler(reuse_predictions=True, **parts)(m, B, generator=gen(3))
    assert torch.equal(every.ids, dropping.ids)
    assert (every.row_nfe == every.nfe).all()
    if count is not None:  # binomial reveals: some steps reveal nothing in a row, and it skips the call
        assert dropping.calls_per_sample < dropping.nfe <= every.nfe == 24
    else:
        assert dropping.calls_per_sample == dropping.nfe == N  # clamped: one token per step, none idle


def test_full_refresh_at_every_call_is_plain_decoding():
    m, cond = cond_model(), Condition(classes=torch.arange(B) % 3)
    parts = dict(steps=6, order=Order("confidence", 1.0), guidance_scale=2.0)
    plain = Sampler(**parts)(m, cond=cond, generator=gen(5))
    refreshed = Sampler(cache_targets=True, cache_refresh=1, **parts)(m, cond=cond, generator=gen(5))
    assert torch.equal(plain.ids, refreshed.ids)
    assert plain.nfe == refreshed.nfe == 12 and refreshed.positions_run == 1.0


def test_approximate_cache_runs_fewer_positions_with_bounded_logit_error():
    m = model()
    ids = masked_state(7)
    t = torch.full((B,), 0.5)
    cached = Denoise(m, None, cache_targets=True)
    cached(ids, t)  # builds the cache on this state
    # The next state: two masked positions per row revealed, as one sampling step would.
    nxt = ids.clone()
    for r in range(B):
        masked = (ids[r] == V).nonzero()[:, 0][:2]
        nxt[r, masked] = torch.randint(0, V, (len(masked),), generator=gen(r))
    approx, _ = cached(nxt, t)
    with torch.no_grad():
        exact = m(nxt, t=t).logits
    assert cached.positions_run < cached.positions_total  # the second call ran only stale positions
    error = (approx - exact).abs()
    stale = (nxt == V) | (nxt != ids)
    assert error[stale].max() < 0.5 * exact.abs().max()  # stale keys elsewhere: close, not equal
    assert error.max() > 0  # it is an approximation: the untouched positions kept their old logits
    again = Denoise(m, None, cache_targets=True)
    again(nxt, t)
    assert torch.allclose(again(nxt, t)[0], exact, atol=1e-5)  # a fresh cache on the state is exact


def test_approximate_cache_samples_every_token_and_saves_work():
    m = model()
    result = Sampler(steps=6, order=Order("confidence"), cache_targets=True)(m, B, generator=gen(2))
    assert ((result.ids >= 0) & (result.ids < V)).all()
    assert 0.3 < result.positions_run < 1.0
    cfg = SampleConfig(steps=6, cache_targets=True, cache_refresh=2)
    assert Sampler.from_config(cfg).cache_refresh == 2


@pytest.mark.parametrize("overrides,words", [({"continuous_dim": 2}, "continuous head"), ({"causal": True}, "causal")])
def test_approximate_cache_refuses_models_it_cannot_serve(overrides, words):
    with pytest.raises(ValueError, match=f"sample.cache_targets.*{words}"):
        Sampler(steps=4, cache_targets=True)(model(**overrides), B, generator=gen())


def test_approximate_cache_refuses_a_body_without_one():
    class NoCache(torch.nn.Module):
        config = model().config

    with pytest.raises(ValueError, match="sample.cache_targets.*NoCache.*forward_cached"):
        Denoise(NoCache(), None, cache_targets=True)


def test_cache_refresh_must_not_be_negative():
    with pytest.raises(ValueError, match="cache_refresh"):
        Sampler(cache_refresh=-1)


def test_a_recording_call_changes_nothing_and_a_skipping_one_repeats_the_blocks_changes():
    from ddm.model import BlockReuse

    m, ids, t = model(depth=3), masked_state(), torch.rand(B)
    with torch.no_grad():
        plain = m(ids, t=t).logits
        record = BlockReuse((1,), {})
        assert torch.equal(m(ids, t=t, reuse=record).logits, plain)  # recording runs every block
        assert record.deltas[1].shape == (B, N, m.config.d_model) and record.deltas[1].abs().max() > 0
        # The same state again: block 1's recorded change is exactly what it would add.
        assert torch.allclose(m(ids, t=t, reuse=BlockReuse((1,), record.deltas, skip=True)).logits, plain, atol=1e-5)
        # A changed state: the skipped block's change is stale, so the logits move, but not far.
        nxt = ids.masked_fill(ids == V, 0)
        exact = m(nxt, t=t).logits
        stale = m(nxt, t=t, reuse=BlockReuse((1,), record.deltas, skip=True)).logits
        assert 0 < (stale - exact).abs().max() < 0.5 * exact.abs().max()


def test_block_reuse_refreshed_at_every_call_is_plain_decoding_and_otherwise_skips_every_other_call():
    m, cond = cond_model(), Condition(classes=torch.arange(B) % 3)
    parts = dict(steps=6, order=Order("confidence", 1.0), guidance_scale=2.0)
    plain = Sampler(**parts)(m, cond=cond, generator=gen(5))
    refreshed = Sampler(skip_blocks=(0,), skip_refresh=1, **parts)(m, cond=cond, generator=gen(5))
    assert torch.equal(plain.ids, refreshed.ids)

    calls = []
    original = m.forward

    def spy(*args, reuse=None, **kwargs):
        calls.append(reuse.skip)
        return original(*args, reuse=reuse, **kwargs)

    m.forward = spy
    skipping = Sampler(skip_blocks=(1,), skip_refresh=2, **parts)(m, cond=cond, generator=gen(5))
    assert calls == [False, True, False, True, False, True]
    assert ((skipping.ids >= 0) & (skipping.ids < V)).all() and skipping.nfe == plain.nfe
    assert not torch.equal(skipping.ids, plain.ids)  # an approximation: the samples differ


def test_block_reuse_keeps_each_rows_changes_when_rows_leave_the_call():
    from ddm.sampling.schedules import build_count

    m = model(depth=3)
    parts = dict(steps=24, order=Order("random"), count=build_count("ancestral", 0.9), skip_blocks=(1,))
    every = Sampler(reuse_predictions=False, skip_refresh=1, **parts)(m, B, generator=gen(3))
    dropping = Sampler(reuse_predictions=True, skip_refresh=1, **parts)(m, B, generator=gen(3))
    assert torch.equal(every.ids, dropping.ids)  # exact when every call records
    result = Sampler(reuse_predictions=True, skip_refresh=3, **parts)(m, B, generator=gen(3))
    assert result.calls_per_sample < result.nfe and ((result.ids >= 0) & (result.ids < V)).all()


@pytest.mark.parametrize("kwargs,words", [
    (dict(skip_blocks=(2,)), r"\[2\] are not blocks of the model.*blocks 0..1"),
    (dict(skip_blocks=(0,), cache_targets=True), "not with sample.cache_targets"),
])
def test_block_reuse_refuses_what_it_cannot_do(kwargs, words):
    with pytest.raises(ValueError, match=f"sample.skip_blocks: {words}"):
        Sampler(steps=4, **kwargs)(model(), B, generator=gen())


def test_block_reuse_refuses_a_body_without_it_and_a_refresh_below_one():
    class NoReuse(torch.nn.Module):
        config = model().config

    with pytest.raises(ValueError, match="sample.skip_blocks.*NoReuse.*cannot skip"):
        Denoise(NoReuse(), None, skip_blocks=(0,))
    with pytest.raises(ValueError, match="skip_refresh"):
        Sampler(skip_refresh=0)
    assert Sampler.from_config(SampleConfig(skip_blocks=[1, 2], skip_refresh=3)).skip_blocks == (1, 2)
