"""The frozen encoders from the wheels: shapes, determinism, meaning, caching and bad input."""

import numpy as np
import pytest
import torch

from tasks.vla import schema
from tasks.vla.encoders import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, ImageEncoder, InstructionEncoder
from tasks.vla.features import ObservationEncoder


def _images(seed, n=2, size=64):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_image_encoder_is_frozen_pretrained_and_pools_to_a_grid():
    enc = ImageEncoder(pool=2)
    x = _images(0)
    a, b = enc(x), enc(x)
    assert a.shape == (2, 4, IMAGE_FEATURE_DIM) and torch.equal(a, b)
    assert not any(p.requires_grad for p in enc.net.parameters()) and not enc.net.training
    # ImageNet weights, not a random init: BatchNorm statistics were learned
    assert not torch.allclose(enc.net._bn1.running_var, torch.ones_like(enc.net._bn1.running_var))
    # different pictures, different features; one image without a batch axis works too
    assert (a[0] - a[1]).abs().mean() > 1e-3
    # (batch 1 and batch 2 may take different oneDNN kernels: float32 rounding, about 2e-5 here)
    assert torch.allclose(enc(x[0]), a[:1], atol=1e-4, rtol=1e-4)
    assert ImageEncoder(pool=1)(x).shape == (2, 1, IMAGE_FEATURE_DIM)


def test_the_stride16_stage_is_the_last_stride16_block_of_the_network():
    head, fine = ImageEncoder(pool=2), ImageEncoder(pool=2, stage="stride16")
    x = _images(1, size=128)
    seen = []
    hook = head.net._blocks[10].register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        head(x)
    finally:
        hook.remove()
    assert seen[0].shape[1:] == (112, 8, 8)  # 128 px / 16
    expected = torch.nn.functional.adaptive_avg_pool2d(seen[0], 2).flatten(2).transpose(1, 2)
    got = fine(x)
    assert got.shape == (2, 4, 112) and fine.dim == 112
    assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="unknown image feature stage 'stride8'"):
        ImageEncoder(stage="stride8")


def test_image_encoder_names_bad_images():
    enc = ImageEncoder(pool=1)
    with pytest.raises(ValueError, match=r"observation.images.corner3: expected uint8"):
        enc(np.zeros((1, 32, 32, 3), np.float32), where="observation.images.corner3")
    with pytest.raises(ValueError, match=r"RGB images \[B, H, W, 3\]"):
        enc(np.zeros((1, 3, 32, 32), np.uint8))


def test_instruction_encoder_means_what_sentences_mean_and_caches_them():
    enc = InstructionEncoder()
    v = enc(["push the puck to the goal", "push the puck to the target", "open the door by pulling its handle"])
    assert v.shape == (3, TEXT_FEATURE_DIM)
    assert torch.allclose(v.norm(dim=1), torch.ones(3), atol=1e-5)
    assert v[0] @ v[1] > 0.8 > 0.5 > v[0] @ v[2]  # paraphrases close, other tasks far
    calls = []
    original = enc._encode
    enc._encode = lambda sentences: calls.append(list(sentences)) or original(sentences)
    again = enc(["push the puck to the goal", "  push the puck to the goal ", "slide the window open"])
    assert calls == [["slide the window open"]]  # only the new sentence was encoded
    assert torch.equal(again[0], v[0]) and torch.equal(again[1], v[0])
    with pytest.raises(ValueError, match=r"empty instruction \(task\[1\]\)"):
        enc(["push the puck", "   "])


def test_observation_encoder_checks_the_observation():
    enc = ObservationEncoder(["corner3", "gripperPOV"], pool=1)
    obs = {schema.image_key("corner3"): _images(1, 1, 32)[0], schema.image_key("gripperPOV"): _images(2, 1, 32)[0],
           schema.STATE: np.zeros(4, np.float32), schema.TASK: "push the puck to the goal"}
    feats = enc(obs)
    assert feats["images"].shape == (1, 2, IMAGE_FEATURE_DIM) and feats["text"].shape == (1, TEXT_FEATURE_DIM)
    assert feats["state"].shape == (1, 4)
    with pytest.raises(KeyError, match="observation.images.gripperPOV"):
        enc({k: v for k, v in obs.items() if k != schema.image_key("gripperPOV")})
    with pytest.raises(ValueError, match="empty instruction"):
        enc({**obs, schema.TASK: ""})
    with pytest.raises(KeyError, match="'task'"):
        enc({k: v for k, v in obs.items() if k != schema.TASK})
