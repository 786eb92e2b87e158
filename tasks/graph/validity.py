"""Is a generated graph a valid member of its family?

- planar (SPECTRE, DiGress): connected and planar (`networkx.check_planarity`).
- SBM: DiGress fits a stochastic block model with graph-tool (`minimize_blockmodel_dl`), asks
  for 2-5 blocks of 20-40 nodes, and runs a Wald test of the fitted intra / inter edge
  probabilities against the generating ones. graph-tool is not installable offline, so this is a
  documented substitute with the same three parts:
    1. blocks: spectral partitions (k-means on the leading eigenvectors of the normalised
       adjacency) for k = 2 .. max_blocks + 1, keeping the one of highest modularity;
    2. the block count and every block size must lie in the generating ranges;
    3. a Wald test per probability with the variance under the null hypothesis and the number of
       node pairs it was estimated from, W = (p̂ - p₀)² / (p₀ (1 - p₀) / m) ~ chi²(1); the graph is
       valid when neither p-value is below `alpha`. (DiGress divides by p̂ (1 - p̂) without m, a
       far looser test; ours is stricter per graph but uses fewer nodes.)
  On true SBM graphs of the task's sizes it passes most, on Erdős-Rényi graphs of the same
  density almost none (tests/test_graph_task.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


def planar_valid(g) -> bool:
    import networkx as nx

    return g.number_of_nodes() > 0 and nx.is_connected(g) and nx.check_planarity(g)[0]


@dataclass
class SBMParameters:
    """The generating model the test holds a graph against (the data section's SBM fields)."""

    min_blocks: int
    max_blocks: int
    min_block_size: int
    max_block_size: int
    p_in: float
    p_out: float
    alpha: float = 0.01


def spectral_partition(g, k: int, seed: int = 0) -> np.ndarray:
    """Block labels [n] from k-means (scipy) on the k leading eigenvectors of D^-1/2 A D^-1/2, rows normalised."""
    import networkx as nx
    from scipy.cluster.vq import kmeans2

    a = nx.to_numpy_array(g, nodelist=sorted(g.nodes))
    degree = a.sum(1)
    inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    _, vectors = np.linalg.eigh(inv[:, None] * a * inv[None, :])
    x = vectors[:, -k:]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.where(norms > 0, x / np.maximum(norms, 1e-12), x)
    with warnings.catch_warnings():  # an empty cluster is dropped by the caller
        warnings.simplefilter("ignore")
        _, labels = kmeans2(x, k, minit="++", seed=np.random.default_rng(seed), iter=30)
    return labels


def modularity(g, labels: np.ndarray) -> float:
    import networkx as nx

    nodes = sorted(g.nodes)
    groups = [{v for v, b in zip(nodes, labels) if b == c} for c in np.unique(labels)]
    if g.number_of_edges() == 0:
        return 0.0
    return nx.community.modularity(g, groups)


def refine(g, labels: np.ndarray, passes: int = 5) -> np.ndarray:
    """Greedy single-node moves between the existing blocks while modularity rises (k-means on a
    few eigenvectors misplaces a node or two in small graphs)."""
    labels = labels.copy()
    q = modularity(g, labels)
    blocks = np.unique(labels)
    for _ in range(passes):
        moved = False
        for v in range(len(labels)):
            own = labels[v]
            if (labels == own).sum() == 1:
                continue  # never empty a block: k stays as chosen
            for b in blocks:
                if b == own:
                    continue
                labels[v] = b
                q_new = modularity(g, labels)
                if q_new > q + 1e-12:
                    q, own, moved = q_new, b, True
                else:
                    labels[v] = own
        if not moved:
            break
    return labels


def best_partition(g, max_blocks: int, seed: int = 0) -> np.ndarray:
    """The spectral partition (refined by node moves) of highest modularity over k = 2 ..
    max_blocks + 1 (one more than allowed, so a graph with too many communities can show it)."""
    n = g.number_of_nodes()
    best, best_q = np.zeros(n, dtype=int), -np.inf
    for k in range(2, min(max_blocks + 1, n - 1) + 1):
        labels = spectral_partition(g, k, seed)
        _, labels = np.unique(labels, return_inverse=True)  # drop empty clusters
        labels = refine(g, labels)
        q = modularity(g, labels)
        if q > best_q:
            best, best_q = labels, q
    return best


def block_probabilities(g, labels: np.ndarray) -> tuple[float, int, float, int]:
    """(p̂_in, pairs inside blocks, p̂_out, pairs across blocks)."""
    import networkx as nx

    a = nx.to_numpy_array(g, nodelist=sorted(g.nodes))
    same = labels[:, None] == labels[None, :]
    upper = np.triu(np.ones_like(a, dtype=bool), 1)
    m_in, m_out = int((same & upper).sum()), int((~same & upper).sum())
    e_in, e_out = float(a[same & upper].sum()), float(a[~same & upper].sum())
    return (e_in / m_in if m_in else 0.0), m_in, (e_out / m_out if m_out else 0.0), m_out


def wald_p_value(p_hat: float, p0: float, pairs: int) -> float:
    from scipy.stats import chi2

    if pairs == 0:
        return 1.0
    w = (p_hat - p0) ** 2 / (p0 * (1 - p0) / pairs)
    return float(chi2.sf(w, 1))


def sbm_blocks(g, params: SBMParameters, seed: int = 0) -> int:
    """The number of communities the partition finds (what a `communities` condition is checked against)."""
    if g.number_of_nodes() < 3:
        return 1
    return len(np.unique(best_partition(g, params.max_blocks, seed)))


def sbm_valid(g, params: SBMParameters, seed: int = 0) -> bool:
    n = g.number_of_nodes()
    if n < 2 * params.min_block_size:
        return False
    labels = best_partition(g, params.max_blocks, seed)
    sizes = np.bincount(labels)
    if not params.min_blocks <= len(sizes) <= params.max_blocks:
        return False
    if sizes.min() < params.min_block_size or sizes.max() > params.max_block_size:
        return False
    p_in, m_in, p_out, m_out = block_probabilities(g, labels)
    return (wald_p_value(p_in, params.p_in, m_in) >= params.alpha
            and wald_p_value(p_out, params.p_out, m_out) >= params.alpha)
