"""The VLA policy: frozen observation features -> condition prefix -> an action chunk.

    policy = VLAPolicy(PolicyConfig(decoder="diffusion"))
    policy.fit_statistics(chunks, states)          # action bins and state scaling, from the demos
    loss, metrics = policy(batch, generator)       # for the one trainer
    actions, nfe = policy.predict_chunk(features)  # [B, chunk, dims] in the env's units
    policy.save_pretrained(dir); VLAPolicy.from_pretrained(dir)

The trainable part: a projection of each input (image tokens of every camera, the
instruction vector, the normalised robot state) into the transformer's width plus a
learned embedding per prefix slot (which camera / grid cell / input it is), and the
transformer itself. The action tokenizer's fitted bins and the state statistics are
buffers, so they travel in the same safetensors file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from ddm.config import SampleConfig, from_dict, to_dict
from ddm.hub import PretrainedModel
from ddm.model import Condition, MaskedDiffusionTransformer
from ddm.sampling import AllowedTokens
from tokenizers_vq.actions import ActionBinConfig, ActionBinTokenizer
from tokenizers_vq.stream import TokenStream

from .config import PolicyConfig
from .decoders import DECODERS


def allowed_tokens(cfg: PolicyConfig) -> Tensor:
    """[chunk * dims, vocab] bool: bin dimensions hold bin tokens, gripper dimensions the two gripper tokens."""
    k = cfg.num_bins
    per_dim = torch.zeros(cfg.action_dim, k + 2, dtype=torch.bool)
    per_dim[:, :k] = True
    for d in cfg.gripper_dims:
        per_dim[d] = False
        per_dim[d, k:] = True
    return per_dim.repeat(cfg.chunk, 1)


class ObservationProjector(nn.Module):
    """images [B, C*T, I], text [B, X], state [B, S] (normalised) -> prefix embeddings [B, C*T + 2, D]."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        d = cfg.d_model
        self.image = nn.Sequential(nn.LayerNorm(cfg.image_dim), nn.Linear(cfg.image_dim, d))
        self.text = nn.Linear(cfg.text_dim, d)
        self.state = nn.Sequential(nn.Linear(cfg.state_dim, d), nn.GELU(), nn.Linear(d, d))
        self.slots = nn.Parameter(torch.randn(len(cfg.cameras) * cfg.image_tokens + 2, d) * 0.02)

    def forward(self, images: Tensor, text: Tensor, state: Tensor) -> Tensor:
        x = torch.cat((self.image(images), self.text(text)[:, None], self.state(state)[:, None]), dim=1)
        return x + self.slots


class VLAPolicy(PretrainedModel):
    config_class = PolicyConfig

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        c = config
        self.tokenizer = ActionBinTokenizer(ActionBinConfig(chunk=c.chunk, dims=c.action_dim, num_bins=c.num_bins,
                                                            gripper_dims=list(c.gripper_dims)))
        self.register_buffer("state_mean", torch.zeros(c.state_dim))
        self.register_buffer("state_std", torch.ones(c.state_dim))
        self.observation = ObservationProjector(c)
        self.action_decoder = DECODERS.get(c.decoder, "policy.decoder")()
        # the transformer carries the policy's diffusion process and sampler, as every denoiser does
        self.decoder = MaskedDiffusionTransformer(self.action_decoder.model_config(c), self.action_decoder.diffusion(c),
                                                  c.sample)
        self.processors = [AllowedTokens(allowed_tokens(c))]

    def load_files(self, directory: Path) -> None:
        # the decoder's learned samplers (ddm distill) live in the policy's folder
        self.decoder.pretrained_dir = directory

    def set_sampler(self, **overrides) -> None:
        """Decode with these `SampleConfig` fields changed (e.g. steps=2, learned=True)."""
        sample = from_dict(SampleConfig, {**to_dict(self.config.sample), **overrides}, "policy.sample")
        self.config = dataclasses.replace(self.config, sample=sample)
        self.decoder.sample = sample

    # ---------------------------------------------------------------- data statistics

    def fit_statistics(self, chunks: Tensor, states: Tensor) -> None:
        """Fit the action bins on training chunks [N, chunk, dims] and the state scaling on states [N, S]."""
        self.tokenizer.fit(chunks)
        states = states.double()
        self.state_mean.copy_(states.mean(0).float())
        self.state_std.copy_(states.std(0).clamp_min(1e-3).float())

    def targets(self, chunks: Tensor) -> dict[str, Tensor]:
        """Action chunks -> token `ids` [N, chunk*dims], `normalised` values [N, chunk, dims] and each bin's
        `residual` [N, chunk*dims] in bin widths (within +-0.5; 0 for gripper tokens)."""
        stream = self.tokenizer.encode(chunks)
        ids = stream.flat()
        normalised = self.tokenizer.stats.normalise(chunks.double()).clamp(-1, 1).float()
        residual = torch.where(ids < self.config.num_bins, stream.values.flatten(1, -1).clamp(-0.5, 0.5), 0.0)
        return {"ids": ids, "normalised": normalised, "residual": residual.float()}

    # ---------------------------------------------------------------- conditioning

    def check_features(self, features: dict) -> None:
        c = self.config
        expected = {"images": (len(c.cameras) * c.image_tokens, c.image_dim), "text": (c.text_dim,),
                    "state": (c.state_dim,)}
        for name, shape in expected.items():
            if name not in features:
                raise KeyError(f"features: missing {name!r}; expected {sorted(expected)}")
            got = tuple(features[name].shape[1:])
            if got != shape:
                raise ValueError(f"features[{name!r}]: expected [B, {', '.join(map(str, shape))}], got "
                                 f"{tuple(features[name].shape)} (policy cameras {c.cameras}, "
                                 f"{c.image_tokens} tokens each, state_dim {c.state_dim})")

    def condition(self, features: dict) -> Condition:
        state = (features["state"].float() - self.state_mean) / self.state_std
        return Condition(embeddings=self.observation(features["images"].float(), features["text"].float(), state))

    # ---------------------------------------------------------------- training and acting

    def forward(self, batch: dict, generator: torch.Generator) -> tuple[Tensor, dict]:
        """Training loss on a `ChunkDataset` batch (the trainer's loss_fn calls this)."""
        return self.action_decoder.loss(self.config, self.decoder, self.condition(batch), batch, generator,
                                        self.processors)

    @torch.no_grad()
    def predict_chunk(self, features: dict, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """Features of B observations -> (action chunks [B, chunk, dims] float32, decoder calls per chunk)."""
        self.check_features(features)
        generator = generator or torch.Generator().manual_seed(0)
        ids, continuous, nfe = self.action_decoder.decode(self.config, self.decoder, self.condition(features),
                                                          generator, self.processors)
        c = self.config
        if ids is None:  # the continuous part is the normalised actions
            return self.tokenizer.stats.denormalise(continuous.double()).float(), nfe
        values = None if continuous is None else continuous[..., None]  # each bin's residual, in bin widths
        return self.tokenizer.decode(TokenStream(ids.view(-1, c.chunk, c.action_dim), (c.chunk, c.action_dim),
                                                 values)), nfe
