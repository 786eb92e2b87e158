"""The `tokens` task: your own token data from disk, trained and sampled through the front end,
a model folder that samples as trained with no YAML, and bad data refused by row and column."""

import json

import numpy as np
import pytest
import torch

from ddm.cli import main
from ddm.config import ConfigError
from ddm.experiment import load_experiment
from ddm.hub import load_pretrained
from ddm.task import build_task

V, L = 12, 16
TINY = ["model.d_model=32", "model.depth=1", "model.heads=2", "train.steps=40", "train.batch_size=16",
        "train.log_every=20", "train.checkpoint_every=0", "train.progress=false", "sample.num_samples=24",
        "sample.batch_size=24", "sample.steps=8"]


def rising_rows(n=300, seed=0, length=L):
    """Rows that count up from a random start (mod V): an easy structure, far from uniform."""
    start = np.random.default_rng(seed).integers(0, V, (n, 1))
    return ((start + np.arange(length)) % V).astype(np.int64)


def write_yaml(tmp_path, task: str, model: str = "", run: str = "run") -> str:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"task: {{name: tokens, {task}}}\nmodel: {{vocab_size: {V}, shape: [{L}]{model}}}\n"
                    f"run_dir: {tmp_path / run}\n")
    return str(path)


def test_trains_on_a_npy_file_and_samples_from_the_folder_alone(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "ids.npy", rising_rows())
    config = write_yaml(tmp_path, f"path: {tmp_path / 'ids.npy'}")
    assert main(["run", "--config", config, *TINY]) == 0  # train, then eval
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["heldout_elbo_bits_per_token"] < np.log2(V)  # below the uniform code: it learned
    assert "heldout_elbo_bits_per_token" in capsys.readouterr().out

    # No YAML: the folder knows its task, schedule and sampler.
    model_dir = tmp_path / "run" / "model"
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["task"]["name"] == "tokens" and saved["diffusion"]["schedule"] == "loglinear"
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--model", str(model_dir), "sample.steps=4", "--out", "out/samples.npy"]) == 0
    samples = np.load(tmp_path / "out" / "samples.npy")
    assert samples.shape == (24, L) and samples.min() >= 0 and samples.max() < V
    assert "nfe: 4" in capsys.readouterr().out


def test_a_config_that_contradicts_the_folder_schedule_is_refused(tmp_path, capsys):
    np.save(tmp_path / "ids.npy", rising_rows(60))
    config = write_yaml(tmp_path, f"path: {tmp_path / 'ids.npy'}")
    assert main(["train", "--config", config, *TINY, "train.steps=2"]) == 0
    assert main(["sample", "--config", config, *TINY, "diffusion.schedule=cosine"]) == 2
    err = capsys.readouterr().err
    assert "diffusion.schedule: the config says 'cosine', the model was trained with 'loglinear'" in err


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "datasets"])
def test_padded_rows_with_labels_and_prefixes_in_table_formats(tmp_path, fmt):
    from datasets import Dataset

    real = rising_rows(120) % (V - 1) + 1  # id 0 is the pad
    rows = [list(r[:n]) for r, n in zip(real, np.random.default_rng(1).integers(4, L + 1, 120))]
    data = Dataset.from_dict({"ids": rows, "label": [r[0] % 3 for r in rows], "prompt": [[r[0]] for r in rows]})
    path = tmp_path / {"parquet": "d.parquet", "arrow": "d.arrow", "datasets": "d"}[fmt]
    if fmt == "parquet":
        data.to_parquet(str(path))
    elif fmt == "arrow":
        import pyarrow as pa

        table = data.with_format("arrow")[:]
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        data.save_to_disk(str(path))
    for run, conditioning, model in (("labels", "label_column: label", ", num_classes: 3"),
                                     ("prefixes", "prefix_column: prompt", f", cond_vocab_size: {V}, cond_len: 2")):
        config = write_yaml(tmp_path, f"path: {path}, pad_id: 0, {conditioning}", model, run)
        task = build_task(load_experiment(config, [*TINY, "train.steps=3"]))
        task.train()
        assert len(task.splits["heldout"].ids) == 12
        batch = task.train_dataset()[:4]
        assert batch["padding"].shape == (4, L) and bool(batch["padding"].any())  # the short rows
        section = load_pretrained(tmp_path / run / "model").task
        assert sum(section["length_counts"]) == 108  # the training rows' lengths, for sampling
        out = task.sample(out=tmp_path / f"{run}_{path.name}")
        assert out["written"] == str(tmp_path / f"{run}_{path.name}")
        task.config.task.path = out["written"]  # read back through the task's own reader: the same format
        del task.table, task.splits
        written = task.table
        assert len(written.ids) == 24 and (written.lengths >= 1).all()
        assert not (written.ids[np.arange(L) < written.lengths[:, None]] == 0).any()  # pads never sampled
        assert written.classes is not None or written.prefix is not None  # the condition is written too


def test_bad_token_data_is_refused_with_row_and_column(tmp_path):
    def refused(array_or_rows, match, task_extra=""):
        if isinstance(array_or_rows, np.ndarray):
            path = tmp_path / "bad.npy"
            np.save(path, array_or_rows)
        else:
            from datasets import Dataset

            path = tmp_path / "bad.parquet"
            Dataset.from_dict({"ids": array_or_rows}).to_parquet(str(path))
        task = build_task(load_experiment(write_yaml(tmp_path, f"path: {path}{task_extra}"), TINY))
        with pytest.raises((ValueError, ConfigError), match=match):
            task.train_dataset()

    outside = rising_rows(10)
    outside[7, 3] = V
    refused(outside, rf"bad.npy, row 7, column 3: id {V} is outside the vocabulary \[0, {V}\)")
    refused([[1, 2, 3] * 5 + [4], [1, 2, 3, 4]], r"row 1: 4 tokens where row 0 has 16 .*need a pad id \(task.pad_id\)")
    refused([[1, 2, 0, 3] + [0] * 12], r"row 0, column 2: the pad id 0 inside the row", ", pad_id: 0")
    refused(np.zeros((0, L), dtype=np.int64), "bad.npy: holds no sequences")
    refused(rising_rows(4).astype(np.float32), "expected a 2-D integer array")
    (tmp_path / "empty.npy").write_bytes(b"")
    task = build_task(load_experiment(write_yaml(tmp_path, f"path: {tmp_path / 'empty.npy'}"), TINY))
    with pytest.raises(ValueError, match="empty.npy: not an integer array saved by numpy"):
        task.train_dataset()
    with pytest.raises(FileNotFoundError, match="task.path: .*missing.npy: no such file"):
        build_task(load_experiment(write_yaml(tmp_path, f"path: {tmp_path / 'missing.npy'}"), TINY)).train_dataset()
    with pytest.raises(ConfigError, match="model.num_classes: 3 with task.label_column=''"):
        build_task(load_experiment(write_yaml(tmp_path, "path: x.npy", ", num_classes: 3"), TINY))


def test_the_pad_processor_keeps_training_finite_and_samples_pad_free():
    # Pads are forbidden at every position (a processor), yet the loss at pad targets is never formed.
    from ddm.config import DiffusionConfig
    from ddm.model import build_denoiser
    from ddm.objectives import DiffusionObjective
    from ddm.process import MaskingProcess
    from ddm.config import ModelConfig
    from ddm.sampling import AllowedTokens

    model = build_denoiser(ModelConfig(vocab_size=V, shape=[L], d_model=32, depth=1, heads=2))
    allowed = torch.ones(L, V, dtype=torch.bool)
    allowed[:, 0] = False
    ids = torch.as_tensor(rising_rows(8)) % (V - 1) + 1
    padding = torch.arange(L)[None] >= torch.tensor([[5], [16], [9], [1], [16], [3], [12], [7]])
    batch = {"ids": ids.masked_fill(padding, 0), "padding": padding}
    for weighting in ("elbo", "flat"):
        cfg = DiffusionConfig(weighting=weighting, visible_noise=0.2)
        loss, _ = DiffusionObjective(MaskingProcess.from_config(cfg, V), cfg, [AllowedTokens(allowed)])(
            model, batch, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss)
        loss.backward()
