"""The denoiser: our transformer, or any `transformers` encoder, behind one interface."""

from .condition import Condition, Prefix, soft_bins
from .protocol import Denoiser
from .tokens import DenoiserOutput
from .transformer import BlockReuse, MaskedDiffusionTransformer


def build_denoiser(config, diffusion=None, sample=None, task=None):
    """The denoiser named by `config.body` (a `ddm.config.ModelConfig`), carrying the sections
    it is trained with (`DiffusionConfig`, default `SampleConfig`, the task's config as a dict)."""
    if config.body == "hf":
        from .hf import HFDenoiser  # transformers is imported only when asked for

        return HFDenoiser(config, diffusion, sample, task)
    return MaskedDiffusionTransformer(config, diffusion, sample, task)


__all__ = ["BlockReuse", "Condition", "Prefix", "soft_bins", "Denoiser", "DenoiserOutput", "MaskedDiffusionTransformer",
           "build_denoiser"]
