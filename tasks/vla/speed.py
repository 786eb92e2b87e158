"""Per-decoder cost of a VLA config without demos: training step, decoding, encoders.

    OMP_NUM_THREADS=1 python -m tasks.vla.speed --config configs/vla/mt10_cpu.yaml

Random features of the config's shapes (the cost does not depend on their values): ms per
training step at train.batch_size, decoder calls and ms per chunk at batch 1, and the frozen
encoders' ms per observation at the config's image size. ms per executed action is
(encoders + chunk decode) / policy.execute.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from ddm.experiment import load_experiment

from . import schema
from .decoders import DECODERS
from .features import ObservationEncoder
from .policy import VLAPolicy


def _features(cfg, n: int, g: torch.Generator) -> dict:
    return {"images": torch.randn(n, len(cfg.cameras) * cfg.image_tokens, cfg.image_dim, generator=g),
            "text": torch.randn(n, cfg.text_dim, generator=g), "state": torch.randn(n, cfg.state_dim, generator=g)}


def measure(policy: VLAPolicy, batch_size: int, repeats: int = 10) -> dict:
    cfg = policy.config
    g = torch.Generator().manual_seed(0)
    chunks = torch.rand(256, cfg.chunk, cfg.action_dim, generator=g) * 2 - 1
    for d in cfg.gripper_dims:
        chunks[..., d] = (chunks[..., d] > 0).float()
    policy.fit_statistics(chunks, torch.randn(256, cfg.state_dim, generator=g))
    targets = policy.targets(chunks[:batch_size].repeat(-(-batch_size // 256), 1, 1)[:batch_size])
    batch = {**_features(cfg, batch_size, g), **targets}
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    policy.train()
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        loss, _ = policy(batch, torch.Generator().manual_seed(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    policy.eval()
    one = _features(cfg, 1, g)
    decode = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        _, nfe = policy.predict_chunk(one, torch.Generator().manual_seed(i))
        decode.append(time.perf_counter() - start)
    return {"train_ms_per_step": 1000 * float(np.median(times[2:])), "nfe_per_chunk": nfe,
            "decode_ms_per_chunk": 1000 * float(np.median(decode[2:])), "parameters": policy.num_parameters}


def encoder_ms(cfg, repeats: int = 10) -> float:
    enc = ObservationEncoder.for_policy(cfg)
    rng = np.random.default_rng(0)
    obs = {schema.image_key(c): rng.integers(0, 256, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
           for c in cfg.cameras}
    obs.update({schema.STATE: np.zeros(cfg.state_dim, np.float32), schema.TASK: "push the puck to the goal"})
    times = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        enc(obs)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[2:]))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tasks.vla.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args(argv)
    exp = load_experiment(a.config, a.overrides)
    enc = encoder_ms(exp.policy)
    print(f"encoders: {enc:.1f} ms per observation ({len(exp.policy.cameras)} cameras at {exp.policy.image_size} px)")
    print(f"  {'decoder':15s} {'params':>8s} {'train ms/step':>14s} {'calls/chunk':>12s} {'ms/chunk':>9s} "
          f"{'ms/action':>10s}")
    for decoder in DECODERS.names():
        torch.manual_seed(0)
        policy = VLAPolicy(dataclasses.replace(exp.policy, decoder=decoder))
        m = measure(policy, exp.train.batch_size)
        per_action = (enc + m["decode_ms_per_chunk"]) / exp.policy.execute
        print(f"  {decoder:15s} {m['parameters'] / 1e6:7.2f}M {m['train_ms_per_step']:14.1f} "
              f"{m['nfe_per_chunk']:12d} {m['decode_ms_per_chunk']:9.1f} {per_action:10.2f}")


if __name__ == "__main__":
    main()
