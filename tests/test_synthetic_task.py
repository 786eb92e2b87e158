"""The synthetic task end to end: exact references, the ELBO of a perfect denoiser, and the CLI."""

import json
import math

import pytest
import torch

from ddm.cli import main
from ddm.hub import load_pretrained
from ddm.objectives import elbo_bits_per_token
from ddm.process import MaskingProcess
from ddm.experiment import load_experiment
from ddm.task import build_task
from tasks.synthetic.oracle import OracleDenoiser

TINY = ["task.train_size=2000", "task.eval_size=200", "task.elbo_repeats=1", "model.d_model=32",
        "model.depth=1", "train.steps=30", "train.batch_size=16", "train.warmup_steps=5",
        "train.log_every=10", "train.checkpoint_every=20", "train.progress=false",
        "sample.num_samples=64", "sample.batch_size=32", "sample.steps=8"]


@pytest.mark.parametrize("schedule", ["loglinear", "cosine", "polynomial"])
def test_elbo_of_the_exact_denoiser_equals_the_entropy(schedule):
    # The continuous-time ELBO is tight for the true conditionals: E[-ELBO] = H exactly.
    # This checks process, weights and the estimator together.
    cfg = load_experiment("configs/tasks/synthetic_cpu.yaml", ["task.length=12", "model.shape=[12]",
                                                         f"diffusion.schedule={schedule}"])
    task = build_task(cfg)
    oracle = OracleDenoiser(task.source, 12, visible="onehot")
    x = task.source.sample(4000, 12, torch.Generator().manual_seed(0))
    process = MaskingProcess.from_config(cfg.diffusion, cfg.model.mask_id)
    batches = [{"ids": x[i:i + 1000]} for i in range(0, 4000, 1000)]
    elbo = elbo_bits_per_token(oracle, batches, process, torch.Generator().manual_seed(1), repeats=3)
    exact = float(-task.source.log_prob(x).mean()) / 12 / math.log(2)  # same sequences: less noise
    assert elbo == pytest.approx(exact, rel=0.02)
    assert exact == pytest.approx(task.target_entropy_bits(), rel=0.02)


def test_exact_references_and_noise_floor():
    task = build_task(load_experiment("configs/tasks/synthetic_cpu.yaml"))
    h = task.target_entropy_bits()
    assert h >= 1.0  # at least a bit per token
    floor = task.noise_floor(2000)
    assert floor["nll_over_entropy"] == pytest.approx(1.0, abs=0.03)
    assert 0 < floor["pair_tv"] < 0.05


def test_conditional_variant_entropy_is_the_conditional_entropy():
    task = build_task(load_experiment("configs/tasks/synthetic_cond_cpu.yaml"))
    src, t = task.source, task.config.task
    assert task.target_entropy_bits() == pytest.approx(
        (src.entropy(t.prefix_length + t.length) - src.entropy(t.prefix_length)) / t.length / math.log(2))
    floor = task.noise_floor(2000)
    assert floor["nll_over_entropy"] == pytest.approx(1.0, abs=0.05)


def test_mismatched_model_and_task_fail_at_load():
    from ddm.config import ConfigError

    with pytest.raises(ConfigError, match="model.vocab_size: 12 does not match task.vocab_size=16"):
        build_task(load_experiment("configs/tasks/synthetic_cpu.yaml", ["model.vocab_size=12"]))
    with pytest.raises(ConfigError, match="model.shape"):
        build_task(load_experiment("configs/tasks/synthetic_cpu.yaml", ["model.shape=[16]"]))


def test_cli_train_eval_sample_resume(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--config", "configs/tasks/synthetic_cpu.yaml", f"run_dir={run}", *TINY]
    assert main(["train", *args]) == 0
    assert (run / "model" / "model.safetensors").is_file() and (run / "checkpoints").is_dir()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if "loss" in e] == [10, 20, 30]
    assert main(["eval", *args]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("elbo_bits_per_token", "pair_tv", "pair_tv_noise_floor", "impossible_fraction"):
        assert math.isfinite(metrics[key])
    assert metrics["elbo_bits_per_token"] < 4.0  # below the uniform code of 16 tokens (3.37 after 30 steps)
    assert metrics["pair_tv"] > 2 * metrics["pair_tv_noise_floor"]  # 30 steps are far from the source
    assert metrics["nfe"] == 8
    out = capsys.readouterr().out
    assert "true entropy" in out and "noise floor" in out
    assert main(["sample", *args, "sample.order=confidence"]) == 0
    assert (run / "samples" / "samples.safetensors").is_file()
    # a longer run in the same folder resumes from step 30
    assert main(["train", *args, "train.steps=40"]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines if "loss" in e] == [10, 20, 30, 40]


def test_cli_refuses_a_checkpoint_from_another_config(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--config", "configs/tasks/synthetic_cpu.yaml", f"run_dir={run}", *TINY]
    assert main(["train", *args, "train.steps=5"]) == 0
    assert main(["eval", *args, "model.depth=2"]) == 2
    assert "another config; differing fields: depth: 2 != 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="another config; differing fields: depth: 2 != 1"):
        main(["--debug", "eval", *args, "model.depth=2"])  # the traceback, on request
    assert main(["eval", *args, "model.depth=x"]) == 2
    assert "model.depth: expected an integer" in capsys.readouterr().err
    assert load_pretrained(run / "model").config.depth == 1


def test_two_process_training_through_the_cli(tmp_path):
    """`accelerate launch` (2 CPU processes over gloo) runs `ddm train` unchanged and trains."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "ddm.cli", "train",
           "--config", "configs/tasks/synthetic_cpu.yaml", f"run_dir={run}",
           *[o for o in TINY if not o.startswith("train.steps")], "train.steps=60", "train.lr=3e-3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    entries = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in entries if "loss" in e]
    assert len(losses) == 6 and sum(losses[-3:]) / 3 < 0.9 * losses[0]  # from uniform towards the unigram and beyond
    assert load_pretrained(run / "model").config.depth == 1
