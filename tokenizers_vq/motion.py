"""Human motion -> (T', Q) tokens (residual VQ or grouped residual FSQ), with a temporal 1-D conv autoencoder.

    tok = MotionTokenizer(MotionTokenizerConfig())
    splits = MotionTokenizer.build_data(MotionDataConfig())   # the 15 DeepMimic clips
    stream = tok.encode(x)           # x [B, T, 65] pose features (tokenizers_vq.data.motion)
    stream.ids                       # [B, T / downsample, Q], token q's ids in [q*K, (q+1)*K)
    x_hat = tok.decode(stream)       # [B, T, 65]

Inputs are standardized per feature with statistics of the training windows (buffers,
saved with the weights), so that root positions in metres and rotation columns in
[-1, 1] weigh alike in the loss. Convolutions pad by repeating the edge frame: a held-out
part is a lone short sequence whose edges should not look like a pose of zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddm.config import ConfigError, TrainConfig, positive

from .base import LearnedTokenizer, as_ids
from .data.motion import (FEATURE_DIM, MotionDataConfig, build_motion_data, features_to_pose, foot_positions,
                          joint_positions)
from .kinematics import geodesic_angle, load_skeleton
from .quantizers import Quantizer, QuantizerConfig
from .stats import codebook_stats
from .stream import TokenStream
from .registry import TOKENIZERS


@dataclass
class MotionTokenizerConfig:
    channels: int = positive(64)  # convolution width
    latent_dim: int = positive(64)  # the vector each token quantizes
    downsample: int = positive(1)  # frames per token step (a power of two; 2 costs 4 degrees held out)
    blocks: int = positive(2)  # residual blocks per resolution
    # Weight of the feet's motion error (`foot_error`: cm per frame, squared, by forward kinematics)
    # beside the feature error: small rotation errors up the legs add up to a sliding foot.
    foot_weight: float = 0.0
    foot_height: float = 0.0  # the weight of the feet's height error (cm) beside their motion's in that term
    # ... and of the planted feet's height error only: frames where the real foot is within
    # CONTACT_CM of the floor (the motion task's contact rule), so swing feet stay free
    foot_contact: float = 0.0
    # Weight of the error of every feature's frame-to-frame change (standardized units, as T2M-GPT's
    # velocity loss): upsampling a token to several frames leaves jitter that the feature error barely sees.
    velocity_weight: float = 0.0
    upsample: str = "nearest"  # the decoder's upsampling between resolutions: nearest or linear
    # a fixed grid per group of 4 latent dims (configs/tokenizers/motion.yaml says why not learned codebooks)
    quantizer: QuantizerConfig = field(
        default_factory=lambda: QuantizerConfig(kind="rfsq", levels=[8, 5, 5, 5], groups=16, num_quantizers=2))

    def __post_init__(self) -> None:
        if self.downsample & (self.downsample - 1):
            raise ConfigError(f"tokenizer.downsample: expected a power of two, got {self.downsample}")
        for name in ("foot_weight", "foot_height", "foot_contact", "velocity_weight"):  # the loss's weights
            if not getattr(self, name) >= 0:
                raise ConfigError(f"tokenizer.{name}: expected >= 0, got {getattr(self, name)}")
        if self.upsample not in ("nearest", "linear"):
            raise ConfigError(f"tokenizer.upsample: expected 'nearest' or 'linear', got {self.upsample!r}")


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv1d:
    pad = dilation * (k - 1) // 2 if stride == 1 else (k - stride) // 2
    return nn.Conv1d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, padding_mode="replicate")


class ResBlock(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), _conv(channels, channels, 3, dilation=dilation),
                                  nn.GELU(), _conv(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _blocks(channels: int, n: int) -> list[nn.Module]:
    # growing dilations widen the temporal context cheaply
    return [ResBlock(channels, 3 ** i) for i in range(n)]


@TOKENIZERS.register("motion")
class MotionTokenizer(LearnedTokenizer):
    config_class = MotionTokenizerConfig
    DataConfig = MotionDataConfig

    def __init__(self, config: MotionTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        c, levels = config.channels, config.downsample.bit_length() - 1
        enc: list[nn.Module] = [_conv(FEATURE_DIM, c)]
        for _ in range(levels):
            enc += [*_blocks(c, config.blocks), _conv(c, c, 4, stride=2)]
        # No activation before the in/out projections: with the residual blocks this leaves a linear path
        # from input to output, so poses unlike the ~800 training frames are not pulled onto them.
        self.encoder = nn.Sequential(*enc, *_blocks(c, config.blocks), _conv(c, config.latent_dim))
        dec: list[nn.Module] = [_conv(config.latent_dim, c), *_blocks(c, config.blocks)]
        for _ in range(levels):
            dec += [nn.Upsample(scale_factor=2, mode=config.upsample), _conv(c, c), *_blocks(c, config.blocks)]
        self.decoder = nn.Sequential(*dec, _conv(c, FEATURE_DIM))
        self.quantizer = Quantizer(config.quantizer, config.latent_dim)
        self.register_buffer("feature_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("feature_std", torch.ones(FEATURE_DIM))

    # Interface -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.quantizer.vocab_size

    def _check_input(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a tensor of motion features [B, T, {FEATURE_DIM}], got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != FEATURE_DIM:
            raise ValueError(f"x: expected motion features [B, T, {FEATURE_DIM}] "
                             f"(tokenizers_vq.data.motion.pose_to_features), got shape {tuple(x.shape)}")
        t, d = x.shape[1], self.config.downsample
        if t == 0 or t % d:
            raise ValueError(f"x: the number of frames T={t} must be a positive multiple of "
                             f"tokenizer.downsample={d} (pad the sequence, e.g. by repeating its last frame)")
        if not torch.isfinite(x).all():
            raise ValueError(f"x: holds {int((~torch.isfinite(x)).sum())} NaN or infinite values")
        return x.float()

    def _encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        xn = (x - self.feature_mean) / self.feature_std
        return self.encoder(xn.transpose(1, 2)).transpose(1, 2)  # [B, T', latent]

    def _decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        return self.decoder(zq.transpose(1, 2)).transpose(1, 2) * self.feature_std + self.feature_mean

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self._check_input(x)
        zq, codes, aux = self.quantizer(self._encode_latent(x))
        return self._decode_latent(zq), codes, aux

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        loss = (((x_hat - x) / self.feature_std) ** 2).mean()  # in standardized units
        if self.config.velocity_weight > 0:
            loss = loss + self.config.velocity_weight * (((x_hat - x).diff(dim=1) / self.feature_std) ** 2).mean()
        if self.config.foot_weight > 0:
            loss = loss + self.config.foot_weight * foot_error(x, x_hat, self.config.foot_height,
                                                               self.config.foot_contact)
        return loss

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> TokenStream:
        x = self._check_input(x)
        was_training = self.training
        self.eval()  # the codebook must not move while encoding
        _, codes, _ = self.quantizer(self._encode_latent(x))
        self.train(was_training)
        ids = self.quantizer.codes_to_ids(codes)
        return TokenStream(ids, tuple(ids.shape[1:]))

    @torch.no_grad()
    def decode(self, stream: TokenStream | torch.Tensor) -> torch.Tensor:
        """Ids [B, T', Q] (or flat [B, T' * Q]) -> features [B, T' * downsample, 65]."""
        ids = as_ids(stream)
        q = self.quantizer.num_codebooks
        if isinstance(ids, torch.Tensor) and ids.ndim == 2 and ids.shape[1] % q == 0:
            ids = ids.reshape(ids.shape[0], -1, q)  # flat, as the diffusion model writes them
        ids = self.check_ids(ids)
        if ids.ndim != 3 or ids.shape[-1] != q:
            raise ValueError(f"ids: expected [B, T', {q}] (one id per group and residual level), got {tuple(ids.shape)}")
        return self._decode_latent(self.quantizer.decode_codes(self.quantizer.ids_to_codes(ids)))

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None, save_to: str | Path | None = None) -> dict[str, float]:
        x = torch.as_tensor(train[:]["x"]).reshape(-1, FEATURE_DIM).double()
        self.feature_mean.copy_(x.mean(0).float())
        # a floor: a feature that barely moves in training must not blow up its errors
        self.feature_std.copy_(x.std(0).clamp_min(0.05).float())
        return super().fit(train, train_config, out_dir, heldout, save_to)

    # For the command -------------------------------------------------------
    @classmethod
    def build_data(cls, data_config: MotionDataConfig) -> dict[str, Any]:
        return build_motion_data(data_config)

    @torch.no_grad()
    def reconstruct_sequence(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A lone [T, 65] sequence of any length -> (x_hat [T, 65], codes [T', Q]), edge-padded to fit."""
        t, d = x.shape[0], self.config.downsample
        padded = torch.cat([x, x[-1:].expand(-t % d, -1)]) if t % d else x
        x_hat, codes, _ = self.reconstruct(padded[None])
        return x_hat[0, :t], codes[0]

    @torch.no_grad()
    def evaluate(self, heldout: Any) -> dict[str, float]:
        """Joint rotation (deg), root and joint position (cm) errors over all held-out frames, codebook figures."""
        was_training = self.training
        self.eval()
        xs, x_hats, codes = [], [], []
        for row in heldout:
            x = row["x"].float()
            x_hat, c = self.reconstruct_sequence(x)
            xs.append(x), x_hats.append(x_hat), codes.append(c)
        self.train(was_training)
        x, x_hat = torch.cat(xs).double(), torch.cat(x_hats).double()
        pose, pose_hat = features_to_pose(x), features_to_pose(x_hat)
        ball = geodesic_angle(pose.ball, pose_hat.ball)  # [N, 8]
        hinge = torch.remainder(pose_hat.hinge - pose.hinge + torch.pi, 2 * torch.pi) - torch.pi  # [N, 4]
        joint_err = torch.cat([ball, hinge.abs()], 1)  # the angle between the two rotations, each joint
        skel = _skeleton()
        pos, _ = joint_positions(skel, pose)
        pos_hat, _ = joint_positions(skel, pose_hat)
        metrics = {
            "rotation_error_deg": float(joint_err.mean().rad2deg()),
            "ball_joint_error_deg": float(ball.mean().rad2deg()),
            "hinge_joint_error_deg": float(hinge.abs().mean().rad2deg()),
            "root_rotation_error_deg": float(geodesic_angle(pose.root_rot, pose_hat.root_rot).mean().rad2deg()),
            "root_position_error_cm": float((pose.root_pos - pose_hat.root_pos).norm(dim=-1).mean() * 100),
            "joint_position_error_cm": float((pos - pos_hat).norm(dim=-1).mean() * 100),
            "feature_mse": float(((x_hat - x) ** 2).mean()),
            "heldout_frames": len(x),
        }
        metrics.update(codebook_stats(torch.cat(codes).cpu(), self.quantizer.codebook_sizes))
        return metrics

    @torch.no_grad()
    def save_pictures(self, heldout: Any, out_dir: Path, clips: int = 3, frames: int = 5) -> list[Path]:
        """Stick figures of the longest held-out parts: original (solid) and reconstruction (dashed)."""
        from .kinematics import draw_stick_figures

        rows = sorted(heldout, key=lambda r: -len(r["x"]))[:clips]
        skel = _skeleton()
        panels, titles = [], []
        was_training = self.training
        self.eval()
        for row in rows:
            x = row["x"].float()
            x_hat, _ = self.reconstruct_sequence(x)
            pos, rot = joint_positions(skel, features_to_pose(x.double()))
            pos_hat, rot_hat = joint_positions(skel, features_to_pose(x_hat.double()))
            for f in torch.linspace(0, len(x) - 1, frames).round().long().tolist():
                panels.append([(pos[f], rot[f]), (pos_hat[f], rot_hat[f])])
                titles.append(f"{row['clip']} frame {f}")
        self.train(was_training)
        path = draw_stick_figures(skel, panels, ["original", "reconstruction"], titles,
                                  Path(out_dir) / "motion_reconstruction.png", cols=frames)
        return [path]


@lru_cache(maxsize=1)
def _skeleton():
    return load_skeleton()


CONTACT_CM = 5.0  # a foot this close to the floor is planted (tasks.motion.metrics.foot_skating's rule)


def foot_error(x: torch.Tensor, x_hat: torch.Tensor, height: float = 0.0, contact: float = 0.0) -> torch.Tensor:
    """Mean squared error of the feet's frame-to-frame motion (cm per frame, 3 axes) of features
    [B, T, 65], plus `height` times that of their height above the floor (cm), plus `contact` times
    that of their height where the real foot is planted (its share of all foot-frames): motion
    alone lets a planted foot sink."""
    skel = _skeleton()

    def feet(features: torch.Tensor) -> torch.Tensor:
        return foot_positions(skel, *joint_positions(skel, features_to_pose(features))) * 100  # cm

    f, f_hat = feet(x), feet(x_hat)
    error = ((f_hat.diff(dim=1) - f.diff(dim=1)) ** 2).mean()
    height_error = (f_hat[..., 1] - f[..., 1]) ** 2
    if height:
        error = error + height * height_error.mean()
    if contact:
        error = error + contact * (height_error * (f[..., 1] < CONTACT_CM)).mean()
    return error


__all__ = ["MotionTokenizer", "MotionTokenizerConfig", "MotionDataConfig"]
