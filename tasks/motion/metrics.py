"""Physical figures of motion from forward kinematics, and the judge-feature figures reused from images.

- foot skating: the horizontal speed of a foot while it is on the ground (its centre below
  `contact_height` in both frames of a step), in cm/s, averaged over such foot-steps; a planted
  foot of real motion barely slides;
- ground penetration: how far the lowest body point (joints, head, feet) goes below the floor
  (y = 0), in cm, averaged over frames, and the fraction of frames deeper than 2 cm;
- joint limits: the fraction of frames with a joint angle outside the range the training split
  shows (hinges: their angle; ball joints: each component of their rotation vector), beyond a
  tolerance;
- Fréchet proxy and diversity in the judge's features: `tasks.image.metrics`, shared.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tasks.image.metrics import frechet_distance, mean_pairwise_distance
from tokenizers_vq.data.motion import features_to_pose

from .kin import all_points, body_points, check_features

FLOOR_TOLERANCE = 0.02  # m below y = 0 before a frame counts as penetrating

__all__ = ["foot_skating", "ground_penetration", "joint_angles", "rotation_vector", "JointRanges",
           "frechet_distance", "mean_pairwise_distance"]  # the last two shared with the image task


def foot_skating(x: Tensor, fps: float, contact_height: float = 0.05) -> dict[str, float]:
    """{"skating_cm_s": mean horizontal foot speed over grounded foot-steps, "contact": their fraction}.
    A motion that never touches the ground has no grounded steps: skating 0, contact 0."""
    _, feet = body_points(check_features(x))  # [B, T, 2, 3]
    grounded = (feet[:, 1:, :, 1] < contact_height) & (feet[:, :-1, :, 1] < contact_height)
    speed = (feet[:, 1:, :, [0, 2]] - feet[:, :-1, :, [0, 2]]).norm(dim=-1) * fps  # m/s
    n = int(grounded.sum())
    skating = float(speed[grounded].sum() / n * 100) if n else 0.0
    return {"skating_cm_s": skating, "contact": n / grounded.numel()}


def ground_penetration(x: Tensor) -> dict[str, float]:
    """{"penetration_cm": mean depth of the lowest point below the floor, "penetrating": fraction of
    frames more than FLOOR_TOLERANCE deep}."""
    lowest = all_points(check_features(x))[..., 1].amin(-1)  # [B, T]
    depth = (-lowest).clamp_min(0.0)
    return {"penetration_cm": float(depth.mean() * 100), "penetrating": float((depth > FLOOR_TOLERANCE).float().mean())}


def rotation_vector(r: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] -> axis * angle [..., 3] (the log map; stable away from pi)."""
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    angle = torch.acos(cos)
    skew = torch.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    scale = torch.where(angle < 1e-6, torch.full_like(angle, 0.5), angle / (2 * torch.sin(angle).clamp_min(1e-6)))
    return skew * scale[..., None]


def joint_angles(x: Tensor) -> Tensor:
    """Features [..., T, 65] -> [..., T, 8 * 3 + 4] radians: ball joints' rotation vectors, then hinge angles."""
    pose = features_to_pose(x.double())
    return torch.cat([rotation_vector(pose.ball).flatten(-2), pose.hinge], -1)


@dataclass
class JointRanges:
    """The range of every joint angle over a set of real frames (the training split)."""

    low: Tensor
    high: Tensor

    @classmethod
    def fit(cls, x: Tensor) -> "JointRanges":
        a = joint_angles(check_features(x)).flatten(0, -2)
        return cls(a.amin(0), a.amax(0))

    def violations(self, x: Tensor, tolerance_deg: float = 5.0) -> float:
        """Fraction of frames with at least one joint angle outside [low, high] by more than the tolerance."""
        a = joint_angles(check_features(x))
        tol = torch.deg2rad(torch.tensor(tolerance_deg, dtype=a.dtype))
        out = (a < self.low - tol) | (a > self.high + tol)
        return float(out.any(-1).float().mean())
