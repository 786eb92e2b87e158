"""The sprite video tokenizer: exact content / motion split on real Moving-MNIST, the stream's
layout, the differentiable decode, save / load, and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddm.config import ConfigError, TrainConfig
from tokenizers_vq import QuantizerConfig, load_tokenizer
from tokenizers_vq.video import MovingMNISTConfig
from tokenizers_vq.video_sprite import SpriteVideoTokenizer, SpriteVideoTokenizerConfig, positions


def videos(count: int = 24) -> torch.Tensor:
    data = MovingMNISTConfig(num_train=8, num_heldout=count, frames=16, size=32, digit_size=14, num_digits=1)
    return SpriteVideoTokenizer.build_data(data)["heldout"][:count]["x"]


def tiny(**changes) -> SpriteVideoTokenizer:
    torch.manual_seed(0)
    config = dict(width=8, latent_dim=4, quantizer=QuantizerConfig(codebook_size=32, kmeans_init=False))
    return SpriteVideoTokenizer(SpriteVideoTokenizerConfig(**{**config, **changes})).eval()


def test_a_moving_digit_is_one_sprite_drawn_at_each_frames_position():
    x = videos()
    tok = tiny()
    sprite, pos = tok.sprites(x)
    one_hot = F.one_hot(pos, 32).float()
    redrawn = tok.draw(sprite, one_hot[..., 0, :], one_hot[..., 1, :])
    assert sprite.shape == (24, 1, 16, 16) and pos.shape == (24, 16, 2)
    assert float((redrawn - x).abs().max()) < 1e-5  # before the quantizer, nothing is lost
    assert float((pos[:, 1:] - pos[:, :-1]).abs().max()) <= 2  # 1-2 pixels a frame at this size


def test_positions_follow_the_ink_and_blank_frames_sit_in_the_centre():
    x = torch.zeros(1, 1, 3, 32, 32)
    x[0, 0, 0, 4:7, 10:13] = 1.0  # centre of mass (5, 11)
    x[0, 0, 1, 20:22, 3:5] = 0.5  # (20.5, 3.5) rounds to even
    pos, inked = positions(x)
    assert pos[0].tolist() == [[5, 11], [20, 4], [16, 16]] and inked[0].tolist() == [True, True, False]
    tok = tiny(frames=3)
    sprite, _ = tok.sprites(x)
    assert float(sprite.sum()) == pytest.approx((9 + 4 * 0.5) / 2)  # the blank frame is not averaged in


def test_the_stream_is_sprite_codes_then_a_row_and_a_column_per_frame():
    tok = tiny()
    x = videos(4)
    ids = tok.encode(x).ids
    assert ids.shape == (4, 64 + 32) and tok.vocab_size == 32 + 32
    assert (ids[:, :64] < 32).all() and (ids[:, 64:] >= 32).all()
    _, pos = tok.sprites(x)
    assert torch.equal(ids[:, 64:] - 32, pos.flatten(1))
    allowed = tok.allowed_tokens()
    assert allowed.shape == (96, 64) and allowed[:64, :32].all() and not allowed[:64, 32:].any()
    assert allowed[64:, 32:].all() and not allowed[64:, :32].any()
    frames = torch.zeros(16, dtype=torch.bool)
    frames[2] = True
    assert tok.frame_slots(frames).nonzero().flatten().tolist() == [68, 69]


def test_soft_decoding_of_one_hot_tokens_is_decoding_and_is_differentiable():
    tok = tiny()
    ids = tok.encode(videos(3)).ids
    probs = F.one_hot(ids, tok.vocab_size).float().requires_grad_(True)
    soft = tok.decode_soft(probs)
    assert torch.allclose(soft.clamp(0, 1), tok.decode(ids), atol=1e-5)
    soft.sum().backward()
    assert probs.grad[:, 64:, 32:].abs().sum() > 0  # the positions receive a gradient
    # a position split half and half draws half the sprite at each place
    half = probs.detach().clone()
    half[0, 64] = 0.0
    row = int(ids[0, 64]) - 32
    half[0, 64, 32 + row] = half[0, 64, 32 + (row + 4) % 32] = 0.5
    mixed = tok.decode_soft(half)[0, 0, 0]
    shifted = tok.decode_soft(F.one_hot(ids[:1].masked_fill(torch.arange(96) == 64, 32 + (row + 4) % 32),
                                        tok.vocab_size).float())[0, 0, 0]
    assert torch.allclose(mixed, 0.5 * soft[0, 0, 0].detach() + 0.5 * shifted, atol=1e-5)


def test_training_saving_and_loading_keep_the_ids(tmp_path):
    data = MovingMNISTConfig(num_train=32, num_heldout=4, frames=16, size=32, digit_size=14, num_digits=1)
    splits = SpriteVideoTokenizer.build_data(data)
    tok = tiny().train()
    tok.fit(splits["train"], TrainConfig(steps=4, batch_size=8, lr=2e-3, warmup_steps=1, progress=False,
                                         checkpoint_every=0, log_every=4), out_dir=tmp_path / "run",
            save_to=tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    x = splits["heldout"][:4]["x"]
    assert type(loaded) is SpriteVideoTokenizer and torch.equal(loaded.encode(x).ids, tok.encode(x).ids)
    assert 0 < tok.evaluate(splits["heldout"])["psnr"] < 100


def test_bad_input_is_refused_by_name():
    tok = tiny()
    ids = tok.encode(videos(2)).ids
    wrong = ids.clone()
    wrong[1, 5] = 40  # a coordinate where a sprite code belongs
    with pytest.raises(ValueError, match="position 5 of sample 1 holds 40, a coordinate id"):
        tok.decode(wrong)
    wrong = ids.clone()
    wrong[0, 70] = 3
    with pytest.raises(ValueError, match="position 70 of sample 0 holds 3, a sprite code"):
        tok.decode(wrong)
    with pytest.raises(ValueError, match=r"x: expected \[B, C, T, H, W\]"):
        tok.encode(torch.zeros(1, 1, 16, 28, 28))
    with pytest.raises(ConfigError, match="data.num_digits=2: the sprite tokenizer holds one object"):
        SpriteVideoTokenizer.build_data(MovingMNISTConfig(num_digits=2))
    with pytest.raises(ConfigError, match="tokenizer.downsample: 8 does not divide tokenizer.sprite_size=12"):
        SpriteVideoTokenizerConfig(sprite_size=12, downsample=8)
    with pytest.raises(ValueError, match=r"probs: expected \[B, 96, 64\]"):
        tok.decode_soft(torch.zeros(1, 96, 32))


def test_encoding_what_is_visible():
    tok = tiny()
    x = videos(6)
    everything = torch.ones(1, 1, 16, 32, 32, dtype=torch.bool)
    ids, given = tok.encode_visible(x, everything)
    assert torch.equal(ids, tok.encode(x).ids) and given.all()  # all seen: the plain encoding, all given
    visible = everything.clone()
    visible[:, :, 5] = False  # frame 5 hidden
    visible[:, :, :, :, :16] = False  # and the left half of every frame
    ids, given = tok.encode_visible(x, visible)
    assert not given[:, 64 + 10:64 + 12].any()  # frame 5's row and column are left to the model
    pos = (ids[:, 64:] - 32).reshape(6, 16, 2)
    # a sprite pixel is seen where a given frame shows its column; a code is given if all its pixels are
    cols = pos[..., 1, None] + torch.arange(16) - 8  # [B, T, 16]: frame column of each sprite column
    seen_col = ((cols >= 16) & given[:, 64::2, None]).any(1)  # [B, 16]
    patch_seen = seen_col.reshape(6, 8, 2).all(2)  # [B, 8] code columns
    assert torch.equal(given[:, :64].reshape(6, 8, 8), patch_seen[:, None, :].expand(6, 8, 8))
    with pytest.raises(ValueError, match=r"visible: expected a bool mask \[1 or 6, 1, 16, 32, 32\]"):
        tok.encode_visible(x, everything[:, :, :8])
