"""The generic trainer: learning, exact resume, crash safety, interrupts, divergence, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ddm.config import ConfigError, TrainConfig
from ddm.training import Trainer, TrainingDiverged, latest_checkpoint, list_checkpoints
from ddm.training.trainer import lr_factor, param_groups

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- a toy problem


class ToyData:
    """y = x @ w + bias[c]: a learnable regression with a categorical input."""

    def __init__(self, n: int = 256, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.c = torch.randint(0, 4, (n,), generator=g)
        self.y = self.x @ torch.randn(8, generator=g) + torch.randn(4, generator=g)[self.c]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "c": self.c[i], "y": self.y[i], "index": torch.tensor(i)}


class ToyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(4, 16)
        self.inp = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(0.1)  # exercises the reseeded global RNG
        self.out = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.norm(self.inp(x) + self.embed(c))))).squeeze(-1)


def toy_loss(model: nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    noise = 0.01 * torch.randn(batch["x"].shape, generator=gen).to(batch["x"].device)  # a CPU generator, as the trainer gives
    loss = ((model(batch["x"] + noise, batch["c"]).float() - batch["y"]) ** 2).mean()
    return loss, {"mse": loss.item()}


class CountingLoss:
    """toy_loss that counts its calls (one per micro-batch): tells a resume from a fresh run."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        self.calls += 1
        return toy_loss(model, batch, gen)


def make_trainer(out_dir: Path, loss_fn: Any = toy_loss, data: Any = None, eval_fn: Any = None,
                 **overrides: Any) -> Trainer:
    settings = dict(steps=20, batch_size=8, lr=1e-2, warmup_steps=2, log_every=5, checkpoint_every=10,
                    ema_decay=0.9, keep_checkpoints=2, progress=False)
    settings.update(overrides)
    torch.manual_seed(0)
    return Trainer(ToyModel(), loss_fn, ToyData() if data is None else data, TrainConfig(**settings), out_dir,
                   eval_fn=eval_fn)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    if trainer.ema is not None:
        state.update({f"ema.{k}": v.clone() for k, v in trainer.ema.state_dict().items()})
    return state


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def logged_steps(out_dir: Path) -> list[int]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)]


# --------------------------------------------------------------------------- tests


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only adds contention


def test_loss_goes_down(tmp_path: Path) -> None:
    result = make_trainer(tmp_path, steps=150, log_every=50, checkpoint_every=0).train()
    entries = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries] == [50, 100, 150]
    assert {"loss", "lr", "grad_norm", "examples_per_s", "elapsed", "mse"} <= entries[0].keys()
    assert entries[-1]["loss"] < 0.2 * entries[0]["loss"]  # each is the mean over 50 steps
    assert result.step == 150 and not result.interrupted and math.isfinite(result.loss)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000150"]


def test_optimizer_groups_and_schedule() -> None:
    model = ToyModel()
    groups = param_groups(model, 0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model.inp.weight), id(model.out.weight)}  # no biases, norms, embeddings
    assert lr_factor(0, 4, 20, 0.1) == 0.25 and lr_factor(3, 4, 20, 0.1) == 1.0
    assert lr_factor(20, 4, 20, 0.1) == pytest.approx(0.1) and lr_factor(99, 4, 20, 0.1) == pytest.approx(0.1)


def test_resume_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Warm-up covers B's first 10 steps, so its shorter schedule matches A's there.
    settings = dict(grad_accum=2, warmup_steps=10, checkpoint_every=5)
    a = make_trainer(tmp_path / "a", **settings)
    a.train()

    make_trainer(tmp_path / "b", steps=10, **settings).train()
    # Checkpoints never go through pickle.
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load used"))
    counter = CountingLoss()
    b = make_trainer(tmp_path / "b", counter, **settings)
    result = b.train()

    assert result.step == 20 and counter.calls == 10 * 2  # resumed at step 10
    assert_identical(weights(a), weights(b))
    assert logged_steps(tmp_path / "b") == logged_steps(tmp_path / "a") == [5, 10, 15, 20]
    folder = latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert [p.name for p in list_checkpoints(folder.parent)] == ["step_00000015", "step_00000020"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors", "model.safetensors", "optimizer.json", "optimizer.safetensors",
        "scheduler.json", "trainer.json"]
    assert json.loads((folder / "trainer.json").read_text())["step"] == 20


def test_extended_run_follows_the_new_schedule(tmp_path: Path) -> None:
    make_trainer(tmp_path, steps=10, log_every=1).train()  # ends at lr * min_lr_ratio
    make_trainer(tmp_path, steps=20, log_every=1).train()
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs[9] == pytest.approx(1e-2 * lr_factor(9, 2, 10, 0.1))
    assert lrs[10:] == pytest.approx([1e-2 * lr_factor(s, 2, 20, 0.1) for s in range(10, 20)])


_KILL_WHILE_SAVING = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_trainer
from ddm.training import checkpoint

real_save = checkpoint.save_file

def save_then_die(tensors, path):
    real_save(tensors, path)
    if "step_00000010" in path:  # one file of the second checkpoint is on disk
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.save_file = save_then_die
test_trainer.make_trainer({out!r}, steps=10, checkpoint_every=5).train()
"""


def test_kill_while_writing_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = _KILL_WHILE_SAVING.format(tests=str(TESTS), out=str(out))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    root = out / "checkpoints"
    half_written = list(root.glob(".tmp-step_00000010-*"))
    assert len(half_written) == 1 and (half_written[0] / "model.safetensors").is_file()
    assert latest_checkpoint(root) == root / "step_00000005"

    counter = CountingLoss()
    resumed = make_trainer(out, counter, steps=10, checkpoint_every=5)
    assert resumed.train().step == 10 and counter.calls == 5
    reference = make_trainer(tmp_path / "reference", steps=10, checkpoint_every=5)
    reference.train()
    assert_identical(weights(resumed), weights(reference))
    assert not list(root.glob(".tmp-*"))  # leftovers are cleaned once a new checkpoint is written


def test_nan_loss_stops_without_saving(tmp_path: Path) -> None:
    calls = []

    def loss_fn(model: nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        calls.append(1)
        loss, extras = toy_loss(model, batch, gen)
        return (loss * math.nan if len(calls) == 8 else loss), extras

    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 8\b"):
        make_trainer(tmp_path, loss_fn, log_every=1, checkpoint_every=5, steps=10).train()
    root = tmp_path / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step_00000005"]

    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "lo')  # a line torn by a kill
    counter = CountingLoss()
    resumed = make_trainer(tmp_path, counter, log_every=1, checkpoint_every=5, steps=10)
    assert resumed.train().step == 10 and counter.calls == 5
    assert logged_steps(tmp_path) == list(range(1, 11))  # steps 6 and 7 were not logged twice
    reference = make_trainer(tmp_path / "reference", log_every=1, checkpoint_every=5, steps=10)
    reference.train()
    assert_identical(weights(resumed), weights(reference))  # step 5 was saved before the NaN


@pytest.mark.parametrize("how", ["keyboard", "sigterm"])
def test_interrupt_saves_and_resumes(tmp_path: Path, how: str) -> None:
    calls = []

    def loss_fn(model: nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        calls.append(1)
        if len(calls) == 2 * 7 + 2:  # second micro-batch of the 8th step: 7 steps are complete
            if how == "keyboard":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return toy_loss(model, batch, gen)

    trainer = make_trainer(tmp_path / "run", loss_fn, steps=12, grad_accum=2, checkpoint_every=5)
    result = trainer.train()
    assert result.interrupted and result.step == 7
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step_00000007"

    # The same trainer continues (its half-accumulated gradients were dropped).
    calls_before = len(calls)
    result = trainer.train()
    assert not result.interrupted and result.step == 12 and len(calls) - calls_before == 5 * 2
    reference = make_trainer(tmp_path / "reference", steps=12, grad_accum=2, checkpoint_every=5)
    reference.train()
    assert_identical(weights(trainer), weights(reference))


def test_hf_dataset_reads_the_same_examples(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    toy = ToyData()
    columns = {"x": toy.x.numpy(), "c": toy.c.numpy(), "y": toy.y.numpy(), "index": list(range(len(toy)))}
    hf = datasets.Dataset.from_dict(columns).with_format("torch")
    a = make_trainer(tmp_path / "plain", data=toy, steps=5)
    a.train()
    b = make_trainer(tmp_path / "hf", data=hf, steps=5)  # batched reads through __getitems__
    b.train()
    assert_identical(weights(a), weights(b))


def test_eval_uses_ema_weights(tmp_path: Path) -> None:
    seen = []

    def eval_fn(model: nn.Module) -> dict[str, float]:
        seen.append({k: v.clone() for k, v in model.named_parameters()})
        return {"score": 1.0}

    trainer = make_trainer(tmp_path, eval_fn=eval_fn, steps=10, eval_every=5)
    result = trainer.train()
    assert len(seen) == 2 and result.metrics["eval/score"] == 1.0
    ema = trainer.ema.state_dict()
    assert_identical(seen[-1], ema)
    assert not torch.equal(trainer.model.out.weight, ema["out.weight"])  # training weights restored
    copy = ToyModel()
    trainer.copy_ema_to(copy)
    assert_identical(dict(copy.named_parameters()), ema)
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
             if "eval/score" in line]
    assert [e["step"] for e in evals] == [5, 10]


_BF16 = """
import json, sys, torch
sys.path.insert(0, {tests!r})
import test_trainer

autocast_seen = []

def loss_fn(model, batch, gen):
    autocast_seen.append(torch.is_autocast_enabled("cpu"))
    return test_trainer.toy_loss(model, batch, gen)

trainer = test_trainer.make_trainer({out!r}, loss_fn, steps=60, log_every=20, mixed_precision="bf16")
trainer.train()
weights = [*trainer.model.parameters(), *trainer.ema.state_dict().values()]
dtypes = {{str(w.dtype) for w in weights}}
print(json.dumps({{"autocast": all(autocast_seen), "dtypes": sorted(dtypes)}}))
"""


def test_bf16_autocast(tmp_path: Path) -> None:
    # A subprocess: accelerate fixes the precision once per process, and the other tests use "no".
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = _BF16.format(tests=str(TESTS), out=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"autocast": True, "dtypes": ["torch.float32"]}  # bf16 compute, fp32 weights and EMA
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(map(math.isfinite, losses)) and losses[-1] < losses[0]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="training data is empty"):
        make_trainer(tmp_path, data=[])
    frozen = ToyModel().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(frozen, toy_loss, ToyData(), TrainConfig(progress=False), tmp_path)
    # a config built in code is checked as a file's is, before anything divides by it
    with pytest.raises(ConfigError, match=r"train.log_every: 0 is out of range; expected >= 1"):
        Trainer(ToyModel(), toy_loss, ToyData(), TrainConfig(progress=False, log_every=0), tmp_path)
    with pytest.raises(ConfigError, match=r"train.lr: -0.1 is out of range; expected > 0.0"):
        Trainer(ToyModel(), toy_loss, ToyData(), TrainConfig(progress=False, lr=-0.1), tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_training(tmp_path: Path) -> None:
    # `accelerate launch --cpu` starts one process unless MPI is set up; the torchrun launcher
    # (--multi_gpu) with ACCELERATE_USE_CPU gives two CPU processes talking over gloo.
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(TESTS / "scripts" / "ddp_train.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    seen = [set(r["seen"]) for r in ranks]
    assert all(len(s) == len(r["seen"]) for s, r in zip(seen, ranks))  # no repeats within the run
    assert not seen[0] & seen[1]  # each process read its own slice
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # gradients were all-reduced
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])
    assert latest_checkpoint(tmp_path / "checkpoints").name == f"step_{ranks[0]['steps']:08d}"


def test_ctrl_c_under_accelerate_launch_checkpoints_every_process(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole process group (launcher and workers): every worker
    finishes the step under way, they agree, save that step once and stop together."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(TESTS / "scripts" / "ddp_train.py"), str(tmp_path),
           "100000", "0"]  # no periodic checkpoint: what is saved comes from the interrupt
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while (not metrics.is_file() or len(metrics.read_text().splitlines()) < 5) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(r["interrupted"] for r in ranks), out[-3000:]
    assert ranks[0]["steps"] == ranks[1]["steps"] >= 5 and ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert latest_checkpoint(tmp_path / "checkpoints").name == f"step_{ranks[0]['steps']:08d}"


def test_ema_warmup_forgets_the_start_of_a_short_run() -> None:
    """A weight that walks 0 -> 1 over 1,200 steps: the shadow ends near the recent weights,
    not at the mean of the trajectory (0.5), even with a long decay of 0.999."""
    from ddm.training.ema import EMA

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ema = EMA(model, decay=0.999)
    steps = 1200
    for step in range(steps):
        with torch.no_grad():
            model.weight.fill_((step + 1) / steps)
        ema.update(model, step)
    assert 0.85 < float(ema.shadow["weight"]) < 1.0
    assert ema.decay_at(0) == 0.1 and ema.decay_at(10**6) == 0.999


def test_train_to_end_leaves_the_ema_weights_in_the_model(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, steps=5)
    trainer.train_to_end()
    assert_identical(dict(trainer.model.named_parameters()), trainer.ema.state_dict())
    assert not trainer.model.training
