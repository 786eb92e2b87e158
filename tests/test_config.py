from pathlib import Path

import pytest

from ddm.config import ConfigError, DiffusionConfig, ModelConfig, TrainConfig, apply_overrides, from_dict
from ddm.experiment import load_experiment


def test_yaml_with_dotted_overrides():
    cfg = load_experiment("configs/tasks/synthetic_cpu.yaml", ["model.depth=6", "train.lr=1e-3", "sample.order=margin"])
    assert cfg.model.depth == 6 and cfg.train.lr == 1e-3 and cfg.sample.order == "margin"
    assert cfg.task.name == "synthetic" and cfg.model.shape == [32]


@pytest.mark.parametrize("overrides, message", [
    (["model.depht=6"], "model.depht: unknown config key"),
    (["model.depth=six"], "model.depth: expected an integer"),
    (["model.depth=0"], "model.depth: 0 is out of range; expected >= 1"),
    (["diffusion.schedule=quadratic"], "diffusion.schedule: unknown masking schedule 'quadratic'; registered: "
                                       "cosine, linear, loglinear, polynomial"),
    (["train.mixed_precision=fp8"], "train.mixed_precision"),
    (["task.colour=red"], "task.colour: unknown config key"),
    (["task.name=nope"],
     "task.name: unknown task 'nope'; registered: graph, image, molecule, motion, synthetic, text, tokenizer, tokens, video, vla"),
    (["sample.remasking=sometimes"],
     "sample.remasking: unknown remasking rule 'sometimes'; registered: cap, conf, none"),
    (["bogus=1"], "bogus: unknown config key"),
    (["model.heads=3"], "model.d_model: 128 is not divisible by model.heads=3"),
    (["diffusion.cond_dropout=1.5"], "diffusion.cond_dropout: 1.5 is out of range; expected <= 1.0"),
    (["sample.mixing=-2"], "sample.mixing: -2.0 is out of range; expected >= -1.0"),
])
def test_bad_config_names_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_experiment("configs/tasks/synthetic_cpu.yaml", overrides)


def test_type_checks():
    with pytest.raises(ConfigError, match="train.betas"):
        from_dict(TrainConfig, {"betas": [0.9]}, "train")
    with pytest.raises(ConfigError, match="weighting"):
        from_dict(DiffusionConfig, {"weighting": "ELBO"}, "diffusion")
    with pytest.raises(ConfigError, match=r"model.shape\[1\]: expected an integer"):
        from_dict(ModelConfig, {"shape": [4, 2.5]}, "model")
    # ints are accepted for floats, bools are not ints
    assert from_dict(TrainConfig, {"lr": 1}, "train").lr == 1.0
    assert from_dict(TrainConfig, {"lr": "3e-3"}, "train").lr == 3e-3  # YAML 1.1 reads this as a string
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        from_dict(TrainConfig, {"steps": True}, "train")


def test_overrides_parse_yaml_values():
    data = apply_overrides({"model": {"shape": [32]}}, ["model.shape=[4, 8]", "train.progress=false"])
    assert data == {"model": {"shape": [4, 8]}, "train": {"progress": False}}
    with pytest.raises(ConfigError, match="expected the form"):
        apply_overrides({}, ["model.depth"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no_such.yaml: no such file"):
        load_experiment(tmp_path / "no_such.yaml")


@pytest.mark.parametrize("path", sorted(str(p) for p in Path("configs").rglob("*.yaml")))
def test_every_config_loads_through_the_one_loader(path):
    """Every YAML in configs/ (tasks, tokenizers, the robot policy), also those no test runs
    (e.g. the GPU sizes), parses and passes every field check."""
    cfg = load_experiment(path, [])
    assert cfg.task.name and cfg.run_dir and cfg.train.steps >= 1
    assert Path(path).parent.name in ("tasks", "tokenizers", "vla")  # configs/ is split by kind


def test_error_messages_name_long_values_briefly():
    from ddm.config import brief

    assert brief(3) == "3" and brief([1, 2]) == "[1, 2]"
    long = brief([[i, i + 1] for i in range(300)])
    assert long.endswith("..., 300 items") and len(long) < 100
    assert brief("x" * 200).endswith("...") and len(brief("x" * 200)) == 83
