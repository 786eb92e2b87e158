"""Where a trained policy's episodes end: the distance to the goal over an episode.

For each (task, seed) the policy acts as in `ddm eval` (its own cameras, one thread) while
this script reads the privileged state the policy never sees: for reach the hand, for the
other tasks the object, against the goal. It prints success, the closest approach, the
distance at the end and the final error per axis (metres). A policy that gets close and then
leaves has a small closest approach and a large final distance; one that never moved the
object keeps the object's starting height error.

    python benchmarks/vla_failures.py --policy runs/vla/mt10_precise/policy_hybrid \\
        --task reach-v3 --seeds 20000 20002 20004 20006
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tasks.vla  # noqa: E402,F401  (a headless MUJOCO_GL before mujoco loads)
from tasks.vla.env import instruction  # noqa: E402
from tasks.vla.evaluate import policy_observation  # noqa: E402
from tasks.vla.rollout import run_episode  # noqa: E402
from tasks.vla.runner import PolicyRunner  # noqa: E402

# MetaWorld's observation: hand xyz [0:3], gripper [3], first object xyz [4:7], ..., goal xyz [-3:]
HAND, OBJECT, GOAL = slice(0, 3), slice(4, 7), slice(-3, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="a saved policy folder (runs/vla/.../policy_<decoder>)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--max-steps", type=int, default=500)
    args = parser.parse_args()

    torch.set_num_threads(1)
    runner = PolicyRunner.from_pretrained(args.policy)
    cameras = list(runner.policy.config.cameras)
    text = instruction(args.task)
    mover = HAND if args.task.startswith("reach") else OBJECT
    print(f"{'seed':>6} {'success':>7} {'steps':>5} {'closest':>7} {'final':>6}  final error xyz")
    for seed in args.seeds:
        observed = []

        def act(obs, images):
            observed.append(obs.copy())
            return runner.act(policy_observation(obs, images, cameras, text))

        runner.reset(seed)
        ep = run_episode(args.task, seed, act, cameras, runner.policy.config.image_size, args.max_steps)
        states = np.stack(observed)
        error = states[:, mover] - states[:, GOAL]
        distance = np.linalg.norm(error, axis=1)
        print(f"{seed:>6} {str(ep.success):>7} {ep.steps:>5} {distance.min():7.3f} {distance[-1]:6.3f}  "
              f"{np.array2string(error[-1], precision=3)}", flush=True)


if __name__ == "__main__":
    main()
