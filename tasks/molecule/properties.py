"""Molecular properties (rdkit): QED, Crippen logP, SA score, molecular weight.

SA (synthetic accessibility, Ertl & Schuffenhauer 2009) comes from the scorer rdkit ships in
its Contrib folder (`SA_Score/sascorer.py` with its fragment table), imported from the
installed rdkit: offline, no download.
"""

from __future__ import annotations

import importlib
import sys
from functools import lru_cache

import numpy as np

PROPERTIES = ("qed", "logp", "sa", "mw")
NAMES = {"qed": "QED", "logp": "logP", "sa": "SA", "mw": "MW"}


@lru_cache(maxsize=1)
def sa_scorer():
    """rdkit's Contrib SA scorer module (ImportError naming the folder where it is missing)."""
    import os

    from rdkit.Chem import RDConfig

    folder = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if not os.path.isfile(os.path.join(folder, "sascorer.py")):
        raise ImportError(f"no SA scorer at {folder}/sascorer.py (this rdkit build ships no Contrib folder)")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module("sascorer")


def property_of(mol, name: str) -> float:
    from rdkit.Chem import QED, Crippen, Descriptors

    if name == "qed":
        return float(QED.qed(mol))
    if name == "logp":
        return float(Crippen.MolLogP(mol))
    if name == "sa":
        return float(sa_scorer().calculateScore(mol))
    if name == "mw":
        return float(Descriptors.MolWt(mol))
    raise ValueError(f"unknown property {name!r}; known: {', '.join(PROPERTIES)}")


def properties(mols: list, names=PROPERTIES) -> dict[str, np.ndarray]:
    """{property: [len(mols)] float64} of rdkit molecules (none may be None)."""
    return {n: np.array([property_of(m, n) for m in mols], dtype=np.float64) for n in names}


def parse_all(smiles: list[str], where: str) -> list:
    """rdkit molecules of SMILES that must all parse: ValueError naming the first that does not."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # the error names the string; no rdkit noise on stderr
    try:
        mols = []
        for i, s in enumerate(smiles):
            mol = Chem.MolFromSmiles(s) if isinstance(s, str) and s else None
            if mol is None:
                raise ValueError(f"{where}[{i}]: rdkit cannot parse SMILES {s!r}")
            mols.append(mol)
        return mols
    finally:
        RDLogger.EnableLog("rdApp.*")


def smiles_properties(smiles: list[str], where: str, names=PROPERTIES) -> dict[str, np.ndarray]:
    """Properties of SMILES given as data (scoring references, conditioning requests)."""
    return properties(parse_all(smiles, where), names)
