"""Low-bit CPU inference: int8 weights for a trained denoiser.

    model = quantize(load_pretrained("runs/image_mnist/model"), "int8")
    Sampler.from_pretrained(model, steps=8)(model, 4, cond=...)       # sampled as before

`int8` is PyTorch's own dynamic quantization (`torch.ao.quantization.quantize_dynamic`, the
engine in `torch.backends.quantized.engine`, x86 by default): the weights of every
`nn.Linear` in the denoiser's body (its transformer blocks, or a `transformers` encoder) are
stored as int8 with one scale per tensor; each call quantizes its input on the fly and
accumulates in int32. Those layers hold nearly all of a call's multiply-adds. PyTorch's
module quantizes inputs to 7 bits (`reduce_range`), so that AVX2's 16-bit pair sums cannot
saturate; on a CPU with VNNI (32-bit int8 dot products) ours uses all 8 bits, which cuts the
KL divergence of the trained models' predictions from float32 by 2.5-4x at the same speed
(benchmarks/quantize.py).

Kept in float32: the embeddings (lookups, no multiply-adds), the condition projection and
the time MLP (run once per sample or tiny), the output heads (128 x vocab: about 2% of the
work, and their logits decide which tokens are revealed first), norms, attention itself,
and everything outside a denoiser, such as a policy's observation projector and the
tokenizers and vector quantizers (`tokenizers_vq`), which are never touched.

The result is a quantized copy (the model given is unchanged) of the same class with the
same `config`, sections (`diffusion`, `sample`, `task`) and `pretrained_dir`, so
`ddm.sampling` samples it unchanged. It runs on the CPU only and is not saved: quantize
after loading. A model that contains denoisers (the VLA policy's `decoder`) gets each of
them quantized.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

MODES = ("none", "int8")
BODIES = ("blocks", "encoder")  # MaskedDiffusionTransformer.blocks, HFDenoiser.encoder


def _has_vnni() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


FULL_RANGE = _has_vnni()  # 8-bit inputs (see the module docstring); else PyTorch's 7-bit default


class Int8Linear(DynamicLinear):
    """PyTorch's dynamic int8 linear layer, with 8-bit inputs where the CPU accumulates safely."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                  reduce_range=not FULL_RANGE).to(x.dtype)


def _denoisers(model: nn.Module) -> list[nn.Module]:
    """The denoisers in `model` (itself or submodules): modules with `heads` and a body."""
    return [m for m in model.modules() if hasattr(m, "heads") and any(hasattr(m, b) for b in BODIES)]


def quantize(model: nn.Module, mode: str = "int8") -> nn.Module:
    """A copy of `model` with its denoisers' body weights in int8 (`mode="int8"`), or `model`
    itself (`mode="none"`). Errors name the field: `quantize` (mode), the device."""
    if mode not in MODES:
        raise ValueError(f"quantize: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    devices = sorted({str(p.device) for p in model.parameters()} | {str(b.device) for b in model.buffers()})
    if mode != "none" and devices and devices != ["cpu"]:
        raise ValueError(f"quantize: int8 runs on the CPU only; the model is on {', '.join(devices)} "
                         f"(move it with model.cpu() first)")
    if mode == "none":
        return model
    denoisers = _denoisers(model)
    if not denoisers:
        raise ValueError(f"quantize: {type(model).__name__} holds no denoiser (a module with `heads` and "
                         f"{' or '.join(BODIES)}); nothing to quantize")
    if getattr(model, "quantized", "none") != "none":
        raise ValueError(f"quantize: the model is already quantized ({model.quantized})")
    out = copy.deepcopy(model).eval()
    for denoiser in _denoisers(out):
        for name in BODIES:
            body = getattr(denoiser, name, None)
            if isinstance(body, nn.Module):
                with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
                    warnings.simplefilter("ignore")
                    torch.ao.quantization.quantize_dynamic(body, {nn.Linear}, dtype=torch.qint8,
                                                           mapping={nn.Linear: Int8Linear}, inplace=True)
        denoiser.quantized = mode
    out.quantized = mode
    return out


def is_quantized(model: nn.Module) -> bool:
    return getattr(model, "quantized", "none") != "none"


__all__ = ["MODES", "Int8Linear", "quantize", "is_quantized"]
