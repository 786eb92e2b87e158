"""Generation metrics of molecule samples (MOSES's definitions, our code).

* validity: share of samples rdkit sanitizes (the tokenizer's decode). A sample of several
  fragments counts as valid (as a SMILES with '.' does in MOSES); `connected` is the share of
  all samples that are valid and one fragment.
* uniqueness: distinct canonical SMILES / valid samples.
* novelty: share of the distinct valid samples whose canonical SMILES is not in the training set.
* internal diversity: 1 - mean Tanimoto similarity of Morgan fingerprints (radius 2, 2048 bits)
  over pairs of distinct valid samples (self-pairs left out).
* property distances: Wasserstein-1 between the valid samples' and a reference set's values.
"""

from __future__ import annotations

import numpy as np

from .properties import PROPERTIES, properties


def canonical_smiles(mols: list) -> list[str | None]:
    from rdkit import Chem

    return [None if m is None else Chem.MolToSmiles(m) for m in mols]


def validity(mols: list) -> float:
    return sum(m is not None for m in mols) / len(mols) if mols else float("nan")


def connected(mols: list) -> float:
    from rdkit import Chem

    return sum(m is not None and len(Chem.GetMolFrags(m)) == 1 for m in mols) / len(mols) if mols else float("nan")


def uniqueness(smiles: list[str | None]) -> float:
    valid = [s for s in smiles if s is not None]
    return len(set(valid)) / len(valid) if valid else float("nan")


def novelty(smiles: list[str | None], training: set[str]) -> float:
    distinct = {s for s in smiles if s is not None}
    return sum(s not in training for s in distinct) / len(distinct) if distinct else float("nan")


def internal_diversity(mols: list, radius: int = 2, bits: int = 2048) -> float:
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    fps = [gen.GetFingerprint(m) for m in mols if m is not None]
    if len(fps) < 2:
        return float("nan")
    total, pairs = 0.0, 0
    for i in range(len(fps) - 1):
        sims = DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1:])
        total, pairs = total + sum(sims), pairs + len(sims)
    return 1.0 - total / pairs


def property_distances(values: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """Wasserstein-1 per property between two sets of values (NaN where a set is empty)."""
    from scipy.stats import wasserstein_distance

    return {n: float(wasserstein_distance(values[n], reference[n])) if len(values[n]) and len(reference[n])
            else float("nan") for n in reference}


def generation_metrics(mols: list, training: set[str], reference: dict[str, np.ndarray]) -> dict[str, float]:
    """Every figure above for decoded samples (None: invalid) against training SMILES and reference values."""
    smiles = canonical_smiles(mols)
    valid = [m for m in mols if m is not None]
    values = properties(valid, tuple(reference))
    out = {"validity": validity(mols), "connected": connected(mols), "uniqueness": uniqueness(smiles),
           "novelty": novelty(smiles, training), "int_div": internal_diversity(valid)}
    out.update({f"w1_{n}": d for n, d in property_distances(values, reference).items()})
    return out


def conditioning_error(requested: np.ndarray, mols: list, name: str) -> dict[str, float]:
    """Mean absolute error between requested and generated property over the valid samples, and the
    correlation between them (a model that ignores the request has about 0)."""
    from .properties import property_of

    rows = [(r, property_of(m, name)) for r, m in zip(requested, mols) if m is not None]
    if not rows:
        return {"mae": float("nan"), "corr": float("nan"), "valid": 0.0}
    r, g = np.array(rows).T
    corr = float(np.corrcoef(r, g)[0, 1]) if len(rows) > 2 and r.std() > 0 and g.std() > 0 else float("nan")
    return {"mae": float(np.abs(r - g).mean()), "corr": corr, "valid": len(rows) / len(mols)}


__all__ = ["PROPERTIES", "canonical_smiles", "conditioning_error", "connected", "generation_metrics",
           "internal_diversity", "novelty", "property_distances", "uniqueness", "validity"]
