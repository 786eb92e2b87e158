"""Conditioning on one molecular property: a scalar fed to the model as a 1-d condition vector.

The value is standardised with the training molecules' mean and standard deviation and
given as `Condition.embeddings` [B, 1, 1] (`model.cond_embed_dim: 1`, projected into the
prefix). Training drops it with `diffusion.cond_dropout` (the learned null), so the same model
samples unconditionally with the condition dropped. A request outside the training
molecules' [min, max] is an error naming that range: the model has seen nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddm.model import Condition

from .properties import NAMES


@dataclass
class PropertyScale:
    name: str  # a key of properties.PROPERTIES
    low: float
    high: float
    mean: float
    std: float

    @classmethod
    def fit(cls, name: str, values: np.ndarray) -> "PropertyScale":
        values = np.asarray(values, dtype=np.float64)
        if not len(values):
            raise ValueError(f"{NAMES.get(name, name)}: no training values to fit the condition scale on")
        return cls(name, float(values.min()), float(values.max()), float(values.mean()),
                   float(max(values.std(), 1e-8)))

    def check(self, values, where: str = "requested") -> np.ndarray:
        """The requests as float64; ValueError naming the training range where one lies outside it."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        bad = ~np.isfinite(values) | (values < self.low) | (values > self.high)
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise ValueError(f"{where}[{i}]: {NAMES.get(self.name, self.name)} {float(values[i]):g} lies outside the "
                             f"training molecules' range [{self.low:.4g}, {self.high:.4g}]; request a value in it")
        return values

    def condition(self, values, where: str = "requested") -> Condition:
        """Condition for requested property values (checked against the training range)."""
        v = self.check(values, where)
        return Condition(embeddings=torch.from_numpy((v - self.mean) / self.std).float()[:, None, None])

    def embeddings(self, values: np.ndarray) -> np.ndarray:
        """Training values -> the model's condition vectors [B, 1, 1] (float32)."""
        return ((np.asarray(values, dtype=np.float64) - self.mean) / self.std).astype(np.float32)[:, None, None]

    @staticmethod
    def unconditional(n: int) -> Condition:
        """n rows of the null condition (the learned null embedding)."""
        return Condition(embeddings=torch.zeros(n, 1, 1)).dropped(True)
