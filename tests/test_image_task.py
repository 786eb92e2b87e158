"""The image task's parts: inpainting masks, the Fréchet proxy, diversity, the judge classifier."""

import pytest
import torch

from tasks.image.inpainting import fixed_tokens, half_mask, token_mask
from tasks.image.metrics import frechet_distance, mean_pairwise_distance


def test_half_mask_and_token_mask_cover_the_hidden_cells():
    hidden = half_mask(2, 28)
    assert hidden[:, :, 14:].all() and not hidden[:, :, :14].any()
    cells = token_mask(hidden, (7, 7)).reshape(2, 7, 7)
    # cells are 4 pixels high: rows 0-2 (pixels 0-11) are visible, row 3 (12-15) touches the hidden half
    assert not cells[:, :3].any() and cells[:, 3:].all()
    fixed = fixed_tokens(torch.arange(49).repeat(2, 1), hidden, (7, 7))
    assert fixed.mask.sum(1).tolist() == [21, 21]
    with pytest.raises(ValueError, match="token grid"):
        token_mask(half_mask(1, 30), (7, 7))
    with pytest.raises(ValueError, match="side"):
        half_mask(1, 28, "top-left")


def test_frechet_distance_is_zero_for_one_distribution_and_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 8, generator=g)
    b = torch.randn(4000, 8, generator=g)
    assert frechet_distance(a, b) < 0.05  # two samples of one Gaussian
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, abs=1e-6)  # same covariance, |shift|^2 = 8
    # B = 2A: cov 4C, sqrt(C 4C) = 2C, so the distance is |mu|^2 + tr C
    expected = float(a.double().mean(0).pow(2).sum() + a.double().var(0).sum())
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)


def test_diversity_is_zero_for_copies_and_positive_otherwise():
    labels = torch.tensor([0, 0, 1, 1])
    copies = torch.ones(4, 3)
    assert mean_pairwise_distance(copies, labels) == 0.0
    spread = torch.tensor([[0.0, 0, 0], [3.0, 4, 0], [0, 0, 0], [0, 0, 1.0]])
    assert mean_pairwise_distance(spread, labels) == pytest.approx((5.0 * 2 + 1.0 * 2) / 4)


@pytest.fixture(scope="module")
def tiny_image_task(tmp_path_factory):
    from ddm.experiment import load_experiment
    from ddm.task import build_task
    from tokenizers_vq.image import ImageTokenizer, ImageTokenizerConfig
    from tokenizers_vq.quantizers import QuantizerConfig

    root = tmp_path_factory.mktemp("image")
    torch.manual_seed(0)
    ImageTokenizer(ImageTokenizerConfig(width=8, latent_dim=4, quantizer=QuantizerConfig(
        codebook_size=16, kmeans_init=False))).save_pretrained(root / "tok")

    def make(*overrides):
        cfg = load_experiment("configs/tasks/image_mnist_cpu.yaml", [f"task.tokenizer_path={root / 'tok'}",
                                                               "model.vocab_size=16", "model.d_model=32",
                                                               "model.depth=1", f"run_dir={root / 'run'}",
                                                               *overrides])
        task = build_task(cfg)
        task.prepare()
        return task

    return make


def test_image_task_rejects_a_tokenizer_that_does_not_match_the_model(tiny_image_task):
    from ddm.config import ConfigError

    with pytest.raises(ConfigError, match="do not match the tokenizer"):
        tiny_image_task("model.vocab_size=64")


def test_image_task_bad_class_and_bad_inpainting_mask(tiny_image_task):
    from ddm.model import build_denoiser

    task = tiny_image_task()
    assert task.train_dataset()[0]["ids"].shape == (49,)
    model = build_denoiser(task.config.model, task.config.diffusion).eval()  # trained for guidance (cond_dropout)
    with pytest.raises(ValueError, match="class 12 is unknown"):
        task.generate_images(model, torch.tensor([1, 12]), steps=2)
    with pytest.raises(ValueError, match=r"images: expected \[B, 1, 28, 28\]"):
        task.inpaint(model, torch.zeros(2, 1, 32, 32))
    filled, hidden, _, classes = task.inpaint(model, task.images["heldout"][:3])
    assert torch.equal(filled[~hidden], task.images["heldout"][:3][~hidden])  # the visible half is kept
    assert classes.shape == (3,) and 0 <= int(classes.min()) and int(classes.max()) < 10


JOINT = ["task.vectors=latent", "model.continuous_dim=4", "model.time_conditioning=true",
         "diffusion.continuous_time=independent", "task.inpaint_class=none"]


def test_the_joint_image_task_carries_the_tokenizers_latents_and_decodes_images_from_vectors(tiny_image_task):
    from ddm.model import build_denoiser

    task = tiny_image_task(*JOINT)
    values = task.train_dataset()[:]["values"]
    assert values.shape == (len(task.ids["train"]), 49, 4)  # one standardised latent per token
    flat = values.reshape(-1, 4).double()
    assert flat.mean(0).abs().max() < 1e-4 and (flat.std(0) - 1).abs().max() < 1e-3
    # the vectors decode to what the tokenizer makes of its own unquantized latents
    x = task.images["heldout"][:4]
    torch.testing.assert_close(task.decode_vectors(task.vectors["heldout"][:4]),
                               task.tokenizer.decode_latents(task.tokenizer.latents(x)))
    model = build_denoiser(task.config.model, task.config.diffusion).eval()
    images, result, _ = task.generate_images(model, torch.arange(3), steps=4)
    assert images.shape == (3, 1, 28, 28) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert result.continuous.shape == (3, 49, 4) and result.nfe == 8  # 4 calls, guided: 2 rows each
    torch.testing.assert_close(images, task.decode_vectors(result.continuous))
    assert set(task.continuous_metrics(result.continuous, result.ids, result_cond(3))) >= {
        "from_vectors_accuracy", "from_vectors_frechet"}
    # `ddm bench` judges a joint model's images from its vectors too, beside those from its ids
    from ddm.bench import bench

    figures = bench(task, model, ["cached"], batch=3, rounds=1, singles=0)["cached"]
    assert {"accuracy", "from_vectors_accuracy", "from_vectors_frechet"} <= set(figures)


def result_cond(n):
    from ddm.model import Condition

    return Condition(classes=torch.arange(n))


def test_the_joint_image_task_refuses_a_head_that_does_not_fit_the_latents(tiny_image_task):
    from ddm.config import ConfigError

    with pytest.raises(ConfigError, match="model.continuous_dim: 0 with task.vectors='latent'"):
        tiny_image_task("task.vectors=latent")
    with pytest.raises(ConfigError, match="model.continuous_dim: 3, but the tokenizer's latents have 4 dimensions"):
        tiny_image_task(*JOINT, "model.continuous_dim=3")


def test_a_tokenizer_folder_of_another_kind_is_refused(tmp_path):
    from ddm.config import ConfigError
    from tokenizers_vq import tokenizer_for_task
    from tokenizers_vq.quantizers import QuantizerConfig
    from tokenizers_vq.video import VideoTokenizer, VideoTokenizerConfig

    VideoTokenizer(VideoTokenizerConfig(frames=4, image_size=16, width=8, latent_dim=4, quantizer=QuantizerConfig(
        codebook_size=16, kmeans_init=False))).save_pretrained(tmp_path / "video_tok")
    with pytest.raises(ConfigError, match="holds a VideoTokenizer; this task needs a 'image' tokenizer"):
        tokenizer_for_task("configs/tokenizers/mnist.yaml", tmp_path / "video_tok", tmp_path / "run", "image")
    with pytest.raises(FileNotFoundError, match="task.tokenizer_path: no tokenizer at"):
        tokenizer_for_task("configs/tokenizers/mnist.yaml", tmp_path / "nothing", tmp_path / "run", "image")
