import math

import pytest
import torch

from ddm.process import MaskingProcess
from ddm.schedules import get_schedule, priority_exponents, token_alpha, token_weight

SCHEDULES = ["linear", "cosine", "loglinear", "polynomial"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_endpoints_derivative_and_inverse(name):
    s = get_schedule(name, power=3.0)
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    assert float(s.alpha(torch.zeros(1, dtype=torch.float64))) == pytest.approx(1.0)
    assert float(s.alpha(torch.ones(1, dtype=torch.float64))) < 2e-3
    assert torch.all(s.alpha(t[1:]) < s.alpha(t[:-1]))  # decreasing
    h = 1e-6  # alpha' against a central finite difference
    fd = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    torch.testing.assert_close(s.alpha_derivative(t), fd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.weight(t), -fd / (1 - s.alpha(t)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s.inverse(s.alpha(t)), t, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", SCHEDULES)
def test_elbo_weight_integrates_to_the_number_of_tokens(name):
    # For one token, E_t[w(t) * P(masked at t)] = int_0^1 -alpha'(t) dt = alpha(0) - alpha(1) ~ 1:
    # a model that predicts uniformly gets an ELBO of log V per token.
    s = get_schedule(name)
    t = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    integral = float((s.weight(t) * (1 - s.alpha(t))).mean())
    assert integral == pytest.approx(float(1 - s.alpha(torch.ones(1, dtype=torch.float64))), rel=1e-3)


def test_corrupt_masks_at_the_schedule_rate():
    p = MaskingProcess(get_schedule("cosine"), mask_id=9)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 9, (64, 4096), generator=g)
    t = torch.linspace(0.05, 0.95, 64)
    xt, masked = p.corrupt(x0, t, g)
    assert torch.equal(xt == 9, masked) and torch.equal(xt[~masked], x0[~masked])
    rate = masked.double().mean(1)
    torch.testing.assert_close(rate, 1 - p.schedule.alpha(t.double()), atol=0.03, rtol=0)


def test_antithetic_times_are_stratified():
    p = MaskingProcess(get_schedule("linear"), 5, antithetic=True)
    t = p.sample_times(8, torch.Generator().manual_seed(3)).sort().values
    gaps = t[1:] - t[:-1]
    torch.testing.assert_close(gaps, torch.full_like(gaps, (1 - p.t_min) / 8), atol=1e-5, rtol=0)
    assert t.min() >= p.t_min and t.max() <= 1


def test_priority_masking_keeps_important_tokens_longer_and_weights_are_exact():
    s = get_schedule("linear")
    importance = torch.tensor([[0.0, 0.5, 1.0]]).expand(4, 3)
    k = priority_exponents(importance, strength=2.0)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64)
    a = token_alpha(s, t, k.double())
    assert torch.all(a[:, 2] > a[:, 1]) and torch.all(a[:, 1] > a[:, 0])  # important: visible longer
    torch.testing.assert_close(a[:, 1], s.alpha(t))  # importance 0.5 keeps the base schedule
    h = 1e-6
    fd = (token_alpha(s, t + h, k.double()) - token_alpha(s, t - h, k.double())) / (2 * h)
    torch.testing.assert_close(token_weight(s, t, k.double()), -fd / (1 - a), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        priority_exponents(torch.tensor([1.5]), 1.0)


def test_priority_process_masks_unimportant_first():
    p = MaskingProcess(get_schedule("linear"), 7, priority_strength=3.0)
    g = torch.Generator().manual_seed(1)
    x0 = torch.zeros(20_000, 2, dtype=torch.long)
    importance = torch.tensor([[0.0, 1.0]]).expand(20_000, 2)
    _, masked = p.corrupt(x0, torch.full((20_000,), 0.5), g, importance)
    rate = masked.float().mean(0)
    expected = 1 - 0.5 ** priority_exponents(torch.tensor([0.0, 1.0]), 3.0)
    torch.testing.assert_close(rate, expected.float(), atol=0.02, rtol=0)
    assert rate[0] > 0.9 and rate[1] < 0.1
    assert math.isclose(float(p.weights(torch.tensor([0.5]), importance[:1])[0, 0]),
                        float(8 * 0.5 ** 7 / (1 - 0.5 ** 8)), rel_tol=1e-4)


def test_swap_visible_noises_only_visible_tokens_at_the_rate():
    from ddm.objectives import swap_visible

    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(400, 64, dtype=torch.long)
    masked = torch.rand(400, 64, generator=g) < 0.5
    xt = x0.masked_fill(masked, 16)
    out = swap_visible(xt, masked, 0.2, 16, g)
    assert torch.equal(out[masked], xt[masked])  # masked positions stay masked
    changed = (out != xt) & ~masked
    # a swapped token equals the original with probability 1/16
    assert abs(changed.sum() / (~masked).sum() - 0.2 * 15 / 16) < 0.01
    assert int(out[~masked].max()) < 16


def test_visible_noise_objective_trains_visible_positions():
    from ddm.config import DiffusionConfig, ModelConfig
    from ddm.model import build_denoiser
    from ddm.objectives import DiffusionObjective
    from ddm.process import MaskingProcess

    torch.manual_seed(0)
    model = build_denoiser(ModelConfig(vocab_size=8, shape=[12], d_model=32, depth=1, heads=2))
    batch = {"ids": torch.randint(0, 8, (16, 12), generator=torch.Generator().manual_seed(1))}
    plain = DiffusionConfig()
    noisy = DiffusionConfig(visible_noise=0.1)
    loss0, m0 = DiffusionObjective(MaskingProcess.from_config(plain, 8), plain)(model, batch, torch.Generator().manual_seed(2))
    loss1, m1 = DiffusionObjective(MaskingProcess.from_config(noisy, 8), noisy)(model, batch, torch.Generator().manual_seed(2))
    assert "visible_ce" not in m0 and m1["visible_ce"] > 0
    # At t = 0 nothing is masked: the masked term is 0, so any gradient is the visible term's.
    for cfg, trains in ((plain, False), (noisy, True)):
        objective = DiffusionObjective(MaskingProcess.from_config(cfg, 8), cfg)
        objective.process.sample_times = lambda b, g, device=None: torch.zeros(b)
        model.zero_grad()
        loss, _ = objective(model, batch, torch.Generator().manual_seed(2))
        loss.backward()
        grad = model.heads.discrete.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == trains
