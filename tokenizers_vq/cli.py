"""`ddm tokenizer train|stats|encode|decode`: one YAML per tokenizer and data set.

    ddm tokenizer train  --config configs/tokenizers/mnist.yaml [key.sub=value ...]
    ddm tokenizer stats  --config configs/tokenizers/mnist.yaml   # held-out figures + usage
    ddm tokenizer encode --config ... --input x.safetensors --output ids.safetensors
    ddm tokenizer decode --config ... --input ids.safetensors --output x.safetensors

A tokenizer config:

    kind: image                 # a key of tokenizers_vq.registry.KINDS
    tokenizer: {...}            # that class's config dataclass
    data: {...}                 # that class's DataConfig
    train: {...}                # ddm.config.TrainConfig (learned tokenizers)
    out_dir: runs/tokenizers/mnist

The fitted tokenizer goes to <out_dir>/tokenizer, the held-out figures to
<out_dir>/metrics.json, pictures beside them. Encode/decode read and write
safetensors files (key "x" for inputs, "ids" for token ids); where the modality's
inputs are not tensors (text, SMILES) the tokenizer's `read_input` says what it reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ddm.config import ConfigError, TrainConfig, apply_overrides, from_dict, read_yaml, to_dict
from ddm.io import atomic_write_json

from .registry import KINDS, get_tokenizer_class, load_tokenizer

TOKENIZER_DIR = "tokenizer"


@dataclass
class TokenizerExperiment:
    kind: str
    tokenizer: Any
    data: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: str = "runs/tokenizer"


def load_tokenizer_experiment(path: str | Path, overrides: list[str] = ()) -> TokenizerExperiment:
    data = apply_overrides(read_yaml(path), list(overrides))
    unknown = sorted(set(data) - {"kind", "tokenizer", "data", "train", "out_dir"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; a tokenizer config has kind, tokenizer, data, train, out_dir")
    if "kind" not in data:
        raise ConfigError(f"kind: missing; one of {', '.join(sorted(KINDS))}")
    cls = get_tokenizer_class(data["kind"])
    return TokenizerExperiment(kind=data["kind"], tokenizer=from_dict(cls.config_class, data.get("tokenizer"), "tokenizer"),
                               data=from_dict(cls.DataConfig, data.get("data"), "data"),
                               train=from_dict(TrainConfig, data.get("train"), "train"),
                               out_dir=str(data.get("out_dir", "runs/tokenizer")))


def print_metrics(title: str, metrics: dict[str, float]) -> None:
    print(title)
    width = max((len(k) for k in metrics), default=0)
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")


def _tokenizer_dir(cfg: TokenizerExperiment, args) -> Path:
    return Path(args.model) if getattr(args, "model", None) else Path(cfg.out_dir) / TOKENIZER_DIR


def _load(cfg: TokenizerExperiment, args):
    directory = _tokenizer_dir(cfg, args)
    if not directory.exists():
        raise SystemExit(f"error: no tokenizer at {directory}; run `ddm tokenizer train --config {args.config}` first")
    return load_tokenizer(directory)


def _report(tok, cfg: TokenizerExperiment, heldout) -> dict[str, float]:
    out_dir = Path(cfg.out_dir)
    metrics = tok.evaluate(heldout)
    atomic_write_json(out_dir / "metrics.json", metrics)
    print_metrics(f"{cfg.kind} tokenizer, held-out data (vocab {tok.vocab_size}):", metrics)
    for path in tok.save_pictures(heldout, out_dir):
        print(f"picture: {path}")
    return metrics


def fit_tokenizer(cfg: TokenizerExperiment, directory: Path | None = None):
    """Fit the tokenizer a config describes and save it to `directory` (default <out_dir>/tokenizer).

    Returns (tokenizer, data splits). Tasks call this to build their tokenizer in their run."""
    cls = get_tokenizer_class(cfg.kind)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    splits = cls.build_data(cfg.data)
    tok = cls(cfg.tokenizer)
    tok.fit(splits["train"], cfg.train if cls.learned else None, out_dir, heldout=splits.get("heldout"))
    directory = directory or out_dir / TOKENIZER_DIR
    tok.save_pretrained(directory)
    print(f"tokenizer saved to {directory}")
    return tok, splits


def cmd_train(args) -> int:
    cfg = load_tokenizer_experiment(args.config, args.overrides)
    tok, splits = fit_tokenizer(cfg)
    _report(tok, cfg, splits["heldout"])
    return 0


def cmd_stats(args) -> int:
    cfg = load_tokenizer_experiment(args.config, args.overrides)
    tok = _load(cfg, args)
    _report(tok, cfg, get_tokenizer_class(cfg.kind).build_data(cfg.data)["heldout"])
    return 0


def cmd_encode(args) -> int:
    cfg = load_tokenizer_experiment(args.config, args.overrides)
    tok = _load(cfg, args)
    stream = tok.encode(tok.read_input(args.input) if hasattr(tok, "read_input") else load_file(args.input)["x"])
    tensors = {"ids": stream.ids.contiguous(), "shape": torch.tensor(stream.shape)}
    if stream.values is not None:
        tensors["values"] = stream.values.contiguous()
    save_file(tensors, args.output)
    print(f"encoded {stream.batch_size} examples into ids of shape {tuple(stream.ids.shape)}: {args.output}")
    return 0


def cmd_decode(args) -> int:
    cfg = load_tokenizer_experiment(args.config, args.overrides)
    tok = _load(cfg, args)
    ids = load_file(args.input)["ids"]
    x = tok.decode(ids)
    if hasattr(tok, "write_output"):
        tok.write_output(x, args.output)
    else:
        save_file({"x": x.contiguous()}, args.output)
    print(f"decoded {ids.shape[0]} examples: {args.output}")
    return 0


def register(subparsers) -> None:
    """Add `ddm tokenizer ...` (the `ddm.commands` entry point)."""
    p = subparsers.add_parser("tokenizer", help="Train, inspect and apply tokenizers (images, video, motion, ...).",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="tokenizer_command", required=True, metavar="VERB")

    def verb(name: str, fn, help_text: str, model_arg: bool = True, io: bool = False):
        v = verbs.add_parser(name, help=help_text, description=help_text)
        v.add_argument("--config", required=True, help="tokenizer YAML, e.g. configs/tokenizers/mnist.yaml")
        if model_arg:
            v.add_argument("--model", help="tokenizer folder to use instead of <out_dir>/tokenizer")
        if io:
            v.add_argument("--input", required=True)
            v.add_argument("--output", required=True)
        v.add_argument("overrides", nargs="*", metavar="key.sub=value")
        v.set_defaults(fn=fn)

    verb("train", cmd_train, "Fit the tokenizer, save it, print held-out figures and write pictures.", False)
    verb("stats", cmd_stats, "Held-out reconstruction figures, codebook usage and perplexity.")
    verb("encode", cmd_encode, "Inputs (safetensors 'x', or the modality's file) -> ids (safetensors).", io=True)
    verb("decode", cmd_decode, "Ids (safetensors 'ids') -> outputs.", io=True)
