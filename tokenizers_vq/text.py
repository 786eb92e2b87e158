"""Text as token streams: a byte-level BPE model from the `tokenizers` library.

Byte-level BPE (no normalizer, bytes as the initial alphabet) maps every string to
ids and back exactly: there is no unknown token and no text is changed. Id 0 is
padding. `encode` pads a batch to `max_length` (or, with max_length 0, to its longest
text) and sets the stream's mask; a text longer than max_length is an error, never
truncated. The trained model is saved as tokenizer.json beside the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddm.config import TrainConfig, bounded, positive

from .base import Tokenizer
from .data.text import TextDataConfig, build_text_data
from .stream import TokenStream
from .registry import TOKENIZERS

PAD = "<pad>"
MODEL_FILE = "tokenizer.json"


@dataclass
class TextConfig:
    vocab_size: int = bounded(8000, 260)  # at most this many tokens (256 bytes + pad + merges)
    min_frequency: int = positive(2)  # a merge must occur this often in the training text
    max_length: int = bounded(0, 0)  # tokens per example after padding (0: the batch's longest)


@TOKENIZERS.register("text")
class TextTokenizer(Tokenizer):
    config_class = TextConfig
    DataConfig = TextDataConfig

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.model = None  # a tokenizers.Tokenizer once fitted or loaded

    def _require_model(self):
        if self.model is None:
            raise RuntimeError("TextTokenizer: no BPE model; call fit(train_texts) or load a fitted one")
        return self.model

    @property
    def vocab_size(self) -> int:
        return self._require_model().get_vocab_size()

    @property
    def pad_id(self) -> int:
        return 0

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None) -> dict[str, float]:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        texts = check_texts(train, "fit: train")
        model = HFTokenizer(models.BPE())
        model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        model.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=self.config.vocab_size, min_frequency=self.config.min_frequency,
                                      special_tokens=[PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        model.train_from_iterator(texts, trainer=trainer, length=len(texts))
        if model.token_to_id(PAD) != self.pad_id:
            raise RuntimeError(f"TextTokenizer: {PAD} got id {model.token_to_id(PAD)}, expected {self.pad_id}")
        self.model = model
        return {"vocab_size": model.get_vocab_size()}

    def save_files(self, directory: Path) -> None:
        self._require_model().save(str(Path(directory) / MODEL_FILE))

    def load_files(self, directory: Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        path = Path(directory) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the text tokenizer's BPE model is missing")
        self.model = HFTokenizer.from_file(str(path))

    def encode(self, texts: str | list[str], max_length: int | None = None) -> TokenStream:
        """One text or a list -> ids [B, N] (padding id 0, mask False there); N is `max_length`
        (default: the config's; 0: the longest text)."""
        model = self._require_model()
        texts = check_texts([texts] if isinstance(texts, str) else texts, "encode: texts")
        rows = [e.ids for e in model.encode_batch(texts, add_special_tokens=False)]
        return padded_stream(rows, self.config.max_length if max_length is None else max_length, self.pad_id)

    def decode(self, stream: TokenStream | torch.Tensor) -> list[str]:
        """ids [B, N] (or [N]) -> texts; padding ids are dropped wherever they are."""
        model = self._require_model()
        return model.decode_batch(unpadded_rows(self, stream), skip_special_tokens=False)

    @classmethod
    def build_data(cls, data_config: TextDataConfig) -> dict[str, Any]:
        return build_text_data(data_config)

    def evaluate(self, heldout: list[str]) -> dict[str, float]:
        texts = check_texts(heldout, "evaluate: heldout")
        counts, exact = [], 0
        for start in range(0, len(texts), 512):  # batches, so that padding stays small
            batch = texts[start:start + 512]
            stream = self.encode(batch, max_length=0)
            exact += sum(a == b for a, b in zip(batch, self.decode(stream)))
            counts += stream.mask.sum(1).tolist()
        return {"texts": len(texts), "exact_round_trip": exact / len(texts), "failures": len(texts) - exact,
                "vocab_size": self.vocab_size, "mean_tokens": sum(counts) / len(counts),
                "max_tokens": max(counts), "chars_per_token": sum(map(len, texts)) / sum(counts),
                "too_long_for_max_length": sum(c > self.config.max_length for c in counts)
                if self.config.max_length else 0}

    def read_input(self, path: str | Path) -> list[str]:
        """A UTF-8 text file, one example per line."""
        return Path(path).read_text(encoding="utf-8").splitlines()

    def write_output(self, texts: list[str], path: str | Path) -> None:
        Path(path).write_text("".join(t + "\n" for t in texts), encoding="utf-8")


def padded_stream(rows: list[list[int]], length: int, pad_id: int) -> TokenStream:
    """Id lists -> a stream of `length` tokens a row (0: the longest row), padded with `pad_id`;
    a row longer than `length` is an error, never truncated."""
    longest = max(len(r) for r in rows)
    n = length or max(1, longest)
    if longest > n:
        i = max(range(len(rows)), key=lambda k: len(rows[k]))
        raise ValueError(f"encode: texts[{i}] has {len(rows[i])} tokens, more than max_length={n} "
                         f"(raise tokenizer.max_length; text is never truncated)")
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, :len(r)] = True
    return TokenStream(ids, (n,), mask=mask)


def unpadded_rows(tokenizer: Tokenizer, stream: TokenStream | torch.Tensor) -> list[list[int]]:
    """ids [B, N] (or [N]), checked against the vocabulary -> id lists without padding (the pad id,
    and where the stream has a mask, the masked-out slots)."""
    ids = stream.ids if isinstance(stream, TokenStream) else stream
    if isinstance(ids, torch.Tensor) and ids.ndim == 1:
        ids = ids[None]
    ids = tokenizer.check_ids(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids: expected [B, N], got {tuple(ids.shape)}")
    keep = ids != tokenizer.pad_id
    if isinstance(stream, TokenStream) and stream.mask is not None:
        keep &= stream.mask
    return [row[k].tolist() for row, k in zip(ids, keep)]


def check_texts(texts: Any, where: str) -> list[str]:
    texts = list(texts)
    if not texts:
        raise ValueError(f"{where}: no texts given")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{where}[{i}]: expected a string, got {type(t).__name__}")
    return texts
