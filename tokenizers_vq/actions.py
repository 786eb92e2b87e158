"""Robot-action tokenizers over action chunks [B, chunk, dims].

ActionBinTokenizer (kind "action_bins"): each continuous dimension is normalised to
[-1, 1] by its 1st and 99th percentile on the training data (robust to outliers;
values beyond are clipped into the edge bins) and cut into `num_bins` uniform bins;
binary gripper dimensions take one of two extra tokens (open, closed). The token grid
is (chunk, dims), vocabulary num_bins + 2. `values` hold the residual inside each bin
(in bin widths for continuous dims, raw units for the gripper), so that
decode(encode(x)) with values gives x back exactly (to float precision), for a later
continuous head.

ActionVQTokenizer (kind "action_vq"): an MLP encodes a whole normalised chunk into
`latent_tokens` vectors (default one), a residual VQ quantizes each into Q codes
(coarse to fine), an MLP decodes.
Token grid (latent_tokens, Q). `evaluate` prints its error beside uniform binning
given the same number of tokens (binning fewer frames and interpolating in time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddm.config import ConfigError, TrainConfig, bounded, positive

from .base import LearnedTokenizer, Tokenizer
from .data.actions import ActionDataConfig, build_action_data
from .quantizers import Quantizer, QuantizerConfig
from .stats import codebook_stats
from .stream import TokenStream
from .registry import TOKENIZERS


def _check_normalisation(cfg: Any) -> None:
    if any(not -cfg.dims <= d < cfg.dims for d in cfg.gripper_dims):
        raise ConfigError(f"tokenizer.gripper_dims: {cfg.gripper_dims} has a dim outside [0, {cfg.dims})")
    if not 0.0 <= cfg.low_percentile < cfg.high_percentile <= 100.0:
        raise ConfigError(f"tokenizer.low_percentile/high_percentile: need 0 <= low < high <= 100, "
                          f"got {cfg.low_percentile}, {cfg.high_percentile}")


class _ActionStats(nn.Module):
    """Fitted per-dimension range and gripper levels, as buffers (saved with the tokenizer)."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        grip = torch.zeros(cfg.dims, dtype=torch.bool)
        grip[[d % cfg.dims for d in cfg.gripper_dims]] = True
        self.register_buffer("gripper", grip)
        self.register_buffer("low", torch.zeros(cfg.dims, dtype=torch.float64))
        self.register_buffer("high", torch.ones(cfg.dims, dtype=torch.float64))
        # gripper value decoded for "open" and "closed" (the median of each side of the threshold)
        self.register_buffer("levels", torch.tensor([[-1.0, 1.0]] * cfg.dims, dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def fit(self, x: torch.Tensor, owner: str) -> None:
        x = check_chunks(x, self.cfg, owner).reshape(-1, self.cfg.dims)
        q = torch.tensor([self.cfg.low_percentile, self.cfg.high_percentile], dtype=torch.float64) / 100
        lo, hi = torch.quantile(x, q, dim=0)
        # A constant dimension would divide by zero; give it a tiny range instead.
        self.low.copy_(lo)
        self.high.copy_(torch.maximum(hi, lo + 1e-6))
        for d in self.gripper.nonzero().flatten().tolist():
            closed = x[:, d] > self.cfg.gripper_threshold
            if (~closed).any():
                self.levels[d, 0] = x[~closed, d].median()
            if closed.any():
                self.levels[d, 1] = x[closed, d].median()
        self.fitted.fill_(True)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [..., dims] -> continuous dims in [-1, 1] over the fitted range; gripper dims -> +-1."""
        u = 2 * (x - self.low) / (self.high - self.low) - 1
        g = torch.where(x > self.cfg.gripper_threshold, 1.0, -1.0).to(u.dtype)
        return torch.where(self.gripper, g, u)

    def denormalise(self, u: torch.Tensor) -> torch.Tensor:
        """The inverse; gripper dims snap to the fitted open / closed level by sign."""
        x = self.low + (u + 1) / 2 * (self.high - self.low)
        g = torch.where(u > 0, self.levels[:, 1], self.levels[:, 0])
        return torch.where(self.gripper, g, x)


def check_chunks(x: Any, cfg: Any, owner: str) -> torch.Tensor:
    """Action chunks as float64 [B, chunk, dims] (one [chunk, dims] chunk gets a batch axis)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: expected a tensor of action chunks, got {type(x).__name__}")
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or tuple(x.shape[1:]) != (cfg.chunk, cfg.dims):
        raise ValueError(f"{owner}: expected action chunks [B, {cfg.chunk}, {cfg.dims}], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{owner}: action chunks hold NaN or infinite values")
    return x.double()


@dataclass
class ActionBinConfig:
    chunk: int = positive(8)  # frames per chunk
    dims: int = positive(7)  # action dimensions per frame
    num_bins: int = bounded(256, 2)
    gripper_dims: list[int] = field(default_factory=lambda: [6])  # binary dims (open / closed)
    gripper_threshold: float = 0.0  # raw gripper value above which it counts as closed
    low_percentile: float = bounded(1.0, 0.0, 100.0)
    high_percentile: float = bounded(99.0, 0.0, 100.0)

    def __post_init__(self) -> None:
        _check_normalisation(self)


@TOKENIZERS.register("action_bins")
class ActionBinTokenizer(Tokenizer):
    config_class = ActionBinConfig
    DataConfig = ActionDataConfig

    def __init__(self, config: ActionBinConfig) -> None:
        super().__init__()
        self.config = config
        self.stats = _ActionStats(config)

    @property
    def vocab_size(self) -> int:
        return self.config.num_bins + 2  # bins, then the gripper's open and closed tokens

    @property
    def bin_width(self) -> float:
        return 2.0 / self.config.num_bins  # in normalised units

    def _require_fit(self) -> None:
        if not bool(self.stats.fitted):
            raise RuntimeError(f"{type(self).__name__}: not fitted; call fit(train_chunks) or load a fitted one")

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None) -> dict[str, float]:
        self.stats.fit(train, "fit: train")
        return {}

    def encode(self, x: torch.Tensor) -> TokenStream:
        self._require_fit()
        dtype = x.dtype if isinstance(x, torch.Tensor) and x.dtype.is_floating_point else torch.float32
        raw = check_chunks(x, self.config, "encode: x")
        u = self.stats.normalise(raw)
        k, w = self.config.num_bins, self.bin_width
        bins = torch.floor((u + 1) / w).clamp(0, k - 1).long()
        residual = (u - (-1 + (bins + 0.5) * w)) / w  # beyond +-0.5 only where u was clipped
        closed = u > 0
        level = torch.where(closed, self.stats.levels[:, 1], self.stats.levels[:, 0])
        ids = torch.where(self.stats.gripper, k + closed.long(), bins)
        values = torch.where(self.stats.gripper, raw - level, residual)
        return TokenStream(ids, (self.config.chunk, self.config.dims), values.unsqueeze(-1).to(dtype))

    def decode_normalised(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        """ids (+ values) -> chunks in normalised units (gripper dims +-1), float64."""
        ids = stream.ids if isinstance(stream, TokenStream) else stream
        ids = self.check_ids(ids, (self.config.chunk, self.config.dims))
        k, grip = self.config.num_bins, self.stats.gripper
        wrong = torch.where(grip, ids < k, ids >= k)
        if wrong.any():
            b, t, d = wrong.nonzero()[0].tolist()
            raise ValueError(f"ids: id {int(ids[b, t, d])} at example {b}, frame {t}, dim {d} is a "
                             f"{'bin' if grip[d] else 'gripper'} token in a {'gripper' if grip[d] else 'bin'} "
                             f"dimension (bins are [0, {k}), gripper tokens {k} and {k + 1})")
        u = -1 + (ids.clamp(max=k - 1) + 0.5) * self.bin_width
        return torch.where(grip, (ids == k + 1).double() * 2 - 1, u.double())

    def decode(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        """ids [B, chunk, dims] -> actions; with `stream.values`, the exact actions that were encoded."""
        self._require_fit()
        u = self.decode_normalised(stream)
        x = self.stats.denormalise(u)
        values = stream.values if isinstance(stream, TokenStream) else None
        if values is not None:
            v = values[..., 0].double()
            exact_u = u + v * self.bin_width
            x = torch.where(self.stats.gripper, x + v, self.stats.denormalise(exact_u))
        return x.float()

    @classmethod
    def build_data(cls, data_config: ActionDataConfig) -> dict[str, Any]:
        return build_action_data(data_config)

    def evaluate(self, heldout: torch.Tensor) -> dict[str, float]:
        self._require_fit()
        x = check_chunks(heldout, self.config, "evaluate: heldout")
        stream = self.encode(x)
        cont = ~self.stats.gripper
        u, u_hat = self.stats.normalise(x), self.decode_normalised(stream)
        inside = (u.abs() <= 1) & cont
        err = (u - u_hat).abs()
        exact = (self.decode(stream).double() - x).abs().max()
        ids = stream.ids[..., cont].reshape(-1, 1)
        grip = self.stats.gripper
        return {"chunks": len(x), "tokens_per_chunk": stream.length,
                "mse_norm": float(((u - u_hat)[..., cont] ** 2).mean()),
                "mse_raw": float(((self.decode(stream.ids).double() - x)[..., cont] ** 2).mean()),
                "max_err_in_range_over_half_bin": float(err[inside].max() / (self.bin_width / 2)),
                "clipped_fraction": float((~inside & cont).sum() / (cont.sum() * len(x))),
                "gripper_accuracy": float((u_hat[..., grip] == u[..., grip]).double().mean()) if grip.any() else 1.0,
                "max_err_with_values": float(exact),
                "bin_usage": codebook_stats(ids, [self.config.num_bins])["usage"]}

    def save_pictures(self, heldout: torch.Tensor, out_dir: Path) -> list[Path]:
        x = heldout[:4]
        return [plot_chunks(Path(out_dir) / "action_bins.png", x, {"bins": self.decode(self.encode(x).ids)})]


def plot_chunks(path: Path, x: torch.Tensor, recons: dict[str, torch.Tensor]) -> Path:
    """One panel per (chunk, dim): the actions (black) and each reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, _, dims = x.shape
    fig, axes = plt.subplots(n, dims, figsize=(2 * dims, 1.6 * n), squeeze=False)
    for i in range(n):
        for d in range(dims):
            ax = axes[i][d]
            ax.plot(x[i, :, d].numpy(), "k-", lw=2, label="actions")
            for name, r in recons.items():
                ax.plot(r[i, :, d].detach().float().numpy(), "--", label=name)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


@dataclass
class ActionVQConfig:
    chunk: int = positive(8)
    dims: int = positive(7)
    gripper_dims: list[int] = field(default_factory=lambda: [6])
    gripper_threshold: float = 0.0
    low_percentile: float = bounded(1.0, 0.0, 100.0)
    high_percentile: float = bounded(99.0, 0.0, 100.0)
    latent_tokens: int = positive(1)  # vectors per chunk, each quantized into Q codes
    latent_dim: int = positive(32)
    hidden: int = positive(256)
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(
        kind="rvq", codebook_size=256, num_quantizers=16))
    compare_bins: int = bounded(256, 2)  # bins of the binning baseline in evaluate

    def __post_init__(self) -> None:
        _check_normalisation(self)


@TOKENIZERS.register("action_vq")
class ActionVQTokenizer(LearnedTokenizer):
    config_class = ActionVQConfig
    DataConfig = ActionDataConfig

    def __init__(self, config: ActionVQConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.stats = _ActionStats(c)
        n_in, n_lat = c.chunk * c.dims, c.latent_tokens * c.latent_dim
        self.encoder = nn.Sequential(nn.Linear(n_in, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(),
                                     nn.Linear(c.hidden, n_lat))
        self.decoder = nn.Sequential(nn.Linear(n_lat, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU(),
                                     nn.Linear(c.hidden, n_in))
        self.quantizer = Quantizer(c.quantizer, c.latent_dim)

    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size

    @property
    def token_shape(self) -> tuple[int, int]:
        return (self.config.latent_tokens, self.quantizer.num_codebooks)

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw chunks -> (reconstruction in normalised units, codes [B, latent_tokens, Q], aux loss)."""
        c = self.config
        u = self.stats.normalise(x.double()).float()
        z = self.encoder(u.flatten(1)).view(len(x), c.latent_tokens, c.latent_dim)
        zq, codes, aux = self.quantizer(z)
        return self.decoder(zq.flatten(1)).view(len(x), c.chunk, c.dims), codes, aux

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        # in normalised units, so that every dimension counts alike whatever its raw scale
        return nn.functional.mse_loss(x_hat, self.stats.normalise(x.double()).float())

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None, save_to: str | Path | None = None) -> dict[str, float]:
        from datasets import Dataset

        self.stats.fit(train, "fit: train")
        data = Dataset.from_dict({"x": check_chunks(train, self.config, "fit: train").float().numpy()})
        return super().fit(data.with_format("torch"), train_config, out_dir, heldout, save_to)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> TokenStream:
        x = check_chunks(x, self.config, "encode: x").float()
        was_training = self.training
        self.eval()  # the codebook must not move (EMA, dead-code replacement) while encoding
        _, codes, _ = self.reconstruct(x)
        self.train(was_training)
        return TokenStream(self.quantizer.codes_to_ids(codes), self.token_shape)

    @torch.no_grad()
    def decode_normalised(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        ids = self.check_ids(stream.ids if isinstance(stream, TokenStream) else stream, self.token_shape)
        zq = self.quantizer.decode_codes(self.quantizer.ids_to_codes(ids))
        u = self.decoder(zq.flatten(1)).view(len(ids), self.config.chunk, self.config.dims).double()
        return torch.where(self.stats.gripper, torch.where(u > 0, 1.0, -1.0).double(), u)

    def decode(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        return self.stats.denormalise(self.decode_normalised(stream)).float()

    @classmethod
    def build_data(cls, data_config: ActionDataConfig) -> dict[str, Any]:
        return build_action_data(data_config)

    def binning_baseline(self, x: torch.Tensor, tokens: int) -> tuple[torch.Tensor, int]:
        """Uniform binning (same fitted range) with at most `tokens` tokens per chunk: bin
        evenly spaced frames and interpolate linearly in time. Returns (normalised, tokens used)."""
        c = self.config
        frames = max(1, min(c.chunk, tokens // c.dims))
        keep = torch.linspace(0, c.chunk - 1, frames).round().long()
        sub = x[:, keep]
        sub_tok = ActionBinTokenizer(ActionBinConfig(chunk=frames, dims=c.dims, num_bins=c.compare_bins,
                                                     gripper_dims=list(c.gripper_dims),
                                                     gripper_threshold=c.gripper_threshold))
        sub_tok.stats.load_state_dict(self.stats.state_dict())
        u_sub = sub_tok.decode_normalised(sub_tok.encode(sub))
        if frames == 1:
            return u_sub.expand(-1, c.chunk, -1), c.dims
        t = torch.arange(c.chunk, dtype=torch.float64)
        pos = torch.searchsorted(keep.double(), t, right=True).clamp(1, frames - 1)  # right neighbour
        t0, t1 = keep[pos - 1].double(), keep[pos].double()
        a = ((t - t0) / (t1 - t0)).clamp(0, 1).view(1, -1, 1)
        u = u_sub[:, pos - 1] * (1 - a) + u_sub[:, pos] * a
        near = torch.where(a < 0.5, u_sub[:, pos - 1], u_sub[:, pos])  # the gripper is binary: nearest frame
        return torch.where(self.stats.gripper, near, u), frames * c.dims

    @torch.no_grad()
    def evaluate(self, heldout: torch.Tensor) -> dict[str, float]:
        x = check_chunks(heldout, self.config, "evaluate: heldout")
        stream = self.encode(x.float())
        u = self.stats.normalise(x)
        cont, grip = ~self.stats.gripper, self.stats.gripper
        u_vq = self.decode_normalised(stream)
        u_bins, bin_tokens = self.binning_baseline(x, stream.length)
        u_full, _ = self.binning_baseline(x, self.config.chunk * self.config.dims)
        codes = self.quantizer.ids_to_codes(stream.ids)

        def mse(v: torch.Tensor) -> float:
            return float(((u - v)[..., cont] ** 2).mean())

        out = {"chunks": len(x), "vq_tokens": stream.length, "vq_vocab": self.vocab_size,
               "vq_mse_norm": mse(u_vq),
               "vq_gripper_accuracy": float((u_vq[..., grip] == u[..., grip]).double().mean()) if grip.any() else 1.0,
               "bins_tokens": bin_tokens, "bins_vocab": self.config.compare_bins + 2, "bins_mse_norm": mse(u_bins),
               "bins_full_tokens": self.config.chunk * self.config.dims, "bins_full_mse_norm": mse(u_full)}
        out.update({f"vq_{k}": v for k, v in codebook_stats(codes, self.quantizer.codebook_sizes).items()
                    if k in ("usage", "perplexity")})
        return out

    def save_pictures(self, heldout: torch.Tensor, out_dir: Path) -> list[Path]:
        x = heldout[:4]
        u_bins, n = self.binning_baseline(x.double(), self.token_shape[0] * self.token_shape[1])
        recons = {"vq": self.decode(self.encode(x)), f"bins ({n} tokens)": self.stats.denormalise(u_bins)}
        return [plot_chunks(Path(out_dir) / "action_vq.png", x, recons)]
