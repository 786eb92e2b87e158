"""Tokenizer kinds by name: `@TOKENIZERS.register("image")` on the class. Every modality
module is imported by `tokenizers_vq` (their heavy libraries load lazily), so every kind is
known; tokenizers from other packages join through the `ddm.tokenizers` entry-point group."""

from __future__ import annotations

from pathlib import Path

from ddm.hub import load_pretrained
from ddm.registry import Registry

TOKENIZERS = Registry("tokenizer kind", entry_points="ddm.tokenizers")


def load_tokenizer(directory: str | Path):
    """Load any tokenizer from its pretrained folder."""
    from .base import Tokenizer

    model = load_pretrained(directory)
    if not isinstance(model, Tokenizer):
        raise ValueError(f"{directory}: holds a {type(model).__name__}, not a tokenizer")
    return model
