"""int8 against float32 on this CPU: decoding speed at batch 1 and quality on the same seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize.py                # image, synthetic, VLA
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize.py --only image --quick
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quantize.py --mt10 int8    # closed loop, one worker
    ... --mt10 int8 --config configs/vla/mt10_precise_cpu.yaml --policy runs/vla/mt10_precise_8k/policy_diffusion

int8 is `ddm.quantize.quantize(model, "int8")`: PyTorch's dynamic quantization of the
transformer blocks' linear layers (engine `torch.backends.quantized.engine`).

Speed: one sample (one image, one sequence, one action chunk) per sampler call, one
thread; rounds alternate float32 and int8 (the first of each pair alternates too), each
round timing the same seeds, so both see the same load. The table gives the median ms per
sample of each and the median of the per-round ratios (with their range). The image model
is also timed in batches of 100 images (throughput).

Quality, on the same seeds and the same sampler:
- image (runs/image_mnist, 8 steps): the task's judge accuracy, Fréchet proxy and diversity of
  50 images per class;
- synthetic (runs/synthetic, its config's sampler): the exact true NLL / entropy, impossible
  share and pair TV of 1000 samples;
- VLA decoder (runs/vla/mt10_cpu/policy_diffusion): on 1000 demo frames' cached features, the
  share of action tokens decoded identically and the mean absolute action difference; the
  policy's observation projector stays float32 (only its decoder is quantized);
- `--mt10 none|int8`: the closed-loop MT10 evaluation (`tasks.vla.evaluate`, one worker,
  one thread) of the float32 or int8 decoder; its summary goes to --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.experiment import load_experiment  # noqa: E402
from ddm.model import Condition  # noqa: E402
from ddm.quantize import quantize  # noqa: E402
from ddm.sampling import Sampler  # noqa: E402
from ddm.task import build_task  # noqa: E402

POLICY = "runs/vla/mt10_cpu/policy_diffusion"
VLA_CONFIG = "configs/vla/mt10_cpu.yaml"


def alternate(fns: dict, rounds: int) -> dict:
    """fns: name -> () -> ms per sample. Rounds alternate the order; returns per-name lists."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(fns[name]())
    return times


def speed_row(times: dict) -> dict:
    ratios = [a / b for a, b in zip(times["fp32"], times["int8"])]
    return {"fp32_ms": statistics.median(times["fp32"]), "int8_ms": statistics.median(times["int8"]),
            "ratio": statistics.median(ratios), "ratio_lo": min(ratios), "ratio_hi": max(ratios)}


def timed(fn, seeds) -> float:
    start = time.perf_counter()
    for s in seeds:
        fn(s)
    return 1000 * (time.perf_counter() - start) / len(seeds)


# ---------------------------------------------------------------------------------------------- models


def image(quick: bool, rounds: int) -> dict:
    task = build_task(load_experiment("configs/tasks/image_mnist_cpu.yaml", []))
    task.prepare()
    models = {"fp32": task.load_model(), "int8": None}
    models["int8"] = quantize(models["fp32"], "int8")
    steps = 8
    per_class = 10 if quick else 50
    classes = torch.arange(per_class * 10) % 10
    quality, ids = {}, {}
    for name, model in models.items():
        images, result, _ = task.generate_images(model, classes, steps, seed=0)
        quality[name], ids[name] = task.quality(images, classes), result.ids
    sampler = Sampler.for_model(models["fp32"], task.sample_config(steps=steps))

    def one(model):
        return lambda s: sampler(model, cond=Condition(classes=torch.tensor([s % 10])),
                                 generator=torch.Generator().manual_seed(s))

    seeds = range(10)
    times = alternate({name: (lambda m=m: timed(one(m), seeds)) for name, m in models.items()}, rounds)
    batch = Condition(classes=torch.arange(100) % 10)  # and throughput: 100 images a call

    def hundred(model):
        return lambda s: sampler(model, cond=batch, generator=torch.Generator().manual_seed(s))

    at_100 = alternate({name: (lambda m=m: timed(hundred(m), [0]) / 100) for name, m in models.items()},
                       max(2, rounds // 2))
    return {"what": f"image denoiser, {steps} steps (guided: 2 rows a call), {len(classes)} samples",
            "speed": speed_row(times), "speed_batch_100": speed_row(at_100),
            "same_tokens": float((ids["fp32"] == ids["int8"]).float().mean()),
            "quality": {name: {"accuracy": q["accuracy"], "frechet": q["frechet"], "diversity": q["diversity"]}
                        for name, q in quality.items()}}


def synthetic(quick: bool, rounds: int) -> dict:
    task = build_task(load_experiment("configs/tasks/synthetic_cpu.yaml", []))
    task.prepare()
    models = {"fp32": task.load_model()}
    models["int8"] = quantize(models["fp32"], "int8")
    n = 200 if quick else 1000
    quality, ids = {}, {}
    for name, model in models.items():
        result, cond, _ = task.generate(model, num_samples=n, batch_size=min(n, 500), seed=0)
        quality[name], ids[name] = task.sample_metrics(result.ids, cond), result.ids
    cfg = task.sample_config()
    sampler = Sampler.for_model(models["fp32"], cfg)

    def one(model):
        return lambda s: sampler(model, 1, generator=torch.Generator().manual_seed(s))

    seeds = range(5)
    times = alternate({name: (lambda m=m: timed(one(m), seeds)) for name, m in models.items()}, rounds)
    keys = ("nll_over_entropy", "impossible_fraction", "pair_tv")
    return {"what": f"synthetic denoiser, {cfg.order} order, {cfg.steps} steps, {n} samples",
            "speed": speed_row(times), "same_tokens": float((ids["fp32"] == ids["int8"]).float().mean()),
            "quality": {name: {k: q[k] for k in keys} for name, q in quality.items()}}


def vla_frames(n: int, seed: int = 0) -> dict:
    """Cached frozen features of n demo frames (drawn at random), without reading the whole file."""
    import json

    from safetensors import safe_open

    exp = load_experiment(VLA_CONFIG, [])
    with safe_open(str(exp.features_path), "pt") as f:
        total = f.get_slice("state").get_shape()[0]
        rows = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values
        images = f.get_slice("images")
        feats = {"images": torch.stack([images[int(i)] for i in rows]).float(),
                 "state": f.get_tensor("state")[rows].float(),
                 "text": f.get_tensor("text")[f.get_tensor("text_index")[rows]].float()}
    json.loads(exp.features_path.with_suffix(".json").read_text())  # the cache is the demos' (checked on load)
    return feats


def vla(quick: bool, rounds: int) -> dict:
    from tasks.vla.policy import VLAPolicy

    models = {"fp32": VLAPolicy.from_pretrained(POLICY)}
    models["int8"] = quantize(models["fp32"], "int8")
    n = 200 if quick else 1000
    feats = vla_frames(n)
    actions, tokens = {}, {}
    for name, policy in models.items():
        parts, toks = [], []
        for i in range(0, n, 250):
            batch = {k: v[i:i + 250] for k, v in feats.items()}
            chunk, nfe = policy.predict_chunk(batch, torch.Generator().manual_seed(0))
            parts.append(chunk)
            toks.append(policy.targets(chunk)["ids"])
        actions[name], tokens[name] = torch.cat(parts), torch.cat(toks)
    one_feats = [{k: v[i:i + 1] for k, v in feats.items()} for i in range(20)]

    def one(policy):
        return lambda s: policy.predict_chunk(one_feats[s], torch.Generator().manual_seed(s))

    seeds = range(20)
    times = alternate({name: (lambda m=m: timed(one(m), seeds)) for name, m in models.items()}, rounds)
    diff = (actions["fp32"] - actions["int8"]).abs()
    return {"what": f"VLA action decoder, {nfe} calls a chunk, {n} demo frames (chunk decode, no encoders)",
            "speed": speed_row(times), "same_tokens": float((tokens["fp32"] == tokens["int8"]).float().mean()),
            "quality": {"mean_abs_action_diff": float(diff.mean()), "max_abs_action_diff": float(diff.max()),
                        "same_chunk": float((tokens["fp32"] == tokens["int8"]).all(1).float().mean())}}


def mt10(mode: str, seed: int, episodes: int, out: str, config: str = VLA_CONFIG, policy: str = POLICY) -> dict:
    """Closed-loop MT10 with the decoder quantized by `mode`, in this process (one worker, one thread)."""
    import tasks.vla.evaluate as ev

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    exp = load_experiment(config, [f"eval.seed={seed}", f"eval.episodes={episodes}", "eval.workers=1",
                                   "eval.gifs=0", f"run_dir={out}"])
    init = ev._init_worker

    def init_quantized(*args):
        init(*args)
        ev._RUNNER.policy = quantize(ev._RUNNER.policy, mode)

    ev._init_worker = init_quantized
    summary = ev.evaluate_policy(exp, "diffusion", policy_dir=policy)
    print(ev.format_summary(summary))
    return summary


# ---------------------------------------------------------------------------------------------- table


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", choices=["image", "synthetic", "vla"], default=["image", "synthetic", "vla"])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="fewer samples (seconds, for a smoke run)")
    p.add_argument("--mt10", choices=["none", "int8"], help="run the closed-loop MT10 evaluation instead")
    p.add_argument("--seed", type=int, default=10000, help="--mt10: first scene seed")
    p.add_argument("--episodes", type=int, default=20, help="--mt10: episodes per task")
    p.add_argument("--out", default="runs/quantize_mt10", help="--mt10: where its summary goes")
    p.add_argument("--config", default=VLA_CONFIG, help=f"--mt10: the policy's config (default {VLA_CONFIG})")
    p.add_argument("--policy", default=POLICY, help=f"--mt10: the diffusion policy's folder (default {POLICY})")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, engine {torch.backends.quantized.engine}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if a.mt10:
        mt10(a.mt10, a.seed, a.episodes, a.out, a.config, a.policy)
        return
    runs = {"image": image, "synthetic": synthetic, "vla": vla}
    rows = {}
    for name in a.only:
        start = time.perf_counter()
        rows[name] = runs[name](a.quick, a.rounds)
        print(f"{name}: done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n{'model':10s} {'fp32 ms':>8s} {'int8 ms':>8s} {'ratio':>6s} {'(range)':>12s} {'same tokens':>12s}  "
          "quality fp32 -> int8")
    for name, row in rows.items():
        s = row["speed"]
        q = row["quality"]
        if "fp32" in q:
            quality = ", ".join(f"{k} {q['fp32'][k]:.4f} -> {q['int8'][k]:.4f}" for k in q["fp32"])
        else:
            quality = ", ".join(f"{k} {v:.4f}" for k, v in q.items())
        print(f"{name:10s} {s['fp32_ms']:8.2f} {s['int8_ms']:8.2f} {s['ratio']:5.2f}x "
              f"({s['ratio_lo']:.2f}-{s['ratio_hi']:.2f}) {100 * row['same_tokens']:11.1f}%  {quality}")
        print(f"{'':10s} {row['what']}")
        if "speed_batch_100" in row:
            s = row["speed_batch_100"]
            print(f"{'  batch 100':10s} {s['fp32_ms']:8.2f} {s['int8_ms']:8.2f} {s['ratio']:5.2f}x "
                  f"({s['ratio_lo']:.2f}-{s['ratio_hi']:.2f})  ms per image in batches of 100")


if __name__ == "__main__":
    main()
