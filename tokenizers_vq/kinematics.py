"""Rotations, the DeepMimic humanoid's skeleton read from its URDF, forward kinematics, stick figures.

Conventions (those of the DeepMimic motion files and the humanoid URDF): y is up,
quaternions are (w, x, y, z), joint frames sit at the URDF joint origin with the
parent link's axes (every `rpy` in the file is zero, which `load_skeleton` checks).
The URDF is drawn at 4x the motion files' scale (pybullet loads it with
globalScaling=0.25), so lengths are multiplied by `URDF_SCALE` to get metres.

Everything here is plain torch on [..., 4] quaternions and [..., 3, 3] matrices.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch

URDF_SCALE = 0.25  # the motion files' metres per URDF unit


# --------------------------------------------------------------------------- rotations


def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(w, x, y, z) [..., 4] -> rotation matrices [..., 3, 3] (normalizes first: the files are off by 0.5%)."""
    w, x, y, z = quat_normalize(q).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def quat_slerp(q0: torch.Tensor, q1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of [..., 4] quaternions at fractions t [...]."""
    q0, q1 = quat_normalize(q0), quat_normalize(q1)
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)  # q and -q are one rotation: take the short way round
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    t = t.unsqueeze(-1)
    sin = torch.sin(theta)
    near = sin < 1e-6  # nearly equal: the lerp is exact enough and avoids 0/0
    w0 = torch.where(near, 1 - t, torch.sin((1 - t) * theta) / sin.clamp_min(1e-6))
    w1 = torch.where(near, t, torch.sin(t * theta) / sin.clamp_min(1e-6))
    return quat_normalize(w0 * q0 + w1 * q1)


def axis_angle_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotations by `angle` [...] about the fixed unit `axis` [3] -> [..., 3, 3] (Rodrigues)."""
    axis = axis.to(angle.dtype)
    k = torch.zeros(3, 3, dtype=angle.dtype)
    k[0, 1], k[0, 2], k[1, 0], k[1, 2], k[2, 0], k[2, 1] = -axis[2], axis[1], axis[2], -axis[0], -axis[1], axis[0]
    a = angle[..., None, None]
    return torch.eye(3, dtype=angle.dtype) + torch.sin(a) * k + (1 - torch.cos(a)) * (k @ k)


def yaw_matrix(angle: torch.Tensor) -> torch.Tensor:
    """Rotations about the vertical (y) axis."""
    return axis_angle_matrix(torch.tensor([0.0, 1.0, 0.0]), angle)


def matrix_to_6d(r: torch.Tensor) -> torch.Tensor:
    """The continuous 6-D form (Zhou et al. 2019): the first two columns, [..., 6]."""
    return torch.cat([r[..., :, 0], r[..., :, 1]], -1)


def matrix_from_6d(d6: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt back to a rotation matrix; any 6 numbers (not parallel halves) give a rotation."""
    a, b = d6[..., :3], d6[..., 3:]
    x = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b = b - (x * b).sum(-1, keepdim=True) * x
    y = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    z = torch.cross(x, y, dim=-1)
    return torch.stack([x, y, z], -1)


def geodesic_angle(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """The angle (radians) of the rotation taking r1 to r2, [...]."""
    trace = (r1 * r2).sum((-1, -2))  # trace(r1^T r2)
    return torch.acos(((trace - 1) / 2).clamp(-1.0, 1.0))


# --------------------------------------------------------------------------- the skeleton


@dataclass
class Skeleton:
    """Joints in an order where each parent comes before its children (index 0: the root link)."""

    names: list[str]
    parents: list[int]  # -1 for the root
    offsets: torch.Tensor  # [J, 3] joint origin in the parent's frame, metres
    kinds: list[str]  # "root", "spherical", "revolute" or "fixed"
    axes: torch.Tensor  # [J, 3] revolute axis in the joint frame (zero otherwise)
    end_sites: dict[int, torch.Tensor]  # joint -> a point in its frame drawn as the limb's end (head, foot)

    def index(self, name: str) -> int:
        return self.names.index(name)


def default_urdf() -> Path:
    import pybullet_data  # imported here: only the motion modality needs pybullet

    return Path(pybullet_data.getDataPath()) / "humanoid" / "humanoid.urdf"


def _xyz(element: ET.Element | None, attr: str = "xyz") -> list[float]:
    if element is None or element.get(attr) is None:
        return [0.0, 0.0, 0.0]
    return [float(v) for v in element.get(attr).split()]


def load_skeleton(path: str | Path | None = None, scale: float = URDF_SCALE) -> Skeleton:
    """Parse joints (parent, origin, type, axis) of a URDF; the link named `root` becomes joint 0."""
    path = Path(path) if path is not None else default_urdf()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such URDF file")
    # pybullet's humanoid.urdf ends in a NUL byte, which XML parsers reject
    robot = ET.fromstring(path.read_bytes().rstrip(b"\x00\r\n\t "))
    by_child: dict[str, ET.Element] = {}
    for joint in robot.iter("joint"):
        origin = joint.find("origin")
        if any(abs(v) > 1e-9 for v in _xyz(origin, "rpy")):
            raise ValueError(f"{path}: joint {joint.get('name')!r} has a rotated origin; this FK assumes rpy 0")
        by_child[joint.find("child").get("link")] = joint
    links = {link.get("name"): link for link in robot.iter("link")}
    if "root" not in links:
        raise ValueError(f"{path}: no link named 'root' (the DeepMimic humanoid's pelvis)")

    names, parents, offsets, kinds, axes = ["root"], [-1], [[0.0] * 3], ["root"], [[0.0] * 3]
    frontier = ["root"]
    while frontier:  # breadth first, children in file order: parents always come first
        parent = frontier.pop(0)
        for child, joint in by_child.items():
            if joint.find("parent").get("link") != parent:
                continue
            names.append(child)
            parents.append(names.index(parent))
            offsets.append([v * scale for v in _xyz(joint.find("origin"))])
            kinds.append(joint.get("type"))
            axes.append(_xyz(joint.find("axis")) if joint.get("type") == "revolute" else [0.0] * 3)
            frontier.append(child)
    end_sites = {}
    for j, name in enumerate(names):
        # A leaf limb (neck, ankles) ends at its collision shape's centre: the head, the foot.
        origin = links[name].find("collision/origin")
        point = _xyz(origin)
        if j not in parents and any(abs(v) > 1e-9 for v in point):
            end_sites[j] = torch.tensor(point) * scale
    return Skeleton(names, parents, torch.tensor(offsets), kinds, torch.tensor(axes), end_sites)


def forward_kinematics(skel: Skeleton, root_pos: torch.Tensor, local_rots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World joint positions [..., J, 3] and rotations [..., J, 3, 3].

    root_pos [..., 3]; local_rots [..., J, 3, 3], entry 0 the root's world rotation and
    entry j joint j's rotation relative to its parent (identity for fixed joints).
    """
    positions, rotations = [], []
    offsets = skel.offsets.to(local_rots.dtype)
    for j, p in enumerate(skel.parents):
        if p < 0:
            positions.append(root_pos)
            rotations.append(local_rots[..., j, :, :])
        else:
            positions.append(positions[p] + (rotations[p] @ offsets[j].unsqueeze(-1)).squeeze(-1))
            rotations.append(rotations[p] @ local_rots[..., j, :, :])
    return torch.stack(positions, -2), torch.stack(rotations, -3)


def bones(skel: Skeleton, positions: torch.Tensor, rotations: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Line segments (start [..., 3], end [..., 3]) of the stick figure: parent-child links and end sites."""
    segs = [(positions[..., p, :], positions[..., j, :]) for j, p in enumerate(skel.parents) if p >= 0]
    for j, point in skel.end_sites.items():
        end = positions[..., j, :] + (rotations[..., j, :, :] @ point.to(positions.dtype).unsqueeze(-1)).squeeze(-1)
        segs.append((positions[..., j, :], end))
    return segs


def draw_stick_figures(skel: Skeleton, poses: list[list[tuple[torch.Tensor, torch.Tensor]]], labels: list[str],
                       titles: list[str], path: Path, cols: int = 5,
                       colors: tuple[str, ...] = ("black", "tab:red")) -> Path:
    """A grid of 3-D stick figures, one panel per pose, each panel overlaying several figures.

    poses[i] is panel i: a list of (positions [J, 3], rotations [J, 3, 3]) drawn in
    `colors` and named by `labels` (e.g. original and reconstruction).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(poses), cols)
    rows = math.ceil(len(poses) / cols)
    fig = plt.figure(figsize=(2.6 * cols, 3.0 * rows))
    for i, panel in enumerate(poses):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        centre = panel[0][0][0]  # around the first figure's root
        for k, (pos, rot) in enumerate(panel):
            for n, (a, b) in enumerate(bones(skel, pos, rot)):
                # plot (x, z, y): matplotlib's vertical axis is its third
                ax.plot([a[0], b[0]], [a[2], b[2]], [a[1], b[1]], color=colors[k % len(colors)], lw=1.6,
                        ls="-" if k == 0 else "--", label=labels[k] if n == 0 else None)
        ax.set_xlim(float(centre[0]) - 0.9, float(centre[0]) + 0.9)
        ax.set_ylim(float(centre[2]) - 0.9, float(centre[2]) + 0.9)
        ax.set_zlim(0.0, 1.8)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=12, azim=-60)
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
        ax.set_title(titles[i], fontsize=8)
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
