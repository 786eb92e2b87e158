"""A small temporal convolutional classifier of motion crops: the judge of generated motion.

It reads `window`-frame crops of pose features (canonical heading: `data.canonical`), trained
once per run on every crop of the real training split and its mirror image (through the
project's trainer) and cached as a pretrained folder. A longer motion is judged by its crops
(every `stride` frames): its label is the argmax of their mean log-probabilities; their
penultimate features feed the Fréchet proxy and diversity (a proxy in the manner of FID, with
this small network's features, not a standard motion-FID encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddm.config import TrainConfig, positive
from ddm.hub import PretrainedModel
from tokenizers_vq.data.motion import FEATURE_DIM

from .data import canonical


@dataclass
class MotionClassifierConfig:
    num_classes: int = positive(15)
    window: int = positive(8)  # frames per crop
    width: int = positive(64)
    feature_dim: int = positive(32)


class MotionClassifier(PretrainedModel):
    config_class = MotionClassifierConfig

    def __init__(self, config: MotionClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(nn.Conv1d(FEATURE_DIM, w, 3, padding=1), nn.GELU(),
                                  nn.Conv1d(w, w, 3, padding=1), nn.GELU())
        self.project = nn.Sequential(nn.Dropout(0.2), nn.Linear(w, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)
        self.register_buffer("feature_mean", torch.zeros(FEATURE_DIM))
        self.register_buffer("feature_std", torch.ones(FEATURE_DIM))

    def features(self, x: Tensor) -> Tensor:
        """Canonical crops [B, window, 65] -> penultimate features [B, feature_dim]."""
        h = self.body(((x - self.feature_mean) / self.feature_std).transpose(1, 2))
        return self.project(h.mean(-1))  # the mean over time: a crop's pose content and its motion

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def crops(self, x: Tensor, stride: int) -> Tensor:
        """Motions [B, T, 65] -> canonical crops [B, K, window, 65], K = 1 + (T - window) // stride."""
        w = self.config.window
        if x.shape[1] < w:
            raise ValueError(f"motion: {x.shape[1]} frames is shorter than the judge's {w}-frame window")
        starts = range(0, x.shape[1] - w + 1, stride)
        return canonical(torch.stack([x[:, s:s + w] for s in starts], 1).float())

    @torch.no_grad()
    def judge(self, x: Tensor, stride: int = 4, batch_size: int = 2000) -> tuple[Tensor, Tensor, Tensor]:
        """Motions [B, T, 65] -> (predicted labels [B], log-probabilities [B, C] (mean over crops),
        crop features [B, K, feature_dim])."""
        was = self.training
        self.eval()
        c = self.crops(x, stride)
        flat = c.flatten(0, 1)
        feats = torch.cat([self.features(flat[i:i + batch_size]) for i in range(0, len(flat), batch_size)])
        logp = F.log_softmax(self.head(feats), -1).unflatten(0, c.shape[:2]).mean(1)
        self.train(was)
        return logp.argmax(-1), logp, feats.unflatten(0, c.shape[:2])


def classification_loss(model, batch, generator):
    logits = model(batch["x"])
    loss = F.cross_entropy(logits, batch["label"])
    return loss, {"accuracy": float((logits.argmax(-1) == batch["label"]).float().mean())}


def load_or_train_classifier(directory: Path, crops: Tensor, labels: Tensor, num_classes: int, steps: int,
                             seed: int = 0) -> MotionClassifier:
    """The judge cached at `directory`, trained on canonical `crops` [N, window, 65] first if it is not there."""
    from ddm.training import Trainer

    if (directory / "config.json").is_file():
        model = MotionClassifier.from_pretrained(directory).eval()
        if model.config.window != crops.shape[1] or model.config.num_classes != num_classes:
            raise ValueError(f"{directory}: a judge of {model.config.window}-frame crops and "
                             f"{model.config.num_classes} classes, this run needs {crops.shape[1]} and {num_classes}; "
                             "delete it to train a new one")
        return model
    print(f"classifier: training the judge ({steps} steps, {len(crops)} real crops) into {directory}", flush=True)
    torch.manual_seed(seed)
    model = MotionClassifier(MotionClassifierConfig(num_classes=num_classes, window=crops.shape[1]))
    flat = crops.reshape(-1, FEATURE_DIM).double()
    model.feature_mean.copy_(flat.mean(0).float())
    model.feature_std.copy_(flat.std(0).clamp_min(0.05).float())
    data = [{"x": x, "label": y} for x, y in zip(crops, labels)]
    cfg = TrainConfig(steps=steps, batch_size=64, lr=2e-3, warmup_steps=50, weight_decay=1e-4,
                      log_every=max(steps // 4, 1), checkpoint_every=0, seed=seed, progress=False)
    # An interrupted run raises (its checkpoint saved) and is never saved as a finished judge.
    Trainer(model, classification_loss, data, cfg, directory.parent / f"{directory.name}_training"
            ).train_to_end(save_to=directory)
    return model.eval()
