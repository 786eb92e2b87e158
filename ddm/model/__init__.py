"""The denoiser: our transformer, or any `transformers` encoder, behind one interface."""

from .condition import Condition, Prefix
from .tokens import DenoiserOutput
from .transformer import MaskedDiffusionTransformer


def build_denoiser(config):
    """The denoiser named by `config.body` (a `ddm.config.ModelConfig`)."""
    if config.body == "hf":
        from .hf import HFDenoiser  # transformers is imported only when asked for

        return HFDenoiser(config)
    return MaskedDiffusionTransformer(config)


__all__ = ["Condition", "Prefix", "DenoiserOutput", "MaskedDiffusionTransformer", "build_denoiser"]
