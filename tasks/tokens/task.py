"""The `tokens` task: a masked-diffusion model of your own token sequences, from one YAML.

    task: {name: tokens, path: data/ids.npy}   # or .parquet / .arrow / a datasets folder
    model: {vocab_size: 512, shape: [64]}
    train: {steps: 2000}

`ddm train` fits the model (a held-out split is kept back), `ddm eval` prints the held-out
ELBO in bits per token and describes samples, `ddm sample` writes samples in the data's own
format (`ddm sample --model runs/tokens/model` needs no YAML). Rows of other lengths are
padded with `task.pad_id`: pads are never a target and never sampled; a sample's length
is drawn from the training rows' lengths (recorded in the model folder). `label_column`
(class ids) and `prefix_column` (condition ids) make the model conditional; samples are
drawn for every class in turn, or for the held-out rows' prefixes. `values_column` (a vector
per token, `model.continuous_dim` numbers) trains the joint process (`ddm.continuous`): samples
then carry vectors too, written back in that column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ddm.config import ConfigError, bounded
from ddm.model import Condition
from ddm.sampling import AllowedTokens, Fixed
from ddm.task import DiffusionTask, register_task

from .data import TokenTable, build_table, data_format, read_columns, write_tokens


@dataclass
class TokensConfig:
    name: str = "tokens"
    path: str = ""  # .npy (ids only), .parquet, .arrow / .feather, or a datasets folder
    column: str = "ids"  # the column of id lists (table formats)
    pad_id: int | None = None  # fills rows shorter than the model: never a target, never sampled
    label_column: str = ""  # class ids (model.num_classes)
    prefix_column: str = ""  # condition prefix ids (model.cond_vocab_size, model.cond_len)
    values_column: str = ""  # a vector per token (model.continuous_dim numbers): the joint process
    heldout_fraction: float = bounded(0.1, 0.0, 0.9)
    split_seed: int = 0
    # Rows of each real length 1..L in the training split; written into the model folder when it is
    # trained (sampling draws lengths from it), so leave it empty.
    length_counts: list[int] = field(default_factory=list)


@register_task("tokens")
class TokensTask(DiffusionTask):
    Config = TokensConfig

    def check(self) -> None:
        t, m = self.config.task, self.config.model
        if not t.path:
            raise ConfigError("task.path: missing; the file (or datasets folder) of token sequences to train on")
        data_format(t.path)
        if bool(t.label_column) != bool(m.num_classes):
            raise ConfigError(f"model.num_classes: {m.num_classes} with task.label_column={t.label_column!r}; class "
                              "labels and a class-conditional model go together")
        if bool(t.prefix_column) != bool(m.cond_vocab_size):
            raise ConfigError(f"model.cond_vocab_size: {m.cond_vocab_size} with task.prefix_column="
                              f"{t.prefix_column!r}; a condition prefix and its vocabulary go together")
        if bool(t.values_column) != bool(m.continuous_dim):
            raise ConfigError(f"model.continuous_dim: {m.continuous_dim} with task.values_column={t.values_column!r}; "
                              "a vector per token and a continuous head go together")
        if m.cond_embed_dim:
            raise ConfigError("model.cond_embed_dim: the tokens task has no embedding condition (set it to 0)")
        if t.length_counts and len(t.length_counts) != m.seq_len:
            raise ConfigError(f"task.length_counts: {len(t.length_counts)} counts for a model of {m.seq_len} tokens")

    # ------------------------------------------------------------------ data
    @cached_property
    def table(self) -> TokenTable:
        t, m = self.config.task, self.config.model
        extra = [c for c in (t.label_column, t.prefix_column, t.values_column) if c]
        return build_table(read_columns(t.path, t.column, extra), t.path, m.seq_len, m.vocab_size, t.pad_id,
                           t.label_column, m.num_classes, t.prefix_column, m.cond_vocab_size, m.cond_len,
                           t.values_column, m.continuous_dim)

    @cached_property
    def splits(self) -> dict[str, TokenTable]:
        n = len(self.table.ids)
        order = np.random.default_rng(self.config.task.split_seed).permutation(n)
        held = min(n - 1, int(round(n * self.config.task.heldout_fraction)))
        return {"train": self.table.rows(np.sort(order[held:])), "heldout": self.table.rows(np.sort(order[:held]))}

    def _dataset(self, table: TokenTable):
        from datasets import Dataset

        columns = {"ids": table.ids}
        if self.config.task.pad_id is not None:
            columns["padding"] = np.arange(table.ids.shape[1]) >= table.lengths[:, None]
        if table.classes is not None:
            columns["classes"] = table.classes
        if table.prefix is not None:
            columns.update(cond_ids=table.prefix, cond_mask=table.prefix_mask)
        if table.values is not None:
            columns["values"] = table.values
        return Dataset.from_dict(columns).with_format("torch")

    def train_dataset(self):
        return self._dataset(self.splits["train"])

    def eval_dataset(self):
        heldout = self.splits["heldout"]
        return self._dataset(heldout) if len(heldout.ids) else None

    def model_task_section(self) -> dict:
        section = super().model_task_section()
        if self.config.task.pad_id is not None and not section["length_counts"]:
            lengths = self.splits["train"].lengths
            section["length_counts"] = np.bincount(lengths - 1, minlength=self.config.model.seq_len).tolist()
        return section

    # ------------------------------------------------------------------ sampling
    def processors(self) -> list:
        pad = self.config.task.pad_id
        if pad is None:
            return []
        allowed = torch.ones(self.config.model.seq_len, self.config.model.vocab_size, dtype=torch.bool)
        allowed[:, pad] = False  # a pad is never drawn: lengths are chosen, padding is fixed
        return [AllowedTokens(allowed)]

    def sample_fixed(self, n: int) -> Fixed | None:
        t, length = self.config.task, self.config.model.seq_len
        if t.pad_id is None:
            return None
        counts = np.asarray(t.length_counts or np.bincount(self.splits["train"].lengths - 1, minlength=length))
        lengths = np.random.default_rng(self.config.sample.seed).choice(np.arange(1, length + 1), size=n,
                                                                        p=counts / counts.sum())
        padding = torch.arange(length)[None] >= torch.as_tensor(lengths)[:, None]
        return Fixed(torch.full((n, length), t.pad_id, dtype=torch.long), padding)

    def sample_conditions(self, n: int) -> Condition | None:
        m = self.config.model
        if m.num_classes:
            return Condition(classes=torch.arange(n) % m.num_classes)
        if m.cond_vocab_size:
            source = self.splits["heldout"] if len(self.splits["heldout"].ids) else self.splits["train"]
            rows = np.arange(n) % len(source.ids)
            return Condition(tokens=torch.as_tensor(source.prefix[rows]),
                             token_mask=torch.as_tensor(source.prefix_mask[rows]))
        return None

    def _as_table(self, ids: torch.Tensor, cond: Condition | None, values: torch.Tensor | None = None) -> TokenTable:
        pad = self.config.task.pad_id
        ids = ids.numpy()
        lengths = (ids != pad).sum(1) if pad is not None else np.full(len(ids), ids.shape[1])
        table = TokenTable(ids, lengths, values=None if values is None else values.float().numpy())
        if cond is not None and cond.classes is not None:
            table.classes = cond.classes.numpy()
        if cond is not None and cond.tokens is not None:
            table.prefix, table.prefix_mask = cond.tokens.numpy(), cond.token_mask.numpy()
        return table

    def write_samples(self, ids: torch.Tensor, cond, out: Path | None, continuous: torch.Tensor | None = None) -> Path:
        """Samples in the data's own format: run_dir/samples/samples.<npy|parquet|arrow> or a datasets folder."""
        t = self.config.task
        fmt = data_format(t.path)
        suffix = {"npy": ".npy", "parquet": ".parquet", "arrow": Path(t.path).suffix, "datasets": ""}[fmt]
        path = Path(out) if out else self.run_dir / "samples" / f"samples{suffix}"
        return write_tokens(path, fmt, self._as_table(ids, cond, continuous), t.column, t.label_column,
                            t.prefix_column, t.values_column)

    def continuous_metrics(self, values: torch.Tensor, ids: torch.Tensor, cond) -> dict[str, float]:
        """Per token id seen at least 20 times in the samples and in the held-out rows: the gap between the
        sampled vectors' mean and the data's (mean over ids and dimensions), and the ratio of their spreads."""
        if not Path(self.config.task.path).exists():
            return {}
        heldout = self.splits["heldout"] if len(self.splits["heldout"].ids) else self.splits["train"]
        samples = self._as_table(ids, cond, values)
        gaps, ratios = [], []
        for token in range(self.config.model.vocab_size):
            a, b = self._vectors_of(samples, token), self._vectors_of(heldout, token)
            if len(a) >= 20 and len(b) >= 20:
                gaps.append(np.abs(a.mean(0) - b.mean(0)).mean())
                ratios.append((a.std(0) / np.maximum(b.std(0), 1e-8)).mean())
        if not gaps:
            return {}
        return {"values_mean_gap": float(np.mean(gaps)), "values_spread_ratio": float(np.mean(ratios)),
                "values_ids_compared": float(len(gaps))}

    @staticmethod
    def _vectors_of(table: TokenTable, token: int) -> np.ndarray:
        real = np.arange(table.ids.shape[1]) < table.lengths[:, None]
        return table.values[real & (table.ids == token)].astype(np.float64)

    def sample_metrics(self, ids: torch.Tensor, cond) -> dict[str, float]:
        """Unigram total variation to the held-out tokens and the share of samples that copy a training row
        (nothing where the data is not at hand, e.g. sampling a folder on another machine)."""
        if not Path(self.config.task.path).exists():
            return {}
        samples = self._as_table(ids, cond)
        heldout = self.splits["heldout"] if len(self.splits["heldout"].ids) else self.splits["train"]
        vocab = self.config.model.vocab_size

        def unigram(table: TokenTable) -> np.ndarray:
            real = np.arange(table.ids.shape[1]) < table.lengths[:, None]
            counts = np.bincount(table.ids[real], minlength=vocab).astype(np.float64)
            return counts / counts.sum()

        train = {row.tobytes() for row in self.splits["train"].ids}
        copies = np.mean([row.tobytes() in train for row in samples.ids])
        return {"unigram_tv_to_heldout": 0.5 * float(np.abs(unigram(samples) - unigram(heldout)).sum()),
                "copies_of_training_rows": float(copies)}
