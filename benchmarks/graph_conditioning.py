"""The graph task's conditioned rows under other samplers, chosen on held-out requests that are not
the ones `ddm eval` reports.

    .venv/bin/python benchmarks/graph_conditioning.py --config configs/tasks/graph_cpu.yaml [overrides] \
        [--family planar] [--orders confidence entropy] [--guidance 0 1 2 3] [--steps 32 128]

(config overrides before --orders / --guidance / --steps, which take every word after them)

`ddm eval` asks for the node count and mean degree (and SBM communities) of the first
`task.samples_per_family` held-out graphs of a family (the test requests). Here every sampler of
the grid (order x classifier-free guidance scale x sampling steps) first answers the requests of the next as many
held-out graphs (the selection requests); the sampler with the smallest mean-degree error there is
then run on the test requests, beside the config's own sampler, so the choice never sees the
figures it is judged by. Prints the mean-degree error, validity and V.U.N. of every point.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.experiment import load_experiment  # noqa: E402
from ddm.task import build_task  # noqa: E402


def requests_of(held, start: int, count: int, family: str) -> dict:
    """The statistics of held-out graphs start .. start + count - 1, as `ddm eval` asks for them."""
    rows = slice(start, start + count)
    return dict(nodes=[g.number_of_nodes() for g in held.graphs[rows]],
                mean_degree=[float(x) for x in held.mean_degrees()[rows]],
                communities=held.communities[rows] if family == "sbm" else None)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--family", default="planar", choices=["planar", "sbm"])
    p.add_argument("--orders", nargs="+", default=["confidence", "entropy"])
    p.add_argument("--guidance", nargs="+", type=float, default=[0.0, 1.0, 2.0, 3.0])
    p.add_argument("--steps", nargs="+", type=int, default=[], help="sampling steps (default: the config's)")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    task = build_task(load_experiment(a.config, a.overrides))
    task.prepare()
    model = task.load_model()
    k, seed = task.config.task.samples_per_family, task.config.sample.seed
    held = task.sets["heldout"].of(a.family)
    if len(held) < 2 * k:
        raise SystemExit(f"{a.family}: {len(held)} held-out graphs, {2 * k} needed (test + selection requests)")
    test, select = requests_of(held, 0, k, a.family), requests_of(held, k, k, a.family)
    base = task.config.sample

    def run(order: str, guidance: float, steps: int, asked: dict) -> dict:
        task.config.sample = dataclasses.replace(base, order=order, guidance_scale=guidance, steps=steps)
        start = time.perf_counter()
        graphs, requests, _ = task.generate_graphs(model, a.family, seed=seed, **asked)
        out = task.describe(a.family, graphs, requests)
        out["seconds"] = time.perf_counter() - start
        return out

    print(f"{a.family}: {k} selection requests (held-out graphs {k}..{2 * k - 1}), then {k} test requests "
          f"(held-out graphs 0..{k - 1}, those of `ddm eval`); training mean-degree std "
          f"{task.sets['train'].of(a.family).mean_degrees().std():.3f}", flush=True)
    print(f"  {'requests':<10} {'order':<11} {'guidance':>8} {'steps':>5} {'|deg err|':>9} {'valid':>6} {'V.U.N.':>6} "
          f"{'s':>5}")

    def show(name, order, guidance, steps, r):
        print(f"  {name:<10} {order:<11} {guidance:>8.1f} {steps:>5} {r['mean_degree_abs_error']:>9.3f} "
              f"{r['validity']:>6.1%} {r['vun']:>6.1%} {r['seconds']:>5.0f}", flush=True)

    scores = {}
    for steps in a.steps or [base.steps]:
        for order in a.orders:
            for guidance in a.guidance:
                r = run(order, guidance, steps, select)
                scores[(order, guidance, steps)] = r["mean_degree_abs_error"]
                show("selection", order, guidance, steps, r)
    best = min(scores, key=scores.get)
    for point in dict.fromkeys([(base.order, base.guidance_scale, base.steps), best]):
        show("test", *point, run(*point, test))
    print(f"chosen on the selection requests: order {best[0]}, guidance {best[1]:g}, {best[2]} steps")


if __name__ == "__main__":
    main()
