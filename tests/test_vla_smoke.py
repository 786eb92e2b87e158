"""CI smoke test of the whole VLA path through the `ddm` verbs (configs/vla/smoke.yaml):
demo generation (1 episode of each of 2 tasks at 64x64), cached features, a tiny policy
trained for a few seconds, and 2 tasks x 1 short episode of closed-loop evaluation with a
GIF. It checks the plumbing and the report, not the success rate."""

import json

import pytest
from PIL import Image

from ddm.cli import main
from test_vla_env import gl  # noqa: F401  (the GL fixture: fails where offscreen GL is missing)

CONFIG = "configs/vla/smoke.yaml"


def test_demos_train_and_eval_through_the_command(gl, tmp_path, capsys):  # noqa: F811
    run = f"run_dir={tmp_path}"
    assert main(["train", "--config", CONFIG, run]) == 0
    out = capsys.readouterr().out
    assert "2 episodes" in out and "saved" in out
    assert (tmp_path / "demos" / "demos_report.json").is_file()
    assert (tmp_path / "policy_diffusion" / "model.safetensors").is_file()
    report = json.loads((tmp_path / "demos" / "demos_report.json").read_text())
    assert report["episodes"] == 2 and report["tasks"]["reach-v3"]["kept_seeds"] == [0]

    assert main(["eval", "--config", CONFIG, run]) == 0
    out = capsys.readouterr().out
    assert "reach-v3" in out and "drawer-close-v3" in out and "average" in out
    assert "decoder calls per chunk 2.0" in out and "ms per action" in out
    summary = json.loads((tmp_path / "eval_diffusion.json").read_text())
    assert summary["seeds"] == [10000, 10000] and summary["episodes"] == 2
    assert [e["steps"] for e in summary["episode_results"]] == [12, 12] or any(
        e["success"] for e in summary["episode_results"])
    # 12 actions, 2 executed per chunk of 4: 6 chunks of 2 decoder calls per episode (unless solved early)
    for e in summary["episode_results"]:
        assert e["chunks"] == -(-e["steps"] // 2) and e["nfe"] == 2 * e["chunks"]
    gifs = sorted((tmp_path / "gifs").glob("*.gif"))
    assert [g.name for g in gifs] == ["diffusion_reach-v3_seed10000.gif"]  # eval.gifs=1: the first task
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == 5 and gif.width >= 256  # frames 0, 3, 6, 9 and the last; enlarged for the text

    # A 1-step sampler distilled for the decoder, saved in the policy folder and used by the eval.
    assert main(["distill", "--config", CONFIG, run, "--steps", "1", "--iterations", "2", "--batch-size", "8"]) == 0
    assert len(list((tmp_path / "policy_diffusion" / "samplers").glob("steps1-*.json"))) == 1
    capsys.readouterr()
    assert main(["eval", "--config", CONFIG, run, "eval.steps=1", "eval.learned=true", "eval.gifs=0"]) == 0
    learned = json.loads((tmp_path / "eval_diffusion_steps1_learned.json").read_text())
    assert learned["sampler"] == {"steps": 1, "learned": True}
    assert all(e["nfe"] == e["chunks"] for e in learned["episode_results"])  # one decoder call per chunk

    # `ddm bench`: the decoder's modes on the same demo frames, the recorded closed-loop success beside them.
    capsys.readouterr()
    assert main(["bench", "--config", CONFIG, run, "--batch", "8", "--rounds", "1", "--singles", "1", "--modes",
                 "plain", "cached", "skip", "int8", "learned", "autoregressive"]) == 0
    out = capsys.readouterr().out
    quality = out.split("quality (")[1].split("cost (")[0].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in quality[2:] if line.strip()}
    assert quality[1].split() == ["mode", "token_accuracy", "within_one_bin", "action_mae", "gripper_accuracy"]
    assert list(rows) == ["plain", "cached", "skip", "int8"] and rows["plain"] == rows["cached"]  # an exact cache
    assert "learned: skipped (" in out and "no sampler distilled for 2 steps" in out  # the folder has a 1-step one
    assert "autoregressive: skipped (no autoregressive policy in" in out
    success = out.split("as `ddm eval` recorded it in the run folder:")[1].splitlines()[1:]
    assert [line.split()[0] for line in success] == ["plain", "cached", "skip", "int8"]
    assert f"{tmp_path / 'eval_diffusion.json'}" in success[0] and "eval.skip_blocks=[0]` measures it" in success[2]

    # A second seed set has its own results file; the first set's stays as it was.
    first = (tmp_path / "eval_diffusion.json").read_text()
    assert main(["eval", "--config", CONFIG, run, "eval.seed=10001", "eval.gifs=0"]) == 0
    assert json.loads((tmp_path / "eval_diffusion_seed10001.json").read_text())["seeds"] == [10001, 10001]
    assert (tmp_path / "eval_diffusion.json").read_text() == first
    assert main(["eval", "--config", CONFIG, run, "eval.steps=3", "eval.learned=true"]) == 2
    assert "no sampler distilled for 3 steps" in capsys.readouterr().err

    # A second eval reuses the saved policy and features; an unknown task is refused by name.
    assert main(["eval", "--config", CONFIG, run, "eval.tasks=[reach-v2]"]) == 2
    assert "eval.tasks[0]: unknown task 'reach-v2'; known tasks: reach-v3" in capsys.readouterr().err
    assert main(["sample", "--config", CONFIG, run]) == 2  # a robot policy acts; it has no `ddm sample`
    assert "`ddm sample` is not defined for this kind of experiment" in capsys.readouterr().err


def test_eval_without_a_trained_policy_says_what_to_run(tmp_path):
    from ddm.experiment import load_experiment
    from tasks.vla.evaluate import evaluate_policy

    exp = load_experiment(CONFIG, [f"run_dir={tmp_path}"])
    with pytest.raises(FileNotFoundError,
                       match=r"no trained autoregressive policy.*ddm train .*task.decoders=\[autoregressive\]"):
        evaluate_policy(exp, "autoregressive", progress=False)


@pytest.mark.slow
def test_two_workers_give_the_results_of_one(gl, tmp_path):  # noqa: F811
    from ddm.experiment import load_experiment
    from tasks.vla.evaluate import evaluate_policy
    from tasks.vla.train import train_policy

    exp = load_experiment(CONFIG, [f"run_dir={tmp_path}", "eval.gifs=0"])
    train_policy(exp, progress=False)
    results = []
    for workers in (1, 2):
        exp.eval.workers = workers
        results.append([{k: e[k] for k in ("task", "seed", "success", "steps", "nfe")}
                        for e in evaluate_policy(exp, "diffusion", progress=False)["episode_results"]])
    assert results[0] == results[1]


def test_the_policy_bench_scores_the_expert_tokens_as_perfect(gl, tmp_path):  # noqa: F811
    import torch

    from ddm.experiment import load_experiment
    from tasks.vla.bench import PolicyBench
    from tasks.vla.train import train_policy

    exp = load_experiment(CONFIG, [f"run_dir={tmp_path}", "train.steps=1"])
    train_policy(exp, progress=False)
    view = PolicyBench(exp)
    cond = view.sample_conditions(6)
    assert cond.select(torch.tensor([4, 1])).frames.tolist() == cond.frames[[4, 1]].tolist()
    expert = view.expert[cond.frames]
    assert view.sample_metrics(expert, cond) == {"token_accuracy": 1.0, "within_one_bin": 1.0, "action_mae": 0.0,
                                                 "gripper_accuracy": 1.0}
    bins = expert.view(6, -1, 4)[..., :3]  # one bin off in every arm dimension, away from the edge
    off = expert.clone().view(6, -1, 4)
    off[..., :3] = torch.where(bins > 0, bins - 1, bins + 1)
    m = view.sample_metrics(off.view(6, -1), cond)
    assert m["within_one_bin"] == 1.0 and m["gripper_accuracy"] == 1.0
    assert abs(m["action_mae"] - 2 / 16) < 1e-6 and m["token_accuracy"] == 0.25  # only the gripper tokens agree
    with pytest.raises(ValueError, match="bench: 100000 samples asked, the demos have"):
        view.sample_conditions(100000)
