"""Image tokenizer: data splits, every quantizer kind, save/load, bad input, pictures, the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ddm.cli import main
from ddm.config import ConfigError, TrainConfig
from ddm.experiment import load_experiment
from tokenizers_vq import QuantizerConfig, load_tokenizer
from tokenizers_vq.data.images import image_splits
from tokenizers_vq.image import ImageTokenizer, ImageTokenizerConfig

REPO = Path(__file__).resolve().parents[1]


def tiny(kind: str = "vq", **q) -> ImageTokenizer:
    torch.manual_seed(0)
    quantizer = QuantizerConfig(kind=kind, **q) if kind != "vq" else QuantizerConfig(codebook_size=32, **q)
    return ImageTokenizer(ImageTokenizerConfig(width=16, latent_dim=8, quantizer=quantizer))


@pytest.fixture(scope="module")
def mnist():
    return image_splits("mnist")


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    tok = tiny()
    small = mnist["train"].select(range(1024))
    tok.fit(small, TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup_steps=10, progress=False,
                               checkpoint_every=0, log_every=50), tmp_path_factory.mktemp("fit"))
    return tok


def test_mnist_split_is_fixed_stratified_and_disjoint(mnist):
    assert (len(mnist["train"]), len(mnist["heldout"])) == (4500, 500)
    labels = mnist["heldout"][:]["label"].numpy()
    assert np.bincount(labels).tolist() == [50] * 10
    x = mnist["train"][:4]["x"]
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    again = image_splits("mnist")
    assert torch.equal(again["heldout"][:]["x"], mnist["heldout"][:]["x"])
    train_rows = {tuple(r) for r in (mnist["train"][:]["x"].flatten(1) * 255).round().int().tolist()}
    held_rows = {tuple(r) for r in (mnist["heldout"][:]["x"].flatten(1) * 255).round().int().tolist()}
    assert len(train_rows & held_rows) <= 5  # the same digit may appear twice in MNIST; the split never shares rows


def test_animals_split():
    splits = image_splits("animals", limit=8)
    assert splits["train"][:]["x"].shape == (8, 1, 28, 28)
    full = image_splits("animals")
    assert (len(full["train"]), len(full["heldout"])) == (9000, 1000)
    with pytest.raises(ValueError, match="unknown image set 'cifar'"):
        image_splits("cifar")


def test_train_encode_decode_save_load(trained, mnist, tmp_path):
    x = mnist["heldout"][:16]["x"]
    stream = trained.encode(x)
    assert stream.shape == (7, 7) and stream.ids.shape == (16, 7, 7)
    assert int(stream.ids.max()) < trained.vocab_size == 32
    x_hat = trained.decode(stream)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert torch.allclose(trained.decode(stream.flat()), x_hat)  # flat ids from a diffusion model
    heldout = mnist["heldout"].select(range(64))
    metrics = trained.evaluate(heldout)
    assert {"psnr", "mse", "usage", "perplexity"} <= set(metrics)
    # PSNR as evaluate defines it (the mean over images), of the predictors that know nothing of
    # the digit: all black (9.4 dB here) and the mean training image (11.3 dB). 150 steps of a
    # small tokenizer give 15.2 dB; the README's 500-step one 24.5 dB on all 500 digits.
    digits = heldout[:]["x"]

    def psnr(guess):
        return float((10 * torch.log10(1 / ((guess - digits) ** 2).flatten(1).mean(1))).mean())

    mean_image = mnist["train"][:]["x"].mean(0, keepdim=True).expand_as(digits)
    assert metrics["psnr"] > psnr(mean_image) + 3.0 > psnr(torch.zeros_like(digits)) + 3.0
    trained.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert torch.equal(loaded.encode(x).ids, stream.ids)
    assert torch.equal(trained.encode(x).ids, stream.ids)  # encode changed nothing (no codebook update)
    assert torch.allclose(loaded.decode(stream), x_hat)


@pytest.mark.parametrize("kind,extra,q", [("rvq", {"codebook_size": 16, "num_quantizers": 3}, 3),
                                          ("fsq", {"levels": [5, 4, 4]}, 1),
                                          ("lfq", {"codebook_size": 64}, 1),
                                          ("vq", {}, 1)])
def test_every_quantizer_kind(kind, extra, q, mnist):
    tok = tiny(kind, **extra)
    x = mnist["train"][:8]["x"]
    loss, metrics = tok.loss(tok, {"x": x}, torch.Generator())
    loss.backward()
    assert torch.isfinite(loss) and "usage" in metrics and "perplexity" in metrics
    stream = tok.encode(x)
    assert stream.ids.shape == ((8, 7, 7) if q == 1 else (8, 7, 7, q))
    assert 0 <= int(stream.ids.min()) and int(stream.ids.max()) < tok.vocab_size
    assert tok.decode(stream).shape == x.shape
    tok.eval()
    with torch.no_grad():
        x_hat, _, _ = tok.reconstruct(x)
    assert torch.allclose(tok.decode(stream), x_hat.clamp(0, 1), atol=1e-5)  # decode(encode) == reconstruct
    if q > 1:
        assert {"usage_0", "perplexity_2"} <= set(tok.evaluate(mnist["heldout"].select(range(8))))


def test_bad_input_is_named(trained):
    good = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"x: expected \[B, C, H, W\] = \[B, 1, 28, 28\], got \(2, 3, 28, 28\)"):
        trained.encode(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="got \\(2, 1, 32, 32\\)"):
        trained.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        trained.encode(good.clone().index_fill_(0, torch.tensor([1]), float("nan")))
    with pytest.raises(ValueError, match=r"in \[0, 1\], got \[0, 255\]"):
        trained.encode(torch.full((2, 1, 28, 28), 255.0).index_fill_(0, torch.tensor([0]), 0.0))
    with pytest.raises(TypeError, match="divide uint8 images by 255"):
        trained.encode((good * 255).to(torch.uint8))
    ids = trained.encode(good).ids
    with pytest.raises(ValueError, match="id 32 is outside the vocabulary"):
        trained.decode(ids.index_fill(1, torch.tensor([0]), 32))
    with pytest.raises(ValueError, match="ids: expected"):
        trained.decode(ids[:, :5])


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="tokenizer.downsample: expected a power of two"):
        ImageTokenizerConfig(downsample=3)
    with pytest.raises(ConfigError, match="does not divide tokenizer.image_size=28"):
        ImageTokenizerConfig(downsample=8)


def test_pictures(trained, mnist, tmp_path):
    (path,) = trained.save_pictures(mnist["heldout"], tmp_path)
    with Image.open(path) as image:
        assert image.size[1] > 2 * 28 and image.mode == "L"


def test_configs_load_and_the_front_end_fits_and_evaluates(tmp_path, capsys):
    for name in ("mnist", "animals", "moving_mnist"):
        assert load_experiment(REPO / "configs" / "tokenizers" / f"{name}.yaml").task.name == "tokenizer"
    args = ["--config", str(REPO / "configs/tokenizers/mnist.yaml"), "data.limit=64", "train.steps=2",
            "train.batch_size=16", "train.progress=false", "tokenizer.width=8", f"run_dir={tmp_path}"]
    assert main(["train", *args]) == 0
    out = capsys.readouterr().out
    assert "psnr" in out and "usage" in out and (tmp_path / "reconstructions.png").is_file()
    assert (tmp_path / "tokenizer" / "model.safetensors").is_file()
    assert main(["eval", *args]) == 0 and "psnr" in capsys.readouterr().out
    x = torch.rand(3, 1, 28, 28)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    assert main(["encode", *args, "--input", str(tmp_path / "x.safetensors"),
                 "--output", str(tmp_path / "ids.st")]) == 0
    assert main(["decode", *args, "--input", str(tmp_path / "ids.st"), "--output", str(tmp_path / "y.st")]) == 0
    assert load_file(str(tmp_path / "y.st"))["x"].shape == x.shape
    assert main(["train", "--config", str(REPO / "configs/tokenizers/mnist.yaml"), "task.kind=picture"]) == 2
    assert "task.kind: unknown tokenizer kind 'picture'; registered: action_bins" in capsys.readouterr().err


def test_decode_soft_matches_decode_on_one_hot_and_is_differentiable():
    from tokenizers_vq.image import ImageTokenizer, ImageTokenizerConfig
    from tokenizers_vq.quantizers import QuantizerConfig

    torch.manual_seed(0)
    tok = ImageTokenizer(ImageTokenizerConfig(width=8, latent_dim=4, quantizer=QuantizerConfig(
        codebook_size=16, kmeans_init=False))).eval()
    ids = torch.randint(0, 16, (2, 49), generator=torch.Generator().manual_seed(1))
    onehot = torch.nn.functional.one_hot(ids, 16).float().requires_grad_(True)
    soft = tok.decode_soft(onehot)
    assert torch.allclose(soft.clamp(0, 1), tok.decode(ids), atol=1e-5)
    soft.sum().backward()
    assert onehot.grad.abs().sum() > 0
