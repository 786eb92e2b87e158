"""Molecules as token streams: atom-type tokens and bond-type tokens (rdkit).

A SMILES string is parsed by rdkit, its atoms put in a canonical order (the same molecule
always gives the same tokens; `atom_order`: rdkit's canonical atom ranks, or the order in
which the atoms appear in rdkit's canonical SMILES, where most bonds join neighbouring
atoms, which is easier for a generative model to learn), and kekulized, so that aromaticity needs no token of its
own: bonds are single, double or triple and rdkit perceives aromaticity again when the
decoded molecule is sanitized. An atom type is (element, formal charge, explicit H
count), written "N", "N+1", "O-1", "NH1"; the types are learned from the training SMILES
by `fit` and kept in the config (config.json). Token layout: `graphs.AdjacencyLayout`
with max_atoms nodes and 3 bond types.

Not represented (MOSES has none of them): stereochemistry, isotopes, radicals; a
molecule that has them does not round-trip, and `evaluate` says so.

Decoding gives rdkit molecules, or None where the tokens are not a valid molecule
(sanitization fails, e.g. a valence violated), with the reason in `last_invalid`.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ddm.config import ConfigError, TrainConfig, positive

from .base import Tokenizer
from .data.molecules import MoleculeDataConfig, build_molecule_data
from .graphs import AdjacencyLayout
from .stream import TokenStream
from .registry import TOKENIZERS

BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE")  # edge types 1, 2, 3
ATOM_TYPE = re.compile(r"^([A-Z][a-z]?)([+-]\d+)?(?:H(\d+))?$")


def atom_type_name(symbol: str, charge: int, hydrogens: int) -> str:
    return symbol + (f"{charge:+d}" if charge else "") + (f"H{hydrogens}" if hydrogens else "")


def parse_atom_type(name: str) -> tuple[str, int, int]:
    m = ATOM_TYPE.match(name)
    if m is None:
        raise ConfigError(f"tokenizer.atom_types: {name!r} is not an atom type like 'C', 'N+1', 'NH1', 'N+1H1'")
    return m.group(1), int(m.group(2) or 0), int(m.group(3) or 0)


@dataclass
class MoleculeConfig:
    max_atoms: int = positive(32)  # heavy atoms (MOSES: at most 27)
    atom_types: list[str] = field(default_factory=list)  # empty: learned by fit from the training SMILES
    # canonical: by rdkit's canonical atom ranks; smiles: as the atoms appear in the canonical SMILES
    # (a depth-first walk: on MOSES 74% of bonds join atoms i and i+1, against 11% in rank order)
    atom_order: Literal["canonical", "smiles"] = "canonical"

    def __post_init__(self) -> None:
        for name in self.atom_types:
            parse_atom_type(name)
        if len(set(self.atom_types)) != len(self.atom_types):
            raise ConfigError(f"tokenizer.atom_types: duplicates in {self.atom_types}")


def kekulized(smiles: str, where: str, order: str = "canonical"):
    """SMILES -> rdkit molecule in canonical atom order (`MoleculeConfig.atom_order`), kekulized;
    ValueError naming the input."""
    from rdkit import Chem, RDLogger

    if not isinstance(smiles, str):
        raise TypeError(f"{where}: expected a SMILES string, got {type(smiles).__name__}")
    RDLogger.DisableLog("rdApp.*")  # the error below names the string; no rdkit noise on stderr
    try:
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    finally:
        RDLogger.EnableLog("rdApp.*")
    if mol is None:
        raise ValueError(f"{where}: rdkit cannot parse SMILES {smiles!r}")
    if order == "smiles":
        Chem.MolToSmiles(mol)  # records the canonical SMILES's atom order on the molecule
        new_order = [int(i) for i in mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"]]
    else:
        ranks = list(Chem.CanonicalRankAtoms(mol))
        new_order = sorted(range(len(ranks)), key=ranks.__getitem__)
    mol = Chem.RenumberAtoms(mol, new_order)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    return mol


def canonical(smiles: str) -> str | None:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")
    return None if mol is None else Chem.MolToSmiles(mol)


@TOKENIZERS.register("molecule")
class MoleculeTokenizer(Tokenizer):
    config_class = MoleculeConfig
    DataConfig = MoleculeDataConfig
    fitted_fields = ("atom_types",)

    def __init__(self, config: MoleculeConfig) -> None:
        super().__init__()
        self.config = config
        self.last_invalid: list[str | None] = []  # per decoded molecule: why it is None (or None)
        self._set_types(config.atom_types)

    def _set_types(self, names: list[str]) -> None:
        self.config.atom_types = list(names)
        self.type_index = {name: i for i, name in enumerate(names)}
        self.layout = AdjacencyLayout(self.config.max_atoms, max(1, len(names)), len(BOND_TYPES))

    def _require_types(self) -> None:
        if not self.config.atom_types:
            raise RuntimeError("MoleculeTokenizer: no atom types; call fit(train_smiles) or set tokenizer.atom_types")

    @property
    def vocab_size(self) -> int:
        self._require_types()
        return self.layout.vocab_size

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None) -> dict[str, float]:
        """Learn the atom types of the training SMILES (most frequent first), unless given in the config."""
        if self.config.atom_types:
            return {}
        counts: Counter = Counter()
        for i, s in enumerate(train):
            for a in kekulized(s, f"fit: train[{i}]", self.config.atom_order).GetAtoms():
                counts[atom_type_name(a.GetSymbol(), a.GetFormalCharge(), a.GetNumExplicitHs())] += 1
        if not counts:
            raise ValueError("fit: no atoms in the training SMILES")
        self._set_types(sorted(counts, key=lambda n: (-counts[n], n)))
        return {"atom_types": len(counts)}

    def _arrays(self, smiles: str, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        mol = kekulized(smiles, where, self.config.atom_order)
        n = mol.GetNumAtoms()
        if n > self.config.max_atoms:
            raise ValueError(f"{where}: {smiles!r} has {n} heavy atoms, more than max_atoms={self.config.max_atoms}")
        nodes = torch.full((self.config.max_atoms,), -1, dtype=torch.long)
        for a in mol.GetAtoms():
            name = atom_type_name(a.GetSymbol(), a.GetFormalCharge(), a.GetNumExplicitHs())
            if name not in self.type_index:
                raise ValueError(f"{where}: {smiles!r} has atom type {name!r}, not among the fitted types "
                                 f"{self.config.atom_types}")
            nodes[a.GetIdx()] = self.type_index[name]
        edges = torch.zeros(self.config.max_atoms, self.config.max_atoms, dtype=torch.long)
        for b in mol.GetBonds():
            kind = str(b.GetBondType())
            if kind not in BOND_TYPES:
                raise ValueError(f"{where}: {smiles!r} has a {kind} bond after kekulization")
            i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
            edges[i, j] = edges[j, i] = BOND_TYPES.index(kind) + 1
        return nodes, edges

    def encode(self, smiles: str | list[str]) -> TokenStream:
        """SMILES (one or a list) -> ids [B, max_atoms + max_atoms (max_atoms - 1) / 2]."""
        self._require_types()
        smiles = [smiles] if isinstance(smiles, str) else list(smiles)
        if not smiles:
            raise ValueError("encode: no SMILES given")
        arrays = [self._arrays(s, f"smiles[{i}]") for i, s in enumerate(smiles)]
        return self.layout.to_ids(torch.stack([a[0] for a in arrays]), torch.stack([a[1] for a in arrays]))

    def _molecule(self, nodes: torch.Tensor, edges: torch.Tensor):
        """(molecule, None) or (None, why it is not a valid molecule)."""
        from rdkit import Chem

        mol = Chem.RWMol()
        n = int((nodes >= 0).sum())
        for i in range(n):
            symbol, charge, hydrogens = parse_atom_type(self.config.atom_types[int(nodes[i])])
            atom = Chem.Atom(symbol)
            atom.SetFormalCharge(charge)
            atom.SetNumExplicitHs(hydrogens)
            mol.AddAtom(atom)
        rows, cols = torch.triu_indices(n, n, offset=1)
        for i, j in zip(rows.tolist(), cols.tolist()):
            if edges[i, j]:
                mol.AddBond(i, j, getattr(Chem.BondType, BOND_TYPES[int(edges[i, j]) - 1]))
        mol = mol.GetMol()
        try:
            Chem.SanitizeMol(mol)  # valences, then aromaticity perceived again
        except Exception as e:  # rdkit raises several types (AtomValenceException, KekulizeException, ...)
            return None, f"{type(e).__name__}: {e}"
        return mol, None

    def decode(self, stream: TokenStream | torch.Tensor) -> list:
        """ids -> rdkit molecules (None where invalid; reasons in `last_invalid`)."""
        self._require_types()
        ids = self.check_ids(stream.ids if isinstance(stream, TokenStream) else stream, (self.layout.length,))
        nodes, edges = self.layout.from_ids(ids)
        results = [self._molecule(nodes[b], edges[b]) for b in range(len(ids))]
        self.last_invalid = [why for _, why in results]
        return [mol for mol, _ in results]

    def decode_smiles(self, stream: TokenStream | torch.Tensor) -> list[str | None]:
        from rdkit import Chem

        return [None if m is None else Chem.MolToSmiles(m) for m in self.decode(stream)]

    @classmethod
    def build_data(cls, data_config: MoleculeDataConfig) -> dict[str, Any]:
        return build_molecule_data(data_config)

    def evaluate(self, heldout: list[str]) -> dict[str, float]:
        """Canonical SMILES identical after the round trip; failures counted and printed by cause."""
        causes: Counter = Counter()
        failures: list[tuple[str, str]] = []
        ok = 0
        for i, s in enumerate(heldout):
            try:
                out = self.decode_smiles(self.layout.to_ids(*(a[None] for a in self._arrays(s, f"heldout[{i}]"))))[0]
            except ValueError as e:
                cause = "too many atoms" if "max_atoms" in str(e) else "unknown atom type" \
                    if "atom type" in str(e) else "encode error"
                causes[cause] += 1
                failures.append((s, str(e)))
                continue
            if out is None:
                causes["invalid after decoding"] += 1
                failures.append((s, self.last_invalid[0]))
            elif out != canonical(s):
                causes["different molecule"] += 1
                failures.append((s, f"decoded as {out}"))
            else:
                ok += 1
        for s, why in failures[:20]:
            print(f"  round-trip failure: {s}: {why}", file=sys.stderr)
        metrics = {"molecules": len(heldout), "canonical_smiles_identical": ok / max(1, len(heldout)),
                   "failures": len(failures), "atom_types": len(self.config.atom_types),
                   "tokens_per_molecule": self.layout.length}
        metrics.update({f"failures_{k.replace(' ', '_')}": v for k, v in sorted(causes.items())})
        return metrics

    def save_pictures(self, heldout: list[str], out_dir: Path) -> list[Path]:
        try:
            from rdkit.Chem import Draw

            mols = [m for m in self.decode(self.encode(heldout[:12])) if m is not None]
            image = Draw.MolsToGridImage(mols, molsPerRow=4, subImgSize=(250, 200))
        except ImportError as e:  # a build of rdkit without drawing support
            print(f"no molecule picture: {e}", file=sys.stderr)
            return []
        path = Path(out_dir) / "molecules_decoded.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        return [path]

    def read_input(self, path: str | Path) -> list[str]:
        """A text file of SMILES, one per line."""
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]

    def write_output(self, molecules: list, path: str | Path) -> None:
        from rdkit import Chem

        # an invalid molecule is an empty line, so that line numbers still match the input
        Path(path).write_text("".join((Chem.MolToSmiles(m) if m is not None else "") + "\n" for m in molecules))
