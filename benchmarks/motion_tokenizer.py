"""The motion tokenizer's reconstructions, judged as the motion task judges samples: foot skating and depth below the floor.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/motion_tokenizer.py                         # the config as it is
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/motion_tokenizer.py tokenizer.foot_weight=0  # any override

Fits `--config` (default configs/tokenizers/motion_gen.yaml, with the overrides) into `--out`,
then prints its held-out errors (`MotionTokenizer.evaluate`), the error of the reconstructed feet's
velocities, and, for the real motion and its reconstruction, the foot skating of the training windows and of the held-out parts, and the depth
of the training windows below the floor (`tasks.motion.metrics`). The figures in the config's
header come from this script, one thread each, two runs at a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddm.experiment import load_experiment  # noqa: E402
from tasks.motion.kin import body_points  # noqa: E402
from tasks.motion.metrics import foot_skating, ground_penetration  # noqa: E402
from tokenizers_vq.task import fit_tokenizer  # noqa: E402


def foot_velocity_error(x: torch.Tensor, x_hat: torch.Tensor, fps: float) -> float:
    """The mean distance (cm/s) between the reconstructed feet's velocities and the real ones: lower
    skating with a higher error is damped foot speed, not a better decoder."""
    _, feet = body_points(x)
    _, feet_hat = body_points(x_hat)
    return float((feet_hat.diff(dim=1) - feet.diff(dim=1)).norm(dim=-1).mean() * fps * 100)


def skating(motions: list[torch.Tensor], fps: float) -> float:
    """Foot skating of motions of different lengths, weighted by their frames."""
    total = sum(foot_skating(m[None], fps)["skating_cm_s"] * len(m) for m in motions)
    return total / sum(len(m) for m in motions)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/tokenizers/motion_gen.yaml")
    p.add_argument("--out", default="runs/tokenizers/motion_feet", help="the fitted tokenizer's folder")
    p.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = p.parse_args()

    exp = load_experiment(args.config, [f"run_dir={args.out}_training", "train.progress=true", *args.overrides])
    start = time.perf_counter()
    tok, splits = fit_tokenizer(exp, args.out)
    print(f"fitted in {time.perf_counter() - start:.0f} s", flush=True)
    held = tok.evaluate(splits["heldout"])
    fps = exp.data.fps
    x = torch.as_tensor(splits["train"][:]["x"]).float()
    with torch.no_grad():
        x_hat = torch.cat([tok.reconstruct(x[i:i + 512])[0] for i in range(0, len(x), 512)])
    parts = [row["x"].float() for row in splits["heldout"]]
    parts_hat = [tok.reconstruct_sequence(part)[0] for part in parts]
    print(f"held-out: rotation {held['rotation_error_deg']:.1f} deg, root rotation "
          f"{held['root_rotation_error_deg']:.1f} deg, joints {held['joint_position_error_cm']:.1f} cm")
    held_velocity = sum(foot_velocity_error(a[None], b[None], fps) * len(a) for a, b in zip(parts, parts_hat))
    print(f"feet's velocity error: training windows {foot_velocity_error(x, x_hat, fps):.1f} cm/s, held-out parts "
          f"{held_velocity / sum(len(a) for a in parts):.1f} cm/s")
    print(f"{'':<18}{'skating, training windows':>28}{'skating, held-out parts':>26}{'depth, training':>18}")
    for name, windows, held_parts in (("real", x, parts), ("reconstructions", x_hat, parts_hat)):
        print(f"{name:<18}{foot_skating(windows, fps)['skating_cm_s']:>23.1f} cm/s"
              f"{skating(held_parts, fps):>21.1f} cm/s{ground_penetration(windows)['penetration_cm']:>15.2f} cm")


if __name__ == "__main__":
    main()
