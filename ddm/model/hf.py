"""Any `transformers` encoder as the denoiser body.

The same embeddings, heads and input checks as our transformer (`tokens.py`) wrap an
encoder from the `transformers` library: the condition prefix and the target are
embedded by us, concatenated and fed to the encoder as `inputs_embeds`, with an
attention mask that hides padded prefix tokens; the encoder's last hidden state of
the target positions goes to the heads.

The encoder is built from a config (`model.hf_config`, e.g. `{"model_type": "bert"}`;
hidden size, depth, heads, MLP width and dropout are filled from `model.d_model`,
`depth`, `heads`, `mlp_ratio` and `dropout` where not given) or loaded from a local
folder written by `transformers`' `save_pretrained` (`model.hf_path`). Nothing is
downloaded: there are no hub ids here, and folders load with `local_files_only`.

Attention is fully bidirectional over [prefix; target], so the prefix cannot be cached:
`encode_prefix` only embeds the condition and `forward` re-runs it through the encoder
at every call (`supports_prefix_cache = False`).

A model made from `hf_path` reads the encoder's architecture from that folder again
when it is rebuilt by `from_pretrained` (its weights then come from our own
safetensors file), so the folder must still be there.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import ConfigError, DiffusionConfig, ModelConfig, SampleConfig
from ..continuous import is_joint
from ..hub import PretrainedModel
from .condition import Condition, Prefix
from .protocol import DENOISER_SECTIONS, attach_sections
from .tokens import ConditionEmbedding, DenoiserOutput, Heads, TargetEmbedding, check_condition, check_inputs

# ModelConfig field -> the standard transformers config attribute it fills when not given.
_DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def encoder_config(cfg: ModelConfig):
    """The `transformers` config of the encoder named by `cfg.hf_config`, completed from `cfg`."""
    from transformers import AutoConfig

    given = dict(cfg.hf_config)
    if "model_type" not in given:
        raise ConfigError("model.hf_config: needs a 'model_type' (e.g. 'bert'), or set model.hf_path "
                          "to a local folder holding a transformers encoder")
    model_type = given.pop("model_type")
    try:
        conf = AutoConfig.for_model(model_type, **given)
    except ValueError as e:
        raise ConfigError(f"model.hf_config.model_type: {e}") from None
    aliases = getattr(conf, "attribute_map", {}) or {}
    named = set(given) | {std for std, alias in aliases.items() if alias in given}

    def fill(name: str, value) -> None:
        if name not in named and (hasattr(conf, name) or name in aliases):
            setattr(conf, name, value)

    fill("hidden_size", cfg.d_model)
    fill("num_hidden_layers", cfg.depth)
    fill("num_attention_heads", cfg.heads)
    fill("intermediate_size", int(cfg.d_model * cfg.mlp_ratio))
    for name in _DROPOUT_FIELDS:
        fill(name, cfg.dropout)
    if "vocab_size" not in named and hasattr(conf, "vocab_size"):
        # Inputs arrive as embeddings: the encoder's own word table only needs room for its special ids.
        special = [getattr(conf, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id")]
        conf.vocab_size = 1 + max([s for s in special if isinstance(s, int)], default=0)
    longest = cfg.seq_len + cfg.cond_len + (1 if cfg.num_classes else 0)
    if "max_position_embeddings" not in named and getattr(conf, "max_position_embeddings", None):
        conf.max_position_embeddings = max(conf.max_position_embeddings, longest)
    return conf


def load_encoder(cfg: ModelConfig) -> nn.Module:
    """The encoder: from `cfg.hf_path` (a local folder, never the hub) or built from `cfg.hf_config`."""
    from transformers import AutoModel

    if cfg.hf_path:
        path = Path(cfg.hf_path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"model.hf_path: {path} is not a folder; expected a local folder "
                                    f"written by a transformers model's save_pretrained (nothing is downloaded)")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model.hf_path: {path} has no config.json; expected a folder "
                                    f"written by a transformers model's save_pretrained")
        overrides = {k: v for k, v in cfg.hf_config.items() if k != "model_type"}
        encoder = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32, **overrides)
    else:
        encoder = AutoModel.from_config(encoder_config(cfg))
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # the sentence pooler is unused by a denoiser (and would get no gradient)
    return encoder


class HFDenoiser(PretrainedModel):
    """A `transformers` encoder behind the interface of `MaskedDiffusionTransformer`."""

    config_class = ModelConfig
    sections = DENOISER_SECTIONS
    supports_prefix_cache = False

    def __init__(self, config: ModelConfig, diffusion: DiffusionConfig | None = None,
                 sample: SampleConfig | None = None, task: dict | None = None):
        super().__init__()
        self.config = config
        attach_sections(self, diffusion, sample, task)
        self.encoder = load_encoder(config)
        hidden = getattr(self.encoder.config, "hidden_size", None)
        if hidden != config.d_model:
            raise ConfigError(f"model.d_model: {config.d_model} differs from the encoder's hidden size {hidden}; "
                              f"set model.d_model={hidden}")
        self.max_length = getattr(self.encoder.config, "max_position_embeddings", None)
        self.target_embedding = TargetEmbedding(config)
        self.condition_embedding = ConditionEmbedding(config)
        self.heads = Heads(config)
        self._init_own_weights(getattr(self.encoder.config, "initializer_range", 0.02))

    def _init_own_weights(self, std: float) -> None:
        """Our embeddings and heads at the encoder's own init scale (the encoder keeps its weights)."""
        for module in (self.target_embedding, self.condition_embedding, self.heads):
            for name, p in module.named_parameters():
                if module is self.heads and name.startswith("discrete"):
                    continue  # zero-initialised: the untrained model predicts the uniform distribution
                if p.dim() >= 2:
                    nn.init.normal_(p, std=std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

    def encode_prefix(self, cond: Condition | None) -> Prefix | None:
        """Embed the condition; the encoder re-runs it with the target at every forward call."""
        if cond is None or cond.is_empty():
            return None
        check_condition(self.config, cond)
        hidden, mask = self.condition_embedding(cond)
        return Prefix(keys=[], values=[], mask=mask, hidden=hidden)

    def forward(self, ids: Tensor, t: Tensor | None = None, cond: Condition | None = None,
                prefix: Prefix | None = None, values: Tensor | None = None,
                where: Tensor | None = None) -> DenoiserOutput:
        """Predict the clean tokens (and continuous values) of every target position.

        Same arguments and output as `MaskedDiffusionTransformer.forward`.
        """
        check_inputs(self.config, ids, t, cond, values, prefix, joint=is_joint(self))
        if prefix is None:
            prefix = self.encode_prefix(cond)
        x = self.target_embedding(ids, t, values)
        n = x.shape[1]
        attention_mask = None
        if prefix is not None:
            x = torch.cat((prefix.hidden.to(x.dtype), x), dim=1)
            if prefix.mask is not None:
                ones = torch.ones(ids.shape, dtype=torch.long, device=ids.device)
                attention_mask = torch.cat((prefix.mask.long(), ones), dim=1)
        if self.max_length and x.shape[1] > self.max_length:
            raise ValueError(f"cond: prefix ({x.shape[1] - n}) + target ({n}) = {x.shape[1]} positions, the "
                             f"encoder takes at most {self.max_length} (max_position_embeddings)")
        out = self.encoder(inputs_embeds=x, attention_mask=attention_mask, return_dict=True)
        return self.heads(out.last_hidden_state[:, -n:], where)
