"""Tokenizers: every modality as a token stream behind one interface (see `base.py`).

Every module of the package is imported with it, so every kind a module registers
(`@TOKENIZERS.register("image")`) is known: a new modality is one new module. Their heavy
libraries (rdkit, pybullet, ...) load lazily. `tokenizer_for_task` (the user's folder, or
`fit_or_load`) gives a task its tokenizer; `ddm train --config configs/tokenizers/<name>.yaml`
fits one (`task.py`)."""

import importlib
import pkgutil

from .base import LearnedTokenizer, Tokenizer
from .quantizers import QUANTIZERS, Quantizer, QuantizerConfig
from .registry import TOKENIZERS, load_tokenizer
from .stats import codebook_stats
from .stream import TokenStream
from .task import fit_or_load, fit_tokenizer, tokenizer_for_task

for _module in pkgutil.iter_modules(__path__):
    if not _module.ispkg:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Tokenizer", "LearnedTokenizer", "TokenStream", "Quantizer", "QuantizerConfig", "QUANTIZERS",
           "TOKENIZERS", "codebook_stats", "fit_or_load", "fit_tokenizer", "load_tokenizer",
           "tokenizer_for_task"]
