"""The joint continuous + discrete process (`ddm.continuous`): its sampler step against an exact
denoiser, a trained joint model that recovers each token's conditional distribution of vectors
(through the tokens task, from a Parquet file), and bad input refused by name."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddm.cli import main
from ddm.config import DiffusionConfig, ModelConfig
from ddm.continuous import corrupt_values, is_joint, vector_times
from ddm.hub import load_pretrained
from ddm.model import MaskedDiffusionTransformer
from ddm.objectives import DiffusionObjective
from ddm.process import MaskingProcess
from ddm.sampling import Sampler
from ddm.schedules import get_schedule

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from joint_toy import MEANS, config, exact_spread, toy_rows, write_data  # noqa: E402  (the toy lives there)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_the_sampler_step_converges_with_an_exact_denoiser(noise):
    """Deterministic (DDIM / the ODE) and posterior (eta = 1) steps: the mean is right at any budget,
    the spread closes in as the steps grow and comes within 7% at 64 (first-order steps fall short at
    few steps; `benchmarks/joint_toy.py` prints how far)."""
    measured = [exact_spread(steps, noise) for steps in (8, 16, 64)]
    assert all(abs(mean - 1.5) < 0.01 for mean, _ in measured), measured
    spreads = [ratio for _, ratio in measured]
    assert spreads[0] < spreads[1] < spreads[2] and abs(spreads[2] - 1) < 0.07, spreads


def toy_config(tmp_path, data) -> str:
    """`benchmarks/joint_toy.py`'s independent-clock model, trained for 1000 steps."""
    return str(config(tmp_path, data, 1000, "independent", samples=1000, progress=False))


def test_a_joint_model_recovers_each_tokens_distribution_of_vectors(tmp_path, capsys):
    """Trained from a Parquet file with a vector per token, sampled in 8 calls: the sampled vectors of
    each id have that id's mean (within 0.3 per id and 0.15 on average; the means are 1.5 apart) and
    spread (within 30% on average)."""
    write_data(tmp_path / "toy.parquet", 2000, seed=0)
    config = toy_config(tmp_path, tmp_path / "toy.parquet")
    assert main(["run", "--config", config]) == 0
    metrics = json.loads((tmp_path / "independent" / "metrics.json").read_text())
    assert metrics["nfe"] == 8 and metrics["values_ids_compared"] == 4
    assert metrics["values_mean_gap"] < 0.15, metrics
    assert abs(metrics["values_spread_ratio"] - 1) < 0.3, metrics

    # `ddm sample` writes the vectors back in the data's own column, one per token.
    from datasets import Dataset

    assert main(["sample", "--model", str(tmp_path / "independent" / "model"), "--out", str(tmp_path / "s.parquet")]) == 0
    written = Dataset.from_parquet(str(tmp_path / "s.parquet"))
    assert len(written) == 1000 and np.asarray(written[0]["vec"]).shape == (8, 1)
    ids, vec = np.asarray(written["ids"]), np.asarray(written["vec"])[..., 0]
    for token in range(4):
        assert abs(vec[ids == token].mean() - MEANS[token]) < 0.3, (token, vec[ids == token].mean())

    # The continuous branch of the objective is what trained the head: a joint model needs its vectors.
    model = load_pretrained(tmp_path / "independent" / "model")
    assert is_joint(model)
    with pytest.raises(ValueError, match="values: this model was trained on the joint process"):
        model(torch.zeros(2, 8, dtype=torch.long), t=torch.ones(2))


def test_the_continuous_branch_of_the_objective():
    """Flow matching: the loss is the velocity error at x_t = a x0 + (1 - a) eps, on real tokens only;
    an exact velocity gives zero continuous loss, padding is never a target."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4, shape=[6], d_model=32, depth=1, heads=2, continuous_dim=2)
    diffusion = DiffusionConfig(schedule="linear", continuous_schedule="cosine")
    model = MaskedDiffusionTransformer(cfg, diffusion)
    objective = DiffusionObjective(MaskingProcess.from_config(diffusion, cfg.mask_id), diffusion)
    ids = torch.randint(0, 4, (5, 6), generator=torch.Generator().manual_seed(1))
    values = torch.randn(5, 6, 2, generator=torch.Generator().manual_seed(2))
    loss, metrics = objective(model, {"ids": ids, "values": values}, torch.Generator().manual_seed(3))
    assert metrics["continuous_loss"] > 0
    loss.backward()
    assert model.heads.continuous.weight.grad.abs().sum() > 0 and model.target_embedding.values.weight.grad.abs().sum() > 0

    # The target the objective regresses on is x0 - eps for the x_t it feeds the model (same generator draws).
    xt, velocity = corrupt_values(get_schedule("cosine"), values, torch.full((5,), 0.5), torch.Generator().manual_seed(4))
    a = get_schedule("cosine").alpha(torch.tensor(0.5))
    torch.testing.assert_close(xt + (1 - a) * velocity, values)

    # Padding: a pad position's vector (here garbage) is no target and reaches no other position.
    padding = torch.zeros(5, 6, dtype=torch.bool)
    padding[:, 4:] = True
    garbage = values.clone()
    garbage[:, 4:] = 1e3
    a_loss = objective(model, {"ids": ids, "values": values, "padding": padding}, torch.Generator().manual_seed(3))[1]
    b_loss = objective(model, {"ids": ids, "values": garbage, "padding": padding}, torch.Generator().manual_seed(3))[1]
    assert a_loss["continuous_loss"] == pytest.approx(b_loss["continuous_loss"], rel=1e-5)


def test_a_regression_head_trained_where_the_true_token_is_shown():
    """continuous_where=visible: positions that are masked (or shown a swapped token) are no target,
    so garbage there changes nothing; with `all` it does."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4, shape=[8], d_model=32, depth=1, heads=2, continuous_dim=1)
    ids = torch.randint(0, 4, (6, 8), generator=torch.Generator().manual_seed(1))
    values = torch.randn(6, 8, 1, generator=torch.Generator().manual_seed(2))
    losses = {}
    for where in ("visible", "all"):
        diffusion = DiffusionConfig(continuous_loss="regression", continuous_where=where, visible_noise=0.3)
        model = MaskedDiffusionTransformer(cfg, diffusion)
        objective = DiffusionObjective(MaskingProcess.from_config(diffusion, cfg.mask_id), diffusion)
        seen = []  # the noisy ids the model is given
        hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        objective(model, {"ids": ids, "values": values}, torch.Generator().manual_seed(3))
        hook.remove()
        shown = seen[0] == ids  # visible and not swapped
        assert shown.any() and (~shown).any()
        garbage = torch.where(shown[..., None], values, 1e3)
        a = objective(model, {"ids": ids, "values": values}, torch.Generator().manual_seed(3))[1]
        b = objective(model, {"ids": ids, "values": garbage}, torch.Generator().manual_seed(3))[1]
        losses[where] = (a["continuous_loss"], b["continuous_loss"])
    assert losses["visible"][0] == pytest.approx(losses["visible"][1], rel=1e-6)
    assert losses["all"][1] > 100 * losses["all"][0]


# ---------------------------------------------------------------- bad input

def joint_model():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=4, shape=[6], d_model=32, depth=1, heads=2, continuous_dim=2)
    return MaskedDiffusionTransformer(cfg, DiffusionConfig())


def test_values_of_the_wrong_width_are_refused():
    model = joint_model()
    objective = DiffusionObjective(MaskingProcess.from_config(model.diffusion, 4), model.diffusion)
    ids = torch.zeros(3, 6, dtype=torch.long)
    with pytest.raises(ValueError, match=r"values: expected shape \(3, 6, 2\) .*model.continuous_dim=2.*got \(3, 6, 3\)"):
        objective(model, {"ids": ids, "values": torch.zeros(3, 6, 3)}, torch.Generator())
    with pytest.raises(ValueError, match=r"values: expected shape \(3, 6, 2\), got \(3, 6, 1\)"):
        model(ids, values=torch.zeros(3, 6, 1))


def test_nan_values_are_refused_naming_the_row(tmp_path):
    model = joint_model()
    objective = DiffusionObjective(MaskingProcess.from_config(model.diffusion, 4), model.diffusion)
    values = torch.zeros(3, 6, 2)
    values[2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="values: row 2 of the batch holds NaN or infinite values"):
        objective(model, {"ids": torch.zeros(3, 6, dtype=torch.long), "values": values}, torch.Generator())

    # In a data file: the row and the token are named before anything trains.
    ids, vectors = toy_rows(5, seed=0)
    rows = [v.tolist() for v in vectors]
    rows[3][6][0] = float("inf")
    write_data(tmp_path / "bad.parquet", 5, seed=0, vectors=rows)
    config = toy_config(tmp_path, tmp_path / "bad.parquet")
    with pytest.raises(Exception, match="column 'vec', row 3, token 6: inf is not a finite number"):
        _train(config)


def _train(config):
    from ddm.experiment import load_experiment
    from ddm.task import build_task

    build_task(load_experiment(config)).train()


def test_vectors_of_the_wrong_width_in_a_data_file_are_refused(tmp_path):
    ids, vectors = toy_rows(5, seed=0)
    rows = [np.concatenate([v, v], -1).tolist() for v in vectors]  # 2 numbers per token, the model takes 1
    write_data(tmp_path / "wide.parquet", 5, seed=0, vectors=rows)
    with pytest.raises(Exception, match=r"column 'vec', row 0: vectors of shape \(8, 2\), expected \(8, 1\)"):
        _train(toy_config(tmp_path, tmp_path / "wide.parquet"))


def test_a_joint_model_sampled_without_its_vectors_is_refused():
    model = joint_model()
    with pytest.raises(ValueError, match=r"values: this model was trained on the joint process .* \[2, 6, 2\]"):
        model(torch.zeros(2, 6, dtype=torch.long))
    # the sampling loop carries the vectors itself
    result = Sampler(steps=3)(model.eval(), 2)
    assert result.continuous.shape == (2, 6, 2) and torch.isfinite(result.continuous).all()


def test_a_discrete_only_checkpoint_loaded_as_joint_is_refused(tmp_path):
    torch.manual_seed(0)
    discrete = MaskedDiffusionTransformer(ModelConfig(vocab_size=4, shape=[6], d_model=32, depth=1, heads=2))
    discrete.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="a discrete-only model .*continuous_dim=0.* cannot be loaded as a joint one"):
        load_pretrained(tmp_path / "m", expected_config=joint_model().config)


def test_the_vectors_clocks():
    """coupled: the tokens' time; independent: a fresh uniform time; trailing: uniform between the
    tokens' time and 1, so the vectors are never cleaner than the ids (the sampler's path)."""
    t = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    draw = lambda: torch.rand(20000, generator=torch.Generator().manual_seed(1))  # noqa: E731
    assert torch.equal(vector_times("coupled", t, draw), t)
    assert torch.equal(vector_times("independent", t, draw), draw())
    trailing = vector_times("trailing", t, draw)
    assert (trailing >= t).all() and (trailing <= 1).all()
    assert float(((trailing - t) / (1 - t)).mean()) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("clock", ["independent", "trailing"])
def test_own_clocks_need_time_conditioning(clock):
    from ddm.config import ConfigError
    from ddm.experiment import load_experiment

    with pytest.raises(ConfigError, match=f"continuous_time: {clock} times need model.time_conditioning"):
        load_experiment("configs/tasks/image_mnist_joint_cpu.yaml",
                        [f"diffusion.continuous_time={clock}", "model.time_conditioning=false"])
