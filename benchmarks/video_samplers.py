"""The video task's sampler chosen on held-out videos (and a seed) that `ddm eval` does not score:
first the sampler (order x temperature x steps), then completion's measurement guidance.

    .venv/bin/python benchmarks/video_samplers.py --config configs/tasks/video_mmnist_cpu.yaml [overrides] \
        [--orders random confidence] [--temperatures 1 0.8] [--steps 16 32] [--guidance 0 100 1000] [--anchor 0 0.5]

(config overrides before the options that take lists)

`ddm eval` scores the first `task.eval_videos` held-out videos and draws its unconditional videos
from `sample.seed`. Here each sampler point generates from seed `sample.seed + 1` and predicts,
interpolates and completes the next `task.eval_videos` held-out videos (the selection videos);
the point that keeps the digit's identity in the most generated videos (the issue's bar; ties go
to the lower Fréchet proxy) is chosen. Then, under that sampler, each completion guidance point
(scale x anchor threshold; the sprite tokenizer only) completes the selection videos, and the one
with the highest PSNR in the hole is chosen. Last, the config's sampler and the chosen one run on
the test videos and seed, what `ddm eval` reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.experiment import load_experiment  # noqa: E402
from ddm.task import build_task  # noqa: E402


def score(task, model, videos, labels, seed: int, uses: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for use in uses:
        filled, result, _ = task.fill(model, use, videos, count=len(videos), seed=seed)
        quality = task.video_quality(filled, None if use == "generation" else labels)
        if use == "generation":
            out.update(identity=quality["identity_kept"], frechet=quality["frechet_per_frame"], nfe=result.nfe)
        else:
            out[use] = task.fidelity(use, filled, videos)["psnr"]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--orders", nargs="+", default=["random", "confidence"])
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.8])
    p.add_argument("--steps", type=int, nargs="+", default=[16])
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0, 100.0, 1000.0])
    p.add_argument("--anchor", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    task = build_task(load_experiment(args.config, args.overrides))
    task.prepare()
    model = task.load_model()
    t, s, n = task.config.task, task.config.sample, len(task.heldout)
    held = task.videos["heldout"]
    if len(held) < 2 * n:
        raise SystemExit(f"the held-out split has {len(held)} videos; the selection needs {2 * n} (twice task.eval_videos)")
    selection = held[n:2 * n]
    sel_videos, sel_labels = selection["x"], selection["labels"][:, 0]
    uses = ("generation", "prediction", "interpolation", "completion")
    print(f"selection: seed {s.seed + 1}, held-out videos {n}..{2 * n - 1}; test: seed {s.seed}, held-out videos "
          f"0..{n - 1} (what ddm eval reports)")
    print(f"  {'':<9} {'order':>10} {'temp':>5} {'steps':>5} {'scale':>6} {'anchor':>6} {'identity':>9} "
          f"{'Fréchet':>8} {'pred dB':>8} {'interp dB':>9} {'compl dB':>9}")

    def show(name, point, m):
        cells = [format(m[k], fmt) if k in m else "-" for k, fmt in (
            ("identity", ">9.1%"), ("frechet", ">8.1f"), ("prediction", ">8.2f"), ("interpolation", ">9.2f"),
            ("completion", ">9.2f"))]
        widths = (9, 8, 8, 9, 9)
        print(f"  {name:<9} {point['order']:>10} {point['temperature']:>5g} {point['steps']:>5} "
              f"{point['guidance']:>6g} {point['anchor']:>6g} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths)),
              flush=True)

    def run(point, videos, labels, seed, which=uses):
        task.config.sample = dataclasses.replace(s, order=point["order"], temperature=point["temperature"])
        task.config.task = dataclasses.replace(t, eval_steps=point["steps"])
        if task.layout.guided_completion:
            task.layout.guidance, task.layout.anchor = point["guidance"], point["anchor"]
        return score(task, model, videos, labels, seed, which)

    config_point = dict(order=s.order, temperature=s.temperature, steps=t.eval_steps,
                        guidance=t.completion_guidance, anchor=t.completion_anchor)
    scored = []
    for order, temperature, steps in itertools.product(args.orders, args.temperatures, args.steps):
        point = {**config_point, "order": order, "temperature": temperature, "steps": steps}
        m = run(point, sel_videos, sel_labels, s.seed + 1)
        show("selection", point, m)
        scored.append(((-m["identity"], m["frechet"]), point))
    chosen = min(scored, key=lambda x: x[0])[1]
    if task.layout.guided_completion:
        scored = []
        for guidance, anchor in itertools.product(args.guidance, args.anchor):
            if guidance == 0 and anchor > 0:
                continue  # anchoring reads the guidance's weights: nothing to anchor without it
            point = {**chosen, "guidance": guidance, "anchor": anchor}
            m = run(point, sel_videos, sel_labels, s.seed + 1, ("completion",))
            show("selection", point, m)
            scored.append((m["completion"], guidance, anchor))
        _, chosen["guidance"], chosen["anchor"] = max(scored)
    for point in {str(p): p for p in (config_point, chosen)}.values():
        show("test", point, run(point, task.heldout, task.heldout_labels, s.seed))
    print(f"chosen on the selection: sample.order={chosen['order']} sample.temperature={chosen['temperature']:g} "
          f"task.eval_steps={chosen['steps']} task.completion_guidance={chosen['guidance']:g} "
          f"task.completion_anchor={chosen['anchor']:g}")


if __name__ == "__main__":
    main()
