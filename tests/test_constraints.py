"""Constraints (logits processors) in both sampling loops, and samplers built as a folder was trained."""

import pytest
import torch

from ddm.config import ConfigError, SampleConfig
from ddm.sampling import AllowedTokens, Order, Sampler
from test_sampling import B, N, V, gen


@pytest.fixture
def model(tiny_denoiser):
    return tiny_denoiser(V, N)



def test_allowed_tokens_hold_in_the_diffusion_loop_and_the_autoregressive_sampler(model, tiny_denoiser):
    from ddm.autoregressive import sample_autoregressive

    allowed = torch.zeros(N, V, dtype=torch.bool)
    allowed[:, :3] = True  # tokens 0-2 everywhere ...
    allowed[0] = False
    allowed[0, V - 1] = True  # ... and only the last token at position 0
    processors = [AllowedTokens(allowed)]
    for order in ("random", "confidence"):
        ids = Sampler(steps=4, order=Order(order))(model, B, generator=gen(2), processors=processors).ids
        assert (ids[:, 0] == V - 1).all() and (ids[:, 1:] < 3).all()
    causal = tiny_denoiser(V, N, causal=True)
    ids = sample_autoregressive(causal, B, generator=gen(3), processors=processors).ids
    assert (ids[:, 0] == V - 1).all() and (ids[:, 1:] < 3).all()


def test_a_processor_that_returns_the_wrong_shape_or_forbids_everything_is_named(model):
    def drops_a_token(logits, ids, positions):
        return logits[..., :-1]

    with pytest.raises(ValueError, match=rf"logits processor drops_a_token: returned \({B}, {N}, {V - 1}\), expected "
                                         rf"the shape of the logits it was given, \({B}, {N}, {V}\)"):
        Sampler(steps=4)(model, B, processors=[drops_a_token])
    nothing = torch.ones(N, V, dtype=torch.bool)
    nothing[5, :] = False
    with pytest.raises(ValueError, match="a position allows no token"):
        AllowedTokens(nothing)
    with pytest.raises(ValueError, match="every token is forbidden at row 0, position 3"):
        Sampler(steps=4)(model, B, processors=[lambda logits, ids, positions: logits.index_fill(
            1, torch.tensor([3]), float("-inf"))])


def test_sampler_from_pretrained_reads_the_folder_schedule_and_sampler(tmp_path, tiny_denoiser):
    from ddm.config import DiffusionConfig
    from ddm.schedules import CosineSchedule

    m = tiny_denoiser(V, N, diffusion=DiffusionConfig(schedule="cosine"), sample=SampleConfig(steps=6, order="margin"))
    m.save_pretrained(tmp_path / "m")
    for source in (tmp_path / "m", m):
        s = Sampler.from_pretrained(source)
        assert s.steps == 6 and s.order.name == "margin" and isinstance(s.process, CosineSchedule)
        assert Sampler.from_pretrained(source, steps=3).steps == 3
    with pytest.raises(ConfigError, match="sample.order: unknown sampler order 'best'"):
        Sampler.from_pretrained(m, order="best")
    with pytest.raises(ValueError, match="not a trained denoiser"):
        Sampler.from_pretrained(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------- a count steered to a target


def count_of(ids, token):
    return (ids == token).sum(1)


def test_expected_count_meets_its_targets_one_token_a_step_and_leaves_rows_without_one_alone(model):
    """One token a step: the tilt forbids the token once the target is met and forces it when every
    masked position is needed, so the count ends exact; a row without a target (NaN) is drawn as if
    the processor were not there (the same uniforms, its logits untouched)."""
    from ddm.sampling import ExpectedCount

    targets = torch.tensor([2.0, 9.0, float("nan")])
    for order in ("random", "confidence"):
        sampler = Sampler(steps=N, order=Order(order))
        steered = sampler(model, B, generator=gen(4), processors=[ExpectedCount(5, targets, model.config.mask_id)]).ids
        plain = sampler(model, B, generator=gen(4)).ids
        assert count_of(steered, 5)[:2].tolist() == [2, 9], order
        assert torch.equal(steered[2], plain[2]), order


def test_expected_count_pulls_parallel_draws_toward_the_target_and_counts_only_the_positions_given(model):
    from ddm.sampling import ExpectedCount

    rows = 64
    targets = torch.full((rows,), 6.0)
    counted = torch.arange(N) >= N // 2  # only the second half counts
    sampler = Sampler(steps=3, order=Order("random"))
    plain = sampler(model, rows, generator=gen(5)).ids
    steered = sampler(model, rows, generator=gen(5),
                      processors=[ExpectedCount(1, targets, model.config.mask_id, counted=counted)]).ids
    half = slice(N // 2, N)
    plain_error = (count_of(plain[:, half], 1).float() - 6).abs().mean()
    steered_error = (count_of(steered[:, half], 1).float() - 6).abs().mean()
    assert steered_error < plain_error / 2, (steered_error, plain_error)
    # the first half is not counted, so it is not tilted toward 12 tokens per row either
    first = slice(0, N // 2)
    assert abs(count_of(steered[:, first], 1).float().mean() - count_of(plain[:, first], 1).float().mean()) < \
        abs(count_of(steered[:, half], 1).float().mean() - count_of(plain[:, half], 1).float().mean())


def test_sample_many_gives_each_batch_its_own_rows_of_a_per_sample_processor(model):
    from ddm.sampling import ExpectedCount, sample_many

    targets = torch.tensor([0.0, 3.0, 7.0, 12.0, 1.0])
    allowed = torch.ones(5, N, V, dtype=torch.bool)
    allowed[3, :, 6] = False  # the fourth sample may not hold token 6, wherever its batch puts it
    processors = [AllowedTokens(allowed), ExpectedCount(5, targets, model.config.mask_id)]
    ids = sample_many(model, 5, 2, sampler=Sampler(steps=N), generator=gen(6), processors=processors).ids
    assert count_of(ids, 5).tolist() == [0, 3, 7, 12, 1]
    assert not (ids[3] == 6).any()


def test_bad_targets_are_refused_by_name(model):
    from ddm.sampling import ExpectedCount

    mask = model.config.mask_id
    with pytest.raises(ValueError, match=r"targets: expected one count per sample \[B\], got shape \(2, 2\)"):
        ExpectedCount(1, torch.ones(2, 2), mask)
    with pytest.raises(ValueError, match="targets: counts must be >= 0"):
        ExpectedCount(1, torch.tensor([1.0, -2.0]), mask)
    with pytest.raises(ValueError, match="counted: expected a bool tensor"):
        ExpectedCount(1, torch.ones(2), mask, counted=torch.ones(N))
    with pytest.raises(ValueError, match=rf"ExpectedCount: 2 targets for a batch of {B} samples"):
        Sampler(steps=4)(model, B, processors=[ExpectedCount(1, torch.ones(2), mask)])
    with pytest.raises(ValueError, match=rf"ExpectedCount: token {V} is outside the vocabulary \[0, {V}\)"):
        Sampler(steps=4)(model, B, processors=[ExpectedCount(V, torch.ones(B), mask)])
