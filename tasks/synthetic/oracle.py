"""A perfect denoiser for the synthetic source: exact posterior marginals as logits.

At a masked position the oracle predicts P(x_i = v | all visible tokens), the quantity a
masked-diffusion model is trained to approximate. With it, random-order sampling that
reveals one token per step (steps = N) is an exact ancestral sampler of the source, so
any sampler can be scored against the best a model could do.

Two choices beyond `UnifilarHMM.marginals`, made by running the same forward-backward here:
* visible positions (`visible="loo"`, the default) get the leave-one-out conditional
  P(x_i = v | the other visible tokens) instead of a one-hot, the ideal prediction for
  rules that re-check committed tokens (remasking); `visible="onehot"` matches `marginals`.
* rows whose visible tokens are impossible together (parallel decoding can commit such
  tokens in one step) get the prior marginals instead of an error: the sample is already
  scored as impossible, and remasking may still repair it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ddm.config import ModelConfig
from ddm.model import DenoiserOutput
from ddm.model.protocol import attach_sections

from .source import UnifilarHMM


class OracleDenoiser(nn.Module):
    """A `ddm.model.Denoiser`: its config says the token space (vocabulary, length); it needs no time."""

    supports_prefix_cache = True

    def __init__(self, source: UnifilarHMM, seq_len: int, visible: str = "loo"):
        super().__init__()
        if visible not in ("loo", "onehot"):
            raise ValueError(f"visible: expected 'loo' or 'onehot', got {visible!r}")
        self.source = source
        self.visible = visible
        self.config = ModelConfig(vocab_size=source.vocab_size, shape=[seq_len])
        attach_sections(self)  # any schedule: the exact posterior does not depend on the time
        self.calls = 0
        # Prior marginals P(x_i = v): the fallback for rows with impossible evidence.
        self.prior = source.state_marginals(seq_len) @ source.emit

    def encode_prefix(self, cond) -> None:
        if cond is not None and not cond.is_empty():
            raise ValueError("cond: the oracle denoiser is unconditional")
        return None

    def forward(self, ids: Tensor, t: Tensor | None = None, cond=None, prefix=None, values=None) -> DenoiserOutput:
        self.encode_prefix(cond)
        n, length = ids.shape
        if length != self.config.seq_len:
            raise ValueError(f"ids: expected {self.config.seq_len} tokens per row, got {length}")
        if ids.min() < 0 or ids.max() > self.config.mask_id:
            raise ValueError(f"ids: token ids must lie in [0, {self.config.mask_id}]")
        self.calls += 1
        probs = self.posteriors(ids.cpu(), ids.cpu() != self.config.mask_id)
        return DenoiserOutput(probs.log().float().to(ids.device))

    def posteriors(self, x: Tensor, visible: Tensor) -> Tensor:
        """[n, L, V] float64: exact posterior at hidden positions; see the module note for visible ones."""
        src = self.source
        S, V = src.num_states, src.vocab_size
        n, length = x.shape
        onehot = torch.nn.functional.one_hot(x.clamp_max(V - 1), V).double()
        evidence = torch.where(visible[..., None], onehot, torch.ones_like(onehot))  # [n, L, V]
        flat_next = src.next_state.reshape(1, S * V).expand(n, -1)

        # Forward: alpha[:, t] = P(state_t | visible tokens before t), normalised per step.
        alpha = torch.zeros(n, length + 1, S, dtype=torch.float64)
        alpha[:, 0, src.start_state] = 1.0
        possible = torch.ones(n, dtype=torch.bool)
        for t in range(length):
            joint = (alpha[:, t, :, None] * src.emit * evidence[:, t, None, :]).reshape(n, S * V)
            nxt = torch.zeros(n, S, dtype=torch.float64).scatter_add_(1, flat_next, joint)
            total = nxt.sum(-1, keepdim=True)
            possible &= total[:, 0] > 0
            alpha[:, t + 1] = nxt / total.clamp_min(1e-300)

        # Backward: beta ∝ P(visible tokens from t on | state_t). The posterior at t leaves
        # out the evidence at t itself (leave-one-out); at hidden positions that changes nothing.
        beta = torch.ones(n, S, dtype=torch.float64)
        out = torch.empty(n, length, V, dtype=torch.float64)
        for t in reversed(range(length)):
            beta_next = beta[:, src.next_state]  # [n, S, V]
            post = (alpha[:, t, :, None] * src.emit * beta_next).sum(1)
            out[:, t] = post / post.sum(-1, keepdim=True).clamp_min(1e-300)
            beta = (src.emit * evidence[:, t, None, :] * beta_next).sum(-1)
            beta = beta / beta.amax(-1, keepdim=True).clamp_min(1e-300)
        if self.visible == "onehot":
            out = torch.where(visible[..., None], onehot, out)
        return torch.where(possible[:, None, None], out, self.prior.expand(n, -1, -1))
