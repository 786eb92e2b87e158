"""Motion tokenizer: the DeepMimic clips, 6-D features, FK from the URDF, RVQ / grouped FSQ tokens, save/load, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("pybullet_data")

from ddm.config import ConfigError, TrainConfig  # noqa: E402
from tokenizers_vq import TokenStream, load_tokenizer  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402
from tokenizers_vq.data.motion import (FEATURE_DIM, MotionDataConfig, build_motion_data, clip_files,  # noqa: E402
                                       features_to_pose, joint_positions, load_clips, mirror, pose_to_features,
                                       read_keyframes, resample)
from tokenizers_vq.kinematics import URDF_SCALE, geodesic_angle, load_skeleton, yaw_matrix  # noqa: E402
from tokenizers_vq.motion import MotionTokenizer, MotionTokenizerConfig  # noqa: E402
from tokenizers_vq.quantizers import QuantizerConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = MotionDataConfig(clips=["walk", "run", "jump"], window=8, stride=2, yaw_copies=2)


@pytest.fixture(scope="module")
def skel():
    return load_skeleton()


@pytest.fixture(scope="module")
def small_data():
    return build_motion_data(SMALL)


def tiny_tokenizer() -> MotionTokenizer:
    torch.manual_seed(0)
    return MotionTokenizer(MotionTokenizerConfig(channels=16, latent_dim=8, downsample=4, blocks=1, quantizer=QuantizerConfig(
        kind="rvq", codebook_size=16, num_quantizers=2)))


# --------------------------------------------------------------------------- data and kinematics


def test_clips_resampled_to_one_rate():
    files = clip_files()
    assert len(files) == 15 and "walk" in files and "backflip" in files
    frames = read_keyframes(files["backflip"])  # recorded at 16 fps
    pose = resample(frames, 30.0)
    span = float(frames[:-1, 0].sum())
    assert len(pose) == math.floor(span * 30 + 1e-6) + 1
    # key frames are reproduced where the new clock meets them (t = 0 and t = 0.5 s = key frame 8)
    assert torch.allclose(pose.root_pos[0], frames[0, 1:4])
    assert torch.allclose(pose.root_pos[15], frames[8, 1:4], atol=1e-9)
    assert torch.allclose(pose.hinge[15, 0], frames[8, 20], atol=1e-9)  # right knee


def test_features_round_trip_and_yaw(skel):
    pose = resample(read_keyframes(clip_files()["kick"]), 30.0)
    x = pose_to_features(pose, yaw=0.7)
    assert x.shape == (len(pose), FEATURE_DIM)
    assert torch.allclose(x[0, [0, 2]], torch.zeros(2, dtype=x.dtype))  # ground position relative to frame 0
    back = features_to_pose(x)
    assert torch.allclose(back.ball, pose.ball, atol=1e-9) and torch.allclose(back.hinge, pose.hinge, atol=1e-9)
    turn = yaw_matrix(torch.tensor(0.7, dtype=x.dtype))
    assert torch.allclose(back.root_rot, turn @ pose.root_rot, atol=1e-9)
    # a turn about the vertical axis moves the body, not its shape: joint positions relative to the root turn too
    pos, _ = joint_positions(skel, pose)
    pos_turned, _ = joint_positions(skel, back)
    rel, rel_turned = pos - pos[..., :1, :], pos_turned - pos_turned[..., :1, :]
    assert torch.allclose(rel @ turn.T, rel_turned, atol=1e-9)


def test_skeleton_and_forward_kinematics(skel):
    assert len(skel.names) == 15 and skel.names[0] == "root"
    assert all(skel.parents[j] < j for j in range(1, 15))
    # rest pose: the right ankle hangs below the right hip by thigh + shank, in metres
    rest = torch.eye(3, dtype=torch.float64).expand(1, 15, 3, 3)
    from tokenizers_vq.kinematics import forward_kinematics
    pos, _ = forward_kinematics(skel, torch.zeros(1, 3, dtype=torch.float64), rest)
    ankle = pos[0, skel.index("right_ankle")]
    expected = torch.tensor([0.0, -(1.686184 + 1.639480), 0.339548], dtype=torch.float64) * URDF_SCALE
    assert torch.allclose(ankle, expected, atol=1e-6)
    # walking: bones keep their lengths and a foot touches the ground in every frame
    pose = resample(read_keyframes(clip_files()["walk"]), 30.0)
    pos, _ = joint_positions(skel, pose)
    knee, ankle = skel.index("right_knee"), skel.index("right_ankle")
    shank = (pos[:, knee] - pos[:, ankle]).norm(dim=-1)
    assert torch.allclose(shank, torch.full_like(shank, 1.639480 * URDF_SCALE), atol=1e-6)
    lowest_ankle = pos[:, [ankle, skel.index("left_ankle")], 1].min(dim=1).values
    assert (lowest_ankle > 0.0).all() and (lowest_ankle < 0.15).all()


def test_mirror_reflects_the_body(skel):
    pose = resample(read_keyframes(clip_files()["kick"]), 30.0)
    pos, _ = joint_positions(skel, pose)
    pos_m, _ = joint_positions(skel, mirror(pose))
    side = {n: n.replace("right_", "L_").replace("left_", "right_").replace("L_", "left_") for n in skel.names}
    swapped = pos[:, [skel.index(side[n]) for n in skel.names]]
    assert torch.allclose(pos_m, swapped * torch.tensor([1.0, 1.0, -1.0], dtype=pos.dtype), atol=1e-9)


def test_splits_do_not_cross(small_data):
    clips = load_clips(SMALL)
    train, heldout = small_data["train"], small_data["heldout"]
    expected = sum(len(range(0, len(tr) - SMALL.window + 1, SMALL.stride)) for tr, _ in clips.values())
    assert len(train) == expected * SMALL.yaw_copies * 2  # x2: mirrored twins
    assert tuple(train[0]["x"].shape) == (SMALL.window, FEATURE_DIM)
    assert len(heldout) == 3 and sorted(heldout["clip"]) == ["jump", "run", "walk"]
    for row in heldout:
        _, held = clips[row["clip"]]
        assert len(row["x"]) == len(held)  # whole held-out parts, never cut into training windows
    # the held-out part starts after the last training key frame
    frames = read_keyframes(clip_files()["walk"])
    train_part, held_part = clips["walk"]
    assert len(train_part) + len(held_part) <= len(resample(frames, 30.0)) + 1


# --------------------------------------------------------------------------- the tokenizer


def test_train_save_load_identical_ids(small_data, tmp_path):
    tok = tiny_tokenizer()
    cfg = TrainConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=2, log_every=50, checkpoint_every=0,
                      progress=False)
    tok.fit(small_data["train"], cfg, tmp_path / "run")
    assert tok.feature_std.min() >= 0.05  # fitted statistics, saved with the weights
    x = torch.stack([small_data["train"][i]["x"] for i in range(4)])
    stream = tok.encode(x)
    assert isinstance(stream, TokenStream) and stream.shape == (2, 2)  # 8 frames / 4, 2 levels
    assert int(stream.ids[..., 0].max()) < 16 and int(stream.ids[..., 1].min()) >= 16  # one vocabulary
    assert tuple(tok.decode(stream).shape) == (4, 8, FEATURE_DIM)
    assert torch.equal(tok.decode(stream), tok.decode(stream.flat()))

    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, MotionTokenizer)
    assert torch.equal(again.encode(x).ids, stream.ids)
    assert torch.allclose(again.decode(stream), tok.decode(stream))

    metrics = tok.evaluate(small_data["heldout"])
    assert {"usage_0", "perplexity_1", "root_position_error_cm"} <= set(metrics)
    # A short fit of a small tokenizer on the walk / run / jump windows: held-out joint rotations
    # within 16 degrees (13.7 measured; 17.5 after 20 steps) and joints within 40 cm after forward
    # kinematics (33.9). The README's tokenizer: 3.60 degrees (`ddm train --config configs/tokenizers/motion.yaml`).
    assert metrics["rotation_error_deg"] < 16.0 and metrics["joint_position_error_cm"] < 40.0
    assert metrics["heldout_frames"] == sum(len(r["x"]) for r in small_data["heldout"])
    pictures = tok.save_pictures(small_data["heldout"], tmp_path / "pics", clips=2, frames=2)
    assert pictures[0].suffix == ".png" and pictures[0].stat().st_size > 1000


def test_grouped_residual_fsq_ids(small_data, tmp_path):
    # The shipped quantizer kind: groups x residual levels of a fixed grid, ids in one vocabulary.
    torch.manual_seed(0)
    tok = MotionTokenizer(MotionTokenizerConfig(channels=16, latent_dim=8, downsample=2, blocks=1,
                                                quantizer=QuantizerConfig(kind="rfsq", levels=[4, 3], groups=2,
                                                                          num_quantizers=2))).eval()
    x = torch.stack([small_data["train"][i]["x"] for i in range(3)])
    stream = tok.encode(x)
    assert stream.shape == (4, 4) and tok.vocab_size == 4 * 12  # 8 frames / 2; 2 groups x 2 levels of 12 codes
    slot = stream.ids // 12
    assert torch.equal(slot, torch.arange(4).expand_as(slot))  # token q of a step lies in [12 q, 12 (q + 1))
    assert tuple(tok.decode(stream).shape) == (3, 8, FEATURE_DIM)
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert torch.equal(again.encode(x).ids, stream.ids)
    assert torch.allclose(again.decode(stream), tok.decode(stream))
    with pytest.raises(ConfigError, match="groups"):
        MotionTokenizer(MotionTokenizerConfig(latent_dim=8, quantizer=QuantizerConfig(kind="rfsq", groups=3)))


def test_perfect_reconstruction_scores_zero(small_data):
    # The metrics themselves: identical poses give zero error (checks the geodesic and FK plumbing).
    pose = features_to_pose(small_data["heldout"][0]["x"].double())
    assert float(geodesic_angle(pose.ball, pose.ball).max()) < 1e-6


def test_bad_input_is_named():
    tok = tiny_tokenizer().eval()
    with pytest.raises(ValueError, match=r"\[B, T, 65\].*\(2, 8, 64\)"):
        tok.encode(torch.zeros(2, 8, 64))
    with pytest.raises(ValueError, match="multiple of tokenizer.downsample=4"):
        tok.encode(torch.zeros(1, 6, FEATURE_DIM))
    x = torch.zeros(1, 8, FEATURE_DIM)
    x[0, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(x)
    with pytest.raises(TypeError, match="tensor"):
        tok.encode([[0.0] * FEATURE_DIM])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode(torch.full((1, 2, 2), tok.vocab_size))
    with pytest.raises(ValueError, match="level"):
        tok.decode(torch.tensor([[[20, 3]]]))  # a level-1 id in the level-0 slot
    with pytest.raises(TypeError, match="integer"):
        tok.decode(torch.zeros(1, 2, 2))


def test_config_file_and_bad_config():
    cfg = load_experiment(REPO / "configs" / "tokenizers" / "motion.yaml")
    assert cfg.task.kind == "motion" and cfg.tokenizer.quantizer.kind == "rfsq"
    tok = MotionTokenizer(cfg.tokenizer)
    q = cfg.tokenizer.quantizer
    assert tok.vocab_size == q.groups * q.num_quantizers * 1000  # one 8x5x5x5 grid per group and level
    with pytest.raises(ConfigError, match="downsample"):
        MotionTokenizerConfig(downsample=3)
    with pytest.raises(ValueError, match="unknown clip 'moonwalk'"):
        clip_files(names=["moonwalk"])


def test_foot_term_on_known_motion(small_data):
    from tokenizers_vq.data.motion import ROOT_POS
    from tokenizers_vq.motion import foot_error

    x = torch.stack([small_data["train"][i]["x"] for i in range(3)])
    assert float(foot_error(x, x)) == 0.0
    # The body sliding 1 cm a frame along x: each foot's motion is off by (1, 0, 0) cm per frame,
    # its height not at all.
    slid = x.clone()
    slid[..., ROOT_POS.start] += 0.01 * torch.arange(x.shape[1], dtype=x.dtype)
    assert float(foot_error(x, slid)) == pytest.approx(1 / 3, rel=1e-3)
    # The body 1 cm lower throughout: the feet move as before, 1 cm too low.
    sunk = x.clone()
    sunk[..., ROOT_POS.start + 1] -= 0.01
    assert float(foot_error(x, sunk)) == pytest.approx(0.0, abs=1e-6)
    assert float(foot_error(x, sunk, height=0.5)) == pytest.approx(0.5, rel=1e-3)
    # The contact term counts the planted foot-frames only: 1 cm squared on that share of them.
    from tokenizers_vq.data.motion import features_to_pose, foot_positions, joint_positions
    from tokenizers_vq.kinematics import load_skeleton

    skel = load_skeleton()
    planted = float((foot_positions(skel, *joint_positions(skel, features_to_pose(x)))[..., 1] * 100 < 5).float().mean())
    assert 0 < planted < 1
    assert float(foot_error(x, sunk, contact=2.0)) == pytest.approx(2.0 * planted, rel=1e-3)
    raised = x.clone()  # swing feet alone 1 cm higher would cost nothing; the whole body costs the planted share
    raised[..., ROOT_POS.start + 1] += 0.01
    assert float(foot_error(x, raised, contact=1.0)) == pytest.approx(planted, rel=1e-3)
    # The term joins the feature error at its weight, and its gradient reaches the features.
    plain, footed = tiny_tokenizer(), MotionTokenizer(MotionTokenizerConfig(
        channels=16, latent_dim=8, downsample=4, blocks=1, foot_weight=0.5,
        quantizer=QuantizerConfig(kind="rvq", codebook_size=16, num_quantizers=2)))
    slid.requires_grad_(True)
    loss = footed.reconstruction_loss(x, slid)
    assert float(loss.detach()) == pytest.approx(float(plain.reconstruction_loss(x, slid.detach())) + 0.5 / 3, rel=1e-3)
    loss.backward()
    assert float(slid.grad[..., ROOT_POS.start].abs().sum()) > 0


def test_bad_foot_weight_and_upsampling_are_named():
    with pytest.raises(ConfigError, match="tokenizer.foot_weight"):
        MotionTokenizerConfig(foot_weight=-1.0)
    with pytest.raises(ConfigError, match="tokenizer.foot_height"):
        MotionTokenizerConfig(foot_height=-0.5)
    with pytest.raises(ConfigError, match="tokenizer.foot_contact"):
        MotionTokenizerConfig(foot_contact=-0.5)
    with pytest.raises(ConfigError, match="tokenizer.upsample.*'cubic'"):
        MotionTokenizerConfig(upsample="cubic")
    linear = MotionTokenizer(MotionTokenizerConfig(channels=16, latent_dim=8, downsample=4, blocks=1, upsample="linear",
                                                   quantizer=QuantizerConfig(kind="rvq", codebook_size=16))).eval()
    assert tuple(linear.decode(linear.encode(torch.zeros(2, 8, FEATURE_DIM))).shape) == (2, 8, FEATURE_DIM)


def test_the_velocity_term_charges_jitter_that_the_feature_error_barely_sees():
    def with_velocity(weight: float) -> MotionTokenizer:
        return MotionTokenizer(MotionTokenizerConfig(
            channels=16, latent_dim=8, downsample=4, blocks=1, velocity_weight=weight,
            quantizer=QuantizerConfig(kind="rvq", codebook_size=16, num_quantizers=2)))

    plain, weighted = with_velocity(0.0), with_velocity(2.0)
    x = torch.randn(2, 8, FEATURE_DIM)
    # a constant offset has no velocity error; an alternating one of the same size has a large one
    offset = torch.full((1, 1, FEATURE_DIM), 0.1) * plain.feature_std
    shifted = x + offset
    jittered = x + offset * torch.tensor([1.0, -1.0] * 4)[None, :, None]
    assert float(plain.reconstruction_loss(x, shifted)) == pytest.approx(float(plain.reconstruction_loss(x, jittered)))
    assert float(weighted.reconstruction_loss(x, shifted)) == pytest.approx(float(plain.reconstruction_loss(x, shifted)))
    # each frame-to-frame change is off by 0.2 standard units: 0.04 squared, at weight 2
    assert float(weighted.reconstruction_loss(x, jittered)) == pytest.approx(
        float(plain.reconstruction_loss(x, jittered)) + 2.0 * 0.04, rel=1e-4)
    with pytest.raises(ConfigError, match="tokenizer.velocity_weight"):
        MotionTokenizerConfig(velocity_weight=-1.0)
