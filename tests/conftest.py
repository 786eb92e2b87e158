"""Shared fixtures: one thread for timing-free determinism checks, and tiny seeded denoisers."""

import pytest
import torch

from ddm.config import DiffusionConfig, ModelConfig, SampleConfig
from ddm.model import MaskedDiffusionTransformer


def make_tiny_denoiser(vocab_size: int = 8, length: int = 12, seed: int = 0, head_std: float = 0.3,
                       diffusion: DiffusionConfig | None = None, sample: SampleConfig | None = None,
                       **model) -> MaskedDiffusionTransformer:
    """A 1-layer transformer with a random (not zero) discrete head, so its predictions differ
    by position and token; seeded, in eval mode."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"vocab_size": vocab_size, "shape": [length], "d_model": 32, "depth": 1, "heads": 2,
                         **model})
    denoiser = MaskedDiffusionTransformer(cfg, diffusion, sample)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = denoiser.heads.discrete.weight
        w.copy_(torch.randn(w.shape, generator=g) * head_std)
        denoiser.heads.discrete.bias.copy_(torch.randn(w.shape[0], generator=g))
    return denoiser.eval()


@pytest.fixture
def tiny_denoiser():
    """The factory `make_tiny_denoiser(vocab_size=8, length=12, **ModelConfig fields)`."""
    return make_tiny_denoiser


@pytest.fixture
def one_thread():
    """torch on one thread for the test: tiny ops run fastest, and steadiest on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
