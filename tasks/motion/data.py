"""The clips as labelled pose-feature windows, the written sentence of each clip, and the checks
of what a user asks for (a label, a sentence).

The split is the tokenizer's (`tokenizers_vq.data.motion`): the first part of every clip's key
frames trains, the rest is held out. The label of a window is its clip's name (walk, run,
backflip, ...). Held-out parts are short (4-26 frames at 30 fps: the clips are 0.8-4.4 s long),
so the held-out figures use short crops (`crops`) rather than whole generation windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from tokenizers_vq.data.motion import MotionDataConfig, Pose, load_clips, mirror, pose_to_features
from tokenizers_vq.kinematics import yaw_matrix

# One sentence per clip: what the text-conditional model is trained on.
SENTENCES: dict[str, str] = {
    "backflip": "A person jumps up and does a backflip, landing on both feet.",
    "cartwheel": "Someone does a cartwheel, turning sideways over their hands.",
    "crawl": "A person crawls forward on hands and knees.",
    "dance_a": "A dancer sways and steps lightly, swinging the arms.",
    "dance_b": "A person dances energetically with big arm movements.",
    "getup_facedown": "Lying face down on the floor, a person pushes up and stands.",
    "getup_faceup": "Lying on their back, a person sits up and gets to their feet.",
    "jump": "A person bends the knees and jumps forward.",
    "kick": "A person kicks forward with the right leg.",
    "punch": "A person throws a punch with the right fist.",
    "roll": "A person rolls forward over the shoulder on the ground.",
    "run": "A person runs forward.",
    "spin": "A person spins around in place on one foot.",
    "spinkick": "A martial artist spins and delivers a roundhouse kick.",
    "walk": "A person walks forward at a normal pace.",
}
# A second wording of each, never trained on: does the text model follow meaning or memorise strings?
PARAPHRASES: dict[str, str] = {
    "backflip": "Somebody flips backwards in the air.",
    "cartwheel": "A gymnast wheels sideways, hands touching the ground.",
    "crawl": "On all fours, someone creeps ahead.",
    "dance_a": "Someone dances gently to music.",
    "dance_b": "Someone dances wildly, arms flying.",
    "getup_facedown": "A person lying on their stomach gets up.",
    "getup_faceup": "Someone lying on their back stands up.",
    "jump": "Someone leaps forward.",
    "kick": "Somebody kicks with their leg.",
    "punch": "Someone hits forward with a fist.",
    "roll": "Someone does a forward roll on the floor.",
    "run": "Somebody jogs quickly ahead.",
    "spin": "Someone turns around on the spot.",
    "spinkick": "A fighter turns around and kicks high.",
    "walk": "Someone strolls ahead.",
}


@dataclass
class MotionSplits:
    """Clip names (label i = names[i]), the training / held-out parts of each clip as poses."""

    names: list[str]
    train: list[Pose]  # one per clip, in names' order
    heldout: list[Pose]


def load_splits(config: MotionDataConfig) -> MotionSplits:
    clips = load_clips(config)
    names = list(clips)
    missing = [n for n in names if n not in SENTENCES]
    if missing:  # a clip folder of the user's: every clip needs its sentence for the text model
        raise ValueError(f"data.motions_dir: clip {missing[0]!r} has no sentence in tasks.motion.data.SENTENCES")
    return MotionSplits(names, [clips[n][0] for n in names], [clips[n][1] for n in names])


def windows(parts: list[Pose], length: int, stride: int = 1, mirrored: bool = True, yaw_copies: int = 0,
            seed: int = 0) -> tuple[Tensor, Tensor]:
    """Every `length`-frame window of each part (+ its left-right mirror): (features [N, length, 65],
    part index [N]). yaw_copies > 0: that many random headings per window, else the clip's own.
    A part shorter than `length` gives none."""
    g = torch.Generator().manual_seed(seed)
    xs, labels = [], []
    for i, part in enumerate(parts):
        for start in range(0, len(part) - length + 1, stride):
            w = part.slice(start, start + length)
            for view in [w, mirror(w)] if mirrored else [w]:
                for _ in range(max(yaw_copies, 1)):
                    yaw = float(torch.rand((), generator=g, dtype=torch.float64)) * 2 * math.pi if yaw_copies else 0.0
                    xs.append(pose_to_features(view, yaw).float())
                    labels.append(i)
    if not xs:
        return torch.zeros(0, length, 65), torch.zeros(0, dtype=torch.long)
    return torch.stack(xs), torch.tensor(labels)


def canonical(x: Tensor) -> Tensor:
    """Features [..., T, 65] turned about the vertical so frame 0's pelvis x-axis points along +x, and
    moved so frame 0 stands at the ground origin: what the judge sees (heading is not the action)."""
    c0 = x[..., 0, 3:6]  # frame 0's root rotation, first column
    theta = torch.atan2(-c0[..., 2], c0[..., 0])  # its heading about y
    turn = yaw_matrix(-theta.double()).to(x.dtype)  # [..., 3, 3]
    out = x.clone()
    for s in (slice(0, 3), slice(3, 6), slice(6, 9)):  # root position and the two rotation columns
        out[..., s] = torch.einsum("...ij,...tj->...ti", turn, x[..., s])
    out[..., [0, 2]] -= out[..., :1, [0, 2]]
    return out


def label_ids(labels, names: list[str]) -> Tensor:
    """Action labels (clip names, or their indices) -> class ids [B]; an unknown one is an error that
    lists the known labels."""
    if isinstance(labels, str):
        labels = [labels]
    if isinstance(labels, Tensor):
        labels = labels.tolist()
    out = []
    for i, label in enumerate(labels):
        if isinstance(label, str):
            if label not in names:
                raise ValueError(f"labels[{i}]: unknown action label {label!r}; known: {', '.join(names)}")
            out.append(names.index(label))
        elif isinstance(label, int) and not isinstance(label, bool):
            if not 0 <= label < len(names):
                raise ValueError(f"labels[{i}]: class {label} is unknown (0 .. {len(names) - 1}: {', '.join(names)})")
            out.append(label)
        else:
            raise ValueError(f"labels[{i}]: expected an action label (str) or class id (int), got {label!r}")
    if not out:
        raise ValueError("labels: no label given")
    return torch.tensor(out)


def check_sentences(sentences) -> list[str]:
    """Non-empty sentences, stripped; an empty or blank one is an error naming its place."""
    if isinstance(sentences, str):
        sentences = [sentences]
    if not sentences:
        raise ValueError("sentences: no sentence given")
    out = []
    for i, s in enumerate(sentences):
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"sentences[{i}]: an empty sentence ({s!r}); describe the motion in words")
        out.append(s.strip())
    return out
