"""Training step of the conv tokenizers with and without train.channels_last, interleaved.

    PYTHONPATH=. python benchmarks/conv_channels_last.py [--threads 1] [--steps 10]
        [--configs configs/tokenizers/mnist.yaml,configs/tokenizers/moving_mnist_small.yaml]

Each config's tokenizer (its own architecture and train.batch_size) trains on random
pixels: reconstruction + quantizer loss, one AdamW step. The two memory orders run the
same batches from the same weights, in alternating rounds; the speed-up is the median
per-round time ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import yaml

from ddm.config import from_dict
from ddm.training.trainer import conv_memory_format
from tokenizers_vq.image import ImageTokenizer
from tokenizers_vq.video import VideoTokenizer

KINDS = {"image": ImageTokenizer, "video": VideoTokenizer}


def build(path: str, channels_last: bool):
    data = yaml.safe_load(open(path))
    cls = KINDS[data["task"]["kind"]]
    torch.manual_seed(0)
    model = cls(from_dict(cls.config_class, data["tokenizer"], "tokenizer")).train()
    if channels_last:
        conv_memory_format(model, True)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), data["train"].get("batch_size", 64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="configs/tokenizers/mnist.yaml,configs/tokenizers/moving_mnist_small.yaml")
    p.add_argument("--steps", type=int, default=10, help="timed steps per memory order")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, {args.steps} timed steps per order, 2 warm-up, rounds of 1")
    for path in args.configs.split(","):
        runs = [build(path, on) for on in (False, True)]
        c = runs[0][0].config
        shape = (c.channels, c.frames, c.image_size, c.image_size) if hasattr(c, "frames") else \
            (c.channels, c.image_size, c.image_size)
        batch = runs[0][2]
        gen = torch.Generator().manual_seed(0)
        xs = [torch.rand(batch, *shape, generator=gen) for _ in range(args.steps + 2)]
        times: list[list[float]] = [[], []]
        for i, x in enumerate(xs):
            for (model, opt, _), t in zip(runs, times):
                start = time.perf_counter()
                loss, _ = model.loss(model, {"x": x}, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if i >= 2:
                    t.append(time.perf_counter() - start)
        ratio = statistics.median(a / b for a, b in zip(*times))
        print(f"{path}: batch {batch} x {list(shape)}: s/step default {statistics.median(times[0]):.3f}, "
              f"channels-last {statistics.median(times[1]):.3f} -> {ratio:.2f}x (median per-round ratio, "
              f"range {min(a / b for a, b in zip(*times)):.2f}-{max(a / b for a, b in zip(*times)):.2f}x)")


if __name__ == "__main__":
    main()
