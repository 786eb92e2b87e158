"""The text task: a masked-diffusion language model (MDLM: absorbing process, ELBO weight) against
an autoregressive one of the same size, data and compute, on the King James Bible.

    ddm run --config configs/tasks/text_cpu.yaml

`prepare` fits the sentencepiece tokenizer of `task.tokenizer_config` into <run_dir>/tokenizer (or
loads it) and packs the verses of its data section (every 20th held out) into chunks of
model.seq_len tokens, verses separated by the end-of-text id (`tasks.text.data`). `ddm train` trains
the diffusion model; `ddm eval` trains the autoregressive baseline once (`DiffusionTask.baseline_model`:
the same model config made causal, the same chunks, steps, batch and optimizer) and measures, on
the same held-out tokens:
  * perplexity: the diffusion model's ELBO bound (`task.elbo_repeats` passes of random masking
    times over every held-out chunk) against the autoregressive model's exact one;
  * samples: generative perplexity under the autoregressive model and unigram entropy, for
    diffusion samples, autoregressive samples and real held-out chunks;
  * infilling: a span hidden in held-out chunks, filled by the diffusion model (both sides seen)
    and by the autoregressive model (the left side only): token accuracy and the judge's
    perplexity of the span and what follows it;
  * long text: `task.long_length` tokens in semi-autoregressive windows (`tasks.text.generate`).
Sample texts are printed and written to <run_dir>/samples.txt.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset

from ddm.config import ConfigError, bounded, positive
from ddm.experiment import load_experiment
from ddm.io import atomic_write_text
from ddm.sampling import Sampler, sample_many
from ddm.task import DiffusionTask, register_task
from tokenizers_vq import tokenizer_for_task

from . import metrics
from .data import evenly_spaced, long_rows, pack
from .generate import autoregressive_long, infill, semi_autoregressive, span_mask


@dataclass
class TextConfig:
    name: str = "text"
    # a sentencepiece tokenizer experiment: its data section is the task's data, and it is fitted
    # into <run_dir>/tokenizer when that folder is empty
    tokenizer_config: str = "configs/tokenizers/text_sentencepiece.yaml"
    elbo_repeats: int = positive(8)  # passes over the held-out chunks, each with fresh masking times
    eval_samples: int = positive(64)  # unconditional samples of each model, and real chunks to compare
    infill_chunks: int = positive(64)  # held-out chunks with a hidden span
    infill_start: int = bounded(48, 0)  # the span's first token
    infill_span: int = positive(32)  # tokens hidden
    long_length: int = positive(512)  # tokens of each semi-autoregressive text
    long_context: int = positive(64)  # tokens of the previous window kept in the next
    long_samples: int = positive(16)
    prompt: str = "And God said,"  # continued in samples.txt (semi-autoregressively, to long_length)
    show: int = bounded(3, 0)  # sample texts of each kind printed


@register_task("text")
class TextTask(DiffusionTask):
    Config = TextConfig
    resumable = DiffusionTask.resumable + tuple(
        f"task.{k}" for k in ("elbo_repeats", "eval_samples", "infill_chunks", "infill_start", "infill_span",
                              "long_length", "long_context", "long_samples", "prompt", "show"))

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        t, m = self.config.task, self.config.model
        if m.num_classes or m.cond_vocab_size or m.cond_embed_dim or m.continuous_dim:
            raise ConfigError("model: the text task's models are unconditional token models (no classes, prefix, "
                              "embeddings or continuous head)")
        if len(m.shape) != 1:
            raise ConfigError(f"model.shape: text is one sequence, expected [length], got {m.shape}")
        if m.body != "ddm":
            raise ConfigError("model.body: the autoregressive baseline is the same model made causal, so body=ddm")
        if t.infill_start + t.infill_span >= m.seq_len:
            raise ConfigError(f"task.infill_span: tokens {t.infill_start}..{t.infill_start + t.infill_span - 1} "
                              f"must leave some of the {m.seq_len} tokens of a chunk visible after them")
        if not 1 <= t.long_context < m.seq_len:
            raise ConfigError(f"task.long_context: {t.long_context}; expected 1 .. {m.seq_len - 1}")
        if t.long_length <= m.seq_len:
            raise ConfigError(f"task.long_length: {t.long_length} tokens is not longer than model.seq_len="
                              f"{m.seq_len}")

    def setup(self) -> None:
        t, m = self.config.task, self.config.model
        data_exp = load_experiment(t.tokenizer_config)
        self.tokenizer = tokenizer_for_task(t.tokenizer_config, None, self.run_dir, "sentencepiece")
        if self.tokenizer.vocab_size != m.vocab_size:
            raise ConfigError(f"model.vocab_size: {m.vocab_size}, but the tokenizer at {self.run_dir / 'tokenizer'} "
                              f"has {self.tokenizer.vocab_size} pieces: a model must be trained on its own "
                              "tokenizer's ids")
        splits = type(self.tokenizer).build_data(data_exp.data)
        eos = self.tokenizer.eos_id
        self.chunks = {name: pack(self.tokenizer.encode_rows(texts), eos, m.seq_len) for name, texts in splits.items()}
        print(f"text: {len(splits['train'])} training verses -> {len(self.chunks['train'])} chunks of {m.seq_len} "
              f"tokens; {len(splits['heldout'])} held-out verses -> {len(self.chunks['heldout'])} chunks")

    def train_dataset(self) -> Dataset:
        return Dataset.from_dict({"ids": self.chunks["train"].numpy()}).with_format("torch")

    def eval_dataset(self) -> Dataset:
        return Dataset.from_dict({"ids": self.chunks["heldout"].numpy()}).with_format("torch")

    def heldout(self, count: int) -> torch.Tensor:
        """`count` held-out chunks spread evenly over the held-out stream (all there are, if fewer)."""
        return evenly_spaced(self.chunks["heldout"], count)

    # ------------------------------------------------------------------ text in, text out
    def decode(self, ids: torch.Tensor) -> list[str]:
        return self.tokenizer.decode(ids)

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """A prompt text -> ids [1, P]; an empty prompt is an error."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt: expected a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError("prompt: empty; give some text to continue (or sample without a prompt)")
        return torch.tensor(self.tokenizer.encode_rows(prompt), dtype=torch.long)

    def sampler(self, model, steps: int | None = None) -> Sampler:
        cfg = self.sample_config(**({"steps": steps} if steps else {}))
        return Sampler.for_model(model, cfg)

    def complete(self, model, prompt: str, count: int = 1, length: int | None = None, seed: int = 0) -> list[str]:
        """`count` continuations of `prompt` to `length` tokens (default task.long_length), in
        semi-autoregressive windows."""
        t, s = self.config.task, self.config.sample
        prompt_ids = self.encode_prompt(prompt)
        ids, _ = semi_autoregressive(model, self.sampler(model), count, length or t.long_length, t.long_context,
                                     s.batch_size, torch.Generator().manual_seed(seed), prompt=prompt_ids)
        return self.decode(ids)

    def fill(self, model, ids: torch.Tensor, hidden: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """The `hidden` tokens of ids [B, N] drawn by the diffusion model given the rest (`tasks.text.generate`)."""
        return infill(model, ids, hidden, self.sampler(model), self.config.sample.batch_size,
                      torch.Generator().manual_seed(seed))

    def sample_metrics(self, ids: torch.Tensor, cond) -> dict[str, float]:
        return {"unigram_entropy": float(metrics.unigram_entropy(ids).mean())}

    def write_samples(self, ids: torch.Tensor, cond, out: Path | None, continuous=None) -> Path:
        """The ids (safetensors) and their texts, one sample a paragraph, in samples.txt beside them."""
        path = super().write_samples(ids, cond, out, continuous)
        atomic_write_text(path.parent / "samples.txt", "".join(f"{text}\n\n" for text in self.decode(ids)))
        return path

    # ------------------------------------------------------------------ evaluation
    # Each use draws from its own seed (sample.seed + SEED_OFFSETS[use]), so that no two uses share
    # random draws (the autoregressive sampler reads a prompt without drawing: it would repeat them).
    SEED_OFFSETS = {"samples": 0, "infill": 1, "long": 2, "prompt": 3}

    def evaluate_model(self, model) -> dict:
        t, s = self.config.task, self.config.sample
        seed = s.seed
        rows: dict[str, dict[str, float]] = {}
        texts: dict[str, list[str]] = {}
        heldout = self.chunks["heldout"]

        print(f"text: ELBO on {len(heldout)} held-out chunks x {t.elbo_repeats} masking draws", flush=True)
        bits = [self.heldout_elbo(model, repeats=1, seed=seed + r, batch_size=64) for r in range(t.elbo_repeats)]
        elbo_bits, elbo_se = metrics.mean_and_stderr(bits)
        baseline = self.baseline_model()
        real_nll = metrics.token_nll(baseline, heldout)
        ar_nats = float(real_nll.double().mean())
        elbo_ppl = metrics.perplexity_from_bits(elbo_bits)
        rows["perplexity"] = {"diffusion_elbo_ppl": elbo_ppl,
                              "diffusion_elbo_ppl_stderr": math.log(2) * elbo_se * elbo_ppl,  # d 2^b / d b
                              "diffusion_elbo_bits": elbo_bits, "ar_ppl": metrics.perplexity(ar_nats),
                              "ar_bits": ar_nats / math.log(2), "heldout_tokens": float(heldout.numel())}
        rows["perplexity"]["ratio"] = rows["perplexity"]["diffusion_elbo_ppl"] / rows["perplexity"]["ar_ppl"]
        # bits per character do not depend on the tokenizer (the verses' characters, a newline per end of text)
        chars = len(self.decode(heldout.reshape(1, -1))[0])
        per_char = heldout.numel() / chars
        rows["perplexity"].update(heldout_chars=float(chars), diffusion_elbo_bits_per_char=elbo_bits * per_char,
                                  ar_bits_per_char=ar_nats / math.log(2) * per_char)

        def describe(ids: torch.Tensor, nll: torch.Tensor, **extra) -> dict[str, float]:
            return {"gen_ppl": metrics.generative_perplexity(nll),
                    "entropy": float(metrics.unigram_entropy(ids).mean()), **extra}

        count = t.eval_samples
        print(f"text: {count} unconditional samples of each model ({s.steps} diffusion steps)", flush=True)
        start = time.perf_counter()
        diff = sample_many(model, count, s.batch_size, sampler=self.sampler(model),
                           generator=torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start
        rows["samples: diffusion"] = describe(diff.ids, metrics.token_nll(baseline, diff.ids), nfe=float(diff.nfe),
                                              ms_per_sample=1000 * seconds / count)
        start = time.perf_counter()
        ar_ids, ar_nfe = self.baseline_sample(baseline, count, seed=seed)
        seconds = time.perf_counter() - start
        rows["samples: autoregressive"] = describe(ar_ids, metrics.token_nll(baseline, ar_ids), nfe=float(ar_nfe),
                                                   ms_per_sample=1000 * seconds / count)
        real = self.heldout(count)
        rows["samples: real held-out chunks"] = describe(real, metrics.token_nll(baseline, real))
        texts["diffusion samples"], texts["autoregressive samples"] = self.decode(diff.ids), self.decode(ar_ids)
        texts["real held-out chunks"] = self.decode(real)

        rows.update(self.evaluate_infilling(model, baseline, texts))
        rows.update(self.evaluate_long(model, baseline, texts))
        self.write_texts(texts)
        print(self.report(rows))
        return {f"{name}/{k}": v for name, row in rows.items() for k, v in row.items()}

    def evaluate_infilling(self, model, baseline, texts: dict) -> dict[str, dict[str, float]]:
        """A span hidden in held-out chunks: the diffusion model sees both sides, the autoregressive one
        the left side only (its prompt); the judge scores the span and everything after it."""
        t, s, n = self.config.task, self.config.sample, self.config.model.seq_len
        truth = self.heldout(t.infill_chunks)
        hidden = span_mask(len(truth), n, t.infill_start, t.infill_span)
        steps = max(1, round(s.steps * t.infill_span / n))  # the unconditional samples' steps per token
        print(f"text: infilling {t.infill_span} tokens at {t.infill_start} in {len(truth)} held-out chunks "
              f"({steps} steps)", flush=True)
        seed = s.seed + self.SEED_OFFSETS["infill"]
        filled = infill(model, truth, hidden, self.sampler(model, steps), s.batch_size,
                        torch.Generator().manual_seed(seed))
        prompt = truth[:, :t.infill_start]
        ar, _ = self.baseline_sample(baseline, len(truth), prompt=prompt if t.infill_start else None, seed=seed)
        ar_filled = torch.where(hidden, ar, truth)  # the right side put back after the sampled span
        end = t.infill_start + t.infill_span

        def row(ids: torch.Tensor) -> dict[str, float]:
            # the judge's perplexity of the span, and of the true tokens after it given the span: a fill that
            # fits its right side makes them likelier (the autoregressive fill, the judge's own, never saw them)
            nll = metrics.token_nll(baseline, ids)
            return {"span_accuracy": metrics.span_accuracy(ids, truth, hidden),
                    "span_ppl": metrics.generative_perplexity(nll[:, t.infill_start:end]),
                    "after_span_ppl": metrics.generative_perplexity(nll[:, end:])}

        texts["infilling (diffusion), the span in [[ ]]"] = self.marked(filled, t.infill_start, t.infill_span)
        texts["infilling (autoregressive, left side only), the span in [[ ]]"] = self.marked(
            ar_filled, t.infill_start, t.infill_span)
        texts["infilling: the truth"] = self.marked(truth, t.infill_start, t.infill_span)
        return {"infill: diffusion": row(filled), "infill: autoregressive (left side)": row(ar_filled),
                "infill: truth": row(truth)}

    def evaluate_long(self, model, baseline, texts: dict) -> dict[str, dict[str, float]]:
        t, s, n = self.config.task, self.config.sample, self.config.model.seq_len
        length, context, count = t.long_length, t.long_context, t.long_samples
        print(f"text: {count} texts of {length} tokens in windows of {n} keeping {context}", flush=True)
        seed = s.seed + self.SEED_OFFSETS["long"]
        start = time.perf_counter()
        diff, nfe = semi_autoregressive(model, self.sampler(model), count, length, context, s.batch_size,
                                        torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        ar, ar_nfe = autoregressive_long(
            lambda c, p, i: self.baseline_sample(baseline, c, prompt=p, seed=seed + 100 * i), count, length, n, context)
        ar_seconds = time.perf_counter() - start
        real = evenly_spaced(long_rows(self.chunks["heldout"], length), count)
        stride = n - context  # the judge reads each token with the windows' own context

        def row(ids, **extra):
            return {"gen_ppl": metrics.generative_perplexity(metrics.sliding_token_nll(baseline, ids, stride)),
                    "entropy": float(metrics.unigram_entropy(ids).mean()), **extra}

        texts[f"long text (diffusion, semi-autoregressive, {length} tokens)"] = self.decode(diff)
        texts[f"long text (autoregressive, {length} tokens)"] = self.decode(ar)
        prompt = self.config.task.prompt
        texts[f"the prompt {prompt!r} continued (diffusion)"] = self.complete(
            model, prompt, count=2, seed=s.seed + self.SEED_OFFSETS["prompt"])
        return {"long: diffusion": row(diff, nfe=float(nfe), ms_per_sample=1000 * seconds / count),
                "long: autoregressive": row(ar, nfe=float(ar_nfe), ms_per_sample=1000 * ar_seconds / count),
                "long: real held-out": row(real)}

    def marked(self, ids: torch.Tensor, start: int, span: int) -> list[str]:
        """Texts with the span between [[ and ]] (decoded piece by piece, so the marks sit at token edges)."""
        before, inside, after = (self.decode(part) for part in (ids[:, :start], ids[:, start:start + span],
                                                                ids[:, start + span:]))
        return [f"{a}[[{b}]]{c}" for a, b, c in zip(before, inside, after)]

    def write_texts(self, texts: dict[str, list[str]]) -> None:
        show = self.config.task.show
        lines = []
        for title, items in texts.items():
            lines.append(f"=== {title}")
            lines.extend(f"--- {i}\n{text}" for i, text in enumerate(items))
            if show:
                print(f"--- {title}")
                for text in items[:show]:
                    print("  " + text.replace("\n", " / "))
        path = self.run_dir / "samples.txt"
        atomic_write_text(path, "\n".join(lines) + "\n")
        print(f"sample texts: {path}")

    def report(self, rows: dict[str, dict[str, float]]) -> str:
        t, s, m = self.config.task, self.config.sample, self.config.model
        p = rows["perplexity"]
        lines = [f"text task: KJV verses, sentencepiece {m.vocab_size} pieces, chunks of {m.seq_len} tokens; "
                 f"{int(p['heldout_tokens'])} held-out tokens; sampler {s.order} order, {s.steps} steps per "
                 f"{m.seq_len} tokens, temperature {s.temperature}",
                 f"  diffusion ELBO perplexity {p['diffusion_elbo_ppl']:.2f} (+- {p['diffusion_elbo_ppl_stderr']:.2f} "
                 f"over {t.elbo_repeats} masking draws; {p['diffusion_elbo_bits']:.3f} bits/token, "
                 f"{p['diffusion_elbo_bits_per_char']:.3f} bits/char), autoregressive perplexity {p['ar_ppl']:.2f} "
                 f"({p['ar_bits']:.3f} bits/token, {p['ar_bits_per_char']:.3f} bits/char): ratio {p['ratio']:.3f}",
                 "  gen ppl: perplexity under the autoregressive model (long texts: sliding windows keeping "
                 f"{t.long_context} tokens); entropy: unigram entropy of each text's tokens, nats (mean); infill: "
                 f"{t.infill_span} tokens hidden from token {t.infill_start}, the judge's perplexity of the span and "
                 "of the true tokens after it",
                 f"  {'':<38} {'gen ppl':>8} {'entropy':>8} {'span acc':>9} {'span ppl':>9} {'after ppl':>9} "
                 f"{'NFE':>6} {'ms/sample':>10}"]

        def cell(r, k, fmt, width):
            return f"{format(r[k], fmt):>{width}}" if k in r else f"{'-':>{width}}"

        for name, r in rows.items():
            if name == "perplexity":
                continue
            lines.append(f"  {name:<38} {cell(r, 'gen_ppl', '.2f', 8)} {cell(r, 'entropy', '.3f', 8)} "
                         f"{cell(r, 'span_accuracy', '.1%', 9)} {cell(r, 'span_ppl', '.2f', 9)} "
                         f"{cell(r, 'after_span_ppl', '.2f', 9)} {cell(r, 'nfe', '.0f', 6)} "
                         f"{cell(r, 'ms_per_sample', '.0f', 10)}")
        return "\n".join(lines)


__all__ = ["TextTask", "TextConfig"]
