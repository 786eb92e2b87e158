"""Zero-shot classification with a class-conditional denoiser.

A class-conditional masked-diffusion model gives a lower bound on log p(x | c) (the
ELBO) for every class c, so Bayes' rule turns it into a classifier with no extra
training: p(c | x) is proportional to p(x | c) p(c). Here x may be partly observed
(inpainting: the visible tokens only); unobserved tokens stay masked in every draw and
are never scored, which marginalises them out of the bound.

All classes are scored on the same masking draws (common random numbers), so the
differences between classes, which decide the argmax, have far less noise than each
estimate on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .model import Condition, Denoiser
from .process import MaskingProcess


@torch.no_grad()
def class_log_likelihoods(model: Denoiser, ids: Tensor, observed: Tensor, num_classes: int, process: MaskingProcess,
                          generator: torch.Generator, draws: int = 8, batch_size: int = 4096) -> Tensor:
    """ELBO estimates of log p(x_observed | c), [B, num_classes], in nats (higher: more likely).

    ids [B, N] token ids (only observed positions are read); observed [B, N] bool.
    """
    if ids.shape != observed.shape or observed.dtype != torch.bool:
        raise ValueError(f"observed: expected a bool mask of shape {tuple(ids.shape)}, got "
                         f"{tuple(observed.shape)} {observed.dtype}")
    if draws < 1:
        raise ValueError(f"draws: expected >= 1, got {draws}")
    b, n = ids.shape
    classes = torch.arange(num_classes, device=ids.device).repeat(b)
    scores = torch.zeros(b * num_classes, device=ids.device)
    was_training = model.training
    model.eval()
    for _ in range(draws):
        t = process.sample_times(b, generator, ids.device)
        _, masked = process.corrupt(ids, t, generator)
        masked = masked | ~observed
        xt = ids.masked_fill(masked, process.mask_id).repeat_interleave(num_classes, dim=0)
        scored = (masked & observed).repeat_interleave(num_classes, dim=0)
        weight = process.weights(t).repeat_interleave(num_classes, dim=0)  # [B * C, 1]
        target = ids.repeat_interleave(num_classes, dim=0)
        for i in range(0, b * num_classes, batch_size):
            rows = slice(i, i + batch_size)
            logits = model(xt[rows], cond=Condition(classes=classes[rows])).logits
            logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target[rows, :, None])[..., 0]
            scores[rows] += (logp * scored[rows] * weight[rows]).sum(1)
    model.train(was_training)
    return (scores / draws).view(b, num_classes)
