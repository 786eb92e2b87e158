"""Can matching the teacher reach the image bar at all? Each K-step sampler's distance to the
teacher's samples, beside its judge metrics.

    python benchmarks/distill_teacher_distance.py --config configs/tasks/image_mnist_cpu.yaml \
        --front benchmarks/results/distill_frontier_image.json --random 26 --learned

Distillation moves a student toward the many-step teacher. If the samplers that meet issue 14's
bar (half the judge gap closed) got there by sampling more like the teacher, some divergence to
the teacher's samples would rank them ahead of the plain sampler, and a loss built on it could
find them. This measures, for the plain sampler (the config's at K steps), the sampler saved in
the model folder (`--learned`), the front of `benchmarks/distill_frontier.py` (`--front`),
`--random` other points of that search and `--near` small moves from the plain sampler (the
search's `nearby`), their metrics on `--samples` samples of `--seed` (drawn as
the frontier draws them, so its figures repeat) and three distances between those samples and
the teacher's, drawn once on `--teacher-seed`:
- pixels: the Fréchet distance of the decoded samples (the task's `decode`, flattened);
- denoiser: the Fréchet distance of the model's own features of each clean sample with its
  condition (its last hidden states, before the output norm, mean and std over positions);
- marginals: the total variation between the token frequencies at each position, averaged.
The teacher's own samples on `--seed` give each distance's floor (two draws of one sampler).
Spearman correlations across the samplers close the table. `--out X.json` writes the rows and a
picture X.png (the judge's Fréchet against the pixel distance); `--replot X.json [Y.json ...]`
redraws the picture of saved rows (several files: one picture, named after the first).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill_frontier import draw, nearby  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402
from ddm.sampling import Sampler  # noqa: E402
from ddm.sampling.learned import StepCoefficients, saved_coefficients  # noqa: E402
from ddm.task import build_task  # noqa: E402
from tasks.image.metrics import frechet_distance  # noqa: E402

DISTANCES = ("pixels", "denoiser", "marginals")


@torch.no_grad()
def denoiser_features(model, ids: torch.Tensor, cond, batch: int = 500) -> torch.Tensor:
    """[n, 2 D]: the mean and std over positions of the last hidden states of clean samples."""
    hidden = []
    hook = model.heads.register_forward_pre_hook(lambda module, args: hidden.append(args[0]))
    try:
        for s in range(0, len(ids), batch):
            part = ids[s:s + batch]
            model(part, torch.zeros(len(part)), cond=None if cond is None else cond.select(torch.arange(s, s + len(part))))
    finally:
        hook.remove()
    h = torch.cat(hidden)
    return torch.cat([h.mean(1), h.std(1)], 1).double()


def marginals(ids: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, vocab).double().mean(0)  # [N, V]


def picture(rows: list[dict], bar: dict, out: Path) -> None:
    """The judge's Fréchet against the pixel distance to the teacher, one marker per kind of sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    kinds = {"front": ("search: front", "s"), "point": ("search: other points", "."), "near": ("small moves from plain", "x"),
             "saved": ("learned (saved)", "D"), "plain": ("plain (config)", "o"), "teacher": ("teacher (floor)", "*")}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for prefix, (label, marker) in kinds.items():
        group = [r for r in rows if r["name"].startswith(prefix)]
        if group:
            ax.plot([r["pixels"] for r in group], [r["frechet"] for r in group], marker, ls="none",
                    ms=12 if marker == "*" else 7, alpha=0.8, label=label)
    ax.axhline(bar["frechet"], color="green", lw=1, ls="--", label="issue 14's bar (Fréchet)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Fréchet distance of decoded pixels to the teacher's samples")
    ax.set_ylabel("Fréchet proxy in the judge's features (to data)")
    ax.set_title("K-step samplers and the teacher")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replot", nargs="+", default=[], help="redraw the picture of these saved rows and stop")
    p.add_argument("--config", default="")
    p.add_argument("--front", default="", help="a JSON written by benchmarks/distill_frontier.py")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=777, help="the students' seed (and the teacher's floor draw)")
    p.add_argument("--teacher-seed", type=int, default=900, help="the teacher samples the distances are to")
    p.add_argument("--random", type=int, default=26, help="other points of the saved search, drawn at random")
    p.add_argument("--near", type=int, default=0, help="small random moves from the plain sampler")
    p.add_argument("--learned", action="store_true", help="also the sampler saved for this budget")
    p.add_argument("--out", default="", help="write the rows as JSON here")
    args = p.parse_args()
    if args.replot:
        saved = [json.loads(Path(f).read_text()) for f in args.replot]
        rows = [r for i, x in enumerate(saved) for r in x["rows"] if i == 0 or r["name"].startswith("near")]
        out = Path(args.replot[0]).with_suffix(".png")
        picture(rows, saved[0]["bar"], out)
        raise SystemExit(f"wrote {out}")
    if not (args.config and args.front):
        p.error("--config and --front are needed (or --replot)")
    from tqdm.auto import tqdm

    saved = json.loads(Path(args.front).read_text())
    task = build_task(load_experiment(args.config))
    task.prepare()
    model = task.load_model()
    model.eval()
    n, vocab = args.samples, model.config.vocab_size
    cond = task.sample_conditions(n)

    plain = Sampler.for_model(model, task.sample_config(steps=args.steps))
    teacher = Sampler.for_model(model, task.sample_config(steps=min(128, model.config.seq_len)))
    samplers = [("teacher (floor)", teacher), ("plain (config)", plain)]
    if args.learned:
        learned = saved_coefficients(task.model_dir(), task.sample_config(steps=args.steps), model)
        if learned is not None:
            samplers.append(("saved (learned)", plain.with_coefficients(learned, task.sample_config().order)))
    # the search's points with its base order, as it measured them
    samplers += [(f"front {i}", plain.with_coefficients(StepCoefficients(**q["coefficients"]), "random"))
                 for i, q in enumerate(saved["front"])]
    picks = random.Random(0).sample(range(len(saved["points"])), min(args.random, len(saved["points"])))
    samplers += [(f"point {i}", plain.with_coefficients(StepCoefficients(**saved["points"][i]["coefficients"]),
                                                        "random")) for i in picks]

    k, scale = args.steps, plain.guidance_scale
    at_plain = StepCoefficients([1.0] * k, [0.0] * k, None, [i / k for i in range(k + 1)],
                                [scale] * k if scale > 0 else None)
    rng = random.Random(1)
    samplers += [(f"near {i}", plain.with_coefficients(nearby(rng, at_plain), "random")) for i in range(args.near)]

    print(f"teacher samples: {n} on seed {args.teacher_seed}, {min(128, model.config.seq_len)} steps", flush=True)
    reference = draw(task, model, teacher, n, args.teacher_seed, cond)
    ref_pixels = task.decode(reference).flatten(1).double()
    ref_features = denoiser_features(model, reference, cond)
    ref_marginals = marginals(reference, vocab)
    rows = []
    for name, sampler in tqdm(samplers, desc="samplers"):
        ids = draw(task, model, sampler, n, args.seed, cond)
        scores = task.sample_metrics(ids, cond)
        rows.append({"name": name, "judge_error": scores["judge_error"], "frechet": scores["frechet"],
                     "pixels": frechet_distance(task.decode(ids).flatten(1).double(), ref_pixels),
                     "denoiser": frechet_distance(denoiser_features(model, ids, cond), ref_features),
                     "marginals": float((marginals(ids, vocab) - ref_marginals).abs().sum(1).mean() / 2)})

    plain_row = rows[1]
    bar = {m: (plain_row[m] + rows[0][m]) / 2 for m in ("judge_error", "frechet")}
    print(f"\nK = {args.steps}, {n} samples on seed {args.seed}; distances to the teacher's samples on seed "
          f"{args.teacher_seed}; the bar: judge error <= {bar['judge_error']:.4f}, Fréchet <= {bar['frechet']:.2f}")
    print(f"{'sampler':>18}{'judge error':>13}{'Fréchet':>10}{'pixels':>10}{'denoiser':>10}{'marginals':>11}"
          f"{'meets bar':>11}{'nearer the teacher than plain':>31}")
    for r in rows:
        meets = "-" if r is rows[0] or r is plain_row else \
            ("yes" if all(r[m] <= bar[m] for m in bar) else "no")
        nearer = "" if r is rows[0] or r is plain_row else \
            ", ".join(d for d in DISTANCES if r[d] < plain_row[d]) or "none"
        print(f"{r['name']:>18}{r['judge_error']:>13.4f}{r['frechet']:>10.2f}{r['pixels']:>10.3f}"
              f"{r['denoiser']:>10.3f}{r['marginals']:>11.4f}{meets:>11}{nearer:>31}")
    students = rows[1:]
    print("\nSpearman correlation across the K-step samplers:")
    for d in DISTANCES:
        rho_f = spearmanr([r[d] for r in students], [r["frechet"] for r in students])[0]
        rho_e = spearmanr([r[d] for r in students], [r["judge_error"] for r in students])[0]
        print(f"  {d:>10}: with the Fréchet proxy {rho_f:+.3f}, with judge error {rho_e:+.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"bar": bar, "rows": rows}, indent=1))
        picture(rows, bar, Path(args.out).with_suffix(".png"))
        print(f"rows written to {args.out}, the picture to {Path(args.out).with_suffix('.png')}")


if __name__ == "__main__":
    main()
