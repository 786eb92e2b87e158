"""Bad input and kills: every expected failure is one clear line, and nothing trained is lost.

    python benchmarks/reliability.py                 # both parts (about 5 minutes on 2 cores)
    python benchmarks/reliability.py --skip-kills    # the bad-input table only (seconds)

(1) Bad input: every field of five shipped configs given a value of the wrong type, out of
    range, or a name no registry holds, an unknown key in every section, and damaged files and
    folders (YAML, model folders, checkpoints, token data). A case passes when the command exits 2
    with one line that names the field or the file, and no traceback. `tests/test_bad_input.py`
    runs the same table.
(2) Kills: `ddm train` of the synthetic task killed with SIGKILL at random moments, 20 times while
    it trains and 20 times while it saves and prunes (a checkpoint and a prune every step), each
    time resumed: no checkpoint visible to resume is incomplete, and the resumed run ends
    bit-identical to one never interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ddm.cli import main  # noqa: E402
from ddm.experiment import load_experiment  # noqa: E402

CONFIGS = ["configs/tasks/synthetic_cpu.yaml", "configs/tasks/image_mnist_cpu.yaml", "configs/tokenizers/mnist.yaml",
           "configs/tokenizers/motion.yaml", "configs/vla/smoke.yaml"]
SYNTH = ["--config", "configs/tasks/synthetic_cpu.yaml", "task.train_size=300", "task.eval_size=50",
         "task.elbo_repeats=1", "model.d_model=32", "model.depth=1", "train.batch_size=8", "train.warmup_steps=1",
         "train.progress=false", "sample.num_samples=8", "sample.batch_size=8", "sample.steps=4"]


# --------------------------------------------------------------------------- (1) bad input


def _bad_values(f: dataclasses.Field, annotation) -> list:
    """Values `f` must refuse: the wrong type, below its minimum, a name no registry holds."""
    origin = typing.get_origin(annotation)
    if "registry" in f.metadata:
        return [["no_such_part"]] if isinstance(f.default_factory() if f.default is dataclasses.MISSING else
                                                f.default, list) else ["no_such_part", 3]
    if annotation is bool:
        return ["maybe", 3]
    if annotation is int:
        return ["x", 1.5] + ([f.metadata["min"] - 1] if "min" in f.metadata else [])
    if annotation is float:
        return ["x", [1]] + ([f.metadata["min"] - 1.0] if "min" in f.metadata else [])
    if annotation is str:
        return [[1]]
    if origin is typing.Literal:
        return ["no_such_choice"]
    if origin is list:
        return [5]
    return []


def field_cases() -> list[tuple[str, list[str], str]]:
    """(what, argv, what the message must name) for every field of every section of CONFIGS."""
    cases = []
    for config in CONFIGS:
        exp = load_experiment(config)
        for section in dataclasses.fields(exp):
            value = getattr(exp, section.name)
            if not dataclasses.is_dataclass(value):
                continue
            cases.append((f"{config}: unknown key in {section.name}", ["check", "--config", config,
                                                                      f"{section.name}.no_such_key=1"],
                          f"{section.name}.no_such_key"))
            hints = typing.get_type_hints(type(value))
            for f in dataclasses.fields(value):
                if section.name == "task" and f.name == "name":
                    continue
                for bad in _bad_values(f, hints[f.name]):
                    override = f"{section.name}.{f.name}={json.dumps(bad)}"
                    cases.append((f"{config}: {override}", ["check", "--config", config, override],
                                  f"{section.name}.{f.name}"))
    return cases


def file_cases(root: Path) -> list[tuple[str, list[str], str]]:
    """Damaged or wrong files and folders, made under `root` (a tiny trained model among them)."""
    import numpy as np

    def write(name: str, data: bytes | str) -> str:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    run = root / "run"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", *SYNTH, f"run_dir={run}", "train.steps=2"]) == 0
        assert main(["train", "--config", "configs/tokenizers/graphs.yaml", "data.num_train=4",
                     "data.num_heldout=4", f"run_dir={root / 'tok'}"]) == 0
    model = run / "model"

    def damaged(name: str, edit) -> str:
        import shutil

        copy = root / name
        shutil.copytree(model, copy)
        edit(copy)
        return str(copy)

    meta = json.loads((model / "config.json").read_text())
    np.save(root / "outside.npy", np.array([[1, 2, 99]] * 4))
    np.save(root / "floats.npy", np.zeros((4, 3), np.float32))
    np.save(root / "empty.npy", np.zeros((0, 3), np.int64))
    tokens = lambda path, extra="": write(f"tokens_{Path(path).stem}{extra}.yaml",  # noqa: E731
                                          f"task: {{name: tokens, path: {path}{extra}}}\nmodel: {{vocab_size: 8, shape: [3]}}\n"
                                          f"run_dir: {root / 'tokens_run'}\n")
    from datasets import Dataset

    Dataset.from_dict({"ids": [[1, 2, 3], [1, 2]]}).to_parquet(str(root / "ragged.parquet"))
    Dataset.from_dict({"ids": [[1, 0, 3]]}).to_parquet(str(root / "pad_inside.parquet"))
    Dataset.from_dict({"tokens": [[1, 2, 3]]}).to_parquet(str(root / "no_ids.parquet"))
    train = ["train", "--config"]
    return [
        ("config file missing", [*train, str(root / "missing.yaml")], "missing.yaml"),
        ("config is a folder", [*train, str(root)], str(root)),
        ("zero-byte YAML", [*train, write("zero.yaml", b"")], "task.name"),
        ("binary YAML", [*train, write("binary.yaml", b"\xff\xfe\x00")], "binary.yaml"),
        ("malformed YAML", [*train, write("bad.yaml", "task: [unclosed\n")], "bad.yaml"),
        ("a key twice", [*train, write("twice.yaml", "task: {name: synthetic}\ntrain: {}\ntrain: {}\n")], "twice"),
        ("top level a list", [*train, write("list.yaml", "- 1\n")], "list.yaml"),
        ("no task", [*train, write("notask.yaml", "model: {depth: 2}\n")], "task.name"),
        ("task not a mapping", [*train, write("tasklist.yaml", "task: [synthetic]\n")], "task.name"),
        ("unknown task", [*train, write("unknown.yaml", "task: {name: painting}\n")], "painting"),
        ("task name a number", [*train, write("number.yaml", "task: {name: 3}\n")], "task.name"),
        ("task by a bad path", [*train, write("path.yaml", "task: {name: 'nowhere_module:Task'}\n")], "nowhere"),
        ("run_dir null", [*train, write("null.yaml", "task: {name: synthetic}\nrun_dir: null\n")], "run_dir"),
        ("run_dir a list", [*train, write("rdlist.yaml", "task: {name: synthetic}\nrun_dir: [a]\n")], "run_dir"),
        ("run_dir a file", [*train, write("rdfile.yaml", f"task: {{name: synthetic}}\nrun_dir: {root / 'zero.yaml'}\n")],
         "run_dir"),
        ("override without =", ["check", "--config", CONFIGS[0], "model.depth"], "model.depth"),
        ("override with an empty key", ["check", "--config", CONFIGS[0], "model..depth=2"], "model..depth"),
        ("override malformed YAML", ["check", "--config", CONFIGS[0], "model.shape=[1,"], "model.shape"),
        ("override into a value", ["check", "--config", CONFIGS[0], "run_dir.x=1"], "run_dir"),
        ("unknown top-level section", ["check", "--config", CONFIGS[0], "decoder.x=1"], "decoder"),
        ("model folder missing", ["sample", "--model", str(root / "nowhere")], "nowhere"),
        ("a tokenizer folder as --model", ["sample", "--model", str(root / "tok" / "tokenizer")], "tokenizer"),
        ("a data folder as --model", ["sample", "--model", str(root)], str(root)),
        ("zero-byte weights", ["sample", "--model", damaged(
            "zero_weights", lambda d: (d / "model.safetensors").write_bytes(b""))], "model.safetensors"),
        ("truncated weights", ["sample", "--model", damaged("cut_weights", lambda d: (d / "model.safetensors").write_bytes(
            (model / "model.safetensors").read_bytes()[:100]))], "model.safetensors"),
        ("garbage config.json", ["sample", "--model", damaged(
            "garbage", lambda d: (d / "config.json").write_text("{not json"))], "config.json"),
        ("config.json without a class", ["sample", "--model", damaged(
            "noclass", lambda d: (d / "config.json").write_text(json.dumps({"config": {}})))], "config.json"),
        ("unknown model class", ["sample", "--model", damaged("class", lambda d: (d / "config.json").write_text(
            json.dumps({**meta, "class": "Painter"})))], "Painter"),
        ("format version 99", ["sample", "--model", damaged("v99", lambda d: (d / "config.json").write_text(
            json.dumps({**meta, "format_version": 99})))], "format version 99"),
        ("format 1 denoiser", ["sample", "--model", damaged("v1", lambda d: (d / "config.json").write_text(
            json.dumps({"class": meta["class"], "config": meta["config"], "format_version": 1})))], "ddm convert"),
        ("weights of another shape", ["sample", "--model", damaged("shape", lambda d: (d / "config.json").write_text(
            json.dumps({**meta, "config": {**meta["config"], "d_model": 64}})))], "model.safetensors"),
        ("a config that contradicts the folder", ["sample", *SYNTH, f"run_dir={run}", "diffusion.schedule=linear"],
         "diffusion.schedule"),
        ("a model of another config", ["sample", *SYNTH, f"run_dir={run}", "model.depth=2"], "depth"),
        ("guidance without dropout", ["sample", *SYNTH, f"run_dir={run}", "sample.guidance_scale=2"], "guidance"),
        ("resume with another model", ["train", *SYNTH, f"run_dir={run}", "model.d_model=64"], "model.d_model"),
        ("--force on a non-run folder", ["train", *SYNTH, f"run_dir={root / 'tok' / 'tokenizer'}", "--force"],
         "not a run folder"),
        ("token ids outside the vocabulary", [*train, tokens(root / "outside.npy")], "row 0, column 2"),
        ("float token ids", [*train, tokens(root / "floats.npy")], "floats.npy"),
        ("no token rows", [*train, tokens(root / "empty.npy")], "empty.npy"),
        ("ragged rows without a pad id", [*train, tokens(root / "ragged.parquet")], "row 1"),
        ("a pad inside a row", [*train, tokens(root / "pad_inside.parquet", ", pad_id: 0")], "row 0, column 1"),
        ("no ids column", [*train, tokens(root / "no_ids.parquet")], "ids"),
        ("token file missing", [*train, tokens(root / "absent.npy")], "absent.npy"),
        ("token file of another kind", [*train, tokens(root / "data.csv")], "data.csv"),
        ("encode: input missing", ["encode", "--config", "configs/tokenizers/graphs.yaml", f"run_dir={root / 'tok'}",
                                   "--input", str(root / "none.json"), "--output", str(root / "o")], "none.json"),
        ("decode: not safetensors", ["decode", "--config", "configs/tokenizers/graphs.yaml", f"run_dir={root / 'tok'}",
                                     "--input", str(root / "zero.yaml"), "--output", str(root / "o")], "zero.yaml"),
        ("sample a robot policy", ["sample", "--config", "configs/vla/smoke.yaml"], "ddm sample"),
        ("a tokenizer kind that is none", ["check", "--config", "configs/tokenizers/mnist.yaml", "task.kind=sound"],
         "sound"),
    ]


def run_case(argv: list[str], names: str) -> dict:
    """One command in this process: exit code, stderr, and whether it is a clear error."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse refuses malformed command lines this way
            code = e.code
        except BaseException as e:  # noqa: BLE001  a traceback: the failure this table looks for
            return {"code": None, "clear": False, "accepted": False, "message": f"{type(e).__name__}: {e}"}
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    clear = code == 2 and len(lines) == 1 and names in message and "Traceback" not in err.getvalue()
    return {"code": code, "clear": clear, "accepted": code == 0, "message": message}


def bad_input_table() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cases = field_cases() + file_cases(Path(tmp))
        results = [(what, run_case(argv, names)) for what, argv, names in cases]
    bad = [(w, r) for w, r in results if not r["clear"]]
    for what, r in bad:
        print(f"  NOT CLEAR: {what}: exit {r['code']}: {r['message'][:200]}")
    return {"cases": len(results), "clear": sum(r["clear"] for _, r in results),
            "accepted": sum(r["accepted"] for _, r in results), "tracebacks": sum(r["code"] is None for _, r in results)}


# --------------------------------------------------------------------------- (2) kills


def _train(run: Path, steps: int, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "ddm.cli", "train", *SYNTH, f"run_dir={run}",
                             f"train.steps={steps}", *extra], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _weights_hash(run: Path) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


def _visible_checkpoints_complete(run: Path) -> bool:
    from ddm.training.checkpoint import list_checkpoints, load_info, load_state, load_weights

    for folder in list_checkpoints(run / "checkpoints"):
        try:
            load_info(folder), load_weights(folder, "model"), load_state(folder, "optimizer")
        except Exception:  # noqa: BLE001
            return False
    return True


def kill_trials(kills: int, steps: int, extra: list[str], seed: int) -> dict:
    """Kill `ddm train` at random moments, check what resume would see, resume, compare."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        start = time.perf_counter()
        assert _train(reference, steps, extra).wait() == 0
        seconds = time.perf_counter() - start
        run, complete, identical = Path(tmp) / "run", 0, 0
        for k in range(kills):
            proc = _train(run, steps, extra)
            time.sleep(rng.uniform(1.5, max(2.0, 0.9 * seconds)))  # after the imports, before the end
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            complete += _visible_checkpoints_complete(run)
            if k % 4 == 3 or k == kills - 1:  # resume to the end now and then, and at the end
                assert _train(run, steps, extra).wait() == 0
                identical += _weights_hash(run) == _weights_hash(reference)
                import shutil

                shutil.rmtree(run)
                print(f"  {k + 1}/{kills} kills: resumed to the end", flush=True)
        return {"kills": kills, "checkpoints_complete_after_kill": complete, "resumed_runs": -(-kills // 4),
                "resumed_identical": identical}


def main_cli(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-kills", action="store_true")
    p.add_argument("--kills", type=int, default=20)
    args = p.parse_args(argv)
    os.chdir(REPO)
    table = bad_input_table()
    print(f"(1) bad input: {table['cases']} cases, {table['clear']} clear one-line errors "
          f"({100 * table['clear'] / table['cases']:.1f}%), {table['accepted']} accepted silently, "
          f"{table['tracebacks']} tracebacks")
    if args.skip_kills:
        return
    training = kill_trials(args.kills, 40, ["train.checkpoint_every=5", "train.log_every=5"], seed=0)
    print(f"(2) {training['kills']} kills while training: checkpoints complete after {training['checkpoints_complete_after_kill']}; "
          f"{training['resumed_identical']}/{training['resumed_runs']} resumed runs bit-identical to the uninterrupted one")
    pruning = kill_trials(args.kills, 40, ["train.checkpoint_every=1", "train.keep_checkpoints=1",
                                           "train.log_every=1"], seed=1)
    print(f"(2) {pruning['kills']} kills while saving and pruning every step: checkpoints complete after "
          f"{pruning['checkpoints_complete_after_kill']}; {pruning['resumed_identical']}/{pruning['resumed_runs']} "
          "resumed runs bit-identical")


if __name__ == "__main__":
    main_cli()
