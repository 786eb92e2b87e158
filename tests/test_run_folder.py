"""A run folder knows its experiment: nothing trained is lost or silently replaced, pruning is
atomic, and every expected failure of the command is one line naming the field or file."""

import json
import os

import pytest
import yaml

from ddm.cli import main

SYNTH = "configs/tasks/synthetic_cpu.yaml"
TINY = ["task.train_size=500", "task.eval_size=100", "task.elbo_repeats=1", "model.d_model=32", "model.depth=1",
        "train.steps=6", "train.batch_size=8", "train.warmup_steps=1", "train.log_every=3",
        "train.checkpoint_every=3", "train.progress=false", "sample.num_samples=16", "sample.batch_size=16",
        "sample.steps=4"]


def test_resuming_with_a_changed_experiment_is_refused_and_nothing_is_overwritten(tmp_path, capsys):
    args = ["--config", SYNTH, f"run_dir={tmp_path}", *TINY]
    assert main(["train", *args]) == 0
    record = (tmp_path / "config.yaml").read_text()
    weights = (tmp_path / "model" / "model.safetensors").read_bytes()
    for change, named in [("model.shape=[16]", "model.shape: [32] -> [16]"),
                          ("model.d_model=64", "model.d_model: 32 -> 64"),
                          ("train.seed=3", "train.seed: 0 -> 3"),
                          ("train.ema_decay=0", "train.ema_decay: 0.999 -> 0.0"),
                          ("task.data_seed=5", "task.data_seed: 1 -> 5")]:
        extra = ["task.length=16"] if change == "model.shape=[16]" else []
        assert main(["train", *args, change, *extra]) == 2, change
        err = capsys.readouterr().err
        assert f"run_dir {tmp_path} holds a run of another experiment" in err and named in err, err
        assert (tmp_path / "config.yaml").read_text() == record  # never written before the check
        assert (tmp_path / "model" / "model.safetensors").read_bytes() == weights
    # More steps and other logging may change: the run resumes and says what changed.
    assert main(["train", *args, "train.steps=9", "train.log_every=9"]) == 0
    out = capsys.readouterr().out
    assert "with a changed train.steps: 6 -> 9" in out and "trained 9 steps" in out
    # A finished run says so, and `ddm run` goes on to evaluate it.
    assert main(["run", *args, "train.steps=9", "train.log_every=9"]) == 0
    out = capsys.readouterr().out
    assert "trained 9 steps, nothing left to train" in out and "true entropy" in out
    # --force starts over in the same folder.
    assert main(["train", *args, "model.d_model=64", "--force"]) == 0
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["d_model"] == 64


def test_a_run_recorded_before_a_field_existed_resumes(tmp_path, capsys):
    args = ["--config", SYNTH, f"run_dir={tmp_path}", *TINY]
    assert main(["train", *args]) == 0
    record = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del record["sample"]["continuous_noise"], record["diffusion"]["continuous_where"]  # as an older ddm wrote it
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(record))
    assert main(["train", *args, "train.steps=9"]) == 0  # the missing fields are their defaults: same run
    assert "trained 9 steps" in capsys.readouterr().out
    # a missing field the new experiment sets to something else is still a change
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(record))
    assert main(["train", *args, "train.steps=9", "diffusion.continuous_where=visible"]) == 2
    assert "diffusion.continuous_where: 'all' -> 'visible'" in capsys.readouterr().err


def test_force_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("mine")
    assert main(["train", "--config", SYNTH, f"run_dir={tmp_path}", *TINY, "--force"]) == 2
    assert "holds no config.yaml, so it is not a run folder; nothing was deleted" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_a_tokenizer_is_never_replaced_silently(tmp_path, capsys):
    args = ["--config", "configs/tokenizers/mnist.yaml", "data.limit=64", "train.steps=2", "train.batch_size=16",
            "train.progress=false", "tokenizer.width=8", f"run_dir={tmp_path}"]
    assert main(["train", *args]) == 0
    before = (tmp_path / "tokenizer" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", *args]) == 0
    assert "is fitted already" in capsys.readouterr().out
    assert main(["train", *args[:-2], "tokenizer.width=16", f"run_dir={tmp_path}"]) == 2
    assert "tokenizer.width: 8 -> 16" in capsys.readouterr().err
    assert (tmp_path / "tokenizer" / "model.safetensors").read_bytes() == before

    from tokenizers_vq import fit_or_load

    with pytest.raises(ValueError, match="fitted by another config than .*mnist_64.yaml.*codebook_size"):
        fit_or_load("configs/tokenizers/mnist_64.yaml", tmp_path / "tokenizer")


def test_demos_recorded_with_another_config_are_not_reused(tmp_path):
    from ddm.config import ConfigError
    from ddm.experiment import load_experiment
    from tasks.vla.train import ensure_demos

    demos = tmp_path / "demos"
    demos.mkdir()
    (demos / "dataset_info.json").write_text("{}")
    exp = load_experiment("configs/vla/smoke.yaml", [f"run_dir={tmp_path}"])
    report = {"config": {**__import__("dataclasses").asdict(exp.demos), "episodes": 3, "workers": 7}}
    (demos / "demos_report.json").write_text(json.dumps(report))
    with pytest.raises(ConfigError, match=r"demos recorded with another config \(demos.episodes: 3 -> 1\)"):
        ensure_demos(exp, progress=False)
    report["config"]["episodes"] = 1  # other workers record the same demos: reused
    (demos / "demos_report.json").write_text(json.dumps(report))
    assert ensure_demos(exp, progress=False) == demos
    # a report written before the DART fields existed holds plain demos: reused by a plain config,
    # refused by a noisy one
    del report["config"]["action_noise"], report["config"]["hold"]
    (demos / "demos_report.json").write_text(json.dumps(report))
    assert ensure_demos(exp, progress=False) == demos
    noisy = load_experiment("configs/vla/smoke.yaml", [f"run_dir={tmp_path}", "demos.action_noise=0.2"])
    with pytest.raises(ConfigError, match=r"demos.action_noise: 0.0 -> 0.2"):
        ensure_demos(noisy, progress=False)


def test_threads_are_set_for_the_process_and_bad_counts_are_named(capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "check", "--config", SYNTH]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["--threads", "0", "check", "--config", SYNTH]) == 2
    err = capsys.readouterr().err
    assert "--threads / DDM_THREADS: 0 is not a positive whole number" in err


def test_a_kill_while_pruning_leaves_no_half_deleted_checkpoint(tmp_path, monkeypatch):
    import shutil

    from ddm.training import checkpoint as ckpt

    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, {"model": {}}, {}, {})
    real_rmtree = shutil.rmtree

    def killed(path, *a, **k):  # the kill lands after the first file of the old checkpoint is gone
        os.unlink(sorted(p.path for p in os.scandir(path) if p.is_file())[0])
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.prune_checkpoints(tmp_path, keep=2)
    monkeypatch.setattr(ckpt.shutil, "rmtree", real_rmtree)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".trash")]  # renamed out, not half-listed
    ckpt.remove_leftovers(tmp_path)  # what the trainer does when it starts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000002", "step_00000003"]


@pytest.mark.parametrize("text, message", [
    ("task: {name: synthetic}\nmodel: {depth: 2}\nmodel: {depth: 3}\n", "key 'model' is given twice"),
    ("task: [unclosed\n", "not valid YAML: expected ',' or ']'"),
    ("- a list\n", "expected a mapping at the top level"),
    ("task: {name: synthetic}\nrun_dir: null\n", "run_dir: expected a string, got None"),
    ("task: {name: synthetic}\nrun_dir: [a, b]\n", "run_dir: expected a string"),
])
def test_bad_yaml_is_one_line_naming_the_problem(tmp_path, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_damaged_files_are_named(tmp_path, capsys):
    args = ["--config", SYNTH, f"run_dir={tmp_path}", *TINY]
    assert main(["train", *args]) == 0
    (tmp_path / "model" / "model.safetensors").write_bytes(b"")
    assert main(["sample", *args]) == 2
    assert "model.safetensors: a corrupt or truncated weights file" in capsys.readouterr().err
    (tmp_path / "model" / "config.json").write_text("{not json")
    assert main(["sample", "--model", str(tmp_path / "model")]) == 2
    assert "config.json: not valid JSON" in capsys.readouterr().err
    newest = sorted((tmp_path / "checkpoints").iterdir())[-1]
    (newest / "model.safetensors").write_bytes(b"\x00" * 10)
    assert main(["train", *args, "train.steps=12"]) == 2
    assert f"{newest.name}/model.safetensors: a corrupt or truncated checkpoint file" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["train", "--config", SYNTH, f"run_dir={tmp_path / 'file'}", *TINY]) == 2
    assert "run_dir: " in capsys.readouterr().err
    assert main(["sample", "--model", "configs/tokenizers"]) == 2  # not a model folder
    assert "error" in capsys.readouterr().err
