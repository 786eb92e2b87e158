"""The text task: packing, each metric on known inputs, infilling and semi-autoregressive windows,
bad input, and a tiny diffusion LM and its autoregressive twin trained and evaluated end to end."""

import math

import pytest
import torch

from ddm.autoregressive import AutoregressiveObjective
from ddm.sampling import Sampler
from tasks.text import metrics
from tasks.text.data import evenly_spaced, long_rows, pack
from tasks.text.generate import (autoregressive_long, check_infill_mask, infill, semi_autoregressive, span_mask,
                                 window_plan)


# ---------------------------------------------------------------- packing


def test_pack_joins_texts_with_the_separator_and_drops_the_tail():
    chunks = pack([[5, 6, 7], [8], [9, 10, 11]], eos_id=2, length=3)
    assert chunks.tolist() == [[5, 6, 7], [2, 8, 2], [9, 10, 11]]  # the stream's last token (2) dropped
    assert long_rows(chunks, 4).tolist() == [[5, 6, 7, 2], [8, 2, 9, 10]]
    rows = torch.arange(10)[:, None]
    assert evenly_spaced(rows, 4)[:, 0].tolist() == [0, 3, 6, 9] and evenly_spaced(rows, 20) is rows
    with pytest.raises(ValueError, match="fewer than one chunk of 10"):
        pack([[5, 6]], eos_id=2, length=10)


# ---------------------------------------------------------------- metrics on known inputs


def test_unigram_entropy_of_repeated_distinct_and_even_texts():
    ids = torch.tensor([[7] * 8, list(range(8)), [3, 4] * 4])
    h = metrics.unigram_entropy(ids)
    assert h[0] == 0.0  # one token repeated: no entropy
    assert h[1] == pytest.approx(math.log(8))  # all distinct: the most a text of 8 can have
    assert h[2] == pytest.approx(math.log(2))


def test_perplexities_and_span_accuracy():
    assert metrics.perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert metrics.perplexity_from_bits(3.0) == pytest.approx(8.0)
    truth = torch.tensor([[1, 2, 3, 4]])
    hidden = torch.tensor([[False, True, True, False]])
    assert metrics.span_accuracy(torch.tensor([[9, 2, 0, 9]]), truth, hidden) == 0.5
    with pytest.raises(ValueError, match="hides no token"):
        metrics.span_accuracy(truth, truth, torch.zeros_like(hidden))
    assert metrics.mean_and_stderr([1.0, 3.0]) == (2.0, 1.0)


def test_a_uniform_judge_gives_the_vocabulary_size_and_matches_the_training_loss(tiny_denoiser):
    judge = tiny_denoiser(vocab_size=8, length=12, causal=True)
    ids = torch.randint(0, 8, (5, 12), generator=torch.Generator().manual_seed(0))
    loss, _ = AutoregressiveObjective()(judge, {"ids": ids}, torch.Generator())
    assert float(metrics.token_nll(judge, ids).mean()) == pytest.approx(float(loss.detach()), rel=1e-5)
    with torch.no_grad():
        judge.heads.discrete.weight.zero_()
        judge.heads.discrete.bias.zero_()
    assert metrics.generative_perplexity(metrics.token_nll(judge, ids)) == pytest.approx(8.0, rel=1e-5)
    with pytest.raises(ValueError, match="must be a causal"):
        metrics.token_nll(tiny_denoiser(vocab_size=8, length=12), ids)


def test_sliding_windows_score_each_token_once_with_its_window(tiny_denoiser):
    judge = tiny_denoiser(vocab_size=8, length=12, causal=True)
    ids = torch.randint(0, 8, (3, 30), generator=torch.Generator().manual_seed(1))
    nll = metrics.sliding_token_nll(judge, ids, stride=8)  # windows end at 12, 20, 28, 30
    assert nll.shape == (3, 30)
    torch.testing.assert_close(nll[:, :12], metrics.token_nll(judge, ids[:, :12]))
    torch.testing.assert_close(nll[:, 12:20], metrics.token_nll(judge, ids[:, 8:20])[:, 4:])
    torch.testing.assert_close(nll[:, 28:], metrics.token_nll(judge, ids[:, 18:30])[:, 10:])
    torch.testing.assert_close(metrics.sliding_token_nll(judge, ids[:, :12], 4), metrics.token_nll(judge, ids[:, :12]))


# ---------------------------------------------------------------- infilling and long text


def test_infilling_keeps_the_rest_and_refuses_an_empty_or_full_mask(tiny_denoiser):
    model = tiny_denoiser(vocab_size=8, length=12, learned_positions=True)
    ids = torch.randint(0, 8, (4, 12), generator=torch.Generator().manual_seed(2))
    hidden = span_mask(4, 12, 3, 5)
    filled = infill(model, ids, hidden, Sampler(steps=5), 4, torch.Generator().manual_seed(0))
    assert torch.equal(filled[~hidden], ids[~hidden]) and int(filled.max()) < 8
    with pytest.raises(ValueError, match="row 0 hides no token; there is nothing to fill"):
        check_infill_mask(torch.zeros(4, 12, dtype=torch.bool), ids)
    with pytest.raises(ValueError, match="row 1 hides every token"):
        check_infill_mask(torch.stack([hidden[0], torch.ones(12, dtype=torch.bool), hidden[2], hidden[3]]), ids)
    with pytest.raises(ValueError, match="expected a bool tensor"):
        check_infill_mask(hidden.long(), ids)
    with pytest.raises(ValueError, match="0 tokens hides nothing"):
        span_mask(4, 12, 3, 0)


def test_windows_keep_the_prompt_then_the_context():
    assert window_plan(30, window=12, context=4) == [(0, 12), (4, 8), (4, 8), (4, 2)]
    assert window_plan(20, window=12, context=4, given=3) == [(3, 9), (4, 8)]
    with pytest.raises(ValueError, match="context: 12 tokens; expected 1 .. 11"):
        window_plan(30, 12, 12)
    with pytest.raises(ValueError, match="leave nothing to generate"):
        window_plan(30, 12, 4, given=12)


def test_semi_autoregressive_text_is_longer_than_the_window_and_keeps_its_prompt(tiny_denoiser):
    model = tiny_denoiser(vocab_size=8, length=12, learned_positions=True)
    prompt = torch.tensor([[1, 2, 3]])
    ids, nfe = semi_autoregressive(model, Sampler(steps=12), 3, 30, 4, 8, torch.Generator().manual_seed(0),
                                   prompt=prompt)
    assert ids.shape == (3, 30) and (ids[:, :3] == prompt).all() and int(ids.max()) < 8
    assert nfe == 9 + 8 + 8 + 8  # steps in proportion to the tokens each window fills
    with pytest.raises(ValueError, match="prompt: empty"):
        semi_autoregressive(model, Sampler(steps=12), 3, 30, 4, 8, torch.Generator(),
                            prompt=torch.zeros(1, 0, dtype=torch.long))

    seen = []

    def window(count, prompt, index):  # a fake autoregressive sampler: the prompt, then its window number
        seen.append(None if prompt is None else prompt.clone())
        out = torch.full((count, 12), len(seen))
        if prompt is not None:
            out[:, :prompt.shape[1]] = prompt
        return out, 12

    text, calls = autoregressive_long(window, 2, 30, 12, 4)
    assert text.shape == (2, 30) and calls == 48 and seen[0] is None
    assert text[0].tolist() == [1] * 12 + [2] * 8 + [3] * 8 + [4] * 2
    assert seen[1][0].tolist() == [1] * 4 and seen[2][0].tolist() == [2] * 4  # the last 4 tokens carried


# ---------------------------------------------------------------- end to end on a tiny slice


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """1,200 verses, a 400-piece tokenizer, 1-layer models of 32 tokens: the task's whole path in seconds."""
    from ddm.experiment import load_experiment
    from ddm.task import build_task

    root = tmp_path_factory.mktemp("text")
    (root / "tok.yaml").write_text("task: {name: tokenizer, kind: sentencepiece}\n"
                                   "tokenizer: {vocab_size: 400}\n"
                                   "data: {max_verses: 1200, heldout_every: 10}\n")

    def make(*overrides):
        cfg = load_experiment("configs/tasks/text_cpu.yaml", [
            f"task.tokenizer_config={root / 'tok.yaml'}", "model.vocab_size=400", "model.shape=[32]",
            "model.d_model=32", "model.depth=1", "train.steps=40", "train.warmup_steps=5", "train.log_every=20",
            "train.checkpoint_every=0", "train.progress=false", "task.elbo_repeats=2", "task.eval_samples=4",
            "task.infill_chunks=4", "task.infill_start=8", "task.infill_span=8", "task.long_length=80",
            "task.long_context=16", "task.long_samples=2", "task.show=1", "sample.steps=16", "sample.num_samples=4",
            f"run_dir={root / 'run'}", *overrides])
        task = build_task(cfg)
        task.prepare()
        return task

    return make


def test_the_task_refuses_a_model_that_does_not_fit_its_tokenizer(tiny_task):
    from ddm.config import ConfigError

    with pytest.raises(ConfigError, match="model.vocab_size: 512, but the tokenizer .* has 400 pieces"):
        tiny_task("model.vocab_size=512")
    with pytest.raises(ConfigError, match="must leave some of the 32 tokens"):
        tiny_task("task.infill_span=24")
    with pytest.raises(ConfigError, match="not longer than model.seq_len=32"):
        tiny_task("task.long_length=32")


def test_the_task_trains_samples_and_evaluates_end_to_end(tiny_task, capsys):
    task = tiny_task()
    data = task.train_dataset()
    assert data[0]["ids"].shape == (32,) and int(data[:]["ids"].max()) < 400
    assert (data[:]["ids"] == task.tokenizer.eos_id).any()  # verses separated in the stream
    task.train()
    model = task.load_model()

    with pytest.raises(ValueError, match="prompt: empty"):
        task.complete(model, "")
    with pytest.raises(ValueError, match="prompt: empty"):
        task.complete(model, "   ")
    texts = task.complete(model, "And God said,", count=2, length=40)
    assert len(texts) == 2 and all(t.startswith("And God said,") for t in texts)
    truth = task.heldout(2)
    with pytest.raises(ValueError, match="hides no token"):
        task.fill(model, truth, torch.zeros_like(truth, dtype=torch.bool))
    with pytest.raises(ValueError, match="hides every token"):
        task.fill(model, truth, torch.ones_like(truth, dtype=torch.bool))

    sampled = task.sample()  # `ddm sample`: ids and their texts
    assert sampled["samples"] == 4 and 0.0 < sampled["unigram_entropy"] <= math.log(32)
    assert (task.run_dir / "samples" / "samples.txt").stat().st_size > 0

    m = task.evaluate()
    out = capsys.readouterr().out
    for row in ("diffusion ELBO perplexity", "samples: diffusion", "samples: autoregressive",
                "samples: real held-out chunks", "infill: diffusion", "infill: autoregressive (left side)",
                "long: diffusion", "long: real held-out"):
        assert row in out
    p = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("perplexity/")}
    # 40 steps learn something: both models beat a uniform guess over 400 pieces
    assert p["ar_ppl"] < 400 and p["diffusion_elbo_ppl"] < 400
    # one unit throughout: perplexity is 2^bits, bits per character are bits per token x tokens / characters
    assert p["ar_ppl"] == pytest.approx(2 ** p["ar_bits"], rel=1e-6)
    assert p["ar_bits_per_char"] == pytest.approx(p["ar_bits"] * p["heldout_tokens"] / p["heldout_chars"], rel=1e-6)
    assert m["samples: real held-out chunks/gen_ppl"] == pytest.approx(p["ar_ppl"], rel=0.5)
    assert m["infill: truth/span_accuracy"] == 1.0 and 0.0 <= m["infill: diffusion/span_accuracy"] <= 1.0
    assert m["infill: diffusion/after_span_ppl"] < 400 and m["infill: truth/after_span_ppl"] < 400
    assert m["long: diffusion/nfe"] > m["samples: diffusion/nfe"]
    assert "=== infilling (diffusion)" in (task.run_dir / "samples.txt").read_text()


def test_the_compute_benchmark_trains_both_models_per_budget(tiny_task, tmp_path, capsys):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import text_compute
    from ddm.hub import load_pretrained

    base = tiny_task()
    with pytest.raises(SystemExit, match="not STEPSxBATCH"):
        text_compute.parse_budget("900")
    overrides = [f"task.tokenizer_config={base.config.task.tokenizer_config}", "model.vocab_size=400",
                 "model.shape=[32]", "model.d_model=32", "model.depth=1", "train.warmup_steps=2",
                 "train.progress=false", "task.infill_start=8", "task.infill_span=8", "task.long_length=80",
                 "task.long_context=16", f"run_dir={tmp_path / 'run'}"]
    text_compute.main(["--config", "configs/tasks/text_cpu.yaml", "--repeats", "2", *overrides,
                       "--budgets", "6x4", "12x8"])
    rows = json.loads((tmp_path / "run_compute" / "compute.json").read_text())
    assert list(rows) == ["6x4", "12x8"]
    chunks = len(base.chunks["train"])
    for tag, r in rows.items():
        steps, batch = map(int, tag.split("x"))
        assert r["epochs"] == pytest.approx(steps * batch / chunks) and r["tokens_seen"] == steps * batch * 32
        assert r["ratio"] == pytest.approx(r["diffusion_elbo_ppl"] / r["ar_ppl"])
        # the figures are those of the saved models: the baseline's exact perplexity on the held-out chunks
        baseline = load_pretrained(tmp_path / "run_compute" / tag / "baseline" / "model").eval()
        nats = float(metrics.token_nll(baseline, base.chunks["heldout"]).double().mean())
        assert r["ar_ppl"] == pytest.approx(math.exp(nats), rel=1e-6)
        model = load_pretrained(tmp_path / "run_compute" / tag / "model").eval()
        bits = [base.heldout_elbo(model, repeats=1, seed=seed, batch_size=64) for seed in range(2)]
        assert r["diffusion_elbo_ppl"] == pytest.approx(2.0 ** (sum(bits) / 2), rel=1e-6)
        assert (tmp_path / "run_compute" / tag / "tokenizer").resolve() == (tmp_path / "run" / "tokenizer").resolve()
    assert rows["12x8"]["ar_ppl"] < rows["6x4"]["ar_ppl"]  # more training, a better model
    assert "budget 12 steps x 8 chunks" in capsys.readouterr().out
