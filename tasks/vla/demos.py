"""Record MetaWorld's scripted experts as a LeRobot-style `datasets.Dataset` (`ddm prepare` of a VLA config).

Each (task, episode) runs on its own seed, hence its own object and goal placement.
An episode ends at the expert's first success (that frame is kept, with
next.success true), `hold` steps later, or at `max_steps`; an episode that never
succeeds is dropped and counted, so the data holds successful demonstrations only.
With `action_noise` the env plays a perturbed hand motion and the table keeps the
expert's action (DART), seeded by the episode's seed. Episodes run in
`workers` spawned processes (each with its own GL context); the results come back in
job order, so a run is reproducible whatever the number of workers. Frames stream
into an Arrow file as episodes finish (a large collection never sits in memory),
and the finished table is published with one rename (`ddm.io.atomic_directory`):
a reader never sees a half-written folder.
"""

from __future__ import annotations

import tasks.vla  # noqa: F401  (sets a headless MUJOCO_GL before mujoco is imported)

import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import schema
from .config import DemoSection
from .env import ACTION_DIM, HAND_DIMS, STATE_DIM, instruction, make_expert
from .rollout import Episode, run_episode
from .workers import run_jobs


def _expert_episode(job: tuple) -> Episode:
    """One expert episode with every frame recorded (a job of `run_jobs`)."""
    task, seed, cameras, size, max_steps, noise, hold = job
    expert = make_expert(task)
    rng = np.random.default_rng(seed)

    def perturb(action: np.ndarray) -> np.ndarray:
        out = action.copy()
        out[:HAND_DIMS] += rng.normal(0.0, noise, HAND_DIMS)
        return out

    ep = run_episode(task, seed, lambda obs, images: expert.get_action(obs), cameras, size, max_steps,
                     record_every=1, play=perturb if noise > 0 else None, hold=hold)
    if not ep.success:  # dropped: send no frames back to the parent process
        ep.frames, ep.states, ep.actions = {}, [], []
    return ep


def episode_columns(ep: Episode) -> dict:
    """The table columns of a successful episode (every frame)."""
    columns = {schema.image_key(cam): np.stack(images) for cam, images in ep.frames.items()}
    columns[schema.STATE] = np.stack(ep.states)
    columns[schema.ACTION] = np.stack(ep.actions)
    columns[schema.SUCCESS] = np.array(ep.successes)
    return columns


def collect(cfg: DemoSection, out: str | Path, progress: bool = True) -> dict:
    """Run the experts, write the successful episodes to `out` (save_to_disk), return a report."""
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter
    from tqdm import tqdm

    from ddm.io import atomic_directory

    texts = {task: instruction(task) for task in cfg.tasks}
    features = schema.features(cfg.cameras, cfg.size, STATE_DIM, ACTION_DIM)
    jobs = [(task, cfg.seed + e, list(cfg.cameras), cfg.size, cfg.max_steps, cfg.action_noise, cfg.hold)
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
        for ep in run_jobs(_expert_episode, jobs, cfg.workers):
            stats = per_task[ep.task]
            stats["attempted"] += 1
            frames_seen += ep.steps
            if not ep.success:
                stats["dropped"] += 1
                stats["dropped_seeds"].append(ep.seed)
            else:
                n = ep.steps
                batch = {key: list(value) for key, value in episode_columns(ep).items()}
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
