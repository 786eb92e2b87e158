"""How the gap between the masked-diffusion LM and the autoregressive one moves with training
compute: the text task's two models trained at several budgets, each pair with the same steps,
batch and optimizer, scored on the same held-out tokens (ELBO perplexity against exact perplexity).

    .venv/bin/python benchmarks/text_compute.py --config configs/tasks/text_cpu.yaml \
        --budgets 900x32 1800x128 [overrides]

A budget is STEPSxBATCH (chunks of model.seq_len tokens per step); each trains into
<run_dir>_compute/<budget> (the tokenizer is shared with the task's run_dir). Both models train
on whatever device `accelerate` picks (a GPU where there is one) and are scored there. Prints a
line per budget as it finishes and writes every figure to <run_dir>_compute/compute.json. The
training set is 8,507 chunks, so large budgets are many epochs: where the autoregressive model
overfits, its held-out perplexity rises, which the table shows rather than hides.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.experiment import load_experiment  # noqa: E402
from ddm.io import atomic_write_text  # noqa: E402
from ddm.task import build_task  # noqa: E402
from tasks.text import metrics  # noqa: E402


def parse_budget(text: str) -> tuple[int, int]:
    try:
        steps, batch = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--budgets: {text!r} is not STEPSxBATCH (e.g. 900x32)") from None
    if steps < 1 or batch < 1:
        raise SystemExit(f"--budgets: {text!r}: steps and batch must be positive")
    return steps, batch


def measure(config: str, overrides: list[str], steps: int, batch: int, out: Path, repeats: int,
            tokenizer_dir: Path) -> dict:
    tag = f"{steps}x{batch}"
    run_dir = out / tag
    task = build_task(load_experiment(config, [*overrides, f"run_dir={run_dir}", f"train.steps={steps}",
                                               f"train.batch_size={batch}",
                                               f"train.checkpoint_every={max(steps // 4, 1)}"]))
    tokenizer = run_dir / "tokenizer"
    if not tokenizer.exists() and tokenizer_dir.exists():  # one tokenizer for every budget
        tokenizer.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.symlink_to(tokenizer_dir.resolve(), target_is_directory=True)
    task.prepare()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    task.train()
    diffusion_seconds = time.perf_counter() - start
    model = task.load_model().to(device)
    bits = [task.heldout_elbo(model, repeats=1, seed=r, batch_size=64) for r in range(repeats)]
    elbo_bits, elbo_se = metrics.mean_and_stderr(bits)
    start = time.perf_counter()
    baseline = task.baseline_model().to(device)
    ar_seconds = time.perf_counter() - start
    heldout = task.chunks["heldout"].to(device)
    ar_nats = float(metrics.token_nll(baseline, heldout).double().mean())
    train_chunks = len(task.chunks["train"])
    train_sample = task.chunks["train"][:len(heldout)]  # how far each model fits its own data
    train_bits = task.heldout_elbo(model, repeats=1, seed=0, batch_size=64,
                                   data=Dataset.from_dict({"ids": train_sample.numpy()}).with_format("torch"))
    train_ar_nats = float(metrics.token_nll(baseline, train_sample.to(device)).double().mean())
    elbo_ppl = 2.0 ** elbo_bits
    row = {"steps": steps, "batch": batch, "epochs": steps * batch / train_chunks,
           "tokens_seen": steps * batch * task.config.model.seq_len,
           "diffusion_elbo_ppl": elbo_ppl, "diffusion_elbo_ppl_stderr": math.log(2) * elbo_se * elbo_ppl,
           "ar_ppl": math.exp(ar_nats), "ratio": elbo_ppl / math.exp(ar_nats),
           "nats_ratio": elbo_bits * math.log(2) / ar_nats,
           "diffusion_train_ppl": 2.0 ** train_bits, "ar_train_ppl": math.exp(train_ar_nats),
           "diffusion_seconds": diffusion_seconds, "ar_seconds": ar_seconds, "device": str(device)}
    return row


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/tasks/text_cpu.yaml")
    p.add_argument("--budgets", nargs="+", default=["900x32"], help="STEPSxBATCH, one pair of models each")
    p.add_argument("--repeats", type=int, default=8, help="masking draws of the ELBO over the held-out chunks")
    p.add_argument("overrides", nargs="*", help="config overrides (key=value), before --budgets")
    args = p.parse_args(argv)
    budgets = [parse_budget(b) for b in args.budgets]
    base = build_task(load_experiment(args.config, args.overrides))
    base.prepare()  # fits the tokenizer into the task's run_dir once, or loads it
    out = Path(f"{base.run_dir}_compute")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compute.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for steps, batch in budgets:
        row = measure(args.config, args.overrides, steps, batch, out, args.repeats, base.run_dir / "tokenizer")
        rows[f"{steps}x{batch}"] = row
        atomic_write_text(path, json.dumps(rows, indent=1))
        print(f"budget {steps} steps x {batch} chunks ({row['epochs']:.1f} epochs, {row['tokens_seen'] / 1e6:.1f}M "
              f"tokens, {row['device']}): diffusion ELBO ppl {row['diffusion_elbo_ppl']:.2f} +- "
              f"{row['diffusion_elbo_ppl_stderr']:.2f}, autoregressive {row['ar_ppl']:.2f}, ratio {row['ratio']:.3f} "
              f"(nats {row['nats_ratio']:.3f}); on training chunks {row['diffusion_train_ppl']:.2f} and "
              f"{row['ar_train_ppl']:.2f}; trained in {row['diffusion_seconds']:.0f} s and {row['ar_seconds']:.0f} s",
              flush=True)
    print(f"\n{'budget':>12} {'epochs':>7} {'diffusion':>10} {'AR':>8} {'ratio':>7} {'train: diff':>12} {'AR':>8}")
    for tag, r in rows.items():
        print(f"{tag:>12} {r['epochs']:>7.1f} {r['diffusion_elbo_ppl']:>10.2f} {r['ar_ppl']:>8.2f} {r['ratio']:>7.3f} "
              f"{r['diffusion_train_ppl']:>12.2f} {r['ar_train_ppl']:>8.2f}")
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
