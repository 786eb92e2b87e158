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
