"""Conditioning on one molecular property: a value fed to the model as a condition vector.

The value is standardised with the training molecules' mean and standard deviation (z) and
given as `Condition.embeddings` [B, 1, 1 + bins] (`model.cond_embed_dim: 1 + bins`, projected
into the prefix): z itself, then `bins` soft bins, Gaussian bumps exp(-(z - c_k)^2 / 2w^2)
at evenly spaced centres c_k over the training range (w their spacing). The bins give each
range of values its own direction in the prefix token. With z alone, a linear projection
gives the model one direction whose length it must learn to read, and at CPU size it did
not: shuffling the conditions among the held-out molecules moved the ELBO by 4e-7 bits per
token, and samples ignored the request (`ddm eval` prints both ELBOs). Training drops the
condition with `diffusion.cond_dropout` (the learned null), so the same model samples
unconditionally with it dropped. A request outside the training molecules' [min, max] is an
error naming that range: the model has seen nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddm.model import Condition, soft_bins

from .properties import NAMES


@dataclass
class PropertyScale:
    name: str  # a key of properties.PROPERTIES
    low: float
    high: float
    mean: float
    std: float
    bins: int = 0  # soft bins beside the standardised value

    @classmethod
    def fit(cls, name: str, values: np.ndarray, bins: int = 0) -> "PropertyScale":
        values = np.asarray(values, dtype=np.float64)
        if not len(values):
            raise ValueError(f"{NAMES.get(name, name)}: no training values to fit the condition scale on")
        return cls(name, float(values.min()), float(values.max()), float(values.mean()),
                   float(max(values.std(), 1e-8)), bins)

    @property
    def width(self) -> int:
        """The condition vector's width (`model.cond_embed_dim`)."""
        return 1 + self.bins

    def embeddings(self, values: np.ndarray) -> np.ndarray:
        """Property values [B] -> condition vectors [B, 1, 1 + bins] (float32): z, then the soft bins."""
        z = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
        columns = [z[:, None]]
        if self.bins:
            columns.append(soft_bins(torch.from_numpy(z), (self.low - self.mean) / self.std,
                                     (self.high - self.mean) / self.std, self.bins).numpy())
        return np.concatenate(columns, 1).astype(np.float32)[:, None, :]

    def values(self, cond: Condition) -> np.ndarray:
        """The property values a condition requests (its first column, z)."""
        return cond.embeddings[:, 0, 0].double().numpy() * self.std + self.mean

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
        return Condition(embeddings=torch.from_numpy(self.embeddings(self.check(values, where))))

    def unconditional(self, n: int) -> Condition:
        """n rows of the null condition (the learned null embedding)."""
        return Condition(embeddings=torch.zeros(n, 1, self.width)).dropped(True)
