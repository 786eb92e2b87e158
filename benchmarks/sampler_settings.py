"""One sampler part at several settings, side by side on the same samples: the task's own metrics
of the config's sampler at K steps with each setting (a quick look before a search or a grid).

    python benchmarks/sampler_settings.py --config configs/tasks/image_mnist_cpu.yaml --steps 4 \
        --metrics judge_error frechet --part mixing --values 0 0.25 0.5 0.75 1 -0.3

Every setting is measured as `benchmarks/distill_frontier.py` measures a point (its `measure`: the
test seed's generator, batches of 500), so a row is comparable with that search's and with
`benchmarks/distill.py`'s rows on the same seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_frontier import measure  # noqa: E402

from ddm.config import SampleConfig  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402
from ddm.sampling import Sampler  # noqa: E402
from ddm.task import build_task  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--metrics", nargs="+", default=["impossible_fraction", "pair_tv"], help="sample_metrics keys")
    p.add_argument("--part", required=True, help="a sample section field, e.g. mixing or temperature")
    p.add_argument("--values", type=float, nargs="+", required=True)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=777)
    args = p.parse_args()
    if args.part not in SampleConfig.__dataclass_fields__:
        raise SystemExit(f"--part: {args.part!r} is not a sample field; known: {', '.join(SampleConfig.__dataclass_fields__)}")
    task = build_task(load_experiment(args.config))
    task.prepare()
    model = task.load_model()
    model.eval()
    n = args.samples
    cond, fixed = task.sample_conditions(n), task.sample_fixed(n)
    print(f"{Path(args.config).stem}, {args.steps} steps, {n} samples on seed {args.seed}")
    print(f"{args.part:>12}" + "".join(f"{m:>22}" for m in args.metrics), flush=True)
    for value in args.values:
        sampler = Sampler.for_model(model, task.sample_config(steps=args.steps, **{args.part: value}))
        row = measure(task, model, sampler, n, args.seed, args.metrics, cond, fixed)
        print(f"{value:>12g}" + "".join(f"{row[m]:>22.4f}" for m in args.metrics), flush=True)


if __name__ == "__main__":
    main()
