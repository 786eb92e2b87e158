"""A grid picture of sampled molecules (rdkit Draw), each labelled with a property."""

from __future__ import annotations

import sys
from pathlib import Path


def molecule_grid(mols: list, path: Path, legends: list[str], per_row: int = 4) -> Path | None:
    """Draw the molecules (None: skipped) to `path`; None where this rdkit cannot draw."""
    pairs = [(m, text) for m, text in zip(mols, legends) if m is not None]
    if not pairs:
        return None
    try:
        from rdkit.Chem import Draw

        image = Draw.MolsToGridImage([m for m, _ in pairs], molsPerRow=per_row, subImgSize=(250, 200),
                                     legends=[text for _, text in pairs])
    except ImportError as e:  # an rdkit build without drawing support
        print(f"no molecule picture: {e}", file=sys.stderr)
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
