"""What one model call costs at batch 1, and where: the figures behind "Speed" in the README.

    .venv/bin/python benchmarks/call_cost.py [--model runs/image_mnist/model] [--threads 2] [--calls 300]

(1) ms per call of a guided call (2 rows) on every target position, against the approximate
    cache's call (`forward_cached`) that runs only M of them, for M = all, 2/3 and 1/3.
(2) ms per call in float32 and int8 (`ddm.quantize`), and the share of each spent in the linear
    layers (torch.profiler: aten::linear in float32, quantized::linear_dynamic in int8).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.hub import load_pretrained  # noqa: E402
from ddm.model import Condition  # noqa: E402
from ddm.quantize import quantize  # noqa: E402
from ddm.sampling.guidance import ClassifierFreeGuidance  # noqa: E402


def ms_per_call(fn, calls: int) -> float:
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1000 * (time.perf_counter() - start) / calls


def linear_share(fn, names: tuple[str, ...]) -> float:
    with profile() as prof:
        for _ in range(50):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.cpu_time_total for e in events if e.key in names) / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="runs/image_mnist/model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.model).eval()
    cfg = model.config
    n = cfg.seq_len
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.mask_id + 1, (2, n), generator=gen)
    t = torch.rand(2, generator=gen)
    # one guided sample: its conditional row and its null row
    cond = ClassifierFreeGuidance.rows(Condition(classes=torch.tensor([0]))) if cfg.num_classes else None
    with torch.no_grad():
        prefix = model.encode_prefix(cond) if cond is not None else None
        _, cache = model.forward_cached(ids, t, None, None, prefix)
        print(f"{args.model}: batch 2 (one guided sample), {n} target tokens, {args.threads} threads")
        full = ms_per_call(lambda: model(ids, t=t, prefix=prefix), args.calls)
        print(f"  every position, plain forward      {full:7.3f} ms per call")
        for m in (n, (2 * n) // 3, n // 3):
            index = torch.stack([torch.randperm(n, generator=gen)[:m] for _ in range(2)])
            cost = ms_per_call(lambda: model.forward_cached(ids, t, index, cache, prefix), args.calls)  # no writes
            print(f"  forward_cached on {m:3d} positions    {cost:7.3f} ms per call ({full / cost:.2f}x)")
        int8 = quantize(model, "int8")
        prefix8 = int8.encode_prefix(cond) if cond is not None else None
        for name, m, pre, linears in (("float32", model, prefix, ("aten::linear",)),
                                      ("int8", int8, prefix8, ("quantized::linear_dynamic",))):
            call = lambda: m(ids, t=t, prefix=pre)  # noqa: E731
            print(f"  {name:<8} {ms_per_call(call, args.calls):7.3f} ms per call, "
                  f"{linear_share(call, linears):.0%} of it in the linear layers")


if __name__ == "__main__":
    main()
