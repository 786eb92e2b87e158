"""The joint continuous + discrete process on a toy with a known answer.

    python benchmarks/joint_toy.py                     # train two models (about 2 minutes alone), the table
    python benchmarks/joint_toy.py --steps 2 4 8 16    # the step budgets of the table

Each row of the data holds 8 ids, uniform and independent over 4 values, and one 1-D vector per
id drawn from that id's Gaussian (means -2, -0.5, 1, 2.5; spreads 0.15, 0.4, 0.25, 0.6). Two
joint models are trained on it through the `tokens` task (a Parquet file with a `vec` column),
one per clock (`diffusion.continuous_time`: coupled, independent), then sampled at each step
budget with the deterministic step (eta 0, the ODE) and the posterior step (eta 1). For every
id the table prints the sampled vectors' mean and spread against the truth; an exact sampler
would match them. First, the sampler's step alone, driven by an exact denoiser (one Gaussian):
how close its spread comes at each budget. The figures are also written to
runs/joint_toy/joint_toy.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.config import DiffusionConfig, ModelConfig  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402
from ddm.model import DenoiserOutput  # noqa: E402
from ddm.model.protocol import attach_sections  # noqa: E402
from ddm.sampling import Sampler  # noqa: E402
from ddm.schedules import get_schedule  # noqa: E402
from ddm.task import build_task  # noqa: E402

MEANS = np.array([-2.0, -0.5, 1.0, 2.5])
SPREADS = np.array([0.15, 0.4, 0.25, 0.6])


def toy_rows(rows: int, seed: int, length: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(ids [rows, length] uniform over 4 values, vectors [rows, length, 1] from each id's Gaussian)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 4, (rows, length))
    return ids, rng.normal(MEANS[ids], SPREADS[ids])[..., None]


def write_data(path: Path, rows: int, seed: int, vectors: list | None = None) -> None:
    """The toy as Parquet (`ids`, `vec` columns); `vectors` replaces the vector column (bad data in tests)."""
    from datasets import Dataset

    ids, drawn = toy_rows(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict({"ids": ids.tolist(), "vec": drawn.tolist() if vectors is None else vectors}).to_parquet(str(path))


def config(run_dir: Path, data: Path, train_steps: int, clock: str, samples: int = 4000,
           progress: bool = True) -> Path:
    """The experiment YAML of one clock's model (run_dir/<clock>)."""
    path = run_dir / f"{clock}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"task: {{name: tokens, path: {data}, values_column: vec}}\n"
                    "model: {vocab_size: 4, shape: [8], d_model: 64, depth: 2, heads: 2, continuous_dim: 1,\n"
                    f"        learned_positions: true, time_conditioning: {str(clock != 'coupled').lower()}}}\n"
                    f"diffusion: {{schedule: linear, continuous_time: {clock}}}\n"
                    f"train: {{steps: {train_steps}, batch_size: 64, lr: 3.0e-3, warmup_steps: 50, log_every: 500,\n"
                    f"        checkpoint_every: 0, progress: {str(progress).lower()}}}\n"
                    f"sample: {{steps: 8, num_samples: {samples}, batch_size: 1000}}\n"
                    f"run_dir: {run_dir / clock}\n")
    return path


class GaussianOracle(torch.nn.Module):
    """An exact joint denoiser for one Gaussian, x0 ~ N(mean, spread^2), on the linear schedule: uniform
    logits, and the exact flow velocity v = (E[x0 | x_t] - x_t) / (1 - a), E[x0 | x_t] affine in x_t."""

    supports_prefix_cache = False

    def __init__(self, mean: float, spread: float, length: int = 16):
        super().__init__()
        self.config = ModelConfig(vocab_size=4, shape=[length], continuous_dim=1)
        attach_sections(self, DiffusionConfig(schedule="linear"))
        self.mean, self.var = mean, spread ** 2
        self.schedule = get_schedule("linear")

    def encode_prefix(self, cond):
        return None

    def forward(self, ids, t=None, cond=None, prefix=None, values=None):
        a = self.schedule.alpha(t.double())[:, None, None].float()
        x0 = self.mean + a * self.var / (a ** 2 * self.var + (1 - a) ** 2) * (values - a * self.mean)
        return DenoiserOutput(torch.zeros(*ids.shape, 4), (x0 - values) / (1 - a).clamp_min(1e-6))


def exact_spread(steps: int, eta: float, mean: float = 1.5, spread: float = 0.3, values: int = 128000) -> tuple:
    """(sampled mean, sampled spread / true spread) of the sampler's step driven by the exact denoiser."""
    oracle = GaussianOracle(mean, spread, length=steps)
    x = Sampler(steps=steps, continuous_noise=eta)(oracle, values // steps,
                                                   generator=torch.Generator().manual_seed(0)).continuous[..., 0]
    return float(x.mean()), float(x.std()) / spread


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs/joint_toy"))
    p.add_argument("--train-steps", type=int, default=1500)
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--clocks", nargs="+", default=["coupled", "independent", "trailing"])
    p.add_argument("--retrain", action="store_true", help="train again even if run_dir holds a model")
    args = p.parse_args()

    results = {}
    print("the step with an exact denoiser (one Gaussian, mean 1.5, spread 0.3): sampled mean, spread / true")
    for steps in (4, 8, 16, 64):
        for eta in (0.0, 1.0):
            mean, ratio = exact_spread(steps, eta)
            results[f"exact_steps{steps}_eta{eta:g}"] = {"mean": mean, "spread_ratio": ratio}
            print(f"  {steps:>3} calls, eta {eta:g}: mean {mean:.3f}, spread {ratio:.2f} of the true one", flush=True)

    data = args.run_dir / "toy.parquet"
    write_data(data, args.rows, seed=0)
    print(f"{'clock':>11} {'steps':>5} {'eta':>3} {'NFE':>3} " +
          " ".join(f"{'id ' + str(i) + ': mean / spread':>19}" for i in range(4)))
    print(f"{'truth':>25} " + " ".join(f"{m:>9.2f} / {s:<7.2f}" for m, s in zip(MEANS, SPREADS)))
    for clock in args.clocks:
        task = build_task(load_experiment(config(args.run_dir, data, args.train_steps, clock)))
        if args.retrain or not (task.run_dir / "model" / "config.json").exists():
            task.train()
        model = task.load_model()
        for steps in args.steps:
            for eta in (0.0, 1.0):
                result, _, _ = task.generate(model, steps=steps, continuous_noise=eta)
                ids, vec = result.ids.numpy(), result.continuous[..., 0].numpy()
                per_id = [(float(vec[ids == i].mean()), float(vec[ids == i].std())) for i in range(4)]
                results[f"{clock}_steps{steps}_eta{eta:g}"] = {"nfe": result.nfe, "per_id": per_id,
                                                               **task.describe_samples(result, None)}
                print(f"{clock:>11} {steps:>5} {eta:>3g} {result.nfe:>3} " +
                      " ".join(f"{m:>9.2f} / {s:<7.2f}" for m, s in per_id), flush=True)
    out = args.run_dir / "joint_toy.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
