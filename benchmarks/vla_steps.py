"""The robot policy's success against decoder calls per chunk: plain and learned samplers.

    ddm distill --config configs/vla/mt10_cpu.yaml --steps 2
    ddm eval --config configs/vla/mt10_cpu.yaml                       # -> eval_diffusion.json (its own steps)
    ddm eval --config configs/vla/mt10_cpu.yaml eval.steps=2          # -> eval_diffusion_steps2.json
    ddm eval --config configs/vla/mt10_cpu.yaml eval.steps=2 eval.learned=true
    python benchmarks/vla_steps.py --run-dir runs/vla/mt10_cpu

Reads every `eval_diffusion*.json` of the run (the evaluations above, and the same with
`eval.seed=S` for another seed set), prints one row each and draws success against decoder
calls, one line per sampler and seed set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/vla/mt10_cpu")
    p.add_argument("--out", default="benchmarks/results/distill_vla.png")
    args = p.parse_args()
    rows = []
    for path in sorted(Path(args.run_dir).glob("eval_diffusion*.json")):
        s = json.loads(path.read_text())
        if s.get("decoder") != "diffusion" or s.get("execute") or s.get("ensemble") or \
                set(s.get("sampler") or {}) - {"steps", "learned"}:
            continue  # another decoder's name, or a change other than the sampler's steps
        sampler = s.get("sampler") or {}
        rows.append({"name": "learned" if sampler.get("learned") else "plain", "nfe": s["nfe_per_chunk"],
                     "success": s["average_success"], "seeds": s["seeds"], "episodes": s["episodes"],
                     "ms_per_action": s["ms_per_action"]})
    if not rows:
        raise SystemExit(f"{args.run_dir}: no eval_diffusion*.json; run the evaluations in this script's help")
    print(f"{'sampler':<9}{'calls/chunk':>12}{'success':>9}{'episodes':>10}{'seeds':>14}{'ms/action':>11}")
    for r in sorted(rows, key=lambda r: (r["seeds"], r["nfe"], r["name"])):
        print(f"{r['name']:<9}{r['nfe']:>12.1f}{100 * r['success']:>8.1f}%{r['episodes']:>10}"
              f"{r['seeds'][0]:>8}-{r['seeds'][1]:<5}{r['ms_per_action']:>11.2f}")
    picture(rows, Path(args.out))
    print(f"wrote {args.out}")


def picture(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for seeds in sorted({tuple(r["seeds"]) for r in rows}):
        for name, marker in (("plain", "o"), ("learned", "^")):
            line = [r for r in rows if r["name"] == name and tuple(r["seeds"]) == seeds]
            points = sorted((r["nfe"], 100 * r["success"]) for r in line)
            if points:
                ax.plot(*zip(*points), marker=marker, label=f"{name}, seeds {seeds[0]}-{seeds[1]}")
    ax.set_xlabel("decoder calls per action chunk")
    ax.set_ylabel("MT10 average success (%)")
    ax.set_title("robot policy: plain vs learned (LSD) decoding")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
