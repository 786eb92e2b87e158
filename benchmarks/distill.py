"""Learned samplers (LSD, LSD+) against the plain sampler, a grid search and the teacher.

    python benchmarks/distill.py --config configs/tasks/synthetic_cpu.yaml --steps 4 8
    python benchmarks/distill.py --config configs/tasks/image_mnist_cpu.yaml --steps 4 --teacher-steps 32 \
        --metrics judge_error frechet --out benchmarks/results/distill_image.png
    python benchmarks/distill.py --config configs/tasks/synthetic_cpu.yaml --steps 8 --forward-weight 0 0.3 0.6 1
    python benchmarks/distill.py --config configs/tasks/image_mnist_cpu.yaml --steps 4 --metrics judge_error frechet \
        sample.guidance_scale=1.5 sample.gumbel_temperature=4      # any config override: another sampler

For each step budget K, on the task's trained model (run_dir/model) and its `sample_metrics`:
* config: the config's sampler at K steps;
* plain: the best of the plain orders at K steps (the config's sampler; random; confidence;
  spread), each with its defaults, chosen on held-out seeds;
* grid: the best of temperature x order (random; confidence with Gumbel 2 or 4; spread with
  Gumbel 0 or 1) x count schedule (linear, cosine) (x guidance scale: half, once and 1.5 times the
  config's, for a guided sampler) (x the mixing weights of --mixing, if given) at K steps, chosen
  on held-out seeds (its own samples) by the summed remaining gap of the metrics (see `remaining_gap`);
* LSD / LSD+: `ddm distill` at K (the loss never sees the task's metrics), then measured; LSD
  starts afresh (the budget's saved sampler is removed first), LSD+ also from LSD's result.
  With --mixing, LSD and LSD+ learn a mixing weight per step too (`ddm distill --mixing`).
  With several --forward-weight values, each weight is distilled and the one with the least
  remaining gap on the held-out seeds is reported (per method), as the grid's point is; the
  model folder keeps the chosen LSD+ sampler;
* teacher: the config's sampler at --teacher-steps (default min(128, tokens)).
Every row of one budget is measured on the same test seed and number of samples; the gaps
closed are against the best plain sampler. The picture (each metric against NFE) is written
to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.experiment import load_experiment  # noqa: E402
from ddm.io import atomic_write_text  # noqa: E402
from ddm.sampling.learned import learned_file  # noqa: E402
from ddm.task import build_task  # noqa: E402

GRID = {"temperature": [0.7, 0.85, 1.0],
        "order": [("random", 0.0), ("confidence", 2.0), ("confidence", 4.0), ("spread", 0.0), ("spread", 1.0)],
        "count_schedule": ["linear", "cosine"]}
PLAIN = [{}, {"order": "random", "gumbel_temperature": 0.0}, {"order": "confidence"},
         {"order": "spread", "gumbel_temperature": 0.0}]
ROWS = ("config", "plain", "grid", "LSD", "LSD+")


def measure(task, model, seed: int, samples: int, **sampler) -> dict[str, float]:
    result, cond, _ = task.generate(model, seed=seed, num_samples=samples, batch_size=min(samples, 500), **sampler)
    return {"nfe": float(result.nfe), **task.sample_metrics(result.ids, cond)}


def remaining_gap(m: dict, plain: dict, teacher: dict, metrics: list[str]) -> float:
    """Sum over the metrics of (m - teacher) / |plain - teacher|, lower is better: 0 is the teacher,
    1 the plain sampler where it trails the teacher. Where the plain sampler beats the teacher
    lower is still better, not closer to the teacher, but a metric credits at most one gap unit
    beyond the teacher: where plain and teacher differ by noise (judge error on the 3600-step image
    model: 0.2 points), a noise-level lead would otherwise outweigh a real deficit on another metric."""
    return sum(max(-1.0, (m[k] - teacher[k]) / (abs(plain[k] - teacher[k]) or 1e-12)) for k in metrics)


def best_on_validation(task, model, args, k, name, points, val_plain, val_teacher) -> dict:
    """The point of `points` with the least remaining gap on held-out seeds, measured on the test seeds."""
    from tqdm.auto import tqdm

    scored = []
    for point in tqdm(points, desc=f"K={k}: {name} points on held-out seeds"):
        m = measure(task, model, args.test_seed + 1, args.grid_samples, steps=k, **point)
        scored.append((remaining_gap(m, val_plain, val_teacher, args.metrics), point))
    best = min(scored, key=lambda s: s[0])[1]
    return {**measure(task, model, args.test_seed, args.samples, steps=k, **best), "point": best}


def distill_rows(task, model, args, k, teacher_steps, val_plain, val_teacher) -> dict[str, dict]:
    """LSD and LSD+ at K for each forward weight, measured on the held-out and the test seeds; per
    method, the weight with the least remaining gap on the held-out seeds. The folder ends with the
    chosen LSD+ sampler."""
    path = learned_file(task.model_dir(), task.sample_config(steps=k))
    runs: dict[str, list[tuple[float, dict, str]]] = {"LSD": [], "LSD+": []}
    for weight in args.forward_weight:
        # LSD starts afresh; LSD+ then starts from LSD's file too (`ddm distill` starts from the saved one).
        path.unlink(missing_ok=True)
        for name, plus in (("LSD", False), ("LSD+", True)):
            start = time.perf_counter()
            report = task.distill(k, plus=plus, teacher_steps=teacher_steps, max_seconds=args.distill_seconds,
                                  teacher_order=args.teacher_order, forward_weight=weight,
                                  learn_mixing=bool(args.mixing))
            seconds = time.perf_counter() - start
            val = measure(task, model, args.test_seed + 1, args.grid_samples, steps=k, learned=True)
            m = measure(task, model, args.test_seed, args.samples, steps=k, learned=True)
            m.update(distill_seconds=seconds, loss=report["loss_learned"], loss_plain=report["loss_plain"],
                     forward_weight=weight)
            gap = remaining_gap(val, val_plain, val_teacher, args.metrics)
            print(f"K={k} {name} forward weight {weight}: held-out " +
                  ", ".join(f"{x} {val[x]:.4f}" for x in args.metrics) + f", remaining gap {gap:.3f}", flush=True)
            runs[name].append((gap, m, path.read_text()))
    chosen = {name: min(found, key=lambda r: r[0]) for name, found in runs.items()}
    atomic_write_text(path, chosen["LSD+"][2])
    return {name: m for name, (_, m, _) in chosen.items()}


def grid_points(guidance: float, mixing: list[float] | None = None):
    """The grid; for a guided sampler (`guidance` > 0), also at half and 1.5 times its scale, since
    the learned samplers choose a scale per step; with `mixing`, at each of those mixing weights."""
    scales = [guidance / 2, guidance, 1.5 * guidance] if guidance > 0 else [guidance]
    for t, (order, gumbel), schedule, w, m in itertools.product(*GRID.values(), scales, mixing or [None]):
        yield {"temperature": t, "order": order, "gumbel_temperature": gumbel, "count_schedule": schedule,
               "guidance_scale": w, **({} if m is None else {"mixing": m})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8])
    p.add_argument("--metrics", nargs="+", default=["impossible_fraction", "pair_tv"],
                   help="sample_metrics keys, lower is better")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--grid-samples", type=int, default=500)
    p.add_argument("--distill-seconds", type=float, default=480.0)
    p.add_argument("--test-seed", type=int, default=777)
    p.add_argument("--teacher-steps", type=int, default=128, help="clamped to one token per step")
    p.add_argument("--teacher-order", default="auto", choices=["auto", "random", "student"],
                   help="the distillation loss's teacher order (ddm distill --teacher-order)")
    p.add_argument("--forward-weight", type=float, nargs="+", default=[0.0],
                   help="the distillation loss's forward term weight (ddm distill --forward-weight); several: "
                        "the one chosen on held-out seeds")
    p.add_argument("--mixing", type=float, nargs="+", default=None,
                   help="mixing weights for the grid (e.g. 0 0.25 0.5); LSD and LSD+ then learn one per step too")
    p.add_argument("--out", default="benchmarks/results/distill.png")
    p.add_argument("overrides", nargs="*", help="config overrides (key=value), e.g. the sampler's")
    args = p.parse_args()

    task = build_task(load_experiment(args.config, args.overrides))
    task.prepare()
    model = task.load_model()
    tokens = model.config.seq_len
    teacher_steps = min(args.teacher_steps, tokens)
    print(f"teacher: {args.samples} samples at {teacher_steps} steps", flush=True)
    teacher = measure(task, model, args.test_seed, args.samples, steps=teacher_steps)
    rows: dict[str, list[tuple[int, dict]]] = {name: [] for name in ROWS}
    for k in args.steps:
        rows["config"].append((k, measure(task, model, args.test_seed, args.samples, steps=k)))
        val_plain = measure(task, model, args.test_seed + 1, args.grid_samples, steps=k)
        val_teacher = measure(task, model, args.test_seed + 1, args.grid_samples, steps=teacher_steps)
        print(f"K={k} held-out seed: the config's sampler " + ", ".join(f"{x} {val_plain[x]:.4f}" for x in args.metrics)
              + "; the teacher " + ", ".join(f"{x} {val_teacher[x]:.4f}" for x in args.metrics), flush=True)
        for name, points in (("plain", PLAIN), ("grid", list(grid_points(task.config.sample.guidance_scale, args.mixing)))):
            rows[name].append((k, best_on_validation(task, model, args, k, name, points, val_plain, val_teacher)))
        for name, m in distill_rows(task, model, args, k, teacher_steps, val_plain, val_teacher).items():
            rows[name].append((k, m))
        print_budget(k, rows, teacher, teacher_steps, args.metrics)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"teacher": teacher, "rows": rows}, indent=1, default=str))
    picture(rows, teacher, args.metrics, out, Path(args.config).stem)
    print(f"wrote {out} and {out.with_suffix('.json')}")


def print_budget(k: int, rows: dict, teacher: dict, teacher_steps: int, metrics: list[str]) -> None:
    plain = rows["plain"][-1][1]
    print(f"\nK = {k} steps (teacher: {teacher_steps} steps, NFE {teacher['nfe']:.0f})")
    head = "".join(f"{m:>22}" for m in metrics)
    print(f"{'sampler':<10}{'NFE':>6}{head}   gap closed per metric")
    for name in ROWS:
        m = rows[name][-1][1]
        closed = "  ".join(gap_closed(m[x], plain[x], teacher[x]) for x in metrics)
        print(f"{name:<10}{m['nfe']:>6.0f}" + "".join(f"{m[x]:>22.4f}" for x in metrics) + f"   {closed}")
    print(f"{'teacher':<10}{teacher['nfe']:>6.0f}" + "".join(f"{teacher[x]:>22.4f}" for x in metrics))
    print(f"best plain: {rows['plain'][-1][1]['point'] or 'the config'}; grid point: {rows['grid'][-1][1]['point']}")
    for name in ("LSD", "LSD+"):
        m = rows[name][-1][1]
        print(f"{name}: forward weight {m['forward_weight']}, distillation loss {m['loss_plain']:.4f} -> "
              f"{m['loss']:.4f} nats/token, distilled in {m['distill_seconds']:.0f} s")


def gap_closed(value: float, plain: float, teacher: float) -> str:
    """The share of the plain sampler's gap to the teacher closed; none where plain is not behind."""
    if plain <= teacher:
        return "    n/a"
    return f"{100 * (plain - value) / (plain - teacher):6.1f}%"


def picture(rows: dict, teacher: dict, metrics: list[str], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4))
    for ax, metric in zip(list(getattr(axes, "flat", [axes])), metrics):
        for name, marker in (("config", "x"), ("plain", "o"), ("grid", "s"), ("LSD", "^"), ("LSD+", "v")):
            points = rows[name]
            label = {"config": "the config's sampler", "plain": "best plain order"}.get(name, name)
            ax.plot([m["nfe"] for _, m in points], [m[metric] for _, m in points], marker=marker, label=label)
        ax.axhline(teacher[metric], color="black", linestyle="--", label=f"teacher (NFE {teacher['nfe']:.0f})")
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel(metric + " (lower is better)")
        ax.set_xscale("log", base=2)
        ax.legend()
    fig.suptitle(f"{title}: learned samplers vs plain, grid search and the teacher")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
