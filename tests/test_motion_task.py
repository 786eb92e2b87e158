"""The motion task: its metrics on known motions, its checks of bad input, and a tiny end-to-end run."""

import math

import pytest
import torch

from tasks.motion.data import SENTENCES, canonical, check_sentences, label_ids, load_splits, windows
from tasks.motion.importance import rank01, velocity_importance
from tasks.motion.inbetween import blend_seams, ends_kept, token_mask
from tasks.motion.kin import body_points
from tasks.motion.metrics import JointRanges, foot_skating, ground_penetration, mean_pairwise_distance
from tokenizers_vq.data.motion import MotionDataConfig, pose_to_features

FPS = 30.0


@pytest.fixture(scope="module")
def splits():
    return load_splits(MotionDataConfig())


@pytest.fixture(scope="module")
def standing(splits):
    """One real frame of the punch with both feet on the ground, as a [1, 65] feature row."""
    punch = pose_to_features(splits.train[splits.names.index("punch")]).float()
    _, feet = body_points(punch[None])
    both = feet[0, :, :, 1].amax(-1)  # the higher foot's centre, per frame
    assert both.min() < 0.04
    return punch[int(both.argmin())][None]


def frozen(pose: torch.Tensor, frames: int = 16, speed: float = 0.0) -> torch.Tensor:
    """[1, frames, 65]: one pose held still, its root slid along x at `speed` m/s."""
    x = pose.expand(frames, -1).clone()
    x[:, 0] += torch.arange(frames) * speed / FPS
    return x[None]


# ---------------------------------------------------------------- metrics on known motion


def test_foot_skating_is_zero_for_a_still_pose_and_the_slide_speed_for_a_sliding_one(standing):
    still = foot_skating(frozen(standing), FPS)
    assert still["contact"] == 1.0 and still["skating_cm_s"] == pytest.approx(0.0, abs=1e-6)
    slide = foot_skating(frozen(standing, speed=0.5), FPS)
    assert slide["skating_cm_s"] == pytest.approx(50.0, rel=1e-4)  # both planted feet slide at 0.5 m/s
    lifted = frozen(standing)
    lifted[..., 1] += 0.5  # half a metre up: no foot touches the ground, so nothing can skate
    assert foot_skating(lifted, FPS) == {"skating_cm_s": 0.0, "contact": 0.0}


def test_real_walking_skates_far_less_than_the_same_walk_dragged_along(splits):
    walk, _ = windows([splits.train[splits.names.index("walk")]], 16)
    real = foot_skating(walk, FPS)["skating_cm_s"]
    dragged = walk.clone()
    dragged[..., 0] += torch.arange(16) * 1.0 / FPS  # the whole body pushed along x at 1 m/s on top
    assert foot_skating(dragged, FPS)["skating_cm_s"] > real + 50


def test_ground_penetration_is_zero_standing_and_the_depth_when_sunk(standing):
    assert ground_penetration(frozen(standing)) == {"penetration_cm": 0.0, "penetrating": 0.0}
    sunk = frozen(standing)
    _, feet = body_points(sunk)
    lowest = float(feet[0, 0, :, 1].min())
    sunk[..., 1] -= lowest + 0.10  # the lowest foot centre 10 cm below the floor
    out = ground_penetration(sunk)
    assert out["penetrating"] == 1.0 and out["penetration_cm"] >= 10.0 - 1e-4


def test_joint_limits_accept_the_training_poses_and_catch_a_knee_bent_backwards(splits):
    train = torch.cat([pose_to_features(p).float() for p in splits.train])[None]
    ranges = JointRanges.fit(train)
    assert ranges.violations(train) == 0.0
    bent = train[:, :20].clone()
    knee = 57  # the first hinge's (cos, sin): right knee
    bent[..., knee], bent[..., knee + 1] = math.cos(2.5), math.sin(2.5)  # +143 degrees: the wrong way
    assert ranges.violations(bent) == 1.0


def test_diversity_is_zero_for_a_frozen_pose_repeated(standing):
    feats = frozen(standing, 4).reshape(4, -1)
    assert mean_pairwise_distance(feats, torch.zeros(4, dtype=torch.long)) == 0.0


def test_canonical_removes_heading_and_ground_offset(splits):
    part = splits.train[0].slice(0, 8)
    a, b = pose_to_features(part, 0.3).float(), pose_to_features(part, 2.1).float()
    assert not torch.allclose(a, b, atol=1e-3)
    torch.testing.assert_close(canonical(a[None]), canonical(b[None]), atol=1e-4, rtol=0)
    assert canonical(a[None])[0, 0, [0, 2]].abs().max() < 1e-6


def test_importance_ranks_the_moving_steps_above_the_still_ones(standing, splits):
    assert rank01(torch.tensor([[3.0, 1.0, 2.0, 2.0]])).tolist() == [[1.0, 0.0, 0.5, 0.5]]
    run, _ = windows([splits.train[splits.names.index("run")]], 8, mirrored=False)
    x = torch.cat([frozen(standing, 8), run[:1]], 1)  # 8 still frames, then 8 running ones
    imp = velocity_importance(x, downsample=4, tokens_per_step=3, fps=FPS)
    assert imp.shape == (1, 12) and imp.min() >= 0 and imp.max() <= 1
    assert imp[0, :3].eq(imp[0, 0]).all()  # every token of a step shares its score
    assert imp[0, 6:].min() > imp[0, :6].max()


# ---------------------------------------------------------------- bad input


def test_labels_and_sentences_are_checked():
    names = ["run", "walk"]
    assert label_ids(["walk", "run", 1], names).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="unknown action label 'moonwalk'; known: run, walk"):
        label_ids(["walk", "moonwalk"], names)
    with pytest.raises(ValueError, match=r"class 5 is unknown"):
        label_ids([5], names)
    with pytest.raises(ValueError, match=r"sentences\[1\]: an empty sentence"):
        check_sentences(["A person walks.", "   "])
    with pytest.raises(ValueError, match="no sentence"):
        check_sentences([])
    assert set(SENTENCES) == set(load_splits(MotionDataConfig()).names)  # every clip has its sentence


def test_inbetween_masks_must_hide_something_and_keep_something():
    hidden = ends_kept(2, 16, 4)
    assert hidden[:, 4:12].all() and not hidden[:, :4].any() and not hidden[:, 12:].any()
    generated = token_mask(hidden, downsample=4, tokens_per_step=8)
    assert generated.shape == (2, 32) and generated[:, 8:24].all() and not generated[:, :8].any()
    with pytest.raises(ValueError, match="hides no frame"):
        token_mask(torch.zeros(1, 16, dtype=torch.bool), 4, 8)
    with pytest.raises(ValueError, match="hides every token step"):
        token_mask(torch.ones(1, 16, dtype=torch.bool), 4, 8)
    sparse = torch.zeros(1, 16, dtype=torch.bool)
    sparse[0, [1, 5, 9, 13]] = True  # one hidden frame in every step: every token is generated
    with pytest.raises(ValueError, match="hides every token step"):
        token_mask(sparse, 4, 8)
    with pytest.raises(ValueError, match="leaves nothing between"):
        ends_kept(1, 16, 8)


def test_blending_the_seams_removes_a_decoder_error_that_is_linear_in_time():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 5, generator=g)
    hidden = ends_kept(2, 16, 4)
    a, b = torch.randn(2, 1, 5, generator=g), torch.randn(2, 1, 5, generator=g)
    drift = a + (b - a) * torch.linspace(0, 1, 16)[None, :, None]  # an error that drifts from a to b
    torch.testing.assert_close(blend_seams(x + drift, x, hidden), x)  # gone in the gap, the kept frames as given
    noise = torch.randn(2, 16, 5, generator=g)  # what the decoder gets wrong beyond its seams stays
    w = torch.arange(1, 9)[None, :, None] / 9  # frames 4..11 between the kept frames 3 and 12
    torch.testing.assert_close(blend_seams(x + drift + noise, x, hidden)[:, 4:12],
                               (x + noise)[:, 4:12] - torch.lerp(noise[:, 3:4], noise[:, 12:13], w))
    tail = torch.zeros(1, 16, dtype=torch.bool)
    tail[0, 10:] = True  # a gap that reaches the end takes the error of the one kept frame before it
    out = blend_seams(x[:1] + drift[:1], x[:1], tail)
    torch.testing.assert_close(out[0, 10:], x[0, 10:] + drift[0, 10:] - drift[0, 9])
    everything = hidden.clone()
    everything[1] = True
    with pytest.raises(ValueError, match="row 1 hides every frame"):
        blend_seams(x, x, everything)


# ---------------------------------------------------------------- end to end on a tiny slice


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """3 clips, a tiny untrained tokenizer, a 1-layer model: the task's whole path in seconds."""
    from ddm.experiment import load_experiment
    from ddm.task import build_task
    from tokenizers_vq.motion import MotionTokenizer, MotionTokenizerConfig
    from tokenizers_vq.quantizers import QuantizerConfig

    root = tmp_path_factory.mktemp("motion")
    torch.manual_seed(0)
    MotionTokenizer(MotionTokenizerConfig(channels=8, latent_dim=6, downsample=4, blocks=1, quantizer=QuantizerConfig(
        kind="rfsq", groups=2, levels=[3, 3, 3], num_quantizers=1))).save_pretrained(root / "tok")
    (root / "tok.yaml").write_text("task: {name: tokenizer, kind: motion}\n"
                                   "data: {clips: [walk, run, spin], yaw_copies: 1}\n")

    def make(*overrides):
        cfg = load_experiment("configs/tasks/motion_cpu.yaml", [
            f"task.tokenizer_path={root / 'tok'}", f"task.tokenizer_config={root / 'tok.yaml'}",
            "model.vocab_size=27", "model.shape=[4,2]", "model.num_classes=3", "model.d_model=32", "model.depth=1",
            "train.steps=20", "train.log_every=10", "train.checkpoint_every=0", "task.classifier_steps=30",
            "task.samples_per_class=2", "task.eval_steps=[2]", "sample.num_samples=6", "task.gif_motions=3",
            "sample.batch_size=64",
            f"run_dir={root / 'run'}", *overrides])
        task = build_task(cfg)
        task.prepare()
        return task

    return make


def test_the_task_refuses_a_model_that_does_not_fit_its_tokenizer_or_data(tiny_task):
    from ddm.config import ConfigError

    with pytest.raises(ConfigError, match=r"expected vocab_size=27 \(codes per group\) and shape=\[4, 2\]"):
        tiny_task("model.vocab_size=64")
    with pytest.raises(ConfigError, match="not a multiple of the tokenizer's downsample"):
        tiny_task("task.frames=10")
    with pytest.raises(ConfigError, match="the data has 3 clips"):
        tiny_task("model.num_classes=4")


def test_the_task_trains_samples_and_evaluates_end_to_end(tiny_task, capsys):
    task = tiny_task()
    data = task.train_dataset()
    assert set(data.column_names) == {"ids", "classes", "importance"}
    assert data[0]["ids"].shape == (8,) and int(data[:]["ids"].max()) < 27
    x = task.train_x[:3]
    torch.testing.assert_close(task.decode(task.encode(x)).shape, x.shape)
    task.train()
    model = task.load_model()

    motion, result, _ = task.generate_motion(model, ["walk", "spin"], frames=10, steps=2)
    assert motion.shape == (2, 10, 65) and result.ids.shape == (2, 8)
    with pytest.raises(ValueError, match=r"frames: 17 frames \(0.57 s\) is longer than this model's window of 16"):
        task.generate_motion(model, ["walk"], frames=17)
    with pytest.raises(ValueError, match="unknown action label 'backflip'; known: walk, run, spin"):
        task.generate_motion(model, ["backflip"])
    with pytest.raises(ValueError, match=r"sentences\[0\]: an empty sentence"):
        task.generate_from_text(model, [""])

    filled, hidden, _ = task.inbetween(model, x, ["walk"] * 3, steps=2)
    kept = ~hidden
    torch.testing.assert_close(filled[kept], x[kept])  # the kept frames come back as given
    with pytest.raises(ValueError, match="hides no frame"):
        task.inbetween(model, x, ["walk"] * 3, hidden=torch.zeros(3, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="hides every token step"):
        task.inbetween(model, x, ["walk"] * 3, hidden=torch.ones(3, 16, dtype=torch.bool))

    sampled = task.sample()  # `ddm sample`: the base task's path (sample_conditions, sample_metrics)
    assert sampled["samples"] == task.config.sample.num_samples and 0.0 <= sampled["accuracy"] <= 1.0

    metrics = task.evaluate()
    out = capsys.readouterr().out
    for row in ("real held-out motion", "real training windows", "tokenizer reconstructions, held-out",
                "tokenizer reconstructions, training", "priority 1, 2 steps",
                "uniform masking, 2 steps", "autoregressive", "text, unseen paraphrases, 2 steps", "in-betweening",
                "diffusion, seams blended", "diffusion, as decoded", "tokenizer reconstruction, seams blended",
                "linear interpolation of the kept frames"):
        assert row in out
    assert metrics["inbetween/tokenizer_seam_cm"] < metrics["inbetween/tokenizer_unblended_seam_cm"]
    assert 0.0 <= metrics["classifier/heldout_accuracy"] <= 1.0
    assert metrics["autoregressive/nfe"] == 16.0  # 8 tokens, x2 with guidance
    for name in ("samples.gif", "inbetween.gif", "samples_text_paraphrases.gif"):
        assert (task.run_dir / name).stat().st_size > 1000


def test_real_motion_scores_near_the_floor_and_a_frozen_pose_does_not(tiny_task, tmp_path):
    task = tiny_task(f"run_dir={tmp_path / 'judged'}", "task.classifier_steps=200")
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(task.train_x), generator=g)[:90]
    x, y = task.train_x[pick], task.train_y[pick]
    real = task.quality(x, y)
    assert real["accuracy"] > 0.9  # the judge knows its own training motion
    still = x[:, :1].expand_as(x).clone()  # each window's first pose held for the whole window
    frozen = task.quality(still, y)
    assert frozen["frechet"] > 3 * real["frechet"]
    copies = task.quality(x[:1].expand(10, -1, -1), y[:1].expand(10))  # one motion generated ten times
    assert copies["diversity"] == pytest.approx(0.0, abs=1e-4) and real["diversity"] > 0.1
    assert frozen["skating_cm_s"] == pytest.approx(0.0, abs=1e-6)
    noisy = x + 0.3 * torch.randn(x.shape, generator=g)  # jittered poses: feet slide and joints leave their range
    shaky = task.quality(noisy, y)
    assert shaky["skating_cm_s"] > 3 * real["skating_cm_s"] and shaky["limits"] > real["limits"] + 0.5
