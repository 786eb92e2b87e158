"""The video task: its four uses as masks, its metrics on known inputs, the training context,
and one tiny model trained and evaluated end to end."""

import pytest
import torch

from tasks.video import metrics
from tasks.video.uses import draw_training_context, given_pixels, given_tokens

GRID = (4, 8, 8)


def test_each_use_gives_what_it_says():
    assert not given_tokens("generation", GRID, 1, 4).any()
    pred = given_tokens("prediction", GRID, 1, 4).reshape(GRID)
    assert pred[0].all() and not pred[1:].any()
    interp = given_tokens("interpolation", GRID, 1, 4).reshape(GRID)
    assert interp[0].all() and interp[-1].all() and not interp[1:-1].any()
    comp = given_tokens("completion", GRID, 1, 4).reshape(GRID)
    assert int((~comp).sum()) == 4 * 16 and not comp[:, 2:6, 2:6].any() and comp[:, :2].all()
    moved = given_tokens("completion", GRID, 1, 2, corner=(0, 6)).reshape(GRID)
    assert not moved[:, 0:2, 6:8].any() and int((~moved).sum()) == 16
    # token masks become pixel masks of the frames and pixels the tokens cover
    pixels = given_pixels(given_tokens("prediction", GRID, 1, 4), GRID, frames_per_step=4, pixels_per_token=4)
    assert pixels.shape == (1, 16, 32, 32) and pixels[:, :4].all() and not pixels[:, 4:].any()


@pytest.mark.parametrize("use, context, hole, match", [
    ("prediction", 0, 4, "0 gives no context"),
    ("prediction", 4, 4, "leaves nothing to predict"),
    ("interpolation", 2, 4, "something left between"),
    ("completion", 1, 0, "0 hides nothing"),
    ("completion", 1, 8, "leaves no context"),
    ("sketching", 1, 4, "unknown use 'sketching'; known: generation, prediction"),
])
def test_a_mask_that_hides_nothing_or_everything_is_refused(use, context, hole, match):
    with pytest.raises(ValueError, match=match):
        given_tokens(use, GRID, context, hole)


def test_training_contexts_cover_the_uses_and_follow_the_seed():
    uses = ["generation", "prediction", "interpolation", "completion"]
    draw = draw_training_context(uses, GRID, 1, 4, 64, torch.Generator().manual_seed(0))
    again = draw_training_context(uses, GRID, 1, 4, 64, torch.Generator().manual_seed(0))
    assert torch.equal(draw, again)
    counts = draw.sum(1)
    assert set(counts.tolist()) == {0, 64, 128, 192}  # nothing, one step, two steps, all but a 4x4 hole
    holes = draw[counts == 192].reshape(-1, *GRID)
    assert len({tuple((~h[0]).nonzero()[0].tolist()) for h in holes}) > 1  # the hole moves in training


def test_context_tokens_stay_visible_and_are_never_a_target():
    from ddm.config import DiffusionConfig
    from ddm.objectives import DiffusionObjective, corrupt_batch
    from ddm.process import MaskingProcess
    from ddm.schedules import get_schedule

    process = MaskingProcess(get_schedule("linear"), mask_id=16)
    ids = torch.randint(0, 16, (8, 32), generator=torch.Generator().manual_seed(0))
    context = torch.zeros(8, 32, dtype=torch.bool)
    context[:, :10] = True
    t = torch.full((8,), 0.999)
    xt, masked = corrupt_batch(process, {"ids": ids, "context": context}, t, torch.Generator().manual_seed(1))
    assert torch.equal(xt[:, :10], ids[:, :10]) and not masked[:, :10].any() and masked[:, 10:].float().mean() > 0.9
    with pytest.raises(ValueError, match="context: expected a bool mask"):
        corrupt_batch(process, {"ids": ids, "context": context[:, :5]}, t, torch.Generator().manual_seed(1))

    class Recorder(torch.nn.Module):  # a "model" whose logits reward exactly the true ids
        def forward(self, xt, t=None, cond=None, values=None):
            from types import SimpleNamespace
            self.seen = xt
            logits = torch.full((*xt.shape, 16), -30.0)
            logits.scatter_(-1, ids[..., None], 30.0)
            logits[:, :10] = 0.0  # the context positions predict nothing: a target there would cost log 16
            return SimpleNamespace(logits=logits, continuous=None)

    objective = DiffusionObjective(process, DiffusionConfig(schedule="linear", weighting="flat"))
    loss, _ = objective(Recorder(), {"ids": ids, "context": context}, torch.Generator().manual_seed(2))
    assert float(loss) < 1e-6


def test_psnr_ssim_and_the_baselines_on_known_videos():
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 1, 6, 16, 16, generator=g)
    assert torch.allclose(metrics.psnr(video, video), torch.full((2,), 100.0))
    assert torch.allclose(metrics.ssim(video, video), torch.ones(2), atol=1e-5)
    noisy = (video + 0.1 * torch.randn(video.shape, generator=g)).clamp(0, 1)
    assert (metrics.ssim(noisy, video) < 0.99).all()
    half = video.clone()
    half[:, :, 3:] = 0.5 * video[:, :, 3:]  # an error in the last three frames only
    where = torch.zeros(1, 1, 6, 1, 1, dtype=torch.bool)
    where[:, :, :3] = True
    assert torch.allclose(metrics.psnr(half, video, where), torch.full((2,), 100.0))  # scored where it is right
    # a still video: copying the last given frame is exact; a video of copies scores the copy baseline
    still = video[:, :, :1].expand(-1, -1, 6, -1, -1).clone()
    assert torch.equal(metrics.copy_last_frame(still, 2), still)
    copied = metrics.copy_last_frame(video, 2)
    assert torch.equal(metrics.psnr(copied, video), metrics.psnr(metrics.copy_last_frame(video, 2), video))
    assert torch.equal(copied[:, :, 2:], video[:, :, 1:2].expand(-1, -1, 4, -1, -1))
    # a linear cross-fade between the given ends is what the blend rebuilds exactly
    a, b = video[:, :, 0], video[:, :, 1]
    fade = torch.stack([a, a] + [a + (b - a) * (i / 3) for i in (1, 2)] + [b, b], 2)
    assert torch.allclose(metrics.linear_blend(fade, 2), fade, atol=1e-6)
    with pytest.raises(ValueError, match=r"grey videos \[B, 1, T, H, W\]"):
        metrics.psnr(video[:, 0], video[:, 0])


def test_digit_crops_find_the_digit_and_identity_counts_changes():
    sprite = torch.zeros(8, 8)
    sprite[2:6, 3:5] = 1.0  # a bar
    video = torch.zeros(1, 1, 3, 20, 20)
    for f, (y, x) in enumerate([(0, 0), (5, 7), (12, 12)]):
        video[0, 0, f, y:y + 8, x:x + 8] = sprite
    crops = metrics.digit_crops(video, 8, out_size=8)
    assert crops.shape == (3, 1, 8, 8)
    for c in crops:  # the window with the most ink holds the whole bar
        assert float(c.sum()) == pytest.approx(float(sprite.sum()))
    assert metrics.identity_kept(torch.tensor([3, 3, 3, 3, 1, 3]), 3).tolist() == [True, False]
    assert metrics.majority(torch.tensor([3, 3, 5, 1, 1, 2]), 3).tolist() == [3, 1]


def train_tiny(root, tokenizer_config: str, tokenizer: dict, task_config: str, overrides: list[str]):
    """A tiny tokenizer (the config's, with `tokenizer` changed), model and judge trained through the
    experiment front end on 8-frame 16x16 videos, then evaluated: (task, metrics)."""
    import yaml

    from ddm.experiment import load_experiment
    from ddm.task import build_task

    tok = yaml.safe_load(open(tokenizer_config))
    tok["tokenizer"].update(frames=8, image_size=16, width=16, latent_dim=4,
                            quantizer={"kind": "vq", "codebook_size": 16, "kmeans_init": False}, **tokenizer)
    tok["data"].update(num_train=48, num_heldout=8, frames=8, size=16, digit_size=8)
    tok["train"].update(steps=5, batch_size=8, log_every=5)
    (root / "tok.yaml").write_text(yaml.safe_dump(tok))
    cfg = load_experiment(task_config, [
        f"task.tokenizer_config={root / 'tok.yaml'}", "task.eval_videos=6", "task.eval_steps=4",
        "task.context_frames=2", "task.classifier_steps=20", "task.hole_pixels=8", "model.d_model=32",
        "model.depth=1", "train.steps=8", "train.batch_size=8", "train.log_every=4", "train.checkpoint_every=0",
        "train.eval_every=0", f"run_dir={root / 'run'}", *overrides])
    task = build_task(cfg)
    task.prepare()
    task.train()
    return task, task.evaluate()


@pytest.fixture(scope="module")
def tiny_video_run(tmp_path_factory):
    """The spatio-temporal grid tokenizer's tiny run."""
    return train_tiny(tmp_path_factory.mktemp("video"), "configs/tokenizers/moving_mnist_small.yaml",
                      {"temporal_downsample": 2}, "configs/tasks/video_mmnist_grid_cpu.yaml",
                      ["model.vocab_size=16", "model.shape=[4,4,4]", "sample.batch_size=6"])


def test_the_video_task_trains_and_runs_every_use_end_to_end(tiny_video_run, capsys):
    task, result = tiny_video_run
    for use in ("generation", "prediction", "interpolation", "completion"):
        assert f"{use}/identity_kept" in result and result[f"{use}/nfe"] > 0
    for use in ("prediction", "interpolation", "completion"):
        assert 0 < result[f"{use}/psnr"] < 100 and -1 <= result[f"{use}/ssim"] <= 1
    assert "prediction: copy the last frame/psnr" in result and "interpolation: linear blend/psnr" in result
    assert "prediction: autoregressive/psnr" in result and "generation: autoregressive/nfe" in result
    assert 0.0 <= result["real held-out videos/identity_kept"] <= 1.0
    for name in ("uses.png", "generation.gif", "uses.gif"):
        assert (task.run_dir / name).is_file()


def test_the_given_part_is_kept_and_bad_videos_are_refused(tiny_video_run):
    task, _ = tiny_video_run
    model = task.load_model()
    truth = task.heldout[:3]
    videos, result, _ = task.fill(model, "prediction", truth, seed=1)
    given = task.given("prediction")
    assert torch.equal(result.ids[:, given], task.encode(truth)[:, given])  # the first frames' tokens, as given
    with pytest.raises(ValueError, match=r"x: expected \[B, C, T, H, W\]"):
        task.fill(model, "prediction", torch.zeros(2, 1, 8, 20, 20))  # frames of another size
    with pytest.raises(ValueError, match="videos: interpolation needs the videos"):
        task.fill(model, "interpolation")
    with pytest.raises(ValueError, match="unknown use 'outpainting'"):
        task.fill(model, "outpainting", truth)


def test_an_empty_video_keeps_no_identity():
    crops = torch.zeros(4, 1, 28, 28)
    crops[:2] = 0.5  # two frames with ink, two blank
    named = metrics.named_digits(torch.tensor([3, 3, 3, 3]), crops, ink_floor=0.05)
    assert named.tolist() == [3, 3, metrics.NO_DIGIT, metrics.NO_DIGIT]
    blank = metrics.named_digits(torch.tensor([3, 3]), torch.zeros(2, 1, 28, 28), ink_floor=0.05)
    assert metrics.identity_kept(blank, 2).tolist() == [False]  # a judge's constant guess on blanks is no identity
    assert metrics.identity_kept(named, 2).tolist() == [True, False]


# ---------------------------------------------------------------- the sprite tokenizer's layout


@pytest.fixture(scope="module")
def sprite_layout():
    from tasks.video.layouts import SpriteLayout
    from tokenizers_vq import QuantizerConfig
    from tokenizers_vq.video_sprite import SpriteVideoTokenizer, SpriteVideoTokenizerConfig

    torch.manual_seed(0)
    tok = SpriteVideoTokenizer(SpriteVideoTokenizerConfig(width=8, latent_dim=4, quantizer=QuantizerConfig(
        codebook_size=32, kmeans_init=False))).eval()
    return SpriteLayout(tok, context_frames=4, hole_pixels=16, guidance=1.0, anchor=0.0)


def test_the_sprite_layout_gives_the_sprite_and_whole_frames_positions(sprite_layout):
    layout = sprite_layout
    assert not layout.given("generation").any() and not layout.given("completion").any()
    pred = layout.given("prediction")
    assert pred[:64].all() and pred[64:72].all() and not pred[72:].any()  # sprite + 4 frames x (row, column)
    interp = layout.given("interpolation")
    assert interp[:72].all() and interp[-8:].all() and not interp[72:-8].any()
    hole = layout.hidden_pixels("completion")
    assert hole.shape == (1, 16, 32, 32) and int(hole[0, 0].sum()) == 256 and hole[0, :, 8:24, 8:24].all()
    assert layout.hidden_pixels("prediction")[0, 4:].all() and not layout.hidden_pixels("prediction")[0, :4].any()
    draw = layout.training_context(["prediction", "completion"], 32, torch.Generator().manual_seed(0))
    assert set(draw.sum(1).tolist()) == {0, 72}
    assert isinstance(layout.processors()[0].allowed, torch.Tensor) and layout.measurement(None, "prediction") is None


def test_the_given_sprite_is_read_from_the_given_frames_alone(sprite_layout):
    from tokenizers_vq.video import MovingMNISTConfig

    data = MovingMNISTConfig(num_train=8, num_heldout=4, frames=16, size=32, digit_size=14, num_digits=1)
    x = type(sprite_layout.tokenizer).build_data(data)["heldout"][:4]["x"]
    changed = x.clone()
    changed[:, :, 4:] = changed[:, :, 4:].flip(-1)  # the frames prediction does not give: another digit
    given = sprite_layout.given("prediction")
    assert torch.equal(sprite_layout.fixed(changed, "prediction").ids[:, given],
                       sprite_layout.fixed(x, "prediction").ids[:, given])
    assert not torch.equal(sprite_layout.tokenizer.encode(changed).flat()[:, :64],
                           sprite_layout.tokenizer.encode(x).flat()[:, :64])  # all frames would have told


@pytest.mark.parametrize("changes, match", [
    ({"context_frames": 0}, "prediction needs 1 .. 15 given frames of 16"),
    ({"context_frames": 8}, "interpolation needs 1 .. 7 given frames at each end"),
    ({"hole_pixels": 32}, "completion needs a hole of 1 .. 31 pixels"),
])
def test_a_sprite_use_that_hides_nothing_or_everything_is_refused(sprite_layout, changes, match):
    from tasks.video.layouts import SpriteLayout

    args = {"context_frames": 4, "hole_pixels": 16, **changes}
    with pytest.raises(ValueError, match=match):
        SpriteLayout(sprite_layout.tokenizer, guidance=1.0, anchor=0.0, **args)


def test_the_grid_layout_names_its_fields_in_frames_and_pixels():
    from ddm.config import ConfigError
    from tasks.video.layouts import GridLayout
    from tokenizers_vq.video import VideoTokenizer, VideoTokenizerConfig

    tok = VideoTokenizer(VideoTokenizerConfig(frames=16, image_size=32, downsample=4, temporal_downsample=4, width=8))
    assert GridLayout(tok, 4, 16).given("prediction").sum() == 64
    with pytest.raises(ConfigError, match="task.context_frames: 6 is not a whole number of tokens"):
        GridLayout(tok, 6, 16)
    with pytest.raises(ValueError, match="hole of 1 .. 7 tokens.*tokens 4 pixels a side"):
        GridLayout(tok, 4, 32)


@pytest.fixture(scope="module")
def tiny_sprite_run(tmp_path_factory):
    """The sprite tokenizer's tiny run."""
    return train_tiny(tmp_path_factory.mktemp("video_sprite"), "configs/tokenizers/moving_mnist_sprite.yaml",
                      {"sprite_size": 8}, "configs/tasks/video_mmnist_cpu.yaml",
                      ["model.vocab_size=32", "model.shape=[32]", "sample.batch_size=4"])


def test_the_sprite_video_task_runs_every_use_and_keeps_what_is_given(tiny_sprite_run):
    task, result = tiny_sprite_run
    for use in ("prediction", "interpolation", "completion"):
        assert 0 < result[f"{use}/psnr"] < 100
    assert result["tokenizer reconstructions/identity_kept"] == 1.0  # one sprite in every frame
    model = task.load_model()
    truth = task.heldout[:5]  # two batches of sample.batch_size=4: the measurement follows its rows
    videos, filled, _ = task.fill(model, "prediction", truth, seed=1)
    given = task.given("prediction")
    assert torch.equal(filled.ids[:, given], task.layout.fixed(truth, "prediction").ids[:, given])
    assert (filled.ids[:, :16] < 16).all() and (filled.ids[:, 16:] >= 16).all()  # codes and coordinates in place
    guided, _, _ = task.fill(model, "completion", truth, seed=1)
    plain = task.config.task.completion_guidance
    task.layout.guidance = 0.0
    try:
        unguided, _, _ = task.fill(model, "completion", truth, seed=1)
    finally:
        task.layout.guidance = plain
    visible = ~task.layout.hidden_pixels("completion")[None].expand_as(truth)
    error = lambda v: float(((v - truth) ** 2)[visible].mean())
    assert error(guided) < error(unguided)  # the visible pixels steer the fill
