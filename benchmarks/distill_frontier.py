"""How far the learned sampler's coefficients can go at all: a random search over the whole
LSD+ family at K steps, its Pareto front on two metrics, against issue 14's bar.

    python benchmarks/distill_frontier.py --config configs/tasks/synthetic_cpu.yaml --steps 4

A point is a `StepCoefficients`: per step a temperature (log-uniform in [0.5, 1.25]), an order
weight on the entropy score (0 for half the points, else uniform in [-3, 3]), a spread weight
(the exact spread order for half the points, else uniform up to it, either sign), and the
revealed fraction after each step (linear for a third of the points, else sorted uniforms).
The search starts from the plain spread order and the grid's spread points (temperature 0.85
and 0.7 at every step), then makes small moves (`nearby`) from points of the front so far.
`--mixing` adds a mixing weight per step (`sample.mixing`, none for a third of the points, one
uniform in [-0.5, 1.5] for every step for a third, one per step for the rest) and starts from
temperatures 1 and 0.85 with the grid's mixing weights 0.25 and 0.5.
Every point is measured on the test seed and samples of `benchmarks/distill.py` (the same
batches, so its plain row comes out here digit for digit), and the front is chosen on those
very samples: an optimistic front. The bar is half the gap between the best plain sampler (the
spread order) and the teacher on each metric. Where no point of the front meets it on both,
no choice of these coefficients does, whatever the loss that picks them (up to the search's
reach). The picture (every point, the front, plain, teacher and the bar) goes to --out.

    python benchmarks/distill_frontier.py --config configs/tasks/image_mnist_cpu.yaml --steps 4 \
        --plain config --guidance --metrics judge_error frechet --validate-seed 778

`--plain config` takes the config's own sampler as the plain one and starts from it (and from
the grid's point, temperature 0.85 with the cosine count) as well as from the spread order;
`--guidance` adds a guidance scale per step to the family (uniform in [0, 2.5] for two thirds
of the points, the sampler's constant scale for the others). Since the front is chosen on the
test samples, `--validate-seed` measures the front again on another seed (with the plain
sampler and the teacher), to show how much of its lead is the test samples' noise.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.distill import Parameters  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402
from ddm.sampling import Sampler, sample_many  # noqa: E402
from ddm.sampling.learned import StepCoefficients  # noqa: E402
from ddm.task import build_task  # noqa: E402


def draw(task, model, sampler: Sampler, n: int, seed: int, cond=None, fixed=None) -> torch.Tensor:
    """The ids of n samples, drawn as ddm.task's generate does: batches of 500, one generator
    seeded with `seed` (so the plain row repeats `benchmarks/distill.py`'s digit for digit)."""
    return sample_many(model, n, min(n, 500), sampler=sampler, cond=cond, fixed=fixed,
                       generator=torch.Generator().manual_seed(seed), processors=task.processors()).ids


def measure(task, model, sampler: Sampler, n: int, seed: int, metrics: list[str], cond=None, fixed=None) -> dict:
    """The metrics of n samples drawn by `draw`."""
    scores = task.sample_metrics(draw(task, model, sampler, n, seed, cond, fixed), cond)
    return {m: scores[m] for m in metrics}


def random_point(rng: random.Random, k: int, exact_spread: float, guidance: bool = False,
                 mixing: bool = False) -> StepCoefficients:
    temperature = [math.exp(rng.uniform(math.log(0.5), math.log(1.25))) for _ in range(k)]
    order = [0.0] * k if rng.random() < 0.5 else [rng.uniform(-3, 3) for _ in range(k)]
    spread = [exact_spread] * k if rng.random() < 0.5 else [rng.uniform(-1, 1) * exact_spread for _ in range(k)]
    alphas = [i / k for i in range(k + 1)]
    if rng.random() > 1 / 3:
        alphas = [0.0] + sorted(rng.uniform(0.02, 0.98) for _ in range(k - 1)) + [1.0]
    scales = [rng.uniform(0.0, 2.5) for _ in range(k)] if guidance and rng.random() > 1 / 3 else None
    weights = None
    if mixing:  # a third without, a third one weight for every step, a third one per step
        kind = rng.random()
        weights = [0.0] * k if kind < 1 / 3 else [rng.uniform(-0.5, 1.5)] * k if kind < 2 / 3 else \
            [rng.uniform(-0.5, 1.5) for _ in range(k)]
    return StepCoefficients(temperature, order, spread, alphas, scales, weights)


def nearby(rng: random.Random, c: StepCoefficients) -> StepCoefficients:
    """A small random move from c: temperatures by about 10%, order weights by 0.3, the revealed
    fractions by 0.03 (kept increasing), guidance scales by 0.2, mixing weights by 0.1, the spread
    weights kept."""
    temperature = [t * math.exp(rng.gauss(0, 0.1)) for t in c.temperature]
    order = [w + rng.gauss(0, 0.3) for w in c.order_weight]
    alphas = c.alphas
    if alphas is not None:
        inner = sorted(min(max(a + rng.gauss(0, 0.03), 0.01), 0.99) for a in alphas[1:-1])
        if all(b - a >= 1e-3 for a, b in zip([0.0] + inner, inner + [1.0])):
            alphas = [0.0] + inner + [1.0]
    scales = None if c.guidance is None else [max(w + rng.gauss(0, 0.2), 0.0) for w in c.guidance]
    spread = None if c.spread_weight is None else list(c.spread_weight)
    mixing = None if c.mixing is None else [max(w + rng.gauss(0, 0.1), Parameters.MIXING[0]) for w in c.mixing]
    return StepCoefficients(temperature, order, spread, alphas, scales, mixing)


def pareto(points: list[dict], metrics: list[str]) -> list[dict]:
    """The points no other point beats on both metrics (lower is better), by the first metric."""
    a, b = metrics
    front, best = [], math.inf
    for p in sorted(points, key=lambda p: (p[a], p[b])):
        if p[b] < best:
            front.append(p)
            best = p[b]
    return front


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--points", type=int, default=150, help="random points of the family")
    p.add_argument("--refine", type=int, default=250, help="then small moves from points of the front")
    p.add_argument("--metrics", nargs=2, default=["impossible_fraction", "pair_tv"], help="two sample_metrics keys")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--test-seed", type=int, default=777)
    p.add_argument("--seed", type=int, default=0, help="the search's own seed")
    p.add_argument("--plain", choices=["spread", "config"], default="spread",
                   help="the plain sampler: the spread order, or the config's own sampler at K steps")
    p.add_argument("--guidance", action="store_true", help="search a guidance scale per step too")
    p.add_argument("--mixing", action="store_true", help="search a mixing weight per step too")
    p.add_argument("--validate-seed", type=int, default=None, help="measure the front again on this seed")
    p.add_argument("--out", default="benchmarks/results/distill_frontier.png")
    args = p.parse_args()
    from tqdm.auto import tqdm

    task = build_task(load_experiment(args.config))
    task.prepare()
    model = task.load_model()
    model.eval()
    k, n = args.steps, args.samples
    cond, fixed = task.sample_conditions(n), task.sample_fixed(n)

    def measured(sampler: Sampler, seed: int = args.test_seed) -> dict:
        return measure(task, model, sampler, n, seed, args.metrics, cond, fixed)

    base = Sampler.for_model(model, task.sample_config(steps=k))
    plain = base if args.plain == "config" else \
        Sampler.for_model(model, task.sample_config(steps=k, order="spread", gumbel_temperature=0.0))
    teacher_steps = min(128, model.config.seq_len)
    teacher_sampler = Sampler.for_model(model, task.sample_config(steps=teacher_steps))
    teacher = measured(teacher_sampler)
    reference = measured(plain)
    bar = {m: (reference[m] + teacher[m]) / 2 for m in args.metrics}
    exact = Parameters.EXACT_SPREAD * model.config.seq_len / k
    rng = random.Random(args.seed)
    linear = [i / k for i in range(k + 1)]
    # Also from the plain spread order and the grid's spread points (one temperature for all steps).
    starts = [StepCoefficients([t] * k, [0.0] * k, [exact] * k, linear) for t in (1.0, 0.85, 0.7)]
    if args.mixing:  # and with the grid's mixing weights
        starts += [StepCoefficients([t] * k, [0.0] * k, [exact] * k, linear, None, [w] * k)
                   for t in (1.0, 0.85) for w in (0.25, 0.5)]
    if args.plain == "config":  # the config's sampler itself, and the grid's point (0.85, cosine count)
        cosine = Sampler.from_config(task.sample_config(steps=k, count_schedule="cosine"),
                                     model.diffusion).step_schedule.alphas(k)
        starts += [StepCoefficients([1.0] * k, [0.0] * k, None, None),
                   StepCoefficients([0.85] * k, [0.0] * k, None, list(cosine))]
    points = []

    def add(c: StepCoefficients) -> None:
        points.append({**measured(base.with_coefficients(c, "random")), "coefficients": c.__dict__})

    for c in tqdm(starts + [random_point(rng, k, exact, args.guidance, args.mixing) for _ in range(args.points)],
                  desc=f"K={k}: random coefficients"):
        add(c)
    for _ in tqdm(range(args.refine), desc=f"K={k}: moves from the front"):
        add(nearby(rng, StepCoefficients(**rng.choice(pareto(points, args.metrics))["coefficients"])))
    front = pareto(points, args.metrics)
    a, b = args.metrics
    print(f"\nK = {k}: {len(points)} points of the LSD+ family ({len(starts)} plain / grid-like starts, "
          f"{args.points} random, {args.refine} moves from the front), {n} samples on test seed {args.test_seed}")
    print(f"{'':>28}{a:>22}{b:>12}")
    print(f"{'plain (' + args.plain + ')':>28}{reference[a]:>22.4f}{reference[b]:>12.4f}")
    print(f"{'teacher':>28}{teacher[a]:>22.4f}{teacher[b]:>12.4f}")
    print(f"{'bar (half of each gap)':>28}{bar[a]:>22.4f}{bar[b]:>12.4f}")
    print("Pareto front (gap closed on each metric):")
    for q in front:
        closed = [100 * (reference[m] - q[m]) / (reference[m] - teacher[m]) for m in args.metrics]
        print(f"{'':>28}{q[a]:>22.4f}{q[b]:>12.4f}   {closed[0]:6.1f}% {closed[1]:6.1f}%")
    meets = [q for q in points if all(q[m] <= bar[m] for m in args.metrics)]
    print(f"points meeting the bar on both metrics: {len(meets)} of {len(points)}")
    validated = None
    if args.validate_seed is not None:
        seed = args.validate_seed
        validated = {"plain": measured(plain, seed), "teacher": measured(teacher_sampler, seed)}
        validated["front"] = [measured(base.with_coefficients(StepCoefficients(**q["coefficients"]), "random"), seed)
                              for q in tqdm(front, desc=f"the front again on seed {seed}")]
        vp, vt = validated["plain"], validated["teacher"]
        print(f"\nThe same on seed {seed}:")
        print(f"{'plain (' + args.plain + ')':>28}{vp[a]:>22.4f}{vp[b]:>12.4f}")
        print(f"{'teacher':>28}{vt[a]:>22.4f}{vt[b]:>12.4f}")
        for q in validated["front"]:
            closed = [100 * (vp[m] - q[m]) / (vp[m] - vt[m]) for m in args.metrics]
            print(f"{'':>28}{q[a]:>22.4f}{q[b]:>12.4f}   {closed[0]:6.1f}% {closed[1]:6.1f}%")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"plain": reference, "teacher": teacher, "bar": bar,
                                                    "points": points, "front": front, "validated": validated}))
    picture(points, front, reference, teacher, bar, args.metrics, out, f"{Path(args.config).stem}, K = {k}",
            f"plain ({args.plain})")
    print(f"wrote {out} and {out.with_suffix('.json')}")


def picture(points, front, reference, teacher, bar, metrics, out: Path, title: str, plain_label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = metrics
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([q[a] for q in points], [q[b] for q in points], s=8, alpha=0.4, label="coefficients searched")
    ax.plot([q[a] for q in front], [q[b] for q in front], "k-", lw=1, label="their Pareto front")
    ax.plot(reference[a], reference[b], "o", ms=9, label=plain_label)
    ax.plot(teacher[a], teacher[b], "*", ms=13, label="teacher")
    ax.fill_between([0, bar[a]], 0, bar[b], color="green", alpha=0.15, label="issue 14's bar")
    ax.set_xlim(min(q[a] for q in points + [teacher]) * 0.95, max(q[a] for q in points) * 1.02)
    ax.set_ylim(min(q[b] for q in points + [teacher]) * 0.9, max(q[b] for q in points) * 1.05)
    ax.set_xlabel(a + " (lower is better)")
    ax.set_ylabel(b + " (lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
