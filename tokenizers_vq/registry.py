"""Tokenizer kinds by name, imported only when asked for (rdkit, pybullet, ... load lazily)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ddm.config import ConfigError
from ddm.hub import load_pretrained
from ddm.io import read_json

from .base import Tokenizer

# kind -> "module:Class"; a modality module adds its line here.
KINDS: dict[str, str] = {
    "image": "tokenizers_vq.image:ImageTokenizer",
    "video": "tokenizers_vq.video:VideoTokenizer",
    "motion": "tokenizers_vq.motion:MotionTokenizer",
    "action_bins": "tokenizers_vq.actions:ActionBinTokenizer",
    "action_vq": "tokenizers_vq.actions:ActionVQTokenizer",
    "graph": "tokenizers_vq.graphs:GraphTokenizer",
    "molecule": "tokenizers_vq.molecules:MoleculeTokenizer",
    "text": "tokenizers_vq.text:TextTokenizer",
}


def get_tokenizer_class(kind: str) -> type[Tokenizer]:
    if kind not in KINDS:
        raise ConfigError(f"kind: unknown tokenizer kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    module, name = KINDS[kind].split(":")
    return getattr(import_module(module), name)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load any tokenizer from its pretrained folder (its module is imported from the class name)."""
    directory = Path(directory)
    config_file = directory / "config.json"
    name = read_json(config_file).get("class") if config_file.is_file() else None
    for kind, path in KINDS.items():
        if path.split(":")[1] == name:
            get_tokenizer_class(kind)
    model = load_pretrained(directory)
    if not isinstance(model, Tokenizer):
        raise ValueError(f"{directory}: holds a {type(model).__name__}, not a tokenizer")
    return model
