"""The synthetic task: token sequences from a random unifilar HMM whose entropy,
conditionals and pair statistics are known exactly.

It checks the core end to end: the model's ELBO against the true entropy, the true
NLL of the model's samples, and the total-variation distance of the samples' pair
statistics from the exact ones (a sampler that buys low NLL with lost diversity shows
up there), next to the noise floor of an equal number of true samples.

Conditional variant (`prefix_length` > 0): the first `prefix_length` tokens of each
chain are a visible condition prefix and the model generates the `length` tokens that
follow; the target's entropy is then H(prefix + target) - H(prefix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset

from ddm.config import ConfigError, bounded, positive
from ddm.model import Condition
from ddm.task import DiffusionTask, register_task

from .source import SourceSpec, UnifilarHMM, empirical_pair_stats, pair_tv, unigram_nll

LN2 = math.log(2.0)


@dataclass
class SyntheticConfig:
    name: str = "synthetic"
    num_states: int = positive(8)
    vocab_size: int = positive(16)
    support: int = positive(4)  # tokens each hidden state can emit
    concentration: float = positive(1.0)
    source_seed: int = 0  # which random source
    length: int = positive(32)  # target tokens per example
    prefix_length: int = bounded(0, 0)  # > 0: the conditional variant
    train_size: int = positive(200_000)
    eval_size: int = positive(2_000)
    data_seed: int = 1
    lags: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    elbo_repeats: int = positive(4)  # Monte-Carlo passes over the eval set for the ELBO


@register_task("synthetic")
class SyntheticTask(DiffusionTask):
    Config = SyntheticConfig
    resumable = DiffusionTask.resumable + ("task.eval_size", "task.lags", "task.elbo_repeats")

    def __init__(self, config):
        super().__init__(config)
        t = config.task
        self.spec = SourceSpec(num_states=t.num_states, vocab_size=t.vocab_size, support=t.support,
                               concentration=t.concentration, seed=t.source_seed)
        self.source = UnifilarHMM.random(self.spec)

    # ------------------------------------------------------------------ config and data

    def check(self) -> None:
        t, m = self.config.task, self.config.model
        if m.vocab_size != t.vocab_size:
            raise ConfigError(f"model.vocab_size: {m.vocab_size} does not match task.vocab_size={t.vocab_size}")
        if m.seq_len != t.length:
            raise ConfigError(f"model.shape: {m.shape} holds {m.seq_len} tokens, task.length is {t.length}")
        if t.prefix_length:
            if m.cond_vocab_size != t.vocab_size or m.cond_len < t.prefix_length:
                raise ConfigError(f"model.cond_vocab_size / model.cond_len: the conditional task needs "
                                  f"cond_vocab_size={t.vocab_size} and cond_len >= {t.prefix_length}")
        elif m.cond_vocab_size or m.num_classes or m.cond_embed_dim:
            raise ConfigError("model: the unconditional synthetic task takes no condition "
                              "(set cond_vocab_size, num_classes and cond_embed_dim to 0)")

    def _sequences(self, n: int, seed: int) -> torch.Tensor:
        t = self.config.task
        return self.source.sample(n, t.prefix_length + t.length, torch.Generator().manual_seed(seed))

    def _dataset(self, n: int, seed: int) -> Dataset:
        x = self._sequences(n, seed).numpy().astype(np.int64)
        p = self.config.task.prefix_length
        columns = {"ids": x[:, p:]}
        if p:
            columns["cond_ids"] = x[:, :p]
        return Dataset.from_dict(columns).with_format("torch")

    def train_dataset(self) -> Dataset:
        return self._dataset(self.config.task.train_size, self.config.task.data_seed)

    def eval_dataset(self) -> Dataset:
        # A different seed: held-out sequences.
        return self._dataset(self.config.task.eval_size, self.config.task.data_seed + 10_007)

    # ------------------------------------------------------------------ exact references

    def target_entropy_bits(self) -> float:
        t = self.config.task
        h = self.source.entropy(t.prefix_length + t.length) - self.source.entropy(t.prefix_length)
        return h / t.length / LN2

    def true_nll_bits(self, prefix: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        """-log2 p(target | prefix) per token, per row, under the known source."""
        if prefix is None:
            return -self.source.log_prob(target) / target.shape[1] / LN2
        full = self.source.log_prob(torch.cat((prefix, target), 1)) - self.source.log_prob(prefix)
        return -full / target.shape[1] / LN2

    def exact_pair_stats(self) -> torch.Tensor:
        t = self.config.task
        return self.source.pair_stats(t.prefix_length + t.length, t.lags, start=t.prefix_length)

    # ------------------------------------------------------------------ metrics

    def elbo_bits(self, model, seed: int = 0) -> float:
        return self.heldout_elbo(model, self.config.task.elbo_repeats, seed)

    def eval_during_training(self, model) -> dict[str, float]:
        elbo = self.elbo_bits(model)
        return {"elbo_bits_per_token": elbo, "elbo_over_entropy": elbo / self.target_entropy_bits()}

    def sample_conditions(self, n: int) -> Condition | None:
        p = self.config.task.prefix_length
        if not p:
            return None
        # True prefixes the model never saw in training (their own seed).
        return Condition(tokens=self._sequences(n, self.config.sample.seed + 777)[:, :p])

    def sample_metrics(self, ids: torch.Tensor, cond: Condition | None) -> dict[str, float]:
        """True NLL and pair-statistics TV of the samples (given their prefixes, if any)."""
        nll = self.true_nll_bits(None if cond is None else cond.tokens, ids)
        possible = torch.isfinite(nll)
        # An impossible sample has infinite NLL: report their share, and the mean over the rest.
        mean = float(nll[possible].mean()) if possible.any() else math.inf
        stats = empirical_pair_stats(ids, self.config.task.lags, self.config.task.vocab_size)
        return {"nll_bits_per_token": mean, "nll_over_entropy": mean / self.target_entropy_bits(),
                "impossible_fraction": float(1 - possible.double().mean()),
                "pair_tv": pair_tv(stats, self.exact_pair_stats())}

    def noise_floor(self, n: int, seed: int = 12345) -> dict[str, float]:
        """The same metrics for n true samples: what a perfect sampler would show."""
        x = self._sequences(n, seed)
        p = self.config.task.prefix_length
        return self.sample_metrics(x[:, p:], Condition(tokens=x[:, :p]) if p else None)

    def evaluate_model(self, model, **sampler_overrides) -> dict[str, float]:
        cfg = self.config
        result, cond, seconds = self.generate(model, **sampler_overrides)
        n = result.ids.shape[0]
        metrics = {
            "true_entropy_bits_per_token": self.target_entropy_bits(),
            "unigram_nll_bits_per_token": unigram_nll(self.source, cfg.task.prefix_length + cfg.task.length) / LN2,
            "elbo_bits_per_token": self.elbo_bits(model),
            **self.sample_metrics(result.ids, cond),
            "pair_tv_noise_floor": self.noise_floor(n)["pair_tv"],
            "nfe": float(result.nfe),
            "ms_per_sample": 1000.0 * seconds / n,
        }
        metrics["elbo_over_entropy"] = metrics["elbo_bits_per_token"] / metrics["true_entropy_bits_per_token"]
        print(format_report(metrics, cfg, n, **sampler_overrides))
        return metrics


def format_report(m: dict[str, float], cfg, n: int, **sampler_overrides) -> str:
    t = cfg.task
    order = sampler_overrides.get("order", cfg.sample.order)
    steps = sampler_overrides.get("steps", cfg.sample.steps)
    h = m["true_entropy_bits_per_token"]
    kind = f"conditional, prefix {t.prefix_length}" if t.prefix_length else "unconditional"
    rows = [
        f"synthetic task: unifilar HMM S={t.num_states} V={t.vocab_size} (seed {t.source_seed}), "
        f"{t.length} target tokens, {kind}",
        f"  true entropy          {h:7.4f} bits/token",
        f"  unigram NLL           {m['unigram_nll_bits_per_token']:7.4f} bits/token  "
        f"({m['unigram_nll_bits_per_token'] / h:.2f} x entropy: the structure a model must find)",
        f"  model ELBO            {m['elbo_bits_per_token']:7.4f} bits/token  "
        f"({m['elbo_over_entropy']:.3f} x entropy; target <= 1.10)",
        f"  samples' true NLL     {m['nll_bits_per_token']:7.4f} bits/token  "
        f"({m['nll_over_entropy']:.3f} x entropy; target 0.90-1.10; "
        f"{100 * m['impossible_fraction']:.1f}% of samples impossible)  "
        f"[{order} order, {steps} steps, NFE {m['nfe']:.0f}]",
        f"  pair TV (lags {','.join(map(str, t.lags))})  {m['pair_tv']:7.4f}          "
        f"(noise floor of {n} true samples: {m['pair_tv_noise_floor']:.4f})",
        f"  sampling              {m['ms_per_sample']:7.3f} ms/sample",
    ]
    return "\n".join(rows)
