"""The README's Python: the quickstart and the "Extending ddm" examples run as written.

A block is the fenced code right after a `<!-- quickstart -->` or `<!-- file: NAME -->` line;
file blocks are written to a folder that is then the working directory, as a user would."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ddm.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
REPO = README.parent


def blocks() -> dict[str, str]:
    text = README.read_text()
    found = re.findall(r"<!-- (quickstart|file: [\w.]+) -->\n```\w*\n(.*?)```", text, flags=re.S)
    return {name.removeprefix("file: "): code for name, code in found}


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A folder holding the README's files, as the working directory."""
    for name, code in blocks().items():
        if name != "quickstart":
            (tmp_path / name).write_text(code)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_every_block():
    assert set(blocks()) == {"quickstart", "my_orders.py", "chars.py", "chars.yaml", "my_decoders.py"}
    assert len([line for line in blocks()["quickstart"].splitlines() if line.strip()]) <= 10


def test_quickstart_runs_on_a_trained_image_run(user_dir):
    """A tiny image run in runs/image_mnist (its own small tokenizer, a few training steps), then the
    quickstart exactly as the README has it."""
    from tokenizers_vq.image import ImageTokenizer, ImageTokenizerConfig
    from tokenizers_vq.quantizers import QuantizerConfig

    torch.manual_seed(0)
    ImageTokenizer(ImageTokenizerConfig(width=8, latent_dim=4, quantizer=QuantizerConfig(
        codebook_size=16, kmeans_init=False))).save_pretrained(user_dir / "runs/image_mnist/tokenizer")
    assert main(["train", "--config", str(REPO / "configs/tasks/image_mnist_cpu.yaml"), "model.vocab_size=16",
                 "task.tokenizer_path=runs/image_mnist/tokenizer", "model.d_model=32", "model.depth=1",
                 "train.steps=3", "train.progress=false"]) == 0
    scope: dict = {}
    exec(blocks()["quickstart"], scope)
    images, result = scope["images"], scope["result"]
    assert images.shape == (4, 1, 28, 28) and result.nfe == 16  # 8 guided steps
    tokenizer = scope["tokenizer"]
    top = tokenizer.encode(scope["digits"]).flat()[:, :21]
    assert torch.equal(result.ids[:, :21], top)  # the given rows are kept


def test_a_new_sampler_order_from_a_user_module(user_dir, capsys):
    from ddm.config import SampleConfig, from_dict
    from ddm.sampling import Sampler

    np.save(user_dir / "ids.npy", (np.arange(12)[None] + np.arange(40)[:, None]) % 7)
    (user_dir / "t.yaml").write_text("task: {name: tokens, path: ids.npy}\n"
                                     "model: {vocab_size: 7, shape: [12], d_model: 32, depth: 1, heads: 2}\n"
                                     "train: {steps: 3, progress: false}\n")
    assert main(["train", "--config", "t.yaml"]) == 0
    assert main(["sample", "--config", "t.yaml", "sample.order=my_orders:left_to_right", "sample.steps=12",
                 "sample.num_samples=5", "sample.batch_size=5"]) == 0
    model = __import__("ddm").load_pretrained("runs/tokens/model")
    cfg = from_dict(SampleConfig, {"order": "my_orders:left_to_right", "steps": 12}, "sample")
    trace = Sampler.from_config(cfg, model.diffusion)(model, 3, return_trace=True).trace
    assert torch.equal(trace.committed_at, torch.arange(12).expand(3, 12))  # one token a step, left to right


def test_a_new_modality_tokenizer_and_task_from_a_user_module(user_dir, capsys):
    tiny = ["task.verses=300", "model.d_model=32", "model.depth=1", "train.steps=20", "train.progress=false",
            "sample.num_samples=8", "sample.batch_size=8", "sample.steps=8"]
    assert main(["train", "--config", "chars.yaml", *tiny]) == 0
    assert main(["eval", "--config", "chars.yaml", *tiny]) == 0
    metrics = json.loads((user_dir / "runs/chars/metrics.json").read_text())
    assert 0 <= metrics["known_words"] <= 1 and metrics["heldout_elbo_bits_per_token"] < 7  # below uniform ASCII
    from tokenizers_vq import TOKENIZERS

    assert "chars" in TOKENIZERS.names()
    tok = TOKENIZERS.get("chars")(__import__("chars").CharConfig(16))
    assert tok.decode(tok.encode(["In the beginning"])) == ["In the beginning"]


def test_a_new_vla_decoder_from_a_user_module(user_dir):
    from test_vla_policy import batch_features, train_tiny

    policy, feats, *_ = train_tiny("my_decoders:OneStepDecoder", steps=20)
    actions, nfe = policy.predict_chunk(batch_features(feats, torch.arange(4)))
    assert nfe == 1 and actions.shape == (4, 4, 4)
    assert set(actions[:, :, 3].unique().tolist()) <= {0.0, 1.0}  # the action vocabulary still holds
