"""The robot policy's decoders side by side, per task and seed set, from their evaluations.

    ddm train --config configs/vla/mt10_precise_cpu.yaml "task.decoders=[autoregressive,regression]"
    ddm eval  --config configs/vla/mt10_precise_cpu.yaml "task.decoders=[autoregressive,regression]"
    ddm eval  --config configs/vla/mt10_precise_cpu.yaml "task.decoders=[autoregressive,regression]" eval.seed=20000
    python benchmarks/vla_table.py --run-dir runs/vla/mt10_precise --decoders autoregressive regression

Reads <run_dir>/eval_<decoder>.json (seeds 10000..) and eval_<decoder>_seed<S>.json (any other
seed set) and prints one Markdown table: successes per task, the average, decoder calls per
chunk and ms per action (measured during the evaluation, so only as quiet as the machine was).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tasks.vla.config import EVAL_SEED_START
from tasks.vla.env import MT10_TASKS
from tasks.vla.evaluate import results_name


def table(columns: list[tuple[str, dict]]) -> str:
    """Markdown: one row per task, one column per (decoder, seed set) summary."""
    seen = {task for _, s in columns for task in s["tasks"]}
    tasks = [t for t in MT10_TASKS if t in seen] + sorted(seen - set(MT10_TASKS))
    lines = ["| task | " + " | ".join(name for name, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for task in tasks:
        cells = [f"{s['tasks'][task]['successes']}/{s['tasks'][task]['episodes']}" if task in s["tasks"] else "-"
                 for _, s in columns]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append("| **average** | " + " | ".join(f"**{100 * s['average_success']:.1f}%**" for _, s in columns) + " |")
    lines.append("| decoder calls per chunk | " + " | ".join(f"{s['nfe_per_chunk']:.1f}" for _, s in columns) + " |")
    lines.append("| ms per action (encoders + decoder) | " + " | ".join(f"{s['ms_per_action']:.2f}" for _, s in columns)
                 + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/vla/mt10_precise")
    p.add_argument("--decoders", nargs="+", default=["diffusion", "hybrid", "joint", "autoregressive", "regression"])
    p.add_argument("--seeds", nargs="+", type=int, default=[EVAL_SEED_START, 20_000])
    args = p.parse_args()
    run_dir = Path(args.run_dir)
    columns, missing = [], []
    for decoder in args.decoders:
        for seed in args.seeds:
            path = run_dir / f"eval_{results_name(decoder, {}, seed)}.json"
            if path.is_file():
                columns.append((f"{decoder} {seed}", json.loads(path.read_text())))
            else:
                missing.append(str(path))
    if not columns:
        raise SystemExit(f"{run_dir}: no evaluations of {args.decoders}; run the commands in this script's help")
    print(table(columns))
    for path in missing:
        print(f"not evaluated: {path}")


if __name__ == "__main__":
    main()
