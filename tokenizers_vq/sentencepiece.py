"""Text as token streams: a `sentencepiece` model (unigram or BPE), beside the byte-level BPE of `text.py`.

Trained with identity normalization, whitespace kept as it is and byte fallback, so a text maps
to ids and back exactly (a character the model never saw becomes its UTF-8 bytes, not <unk>).
Ids: 0 padding, 1 unknown, 2 end of text (`eos_id`, the separator between texts when a task packs
them into one stream, as MDLM does); no BOS. `encode` pads a batch to `max_length` (0: the batch's
longest) and sets the stream's mask; a text longer than max_length is an error, never truncated.
`decode` drops padding and turns each end-of-text id into a newline. The trained model is saved
as sentencepiece.model beside the weights.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ddm.config import TrainConfig, bounded, positive

from .base import Tokenizer
from .data.text import TextDataConfig, build_text_data
from .registry import TOKENIZERS
from .stream import TokenStream
from .text import check_texts, padded_stream, unpadded_rows

MODEL_FILE = "sentencepiece.model"
PAD_ID, UNK_ID, EOS_ID = 0, 1, 2


@dataclass
class SentencePieceConfig:
    vocab_size: int = bounded(4000, 300)  # with byte fallback, 256 of them are the bytes
    model_type: Literal["unigram", "bpe"] = "unigram"
    character_coverage: float = bounded(1.0, 0.9, 1.0)  # share of characters given their own piece
    byte_fallback: bool = True  # unseen characters as bytes (exact round trips); off: <unk>
    max_length: int = bounded(0, 0)  # tokens per example after padding (0: the batch's longest)
    max_sentence_chars: int = positive(16384)  # a longer training text is an error (sentencepiece would skip it)
    seed_sentences: int = positive(1000000)  # sentencepiece's seed_sentencepiece_size


@TOKENIZERS.register("sentencepiece")
class SentencePieceTokenizer(Tokenizer):
    config_class = SentencePieceConfig
    DataConfig = TextDataConfig

    def __init__(self, config: SentencePieceConfig) -> None:
        super().__init__()
        self.config = config
        self.model = None  # a sentencepiece.SentencePieceProcessor once fitted or loaded
        self._proto: bytes | None = None

    def _require_model(self):
        if self.model is None:
            raise RuntimeError("SentencePieceTokenizer: no sentencepiece model; call fit(train_texts) or load a "
                               "fitted one")
        return self.model

    @property
    def vocab_size(self) -> int:
        return self._require_model().get_piece_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def _load_proto(self, proto: bytes) -> None:
        import sentencepiece as spm

        model = spm.SentencePieceProcessor(model_proto=proto)
        found = (model.pad_id(), model.unk_id(), model.eos_id())
        if found != (PAD_ID, UNK_ID, EOS_ID):
            raise ValueError(f"sentencepiece model: special ids (pad, unk, eos) are {found}, expected "
                             f"{(PAD_ID, UNK_ID, EOS_ID)}")
        self.model, self._proto = model, proto

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None) -> dict[str, float]:
        import sentencepiece as spm

        texts = check_texts(train, "fit: train")
        c = self.config
        longest = max(range(len(texts)), key=lambda i: len(texts[i]))
        if len(texts[longest]) > c.max_sentence_chars:
            # sentencepiece drops such lines with a log message only (and fails on very long ones)
            raise ValueError(f"fit: train[{longest}] has {len(texts[longest])} characters, more than "
                             f"max_sentence_chars={c.max_sentence_chars}; split the text into sentences first")
        nonempty = [t for t in texts if t]
        if not nonempty:
            raise ValueError("fit: train holds only empty texts")
        buffer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(nonempty), model_writer=buffer, vocab_size=c.vocab_size,
                model_type=c.model_type, character_coverage=c.character_coverage, byte_fallback=c.byte_fallback,
                # exact round trips: no Unicode normalization, spaces kept as they are
                normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
                pad_id=PAD_ID, unk_id=UNK_ID, eos_id=EOS_ID, bos_id=-1,
                max_sentence_length=4 * c.max_sentence_chars,  # bytes
                seed_sentencepiece_size=c.seed_sentences, input_sentence_size=0, shuffle_input_sentence=False,
                num_threads=1, minloglevel=2)
        except RuntimeError as e:  # e.g. "Vocabulary size too high" for a tiny corpus
            raise ValueError(f"fit: sentencepiece could not train a {c.vocab_size}-piece {c.model_type} model on "
                             f"{len(nonempty)} texts: {e}") from None
        self._load_proto(buffer.getvalue())
        return {"vocab_size": self.vocab_size}

    def save_files(self, directory: Path) -> None:
        self._require_model()
        (Path(directory) / MODEL_FILE).write_bytes(self._proto)

    def load_files(self, directory: Path) -> None:
        path = Path(directory) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the sentencepiece model is missing")
        self._load_proto(path.read_bytes())

    def encode_rows(self, texts: str | list[str], add_eos: bool = False) -> list[list[int]]:
        """Texts -> unpadded id lists (with `add_eos`, each ends with the end-of-text id)."""
        model = self._require_model()
        texts = check_texts([texts] if isinstance(texts, str) else texts, "encode: texts")
        return model.encode(texts, add_eos=add_eos)

    def encode(self, texts: str | list[str], max_length: int | None = None) -> TokenStream:
        """One text or a list -> ids [B, N] (padding id 0, mask False there); N is `max_length`
        (default: the config's; 0: the longest text)."""
        return padded_stream(self.encode_rows(texts), self.config.max_length if max_length is None else max_length,
                             self.pad_id)

    def decode(self, stream: TokenStream | torch.Tensor) -> list[str]:
        """ids [B, N] (or [N]) -> texts; padding is dropped, each end-of-text id becomes a newline."""
        model = self._require_model()
        texts = []
        for row in unpadded_rows(self, stream):
            pieces, current = [], []
            for i in row:
                if i == self.eos_id:
                    pieces.append(current)
                    current = []
                else:
                    current.append(i)
            texts.append("\n".join(model.decode(pieces + [current])))
        return texts

    @classmethod
    def build_data(cls, data_config: TextDataConfig) -> dict[str, Any]:
        return build_text_data(data_config)

    def evaluate(self, heldout: list[str]) -> dict[str, float]:
        texts = check_texts(heldout, "evaluate: heldout")
        rows = self.encode_rows(texts)
        decoded = self._require_model().decode(rows)
        exact = sum(a == b for a, b in zip(texts, decoded))
        counts = [len(r) for r in rows]
        return {"texts": len(texts), "exact_round_trip": exact / len(texts), "failures": len(texts) - exact,
                "vocab_size": self.vocab_size, "mean_tokens": sum(counts) / len(counts),
                "max_tokens": max(counts), "chars_per_token": sum(map(len, texts)) / max(1, sum(counts)),
                "unknown_tokens": sum(r.count(UNK_ID) for r in rows),
                "too_long_for_max_length": sum(c > self.config.max_length for c in counts)
                if self.config.max_length else 0}

    def read_input(self, path: str | Path) -> list[str]:
        """A UTF-8 text file, one example per line."""
        return Path(path).read_text(encoding="utf-8").splitlines()

    def write_output(self, texts: list[str], path: str | Path) -> None:
        Path(path).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
