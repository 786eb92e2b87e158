"""Sample-quality figures in a classifier's feature space: Fréchet distance and diversity."""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import Tensor


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a [N, D] and b [M, D]."""
    a, b = a.double().cpu().numpy(), b.double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr sqrt(A B) = Tr sqrt(A^1/2 B A^1/2), a symmetric PSD matrix: stable eigenvalues, no complex parts.
    w, v = linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    inner = linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(inner.clip(min=0)).sum())


def mean_pairwise_distance(features: Tensor, labels: Tensor) -> float:
    """Mean L2 distance between features of different samples of the same class (diversity)."""
    total, count = 0.0, 0
    for c in labels.unique():
        f = features[labels == c].double()
        if len(f) < 2:
            continue
        d = torch.cdist(f, f)
        n = len(f)
        total += float(d.sum()) / (n * (n - 1)) * n
        count += n
    return total / max(count, 1)
