"""Record MetaWorld's scripted experts as a LeRobot-style `datasets.Dataset`.

    python -m tasks.vla.demos --tasks reach-v3 push-v3 --episodes 2 --size 84 --out runs/vla/demos

Each (task, episode) runs on its own seed, hence its own object and goal placement.
An episode ends at the expert's first success (that frame is kept, with
next.success true) or at `max_steps`; an episode that never succeeds is dropped and
counted, so the data holds successful demonstrations only. Episodes run in
`workers` spawned processes (each with its own GL context); the results come back in
job order, so a run is reproducible whatever the number of workers. Frames stream
into an Arrow file as episodes finish (a large collection never sits in memory),
and the finished table is published with one rename (`ddm.io.atomic_directory`):
a reader never sees a half-written folder.
"""

from __future__ import annotations

import tasks.vla  # noqa: F401  (sets a headless MUJOCO_GL before mujoco is imported)

import argparse
import json
import multiprocessing
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import schema
from .env import (ACTION_DIM, DEFAULT_MAX_STEPS, MT10_TASKS, STATE_DIM, check_task, instruction, make_env,
                  make_expert, robot_state)


@dataclass
class DemoConfig:
    tasks: list[str] = field(default_factory=lambda: list(MT10_TASKS))
    episodes: int = 2  # attempted per task; failed ones are dropped
    size: int = 84  # square images, pixels
    cameras: list[str] = field(default_factory=lambda: ["corner3", "gripperPOV"])
    max_steps: int = DEFAULT_MAX_STEPS
    seed: int = 0  # episode e of every task runs on seed + e
    workers: int = 1

    def check(self) -> None:
        if not self.tasks:
            raise ValueError("no tasks given")
        for task in self.tasks:
            check_task(task)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks repeat: {self.tasks}")
        if not self.cameras:
            raise ValueError("no cameras given")
        for name, value, least in (("episodes", self.episodes, 1), ("workers", self.workers, 1),
                                   ("max_steps", self.max_steps, 1), ("size", self.size, 8)):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")


@dataclass
class Episode:
    task: str
    seed: int
    success: bool
    steps: int
    seconds: float
    frames: dict | None  # column -> stacked array; None for a failed episode


def run_episode(task: str, seed: int, cameras: list[str], size: int, max_steps: int) -> Episode:
    """Roll the expert out once on the scene of `seed`, rendering every frame."""
    from .render import CameraRenderer

    # The experts warn on every step that their gains exceed the action range: the
    # env clips, and so do we before recording.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    start = time.perf_counter()
    env = make_env(task, seed, max_steps)
    expert = make_expert(task)
    renderer = CameraRenderer(env.model, cameras, size)
    images = {cam: [] for cam in cameras}
    states, actions, successes = [], [], []
    try:
        obs, _ = env.reset()
        success = False
        while True:
            for cam, image in renderer.render(env.data).items():
                images[cam].append(image)
            states.append(robot_state(obs))
            action = np.clip(expert.get_action(obs), -1.0, 1.0).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            actions.append(action)
            success = bool(info["success"])
            successes.append(success)
            if success or terminated or truncated:
                break
    finally:
        renderer.close()
        env.close()
    frames = None
    if success:
        frames = {schema.image_key(cam): np.stack(images[cam]) for cam in cameras}
        frames[schema.STATE] = np.stack(states)
        frames[schema.ACTION] = np.stack(actions)
        frames[schema.SUCCESS] = np.array(successes)
    return Episode(task, seed, success, len(actions), time.perf_counter() - start, frames)


def _run_job(job: tuple) -> Episode:
    return run_episode(*job)


def _episodes(cfg: DemoConfig, jobs: list[tuple]):
    """Episodes in job order, from this process (one worker) or a spawned pool."""
    if cfg.workers == 1:
        for job in jobs:
            yield _run_job(job)
        return
    # spawn, not fork: a forked child would inherit the parent's GL and OpenMP state.
    with multiprocessing.get_context("spawn").Pool(cfg.workers) as pool:
        yield from pool.imap(_run_job, jobs)


def collect(cfg: DemoConfig, out: str | Path, progress: bool = True) -> dict:
    """Run the experts, write the successful episodes to `out` (save_to_disk), return a report."""
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter
    from tqdm import tqdm

    from ddm.io import atomic_directory

    cfg.check()
    texts = {task: instruction(task) for task in cfg.tasks}
    features = schema.features(cfg.cameras, cfg.size, STATE_DIM, ACTION_DIM)
    jobs = [(task, cfg.seed + e, list(cfg.cameras), cfg.size, cfg.max_steps)
            for task in cfg.tasks for e in range(cfg.episodes)]
    per_task = {task: {"attempted": 0, "kept": 0, "dropped": 0, "frames": 0, "kept_seeds": [],
                       "dropped_seeds": []} for task in cfg.tasks}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".scratch-{out.name}-", dir=out.parent))
    start = time.perf_counter()
    frames_seen = 0
    episode_index = 0
    try:
        writer = ArrowWriter(features=features, path=str(scratch / "frames.arrow"))
        bar = tqdm(total=len(jobs), desc="expert episodes", unit="ep", disable=not progress)
        for ep in _episodes(cfg, jobs):
            stats = per_task[ep.task]
            stats["attempted"] += 1
            frames_seen += ep.steps
            if ep.frames is None:
                stats["dropped"] += 1
                stats["dropped_seeds"].append(ep.seed)
            else:
                n = ep.steps
                batch = {key: list(value) for key, value in ep.frames.items()}
                batch[schema.TASK] = [texts[ep.task]] * n
                batch[schema.EPISODE] = [episode_index] * n
                batch[schema.FRAME] = list(range(n))
                writer.write_batch(batch)
                episode_index += 1
                stats["kept"] += 1
                stats["frames"] += n
                stats["kept_seeds"].append(ep.seed)
            bar.update(1)
            bar.set_postfix(fps=f"{frames_seen / (time.perf_counter() - start):.0f}",
                            dropped=sum(s["dropped"] for s in per_task.values()))
        bar.close()
        writer.finalize()
        seconds = time.perf_counter() - start
        report = {
            "config": asdict(cfg),
            "instructions": texts,
            "episodes": episode_index,
            "frames": sum(s["frames"] for s in per_task.values()),
            "frames_simulated": frames_seen,
            "seconds": round(seconds, 2),
            "frames_per_second": round(frames_seen / seconds, 1),
            "tasks": {task: {**s, "success_rate": s["kept"] / s["attempted"]} for task, s in per_task.items()},
        }
        if episode_index == 0:
            raise RuntimeError(f"every expert episode failed ({frames_seen} frames): nothing to write; "
                               f"per task: {report['tasks']}")
        data = Dataset.from_file(str(scratch / "frames.arrow"))
        with atomic_directory(out) as tmp:
            data.save_to_disk(str(tmp))
            (tmp / "demos_report.json").write_text(json.dumps(report, indent=2) + "\n")
        del data
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['episodes']} episodes, {report['frames']} frames kept "
             f"({report['frames_simulated']} simulated) in {report['seconds']} s: "
             f"{report['frames_per_second']} frames/s"]
    for task, s in report["tasks"].items():
        lines.append(f"  {task:26s} expert success {s['kept']}/{s['attempted']} "
                     f"({100 * s['success_rate']:.0f}%), dropped {s['dropped']}, frames {s['frames']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tasks.vla.demos", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(MT10_TASKS), help="MT10 task names (default: all ten)")
    p.add_argument("--episodes", type=int, default=2, help="episodes attempted per task")
    p.add_argument("--size", type=int, default=84, help="image side, pixels")
    p.add_argument("--cameras", nargs="+", default=["corner3", "gripperPOV"])
    p.add_argument("--max-steps", type=int, default=DEFAULT_MAX_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", required=True, help="folder for the dataset (replaced atomically)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    cfg = DemoConfig(tasks=a.tasks, episodes=a.episodes, size=a.size, cameras=a.cameras, max_steps=a.max_steps,
                     seed=a.seed, workers=a.workers)
    try:
        cfg.check()
    except ValueError as e:
        p.error(str(e))
    report = collect(cfg, a.out, progress=not a.no_progress)
    print(format_report(report))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
