"""`ddm bench`: the decoding modes of one trained model side by side, quality beside cost."""

import math

import pytest

from ddm.cli import main

TINY = ["task.train_size=2000", "task.eval_size=200", "model.d_model=32", "model.depth=1", "train.steps=20",
        "train.batch_size=16", "train.warmup_steps=5", "train.log_every=10", "train.checkpoint_every=20",
        "train.progress=false", "sample.steps=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("bench") / "run"
    args = ["--config", "configs/tasks/synthetic_cpu.yaml", f"run_dir={run}", *TINY]
    assert main(["--threads", "1", "train", *args]) == 0
    return args


def test_bench_prints_quality_beside_cost_for_every_mode(trained, capsys):
    from ddm.experiment import load_experiment
    from ddm.task import build_task

    task = build_task(load_experiment(trained[1], trained[2:]))
    figures = task.bench(modes=("plain", "cached", "approximate", "skip", "int8", "learned"), batch=24, rounds=2,
                         singles=2)
    out = capsys.readouterr().out
    assert set(figures) == {"plain", "cached", "approximate", "skip", "int8"}
    assert "learned: skipped" in out and "ddm distill" in out  # no distilled sampler in this folder
    plain, cached, approx = figures["plain"], figures["cached"], figures["approximate"]
    for key in ("pair_tv", "impossible_fraction", "nll_bits_per_token"):  # exact reuse: the same samples
        assert plain[key] == cached[key] or (math.isinf(plain[key]) and math.isinf(cached[key]))
    assert plain["positions_run"] == cached["positions_run"] == 1.0 > approx["positions_run"]
    assert plain["nfe_per_batch"] == plain["calls_per_sample"] == 8 == figures["skip"]["nfe_per_batch"]
    assert figures["skip"]["positions_run"] == 1.0  # it runs every position, and fewer blocks on every other call
    assert math.isfinite(figures["skip"]["pair_tv"])
    assert plain["tokens_per_call"] == 32 / 8
    for f in figures.values():
        assert f["ms_per_sample_batch"] > 0 and f["ms_per_sample_single"] > 0
        assert f["generated_tokens_per_s"] == pytest.approx(1000 * 32 / f["ms_per_sample_batch"])
    assert "positions run" in out and "peak MB" in out


def test_bench_refuses_an_unknown_mode(trained, capsys):
    assert main(["--threads", "1", "bench", *trained, "--modes", "cached", "fp4"]) == 2
    assert "unknown mode 'fp4'" in capsys.readouterr().err
    assert main(["--threads", "1", "bench", *trained, "--modes", "skip", "sample.skip_blocks=[0]"]) == 2
    assert "put it before --modes" in capsys.readouterr().err


def test_bench_train_compares_the_models_size_with_a_bert_body(trained, capsys):
    assert main(["--threads", "1", "bench", *trained, "--modes", "--train"]) == 0
    out = capsys.readouterr().out
    assert "batch 16 x seq 32" in out and "matmul peak" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("ddm", "ddm:sparse+fused", "hf")}
    assert set(rows) == {"ddm", "ddm:sparse+fused", "hf"}
    assert rows["hf"][-4] == "1.00x"  # the reference
    assert all(0 < float(r[7].rstrip("%")) < 100 for r in rows.values())  # MFU against this run's peak


def test_throughput_variants_are_checked():
    from ddm.throughput import parse_variant

    assert parse_variant("ddm:sparse+fused") == ("ddm", {"sparse", "fused"})
    with pytest.raises(ValueError, match="bad entry 'hf:gelu'"):
        parse_variant("hf:gelu")
