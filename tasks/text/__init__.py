"""The text task: a masked-diffusion language model (MDLM) against an equal autoregressive one on
KJV verses, with a sentencepiece tokenizer (`tasks.text.task`)."""

from .task import TextConfig, TextTask

__all__ = ["TextTask", "TextConfig"]
