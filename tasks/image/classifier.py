"""A small convolutional classifier of 28x28 images: the judge of generated samples.

Trained once per run on the real training split (through the project's trainer) and
cached as a pretrained folder. Its accuracy on generated images says whether a sample
shows the requested class; its penultimate features feed the Fréchet proxy distance
(a proxy in the manner of FID, not the Inception FID: the features are this small
network's, trained on these images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddm.config import TrainConfig, positive
from ddm.hub import PretrainedModel


@dataclass
class ClassifierConfig:
    num_classes: int = positive(10)
    width: int = positive(32)
    feature_dim: int = positive(128)


class ImageClassifier(PretrainedModel):
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(2 * w * 49, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """x [B, 1, 28, 28] in [0, 1] -> penultimate features [B, feature_dim]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
        """(predicted classes [B], features [B, feature_dim]) in eval mode."""
        was = self.training
        self.eval()
        feats = torch.cat([self.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        self.train(was)
        return self.head(feats).argmax(-1), feats


def classification_loss(model, batch, generator):
    logits = model(batch["x"])
    loss = F.cross_entropy(logits, batch["label"])
    return loss, {"accuracy": float((logits.argmax(-1) == batch["label"]).float().mean())}


def load_or_train_classifier(directory: Path, images: dict, labels: dict, steps: int = 1500,
                             seed: int = 0) -> ImageClassifier:
    """The classifier cached at `directory`, trained on the "train" split first if it is not there
    (images / labels: split name -> tensor)."""
    from ddm.training import Trainer

    if (directory / "config.json").is_file():
        return ImageClassifier.from_pretrained(directory).eval()
    print(f"classifier: training the judge ({steps} steps) into {directory}", flush=True)
    torch.manual_seed(seed)
    num_classes = int(labels["train"].max()) + 1
    model = ImageClassifier(ClassifierConfig(num_classes=num_classes))
    train = [{"x": x, "label": y} for x, y in zip(images["train"], labels["train"])]
    cfg = TrainConfig(steps=steps, batch_size=64, lr=2e-3, warmup_steps=50, weight_decay=1e-4, log_every=250,
                      checkpoint_every=0, seed=seed, progress=False)
    # An interrupted run raises (its checkpoint saved) and is never saved as a finished judge.
    Trainer(model, classification_loss, train, cfg, directory.parent / f"{directory.name}_training"
            ).train_to_end(save_to=directory)
    predicted, _ = model.predict(images["heldout"])
    print(f"classifier: held-out accuracy {float((predicted == labels['heldout']).float().mean()):.4f} "
          f"on {len(predicted)} real images")
    return model

