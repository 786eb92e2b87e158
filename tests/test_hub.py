import json

import pytest
import torch

from ddm.config import ModelConfig
from ddm.hub import load_pretrained
from ddm.model import MaskedDiffusionTransformer

CFG = ModelConfig(vocab_size=9, shape=[8], d_model=32, depth=2, heads=2, num_classes=3)


def trained_like():
    torch.manual_seed(0)
    m = MaskedDiffusionTransformer(CFG)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def test_round_trip_is_exact(tmp_path):
    m = trained_like()
    m.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    m2 = load_pretrained(tmp_path / "m")
    assert isinstance(m2, MaskedDiffusionTransformer) and m2.config == CFG
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_other_config_is_refused(tmp_path):
    trained_like().save_pretrained(tmp_path / "m")
    other = ModelConfig(vocab_size=9, shape=[8], d_model=32, depth=3, heads=2, num_classes=3)
    with pytest.raises(ValueError, match=r"another config; differing fields: depth: 3 != 2"):
        MaskedDiffusionTransformer.from_pretrained(tmp_path / "m", expected_config=other)


def test_weights_not_matching_config_json(tmp_path):
    trained_like().save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["d_model"] = 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"has shape \(.*\), the model expects"):
        load_pretrained(tmp_path / "m")


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    trained_like().save_pretrained(tmp_path / "m")
    f = tmp_path / "m" / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors: a corrupt or truncated weights file"):
        load_pretrained(tmp_path / "m")


def test_not_a_pretrained_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such pretrained folder"):
        load_pretrained(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="missing key 'class'"):
        load_pretrained(tmp_path / "x")


def test_failed_save_leaves_the_old_folder(tmp_path, monkeypatch):
    m = trained_like()
    m.save_pretrained(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("ddm.hub.save_model", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_sections_travel_with_the_weights(tmp_path):
    from ddm.config import DiffusionConfig, SampleConfig

    m = MaskedDiffusionTransformer(CFG, DiffusionConfig(schedule="cosine", cond_dropout=0.1),
                                   SampleConfig(steps=8, order="confidence"), task={"name": "image"})
    m.save_pretrained(tmp_path / "m")
    again = load_pretrained(tmp_path / "m")
    assert again.diffusion == m.diffusion and again.sample == m.sample and again.task == {"name": "image"}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format_version"] == 2


def test_a_folder_of_the_older_format_says_how_to_convert_it(tmp_path):
    from ddm.cli import main

    trained_like().save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    old = {"class": meta["class"], "config": meta["config"], "format_version": 1, "training": {}}
    (tmp_path / "m" / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"format 1.*ddm convert .* --config <the experiment YAML"):
        load_pretrained(tmp_path / "m")
    yaml = tmp_path / "exp.yaml"
    yaml.write_text("task: {name: synthetic, vocab_size: 9, length: 8}\n"
                    "model: {vocab_size: 9, shape: [8], d_model: 32, depth: 2, heads: 2, num_classes: 3}\n"
                    "diffusion: {schedule: cosine}\nsample: {steps: 4}\n")
    assert main(["convert", str(tmp_path / "m"), "--config", str(yaml)]) == 0
    again = load_pretrained(tmp_path / "m")
    assert again.diffusion.schedule == "cosine" and again.sample.steps == 4 and again.task["name"] == "synthetic"
    for (k, a), (_, b) in zip(trained_like().state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k  # the weights are untouched
