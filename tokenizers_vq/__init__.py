"""Tokenizers: every modality as a token stream behind one interface (see `base.py`)."""

from .base import LearnedTokenizer, Tokenizer
from .quantizers import Quantizer, QuantizerConfig
from .registry import KINDS, get_tokenizer_class, load_tokenizer
from .stats import codebook_stats
from .stream import TokenStream

__all__ = ["Tokenizer", "LearnedTokenizer", "TokenStream", "Quantizer", "QuantizerConfig", "codebook_stats",
           "KINDS", "get_tokenizer_class", "load_tokenizer"]
