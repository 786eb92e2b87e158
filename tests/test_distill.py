"""Learned sampler distillation: the loss means what it says, the learned file is found,
checked and used by the one loop, and every bad input is refused by name."""

import json
import shutil
from dataclasses import replace

import pytest
import torch

from ddm.cli import main
from ddm.config import DiffusionConfig, SampleConfig
from ddm.distill import (DistillConfig, distill, distill_loss, forward_loss, teacher_log_prob, teacher_sampler,
                         teacher_samples)
from ddm.sampling import Sampler
from ddm.sampling.filters import mix_previous
from ddm.sampling.learned import StepCoefficients, save_learned
from ddm.sampling.orders import spread_ranks

SYNTH = "configs/tasks/synthetic_cpu.yaml"
TINY = ["task.train_size=500", "task.eval_size=100", "task.elbo_repeats=1", "task.length=12", "model.shape=[12]",
        "model.d_model=32", "model.depth=1", "train.steps=4", "train.batch_size=8", "train.warmup_steps=1",
        "train.log_every=2", "train.checkpoint_every=4", "train.progress=false", "sample.num_samples=8",
        "sample.batch_size=8"]
FAST = ["--iterations", "2", "--batch-size", "8"]


@pytest.fixture
def denoiser(tiny_denoiser):
    return tiny_denoiser(diffusion=DiffusionConfig(schedule="cosine"), sample=SampleConfig(order="random"))


def test_the_student_order_loss_is_zero_for_one_token_per_step_and_positive_below(denoiser, one_thread):
    # One token per step, the student *is* the teacher in its own order: every term cancels exactly.
    same = distill_loss(denoiser, Sampler.from_pretrained(denoiser, steps=12), 16, 0, 128, teacher_order="student")
    assert same.abs().max() < 1e-9
    # Fewer steps draw more tokens at once: the teacher, drawing them one after another, disagrees more.
    kl = [float(distill_loss(denoiser, Sampler.from_pretrained(denoiser, steps=k), 256, 0, 128,
                        teacher_order="student").mean()) for k in (1, 4)]
    assert kl[0] > kl[1] > 0


def test_the_kl_bound_against_the_random_order_teacher(denoiser, one_thread):
    # The teacher decodes in its own random order, drawn apart from the student's: for a
    # one-token-per-step random-order student the loss is the KL between the model's samples in
    # one order and its probabilities in another, > 0 for a model whose orders disagree (every
    # trained one), however many samples; fewer steps are farther from the teacher.
    exact = distill_loss(denoiser, Sampler.from_pretrained(denoiser, steps=12), 512, 0, 128)
    error = 4 * float(exact.std()) / 512 ** 0.5
    assert exact.abs().max() > 1e-3 and float(exact.mean()) > error
    kl = [float(distill_loss(denoiser, Sampler.from_pretrained(denoiser, steps=k), 512, 0, 128).mean()) for k in (1, 4)]
    assert kl[0] > kl[1] > float(exact.mean()) - error and kl[0] > float(exact.mean()) + error
    # One token per step in the spread order: perfect to a teacher that follows the student's order,
    # not to the fixed one, whose samples come out in random orders.
    spread = Sampler.from_pretrained(denoiser, steps=12, order="spread")
    assert distill_loss(denoiser, spread, 64, 1, 128, teacher_order="student").abs().max() < 1e-9
    assert float(distill_loss(denoiser, spread, 512, 1, 128).mean()) > error


def test_the_loss_of_a_greedy_student_counts_its_tokens_as_certain(denoiser):
    # At temperature 0 the student's tokens have probability 1, so the loss is the teacher's
    # surprise alone, never below 0 (the robot decoder decodes greedily).
    greedy = distill_loss(denoiser, Sampler.from_pretrained(denoiser, steps=4, temperature=0.0), 32, 0, 128)
    assert (greedy > 0).all()


def test_teacher_forcing_commits_the_given_ids_with_the_samplers_probability(denoiser, one_thread):
    # The random-order teacher's path log-probability of its own samples is the model's probability
    # of them decoded one token at a time in the order that drew them, and the loop's teacher
    # forcing scores given ids the same way.
    plain = Sampler.from_pretrained(denoiser, steps=4)
    teacher = teacher_sampler(plain, 12, "random")
    drawn = teacher(denoiser, 32, generator=torch.Generator().manual_seed(5))
    ids, per_token = teacher_samples(denoiser, teacher, 32, 5)
    assert torch.equal(ids, drawn.ids)
    exact = teacher_log_prob(denoiser, ids, drawn.committed_at, teacher, 12, torch.Generator().manual_seed(0))
    assert torch.allclose(per_token * 12, exact, atol=1e-6)
    forced = plain(denoiser, 32, generator=torch.Generator().manual_seed(1), forced=ids)
    assert torch.equal(forced.ids, ids) and (forced.confidence > 0).all()
    # One token per step in the spread order, forced: the model's probability of each given id
    # in the context of the given ids before it.
    spread = Sampler.from_pretrained(denoiser, steps=12, order="spread", gumbel_temperature=0.0)
    scored = spread(denoiser, 32, generator=torch.Generator().manual_seed(1), forced=ids)
    in_order = teacher_log_prob(denoiser, ids, scored.committed_at, spread, 12, torch.Generator().manual_seed(0))
    assert torch.allclose(scored.confidence.log().sum(1), in_order, atol=1e-6)
    with pytest.raises(ValueError, match=r"forced: shape \(32, 11\); expected \(32, 12\)"):
        plain(denoiser, 32, forced=ids[:, :11])


def test_the_forward_term_charges_what_the_student_would_rarely_draw(denoiser, one_thread):
    # KL(teacher || student), on the same teacher samples for every student: small for the
    # teacher's own sampler (only the orders differ), larger for fewer steps, and far larger for a
    # cold student, which the reverse bound alone lets drop the teacher's rarer samples.
    plain = Sampler.from_pretrained(denoiser, steps=4)
    samples = teacher_samples(denoiser, teacher_sampler(plain, 12, "random"), 512, 2)
    forward = {name: forward_loss(denoiser, s, samples, 3) for name, s in [
        ("teacher", Sampler.from_pretrained(denoiser, steps=12)),
        ("one step", Sampler.from_pretrained(denoiser, steps=1)),
        ("warm", plain), ("cold", plain.with_coefficients(StepCoefficients([0.3] * 4, [0.0] * 4), "random"))]}

    def above(a, b):  # a's mean above b's by more than 3 standard errors of the paired difference
        d = forward[a] - forward[b]
        return float(d.mean()) > 3 * float(d.std()) / len(d) ** 0.5

    assert 0 < float(forward["teacher"].mean()) < 0.05
    assert above("one step", "warm") and above("one step", "teacher") and above("cold", "warm")
    assert float((forward["cold"] - forward["warm"]).mean()) > 0.5


def test_zero_order_weight_is_the_random_order(denoiser):
    plain = Sampler.from_pretrained(denoiser, steps=4)
    learned = plain.with_coefficients(StepCoefficients([1.0] * 4, [0.0] * 4), "random")
    a = plain(denoiser, 16, generator=torch.Generator().manual_seed(3))
    b = learned(denoiser, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.ids, b.ids)  # Gumbel noise alone orders as uniform noise does
    # The learned temperatures are used: near zero on the last two steps, their tokens are the modes.
    cold = plain.with_coefficients(StepCoefficients([1.0, 1.0, 1e-4, 1e-4], [0.0] * 4), "random")
    c = cold(denoiser, 64, generator=torch.Generator().manual_seed(3))
    late = c.committed_at >= 2
    assert (c.confidence[late] > 0.999).all() and (c.confidence[~late] < 0.9).float().mean() > 0.5


def test_spread_weight_reveals_far_apart_positions_first(denoiser):
    plain = Sampler.from_pretrained(denoiser, steps=4)
    spread = plain.with_coefficients(StepCoefficients([1.0] * 4, [0.0] * 4, [50.0] * 4), "random")
    result = spread(denoiser, 8, generator=torch.Generator().manual_seed(3), return_trace=True)
    first = spread_ranks((12,)).argsort()[:3].tolist()  # 3 of the 12 tokens a step: 0, 8, 4
    assert first == [0, 8, 4]
    assert (result.trace.revealed[0].nonzero()[:, 1].view(8, 3) == torch.tensor(sorted(first))).all()


def test_the_mixing_weight_moves_a_step_along_its_change_of_prediction(denoiser):
    logp = torch.log_softmax(torch.randn(5, 7, dtype=torch.float64), -1)
    before = torch.log_softmax(torch.randn(5, 7, dtype=torch.float64), -1)
    assert mix_previous(logp, None, 2.0) is logp and mix_previous(logp, before, 0.0) is logp
    assert torch.allclose(mix_previous(logp, before, -1.0), before)  # all the way back
    assert torch.allclose(mix_previous(logp, before, 1.0), torch.log_softmax(2 * logp - before, -1))
    ruled_out = logp.clone()
    ruled_out[:, 0] = float("-inf")
    mixed = mix_previous(ruled_out, before, 0.5)
    assert torch.isinf(mixed[:, 0]).all() and torch.isfinite(mixed[:, 1:]).all()
    # In the loop: weight -1 at step 1 draws from step 0's prediction; weight 0 everywhere is the plain sampler.
    plain = Sampler.from_pretrained(denoiser, steps=4)
    back = replace(plain, step_mixing=(0.0, -1.0, 0.0, 0.0))
    trace = back(denoiser, 8, generator=torch.Generator().manual_seed(3), return_trace=True).trace
    assert torch.allclose(trace.probs[1], trace.probs[0], atol=1e-6)
    assert not torch.allclose(trace.probs[2], trace.probs[1], atol=1e-3)
    a = plain(denoiser, 16, generator=torch.Generator().manual_seed(3))
    b = replace(plain, step_mixing=(0.0,) * 4)(denoiser, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.ids, b.ids)


def test_the_spread_start_of_distillation_is_the_spread_order_itself(denoiser):
    # A weight too small for the Gumbel noise lets neighbouring tokens swap steps (the old start,
    # 16, moved a token across each step boundary with probability 1 / (1 + e^2) at K=4 of 32).
    from ddm.distill import Parameters

    cfg = SampleConfig(order="random", steps=4)
    plain = Sampler.for_model(denoiser, cfg)
    params = Parameters(cfg, plain, plus=True, positions=12)
    initial, spread_start = (params.coefficients(t) for t in params.starts())
    assert initial.spread_weight == [0.0] * 4 and initial.alphas == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    student = plain.with_coefficients(spread_start, "random")
    result = student(denoiser, 256, generator=torch.Generator().manual_seed(0))
    planned = (spread_ranks((12,)) // 3).long()  # 3 tokens a step, in the spread order's ranks
    assert torch.equal(result.committed_at, planned.expand(256, 12))


def test_a_file_distilled_again_is_read_again(denoiser, tmp_path):
    # The benchmark distills LSD then LSD+ into the same file with one loaded model.
    denoiser.pretrained_dir = tmp_path
    cfg = SampleConfig(order="random", steps=4, learned=True)
    for temperature in (0.5, 0.25):
        save_learned(tmp_path, cfg, denoiser, StepCoefficients([temperature] * 4, [0.0] * 4), {})
        assert Sampler.for_model(denoiser, cfg).step_temperatures == (temperature,) * 4


def test_distillation_lowers_the_loss_it_reports(denoiser, one_thread):
    cfg = DistillConfig(steps=3, plus=True, iterations=6, batch_size=16, validate_every=2, validation_batches=2,
                        forward_weight=0.5)
    result = distill(denoiser, denoiser.sample, cfg, progress=False)
    r = result.report
    assert r["learned_loss"] <= r["initial_loss"]  # the best validated iterate, the start included
    for which in ("plain", "learned"):  # the loss is the reverse bound plus the weighted forward term
        terms = r[f"{which}_terms"]
        assert terms["forward"] > 0 and r[f"{which}_loss"] == pytest.approx(terms["reverse"] + 0.5 * terms["forward"])
    c = result.coefficients
    assert c.steps == 3 and len(c.alphas) == 4 and c.alphas[0] == 0.0 and c.alphas[-1] == 1.0


def test_lsd_plus_starts_from_the_lsd_sampler_saved_for_its_budget(denoiser, tmp_path, one_thread):
    # LSD+ after LSD (or distilling again) starts from the saved coefficients too, so the loss it
    # keeps is at most the saved one's on the same held-out seeds.
    from ddm.distill import Parameters, distill_to_folder

    denoiser.pretrained_dir = tmp_path
    sample = SampleConfig(order="random")
    options = dict(steps=3, iterations=4, batch_size=16, validate_every=2, validation_batches=2)
    lsd = distill_to_folder(denoiser, tmp_path, sample, DistillConfig(**options))
    saved = json.loads(open(lsd["written"]).read())
    plus = distill(denoiser, sample, DistillConfig(plus=True, **options), progress=False,
                   saved=StepCoefficients(**saved["coefficients"]))
    assert plus.report["initial_loss"] <= lsd["loss_learned"] + 1e-12
    # The parameters of saved coefficients give them back.
    params = Parameters(SampleConfig(order="random", steps=3), Sampler.for_model(denoiser, sample), True, 12)
    theta = params.initial + torch.linspace(-0.3, 0.3, len(params.initial), dtype=torch.float64)
    c = params.coefficients(theta)
    back = params.coefficients(params.theta_of(c, [0, 1 / 3, 2 / 3, 1]))
    for field in ("temperature", "order_weight", "spread_weight", "alphas"):
        assert getattr(back, field) == pytest.approx(getattr(c, field), rel=1e-6, abs=1e-9)


def test_a_guided_sampler_learns_a_guidance_scale_per_step(denoiser):
    from ddm.distill import Parameters

    guided = SampleConfig(order="random", steps=4, guidance_scale=1.5)
    params = Parameters(guided, Sampler.for_model(denoiser, guided), True, 12, guidance=True)
    assert len(params.initial) == 15 and params.coefficients(params.initial).guidance == pytest.approx([1.5] * 4)
    c = params.coefficients(params.initial + torch.linspace(-0.3, 0.3, 15, dtype=torch.float64))
    assert len(set(c.guidance)) == 4 and min(c.guidance) > 0  # a scale per step, each its own
    back = params.coefficients(params.theta_of(c, [0, 0.25, 0.5, 0.75, 1]))
    assert back.guidance == pytest.approx(c.guidance, rel=1e-6)
    # Unguided, or told to keep the constant scale: no guidance family.
    for cfg, learn in ((SampleConfig(order="random", steps=4), True), (guided, False)):
        params = Parameters(cfg, Sampler.for_model(denoiser, cfg), True, 12, guidance=learn)
        assert len(params.initial) == 12 and params.coefficients(params.initial).guidance is None


def test_learn_mixing_adds_a_mixing_weight_per_step_that_is_saved_and_used(denoiser, tmp_path):
    from ddm.distill import Parameters
    from ddm.sampling.learned import load_learned, sampler_key

    guided = SampleConfig(order="random", steps=4, guidance_scale=1.5, mixing=0.25)
    params = Parameters(guided, Sampler.for_model(denoiser, guided), True, 12, guidance=True, mixing=True)
    assert len(params.initial) == 18
    start = params.coefficients(params.initial)
    assert start.mixing == pytest.approx([0.25] * 4) and start.guidance == pytest.approx([1.5] * 4)
    c = params.coefficients(params.initial + torch.linspace(-0.3, 0.3, 18, dtype=torch.float64))
    assert len(set(c.mixing)) == 4 and min(c.mixing) >= Parameters.MIXING[0]
    back = params.coefficients(params.theta_of(c, [0, 0.25, 0.5, 0.75, 1]))
    assert back.mixing == pytest.approx(c.mixing, rel=1e-6) and back.guidance == pytest.approx(c.guidance, rel=1e-6)
    # Saved with the model and read back into the loop's per-step weights.
    denoiser.pretrained_dir = tmp_path
    sample = SampleConfig(order="random", steps=4)
    save_learned(tmp_path, sample, denoiser, StepCoefficients([1.0] * 4, [0.0] * 4, mixing=[0.0, 0.5, 0.5, 1.0]), {})
    loaded = Sampler.for_model(denoiser, replace(sample, learned=True))
    assert loaded.step_mixing == (0.0, 0.5, 0.5, 1.0)
    assert load_learned(denoiser, replace(sample, learned=True)).mixing == [0.0, 0.5, 0.5, 1.0]
    # Files distilled before the mixing weight existed keep their key; a sampler with one is another sampler.
    assert sampler_key(sample) == sampler_key(replace(sample, mixing=0.0)) != sampler_key(replace(sample, mixing=0.5))
    with pytest.raises(ValueError, match="mixing weights for 4 steps"):
        StepCoefficients([1.0] * 4, [0.0] * 4, mixing=[0.5] * 3)
    with pytest.raises(ValueError, match="sampler.mixing"):
        Sampler(mixing=-1.5)


@pytest.mark.parametrize("change, message", [
    ({"block_size": 4}, "per step of one block; sample.block_size must be 0"),
    ({"count": "ancestral"}, "learned samplers need count=schedule"),
    ({"guidance_scale": 1.0, "guidance_schedule": "linear"}, "distilled at a constant guidance scale"),
])
def test_sampler_parts_the_coefficients_cannot_express_are_refused(denoiser, change, message):
    sample = SampleConfig(**{"order": "random", **change})
    with pytest.raises(ValueError, match=message):
        distill(denoiser, sample, DistillConfig(steps=3, iterations=1, batch_size=4), progress=False)


def _train(run_dir, *extra):
    assert main(["train", "--config", SYNTH, f"run_dir={run_dir}", *TINY, *extra]) == 0


def test_distill_saves_a_file_that_sample_learned_uses_and_checks(tmp_path, capsys):
    _train(tmp_path / "a")
    model = tmp_path / "a" / "model"
    assert main(["distill", "--model", str(model), "--steps", "3", "--plus", *FAST]) == 0
    files = list((model / "samplers").glob("steps3-*.json"))
    assert len(files) == 1
    saved = json.loads(files[0].read_text())
    assert saved["steps"] == 3 and saved["report"]["method"] == "lsd+" and len(saved["coefficients"]["alphas"]) == 4
    capsys.readouterr()
    assert main(["sample", "--model", str(model), "sample.steps=3", "sample.learned=true",
                 f"--out={tmp_path / 's.pt'}"]) == 0
    assert "nfe: 3" in capsys.readouterr().out

    # Another budget, other sampler parts, another model: each refused by name.
    assert main(["sample", "--model", str(model), "sample.steps=4", "sample.learned=true"]) == 2
    assert "no sampler distilled for 4 steps" in capsys.readouterr().err
    assert main(["sample", "--model", str(model), "sample.steps=3", "sample.learned=true",
                 "sample.temperature=0.5"]) == 2
    assert "no sampler distilled for 3 steps with these sampler parts" in capsys.readouterr().err
    renamed = files[0].with_name("steps3-" + "0" * 12 + ".json")
    other = json.loads(files[0].read_text())
    other["parts"]["temperature"] = 0.5
    renamed.write_text(json.dumps(other))
    from ddm.sampling.learned import sampler_key
    key = sampler_key(SampleConfig(**{**other["parts"], "temperature": 1.0}))
    assert files[0].name == f"steps3-{key}.json"
    files[0].write_text(json.dumps(other))  # a file whose parts do not match its key
    assert main(["sample", "--model", str(model), "sample.steps=3", "sample.learned=true"]) == 2
    assert "made for another sampler configuration (differs in: temperature)" in capsys.readouterr().err

    _train(tmp_path / "b", "train.seed=1")
    shutil.copytree(model / "samplers", tmp_path / "b" / "model" / "samplers")
    files[0].write_text(json.dumps(saved))
    shutil.copy(files[0], tmp_path / "b" / "model" / "samplers" / files[0].name)
    assert main(["sample", "--model", str(tmp_path / "b" / "model"), "sample.steps=3", "sample.learned=true"]) == 2
    assert "made for another model" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--steps", "12"], "steps: 12 is not fewer than the teacher's 12 steps"),
    (["--steps", "4", "--teacher-steps", "4"], "steps: 4 is not fewer than the teacher's 4 steps"),
    (["--steps", "0"], "steps: 0; a sampler needs at least 1 step"),
    (["--steps", "4", "--forward-weight", "-1"], "forward_weight: -1.0; expected >= 0"),
])
def test_bad_budgets_are_refused(tmp_path, capsys, args, message):
    _train(tmp_path)
    assert main(["distill", "--model", str(tmp_path / "model"), *args, *FAST]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "model" / "samplers").exists()


def test_a_folder_without_a_model_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["distill", "--model", str(tmp_path / "empty"), "--steps", "2"]) == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err


def test_the_benchmarks_selection_gives_no_more_than_one_gap_unit_of_credit_per_metric():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from distill import remaining_gap

    plain, teacher = {"error": 1.0, "frechet": 87.0}, {"error": 0.8, "frechet": 63.0}
    metrics = ["error", "frechet"]
    assert remaining_gap(plain, plain, teacher, metrics) == pytest.approx(2.0)
    assert remaining_gap(teacher, plain, teacher, metrics) == pytest.approx(0.0)
    # a noise-level lead in error (3 gap units past the teacher) must not buy a Fréchet 4.5 units behind
    lopsided = {"error": 0.2, "frechet": 171.0}
    assert remaining_gap(lopsided, plain, teacher, metrics) == pytest.approx(-1.0 + 4.5)
    assert remaining_gap(lopsided, plain, teacher, metrics) > remaining_gap(plain, plain, teacher, metrics)


def test_the_frontier_keeps_exactly_the_points_no_other_beats_on_both_metrics():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from distill_frontier import pareto

    points = [{"a": 0.0, "b": 108.0}, {"a": 0.3, "b": 74.0}, {"a": 0.2, "b": 90.0}, {"a": 0.5, "b": 80.0},
              {"a": 1.2, "b": 64.0}, {"a": 1.2, "b": 70.0}, {"a": 2.0, "b": 64.0}]
    front = pareto(points, ["a", "b"])
    assert [(p["a"], p["b"]) for p in front] == [(0.0, 108.0), (0.2, 90.0), (0.3, 74.0), (1.2, 64.0)]
