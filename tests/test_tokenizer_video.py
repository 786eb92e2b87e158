"""Video tokenizer: Moving-MNIST data, temporal compression, save/load, bad input, pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ddm.config import ConfigError, TrainConfig
from tokenizers_vq import QuantizerConfig, load_tokenizer
from tokenizers_vq.data.images import load_images, split_indices
from tokenizers_vq.data.moving_mnist import moving_mnist_splits, plan_videos
from tokenizers_vq.video import FoldTime, UnfoldTime, VideoTokenizer, VideoTokenizerConfig


def small_splits():
    return moving_mnist_splits(num_train=64, num_heldout=8, frames=4, size=32)


def tiny(kind: str = "vq", **q) -> VideoTokenizer:
    torch.manual_seed(0)
    quantizer = QuantizerConfig(kind=kind, **q) if kind != "vq" else QuantizerConfig(codebook_size=32)
    return VideoTokenizer(VideoTokenizerConfig(frames=4, image_size=32, width=8, latent_dim=8, quantizer=quantizer))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tok = tiny()
    tok.fit(small_splits()["train"], TrainConfig(steps=6, batch_size=8, lr=2e-3, warmup_steps=1, progress=False,
                                                 checkpoint_every=0, log_every=3), tmp_path_factory.mktemp("fit"))
    return tok


def test_moving_mnist_is_deterministic_and_uses_heldout_digits():
    splits = moving_mnist_splits(num_train=4, num_heldout=3)
    x = splits["heldout"][:]["x"]
    assert x.shape == (3, 1, 16, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() == 1
    assert splits["heldout"][0]["labels"].shape == (2,)
    # the held-out videos do not depend on how many training videos were asked for
    assert torch.equal(moving_mnist_splits(num_train=9, num_heldout=3)["heldout"][:]["x"], x)
    _, labels = load_images("mnist")
    train_pool, heldout_pool = split_indices(labels, 0.1, 0)
    digits, corners = plan_videos(heldout_pool, 50, seed=1)
    assert set(digits.ravel()) <= set(heldout_pool) and not set(digits.ravel()) & set(train_pool)
    assert corners.min() >= 0 and corners.max() <= 64 - 28  # bouncing keeps digits on the canvas
    steps = np.abs(np.diff(corners, axis=2)).max()
    assert steps in range(1, 6)  # digits move every frame, by a few pixels


def test_fold_time_round_trip():
    x = torch.randn(2, 3, 8, 5, 5)
    folded = FoldTime(2)(x)
    assert folded.shape == (8, 6, 5, 5)
    assert torch.equal(UnfoldTime(2, 4)(folded), x)


def test_train_encode_decode_save_load(trained, tmp_path):
    heldout = small_splits()["heldout"]
    x = heldout[:4]["x"]
    stream = trained.encode(x)
    assert stream.shape == (2, 8, 8)  # 4 frames / 2, 32 / 4, 32 / 4
    x_hat = trained.decode(stream)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    metrics = trained.evaluate(heldout)
    assert {"psnr", "mse", "usage", "perplexity"} <= set(metrics)
    trained.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert torch.equal(loaded.encode(x).ids, stream.ids)
    assert torch.allclose(loaded.decode(stream.flat()), x_hat)


@pytest.mark.parametrize("kind,extra", [("fsq", {"levels": [4, 4, 4]}), ("rvq", {"codebook_size": 8, "num_quantizers": 2})])
def test_other_quantizers(kind, extra):
    tok = tiny(kind, **extra)
    x = small_splits()["heldout"][:2]["x"]
    loss, _ = tok.loss(tok, {"x": x}, torch.Generator())
    loss.backward()
    stream = tok.encode(x)
    assert stream.ids.shape[:4] == (2, 2, 8, 8) and int(stream.ids.max()) < tok.vocab_size
    assert tok.decode(stream).shape == x.shape


def test_bad_input_is_named(trained):
    with pytest.raises(ValueError, match=r"x: expected \[B, C, T, H, W\] = \[B, 1, 4, 32, 32\], got \(1, 1, 5, 32, 32\)"):
        trained.encode(torch.rand(1, 1, 5, 32, 32))
    with pytest.raises(ValueError, match="got \\(1, 4, 32, 32\\)"):
        trained.encode(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        trained.encode(torch.full((1, 1, 4, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        trained.decode(torch.full((1, 2, 8, 8), -1))
    with pytest.raises(ConfigError, match="tokenizer.temporal_downsample: expected a power of two"):
        VideoTokenizerConfig(temporal_downsample=3)
    with pytest.raises(ConfigError, match="tokenizer.temporal_downsample: 32 does not divide tokenizer.frames=16"):
        VideoTokenizerConfig(temporal_downsample=32)


def test_pictures(trained, tmp_path):
    (path,) = trained.save_pictures(small_splits()["heldout"], tmp_path)
    with Image.open(path) as image:
        assert image.size[0] > 4 * 32 and image.size[1] > 4 * 32


def test_smaller_digits_are_the_same_digits_area_averaged_on_a_smaller_canvas():
    from tokenizers_vq.data.moving_mnist import digit_sprites

    small = moving_mnist_splits(num_train=2, num_heldout=3, size=32, num_digits=1, digit_size=14)["heldout"][:]
    assert small["x"].shape == (3, 1, 16, 32, 32)
    sprites = digit_sprites(14)
    assert sprites.shape[1:] == (14, 14) and np.allclose(sprites[0], load_images("mnist")[0][0]
                                                          .reshape(14, 2, 14, 2).mean((1, 3)) / 255.0, atol=1e-6)
    first = small["x"][0, 0, 0].numpy()
    ink = np.argwhere(first > 0)  # the whole digit fits in a 14x14 window
    assert (ink.max(0) - ink.min(0)).max() < 14
    _, heldout_pool = split_indices(load_images("mnist")[1], 0.1, 0)
    _, corners = plan_videos(heldout_pool, 50, seed=1, size=32, num_digits=1, digit_size=14)
    assert corners.max() <= 32 - 14 and np.abs(np.diff(corners, axis=2)).max() <= 3  # speeds halve with size
    with pytest.raises(ValueError, match="digit_size: expected 1 .. 28"):
        plan_videos(heldout_pool, 2, seed=1, digit_size=30)
    with pytest.raises(ValueError, match="size: the canvas must hold a 14x14 digit"):
        plan_videos(heldout_pool, 2, seed=1, size=12, digit_size=14)
