"""Is it the loss or the search? The distillation loss of a coefficient front's points, and
their metrics again on the model in hand.

    python benchmarks/distill_loss_front.py --config configs/tasks/image_mnist_cpu.yaml \
        --front benchmarks/results/distill_frontier_image.json --seeds 777 778 --learned --forward

`benchmarks/distill_frontier.py` measures samplers of the LSD+ family on the task's own metrics;
`ddm distill` picks one by its loss. This prints, for the plain sampler (the config's at K steps),
the teacher and each point of the front saved in --front's JSON: the loss `ddm distill`
validates with (the KL bound, or the student-order path KL, per `--teacher-order`), averaged
over the same held-out seeds and batches, and with --forward the forward term on the same
held-out teacher samples (`ddm distill --forward-weight` adds it); and with --seeds, each sampler's metrics on those
seeds (1000 samples each, as the frontier measures them) with the bar of each seed. If the
points that meet the bar have a higher loss than the plain sampler, no optimiser of that loss
finds them: the loss, not the search, misses them. `--learned` adds the sampler saved in the
model folder for K steps, if any. A front measured on another training of the model is
measured again here, so the figures are this model's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill_frontier import measure  # noqa: E402
from ddm.distill import DistillConfig, distill_loss, forward_loss, teacher_sampler, teacher_samples  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402
from ddm.sampling import Sampler  # noqa: E402
from ddm.sampling.learned import StepCoefficients, saved_coefficients  # noqa: E402
from ddm.task import build_task  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--front", required=True, help="a JSON written by benchmarks/distill_frontier.py")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--teacher-order", choices=["auto", "random", "student"], default="auto")
    p.add_argument("--seeds", type=int, nargs="*", default=[], help="measure the metrics again on these seeds")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--learned", action="store_true", help="also the sampler saved for this budget")
    p.add_argument("--forward", action="store_true", help="also the forward term (KL(teacher || student))")
    args = p.parse_args()
    from tqdm.auto import tqdm

    saved = json.loads(Path(args.front).read_text())
    metrics = list(saved["plain"])
    task = build_task(load_experiment(args.config))
    task.prepare()
    model = task.load_model()
    model.eval()
    cfg = DistillConfig(steps=args.steps, teacher_order=args.teacher_order)
    sample_cfg = task.sample_config(steps=args.steps)
    plain = Sampler.for_model(model, sample_cfg)
    teacher_order = cfg.resolved_teacher_order(sample_cfg.order)
    cond, fixed = task.sample_conditions(cfg.batch_size), task.sample_fixed(cfg.batch_size)

    seeds = cfg.validation_seeds()
    # The forward term's held-out teacher samples, as `ddm distill` draws them (seed + 7; tasks without
    # fixed tokens, where every position is generated).
    forward_teacher = teacher_sampler(plain, min(cfg.teacher_steps, model.config.seq_len), teacher_order)
    held_out = [teacher_samples(model, forward_teacher, cfg.batch_size, s + 7, cond, fixed, task.processors())
                for s in seeds] if args.forward else []

    def held_out_loss(sampler: Sampler) -> tuple[float, float | None]:
        """(the reverse bound, the forward term or None) on the held-out seeds."""
        reverse = [float(distill_loss(model, sampler, cfg.batch_size, s, cfg.teacher_steps, cond, fixed,
                                      task.processors(), teacher_order).mean()) for s in seeds]
        forward = [float(forward_loss(model, sampler, t, s, cond, fixed, task.processors()).mean())
                   for s, t in zip(seeds, held_out)]
        return sum(reverse) / len(reverse), (sum(forward) / len(forward) if forward else None)

    samplers = [("plain (config)", plain)]
    samplers += [(f"front {i}", plain.with_coefficients(StepCoefficients(**q["coefficients"]), sample_cfg.order))
                 for i, q in enumerate(saved["front"])]
    if args.learned:
        learned = saved_coefficients(task.model_dir(), sample_cfg, model)
        if learned is not None:
            samplers.append(("saved (learned)", plain.with_coefficients(learned, sample_cfg.order)))
    teacher = Sampler.for_model(model, task.sample_config(steps=min(128, model.config.seq_len)))
    n = args.samples
    cond_n, fixed_n = task.sample_conditions(n), task.sample_fixed(n)
    rows = []
    for name, sampler in tqdm(samplers + [("teacher", teacher)], desc="loss and metrics"):
        row = {"name": name, "loss": held_out_loss(sampler) if name != "teacher" else (None, None)}
        for seed in args.seeds:
            row[seed] = measure(task, model, sampler, n, seed, metrics, cond_n, fixed_n)
        rows.append(row)
    by_name = {r["name"]: r for r in rows}
    bars = {s: {m: (by_name["plain (config)"][s][m] + by_name["teacher"][s][m]) / 2 for m in metrics}
            for s in args.seeds}

    print(f"\nK = {args.steps}: the distillation loss ({teacher_order} teacher, nats per token, "
          f"{cfg.validation_batches} held-out batches of {cfg.batch_size}, as `ddm distill` validates)"
          + (f"; metrics of {n} samples on seeds {args.seeds}, the bar half of each gap" if args.seeds else ""))
    header = f"{'':>18}{'reverse':>9}{'forward':>9}" + "".join(f"{f'{m} @{s}':>20}" for s in args.seeds for m in metrics)
    print(header + "".join(f"{f'bar @{s}':>9}" for s in args.seeds))
    for r in rows:
        line = f"{r['name']:>18}" + "".join(f"{v:>9.4f}" if v is not None else f"{'-':>9}" for v in r["loss"])
        line += "".join(f"{r[s][m]:>20.4f}" for s in args.seeds for m in metrics)
        meets = ["-" if r["name"] in ("teacher", "plain (config)") else
                 ("yes" if all(r[s][m] <= bars[s][m] for m in metrics) else "no") for s in args.seeds]
        print(line + "".join(f"{x:>9}" for x in meets))


if __name__ == "__main__":
    main()
