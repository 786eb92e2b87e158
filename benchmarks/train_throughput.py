"""Training throughput and MFU of our transformer against a `transformers` BERT body of the
same size (11.4M parameters): `ddm.throughput`, whose docstring says how it is measured.

    PYTHONPATH=. python benchmarks/train_throughput.py [--steps 10] [--batch 8] [--seq 128] [--threads 1]
        [--variants ddm,hf,ddm:gelu+sparse+fused+compile] [--quick]

`--variants` lists the runners, a body optionally followed by speed switches joined by '+':
`gelu`, `sparse`, `fused`, `compile`, `bf16` (see `ddm.throughput.SWITCHES`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.throughput import SWITCHES, compare  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--round", type=int, default=2, help="steps per model per timing round")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: every core)")
    p.add_argument("--variants", default="ddm,hf",
                   help="comma-separated runners: ddm or hf, optionally ':' and switches joined by '+' from "
                        f"{', '.join(SWITCHES)} (see the module docstring); the plain hf runner is the reference")
    p.add_argument("--quick", action="store_true", help="a small smoke run (seconds)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.batch, args.seq, args.warmup, args.round = 2, 4, min(args.seq, 64), 2, 1
    torch.set_num_threads(args.threads)
    common = dict(vocab_size=1024, shape=[args.seq], d_model=384, depth=6, heads=6, mlp_ratio=4.0)
    try:
        compare(common, args.variants.split(","), args.batch, args.steps, args.warmup, args.round, args.quick)
    except ValueError as e:
        raise SystemExit(str(e))


if __name__ == "__main__":
    main()
