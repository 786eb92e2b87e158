"""MOSES molecules (SMILES) for the molecule tokenizer, read from the installed `molsets` package.

The package's own code has stale dependencies, so it is never imported: the csv.gz
files are found in its folder and read line by line (only the rows needed). Rows
[0, num_train) of train.csv.gz train, the next num_heldout rows are held out.
A SMILES string rdkit cannot parse is reported (count and examples on stderr, and in
the returned "skipped" list) and left out, never kept.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from ddm.config import ConfigError, positive


@dataclass
class MoleculeDataConfig:
    file: str = "train"  # MOSES csv: train, test or test_scaffolds
    num_train: int = positive(20000)
    num_heldout: int = positive(10000)


def moses_file(name: str) -> Path:
    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the MOSES data needs the `molsets` package (install it with --no-deps)")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data" / f"{name}.csv.gz"
    if not path.is_file():
        raise ConfigError(f"data.file: {path} does not exist; expected train, test or test_scaffolds")
    return path


def read_smiles(path: Path, count: int) -> list[str]:
    """The first `count` SMILES of a MOSES csv.gz (column SMILES; header row skipped)."""
    out = []
    with gzip.open(path, "rt") as f:
        header = next(f).strip().split(",")
        if "SMILES" not in header:
            raise ValueError(f"{path}: no SMILES column in header {header}")
        col = header.index("SMILES")
        for line in f:
            if len(out) >= count:
                break
            out.append(line.rstrip("\n").split(",")[col])
    if len(out) < count:
        raise ValueError(f"{path}: holds {len(out)} rows, fewer than the {count} asked for")
    return out


def parsable(smiles: list[str]) -> tuple[list[str], list[str]]:
    """(SMILES rdkit parses, SMILES it does not)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # the failures are reported below, once
    try:
        good, bad = [], []
        for s in smiles:
            (good if s and Chem.MolFromSmiles(s) is not None else bad).append(s)
        return good, bad
    finally:
        RDLogger.EnableLog("rdApp.*")


def build_molecule_data(cfg: MoleculeDataConfig) -> dict[str, list[str]]:
    """{"train": [SMILES], "heldout": [SMILES], "skipped": [unparsable SMILES]}."""
    rows = read_smiles(moses_file(cfg.file), cfg.num_train + cfg.num_heldout)
    train, bad_train = parsable(rows[: cfg.num_train])
    heldout, bad_heldout = parsable(rows[cfg.num_train:])
    skipped = bad_train + bad_heldout
    print(f"molecule data: {len(train)} train, {len(heldout)} held out; skipped {len(skipped)} SMILES rdkit "
          f"cannot parse{', e.g. ' + repr(skipped[:5]) if skipped else ''}", file=sys.stderr)
    return {"train": train, "heldout": heldout, "skipped": skipped}
