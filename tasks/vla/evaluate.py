"""Closed-loop evaluation of a saved policy on MT10 tasks, on seeds never used for demonstrations.

Episode e of every task runs on scene `eval.seed + e` (>= 10,000; demos use seeds from
0), in `workers` spawned processes, each loading the policy and the frozen encoders
once and running one thread. Results come back in job order, so the table does not
depend on the number of workers. Prints success per task and on average, decoder
calls per chunk and milliseconds per action (encoders + decoder, per executed action),
writes them to <run_dir>/eval_<decoder>.json and a few rollout GIFs to <run_dir>/gifs/.
`eval.steps` / `eval.learned` decode with another step budget / the distilled sampler
(`ddm distill`); their results go to eval_<decoder>_steps<K>[_learned].json. Another seed set
(`eval.seed=20000`) adds `_seed20000`, so it never overwrites the first set's results.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import schema
from .config import EVAL_SEED_START, EvalSection, VLAExperiment
from .env import check_task, instruction, robot_state
from .rollout import run_episode
from .runner import check_action_dim
from .workers import run_jobs

_RUNNER = None  # the policy of this worker process


def _init_worker(policy_dir: str, threads: int, execute: int, ensemble: float, sampler: dict) -> None:
    global _RUNNER
    import torch

    torch.set_num_threads(threads)
    from .runner import PolicyRunner

    _RUNNER = PolicyRunner.from_pretrained(policy_dir, execute=execute or None, ensemble=ensemble)
    if sampler:
        _RUNNER.policy.set_sampler(**sampler)


def sampler_overrides(e: EvalSection) -> dict:
    """The decoder's sample fields the evaluation changes (eval.steps, eval.learned, eval.cache_targets,
    eval.skip_blocks)."""
    return {**({"steps": e.steps} if e.steps else {}), **({"learned": True} if e.learned else {}),
            **({"cache_targets": True} if e.cache_targets else {}),
            **({"skip_blocks": list(e.skip_blocks)} if e.skip_blocks else {})}


def policy_observation(obs, images: dict, cameras: list[str], text: str) -> dict:
    """The policy's input from a raw env observation and the rendered cameras (no privileged state)."""
    observation = {schema.image_key(c): images[c] for c in cameras}
    observation.update({schema.STATE: robot_state(obs), schema.TASK: text})
    return observation


def _run_job(job: tuple) -> dict:
    """One closed-loop episode of the worker's policy (frames side by side every `record_every` steps)."""
    task, seed, max_steps, record_every = job
    runner, text = _RUNNER, instruction(task)
    cameras = list(runner.policy.config.cameras)

    def act(obs, images):
        return runner.act(policy_observation(obs, images, cameras, text))

    before = (runner.stats.chunks, runner.stats.nfe, runner.stats.encode_seconds + runner.stats.decode_seconds)
    runner.reset(seed)
    ep = run_episode(task, seed, act, cameras, runner.policy.config.image_size, max_steps, record_every,
                     record_last=record_every > 0,
                     check_env=lambda env: check_action_dim(runner.policy, int(env.action_space.shape[0]),
                                                            where=f"env {task!r}"))
    s = runner.stats
    frames = [np.concatenate(views, axis=1) for views in zip(*(ep.frames[c] for c in cameras))]
    return {"task": task, "seed": seed, "success": ep.success, "steps": ep.steps, "chunks": s.chunks - before[0],
            "nfe": s.nfe - before[1], "policy_seconds": s.encode_seconds + s.decode_seconds - before[2],
            "seconds": ep.seconds, "frames": frames}


def summarise(episodes: list[dict], tasks: list[str]) -> dict:
    per_task = {}
    for task in tasks:
        mine = [e for e in episodes if e["task"] == task]
        per_task[task] = {"episodes": len(mine), "successes": sum(e["success"] for e in mine),
                          "success_rate": sum(e["success"] for e in mine) / max(len(mine), 1),
                          "mean_steps": sum(e["steps"] for e in mine) / max(len(mine), 1)}
    chunks = sum(e["chunks"] for e in episodes)
    actions = sum(e["steps"] for e in episodes)
    return {"tasks": per_task,
            "average_success": sum(t["success_rate"] for t in per_task.values()) / max(len(per_task), 1),
            "nfe_per_chunk": sum(e["nfe"] for e in episodes) / max(chunks, 1),
            "ms_per_action": 1000 * sum(e["policy_seconds"] for e in episodes) / max(actions, 1),
            "episodes": len(episodes), "actions": actions}


def evaluate_policy(exp: VLAExperiment, decoder: str, progress: bool = True, policy_dir: str | Path | None = None
                    ) -> dict:
    """Run the configured episodes with the saved policy of `decoder` (or the one at `policy_dir`);
    returns (and saves) the summary."""
    from tqdm import tqdm

    from ddm.io import atomic_write_json

    from .gif import write_gif

    e = exp.eval
    for task in e.tasks:
        check_task(task)
    policy_dir = Path(policy_dir) if policy_dir else exp.policy_dir(decoder)
    if not (policy_dir / "config.json").is_file():
        raise FileNotFoundError(f"no trained {decoder} policy at {policy_dir}; run `ddm train --config ... "
                                f"task.decoders=[{decoder}]` first")
    sampler = sampler_overrides(e)
    if sampler:  # refuse a missing or mismatched learned sampler here, not in every worker
        from ddm.sampling import Sampler

        from .policy import VLAPolicy

        policy = VLAPolicy.from_pretrained(policy_dir)
        policy.set_sampler(**sampler)
        if policy.config.decoder == "diffusion":
            Sampler.from_pretrained(policy.decoder)
    name = results_name(exp.decoder_name(decoder), sampler, e.seed)
    gif_tasks = set(e.tasks[:e.gifs])
    jobs = [(task, e.seed + k, e.max_steps, e.gif_every if (k == 0 and task in gif_tasks) else 0)
            for task in e.tasks for k in range(e.episodes)]
    workers = min(e.workers, len(jobs), os.cpu_count() or 1)
    start = time.perf_counter()
    episodes = []
    bar = tqdm(total=len(jobs), desc=f"eval {decoder}", unit="ep", disable=not progress)
    for result in run_jobs(_run_job, jobs, workers, _init_worker,
                           (str(policy_dir), 1, e.execute, e.ensemble, sampler)):
        frames = result.pop("frames")
        if frames:
            status = f"{decoder}, seed {result['seed']}: {'success' if result['success'] else 'failure'}"
            write_gif(frames, instruction(result["task"]), Path(exp.run_dir) / "gifs" /
                      f"{name}_{result['task']}_seed{result['seed']}.gif",
                      status=status)
        episodes.append(result)
        bar.update(1)
        bar.set_postfix(success=f"{sum(x['success'] for x in episodes)}/{len(episodes)}")
    bar.close()
    summary = summarise(episodes, list(e.tasks))
    summary.update(decoder=decoder, seconds=round(time.perf_counter() - start, 1), workers=workers,
                   execute=e.execute or None, ensemble=e.ensemble, sampler=sampler or None,
                   seeds=[e.seed, e.seed + e.episodes - 1], episode_results=episodes)
    atomic_write_json(Path(exp.run_dir) / f"eval_{name}.json", summary)
    return summary


def results_name(decoder_name: str, sampler: dict, seed: int) -> str:
    """The evaluation's name in <run_dir>/eval_<name>.json: the decoder, then any sampler override
    (`_steps2_learned`, `_skip_blocks1-2`), then any seed set but the first (`_seed20000`)."""
    def text(v) -> str:
        return "" if v is True else "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    name = decoder_name + "".join(f"_{k}{text(v)}" for k, v in sampler.items())
    return name + (f"_seed{seed}" if seed != EVAL_SEED_START else "")


def format_summary(summary: dict) -> str:
    acting = "".join([f", {summary['execute']} actions a chunk" if summary.get("execute") else "",
                      f", temporal ensembling {summary['ensemble']}" if summary.get("ensemble") else "",
                      f", sampler {summary['sampler']}" if summary.get("sampler") else ""])
    lines = [f"{summary['decoder']}: {summary['episodes']} episodes on seeds {summary['seeds'][0]}.."
             f"{summary['seeds'][1]} per task, {summary['seconds']} s ({summary['workers']} workers{acting})"]
    for task, t in summary["tasks"].items():
        lines.append(f"  {task:26s} {t['successes']:3d}/{t['episodes']:<3d} {100 * t['success_rate']:5.1f}%"
                     f"   mean steps {t['mean_steps']:.0f}")
    lines.append(f"  {'average':26s} {100 * summary['average_success']:13.1f}%")
    lines.append(f"  decoder calls per chunk {summary['nfe_per_chunk']:.1f}, {summary['ms_per_action']:.2f} ms "
                 f"per action (encoders + decoder)")
    return "\n".join(lines)


def format_comparison(summaries: list[dict]) -> str:
    """One row per decoder: the figures the issue asks to set side by side."""
    lines = [f"  {'decoder':16s} {'success':>8s} {'calls/chunk':>12s} {'ms/action':>10s}"]
    for s in summaries:
        lines.append(f"  {s['decoder']:16s} {100 * s['average_success']:7.1f}% {s['nfe_per_chunk']:12.1f} "
                     f"{s['ms_per_action']:10.2f}")
    return "\n".join(lines)
