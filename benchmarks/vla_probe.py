"""How well do frozen image features place the objects and goals of MetaWorld scenes?

A linear probe: render the first frame of `--scenes` scenes per task (seeds 1000 and up:
neither demonstration nor evaluation scenes), encode it with each feature variant
(EfficientNet-Lite0 stage x cameras, pooled 4x4), and fit ridge regression from the features
to the privileged positions the policy never sees: the object's xyz and the goal's xyz. The
probe trains on `--train` scenes (as many as the policy's demos have per task) and is
scored on the rest; the ridge strength is chosen by leave-one-out on the training scenes
only. Errors are mean absolute errors per axis, in centimetres, next to the spread of the
target (the error of always guessing its mean).

    python benchmarks/vla_probe.py                      # reach, push, pick-place, peg-insert-side
    python benchmarks/vla_probe.py --tasks reach-v3 --scenes 200 --train 30

It chose the features of configs/vla/mt10_precise_cpu.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tasks.vla  # noqa: E402,F401  (a headless MUJOCO_GL before mujoco loads)
from tasks.vla.encoders import ImageEncoder  # noqa: E402
from tasks.vla.env import make_env  # noqa: E402
from tasks.vla.render import CameraRenderer  # noqa: E402

CAMERAS = ["corner3", "corner", "gripperPOV"]
VARIANTS = [  # (stage, cameras): the old policy's input, single views, the new policy's input
    ("head", ["corner3"]),
    ("head", ["corner3", "gripperPOV"]),
    ("stride16", ["corner3"]),
    ("stride16", ["corner"]),
    ("stride16", ["corner3", "corner"]),
    ("stride16", ["corner3", "corner", "gripperPOV"]),
]
SEED = 1000
LAMBDAS = (1e0, 1e1, 1e2, 1e3, 1e4, 1e5)


def scenes(task: str, n: int, size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """First frames {camera: [n, size, size, 3]} and targets [n, 6] (object xyz, goal xyz)."""
    frames, targets = {c: [] for c in CAMERAS}, []
    for i in tqdm(range(n), desc=f"{task} scenes", leave=False):
        env = make_env(task, SEED + i)
        obs, _ = env.reset()
        with CameraRenderer(env.model, CAMERAS, size) as renderer:
            for cam, image in renderer.render(env.data).items():
                frames[cam].append(image)
        env.close()
        targets.append(np.concatenate([obs[4:7], obs[-3:]]))  # object position, goal position
    return {c: np.stack(v) for c, v in frames.items()}, np.stack(targets)


def encode(frames: dict[str, np.ndarray]) -> dict[tuple[str, str], torch.Tensor]:
    """Each (stage, camera) the variants use, encoded once: [n, 16, channels]."""
    out = {}
    for stage, camera in sorted({(stage, c) for stage, cameras in VARIANTS for c in cameras}):
        enc = ImageEncoder(pool=4, stage=stage)
        out[stage, camera] = torch.cat([enc(frames[camera][i:i + 64]) for i in range(0, len(frames[camera]), 64)])
    return out


def features(encoded: dict[tuple[str, str], torch.Tensor], stage: str, cameras: list[str]) -> np.ndarray:
    return torch.cat([encoded[stage, c] for c in cameras], dim=1).flatten(1).double().numpy()


def ridge_error(x: np.ndarray, y: np.ndarray, train: int, repeats: int = 5) -> np.ndarray:
    """Held-out mean absolute error per target column, averaged over random splits."""
    errors = []
    for r in range(repeats):
        order = np.random.default_rng(r).permutation(len(x))
        tr, te = order[:train], order[train:]
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-3
        a, b = (x[tr] - mu) / sd, (x[te] - mu) / sd
        ym = y[tr].mean(0)
        k = a @ a.T
        best, best_loo = None, np.inf
        for lam in LAMBDAS:  # leave-one-out on the training scenes: e_i = r_i / (1 - H_ii)
            inv = np.linalg.inv(k + lam * np.eye(train))
            hat = k @ inv
            loo = np.abs((y[tr] - ym - hat @ (y[tr] - ym)) / (1 - np.diag(hat))[:, None]).mean()
            if loo < best_loo:
                best, best_loo = inv, loo
        pred = b @ a.T @ best @ (y[tr] - ym) + ym
        errors.append(np.abs(pred - y[te]).mean(0))
    return np.mean(errors, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["reach-v3", "push-v3", "pick-place-v3", "peg-insert-side-v3"])
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--train", type=int, default=30)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    if not 2 <= args.train < args.scenes:
        parser.error(f"--train must be in [2, --scenes); got {args.train} of {args.scenes}")
    for task in args.tasks:
        frames, y = scenes(task, args.scenes, args.size)
        moving = y.std(0) > 1e-6  # coordinates that vary between scenes
        print(f"\n{task}: {args.scenes} scenes, probe trained on {args.train}; mean abs error, cm "
              f"(object x y z | goal x y z; '-' = fixed in this task)")
        spread = np.abs(y - y.mean(0)).mean(0)
        rows = [("spread (guess the mean)", spread)]
        encoded = encode(frames)
        for stage, cameras in tqdm(VARIANTS, desc="probes", leave=False):
            rows.append((f"{stage:8s} {'+'.join(cameras)}", ridge_error(features(encoded, stage, cameras), y,
                                                                       args.train)))
        for name, err in rows:
            cells = [f"{100 * e:4.1f}" if m else "   -" for e, m in zip(err, moving)]
            print(f"  {name:40s} {' '.join(cells[:3])} | {' '.join(cells[3:])}   "
                  f"mean {100 * err[moving].mean():4.2f}")


if __name__ == "__main__":
    main()
