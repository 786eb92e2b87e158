"""Graph-generation figures with the published protocol's definitions (GraphRNN -> GRAN -> SPECTRE
-> DiGress): MMD² between generated and reference graphs of three per-graph histograms, and
uniqueness, novelty, V.U.N. by graph isomorphism.

- degree: `networkx.degree_histogram`, normalised; Gaussian kernel on total variation, sigma 1;
- clustering: local clustering coefficients in 100 bins over [0, 1], normalised; sigma 0.1;
- spectral: eigenvalues of the normalised Laplacian in 200 bins over [-1e-5, 2], normalised; sigma 1.

The kernel is k(x, y) = exp(-TV(x, y)² / 2 sigma²), TV = |x - y|₁ / 2 (the "gaussian_tv" these
papers use by default, not the slower EMD variant); MMD² = E k(x, x') + E k(y, y') - 2 E k(x, y)
over all pairs, self-pairs included, as their code computes it. Orbit-count MMD needs the ORCA
counter (a compiled C++ tool, not available offline here) and is not computed.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np


def gaussian_tv_mmd2(x: Sequence[np.ndarray], y: Sequence[np.ndarray], sigma: float) -> float:
    """MMD² between two sets of histograms (each normalised to sum 1, zero-padded to one length)."""
    if not len(x) or not len(y):
        raise ValueError("mmd: both sets need at least one graph")
    width = max(max(len(h) for h in x), max(len(h) for h in y))

    def stack(hists):
        out = np.zeros((len(hists), width))
        for i, h in enumerate(hists):
            h = np.asarray(h, dtype=float)
            total = h.sum()
            out[i, :len(h)] = h / total if total > 0 else h
        return out

    a, b = stack(x), stack(y)

    def kernel(p, q):
        tv = 0.5 * np.abs(p[:, None, :] - q[None, :, :]).sum(-1)
        return np.exp(-tv ** 2 / (2 * sigma ** 2))

    return float(kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean())


def degree_histogram(g) -> np.ndarray:
    import networkx as nx

    return np.asarray(nx.degree_histogram(g), dtype=float)


def clustering_histogram(g, bins: int = 100) -> np.ndarray:
    import networkx as nx

    values = list(nx.clustering(g).values()) if g.number_of_nodes() else []
    return np.histogram(values, bins=bins, range=(0.0, 1.0))[0].astype(float)


def spectral_histogram(g, bins: int = 200) -> np.ndarray:
    import networkx as nx

    if not g.number_of_nodes():
        return np.zeros(bins)
    laplacian = nx.normalized_laplacian_matrix(g).toarray()
    eigenvalues = np.linalg.eigvalsh(laplacian)
    return np.histogram(eigenvalues, bins=bins, range=(-1e-5, 2.0))[0].astype(float)


STATISTICS: dict[str, tuple[Callable, float]] = {
    "degree": (degree_histogram, 1.0),
    "clustering": (clustering_histogram, 0.1),
    "spectral": (spectral_histogram, 1.0),
}


def mmd_figures(generated: list, reference: list) -> dict[str, float]:
    """{"degree_mmd", "clustering_mmd", "spectral_mmd"}: MMD² of generated against reference graphs."""
    return {f"{name}_mmd": gaussian_tv_mmd2([f(g) for g in generated], [f(g) for g in reference], sigma)
            for name, (f, sigma) in STATISTICS.items()}


# ---------------------------------------------------------------------------- isomorphism classes


class IsomorphismIndex:
    """Graphs bucketed by their Weisfeiler-Lehman hash; `find` confirms a match with an exact
    isomorphism test (the hash is necessary, not sufficient)."""

    def __init__(self, graphs: Sequence = ()):
        self.buckets: dict[str, list] = {}
        for g in graphs:
            self.add(g)

    @staticmethod
    def key(g) -> str:
        import networkx as nx

        with warnings.catch_warnings():  # networkx 3.5 warns that attribute-free hashes changed: ours are never stored
            warnings.simplefilter("ignore", UserWarning)
            return nx.weisfeiler_lehman_graph_hash(g, iterations=3)

    def find(self, g) -> bool:
        import networkx as nx

        return any(nx.is_isomorphic(g, h) for h in self.buckets.get(self.key(g), ()))

    def add(self, g) -> None:
        self.buckets.setdefault(self.key(g), []).append(g)


def first_of_class(graphs: Sequence) -> list[bool]:
    """Per graph: True where no earlier graph of the list is isomorphic to it."""
    seen, out = IsomorphismIndex(), []
    for g in graphs:
        new = not seen.find(g)
        if new:
            seen.add(g)
        out.append(new)
    return out


def uniqueness(graphs: Sequence) -> float:
    """Isomorphism classes among the graphs / graphs (n copies of one graph: 1/n)."""
    if not graphs:
        raise ValueError("uniqueness: no graphs")
    return sum(first_of_class(graphs)) / len(graphs)


def novel_flags(graphs: Sequence, training: IsomorphismIndex) -> list[bool]:
    return [not training.find(g) for g in graphs]


def vun_figures(graphs: Sequence, valid: Sequence[bool], training: IsomorphismIndex) -> dict[str, float]:
    """Validity, uniqueness, novelty and V.U.N. (DiGress): the share of samples that are valid, the
    first of their isomorphism class among the samples, and isomorphic to no training graph."""
    if len(valid) != len(graphs):
        raise ValueError(f"valid: {len(valid)} flags for {len(graphs)} graphs")
    unique = first_of_class(graphs)
    novel = novel_flags(graphs, training)
    n = len(graphs)
    return {"validity": sum(valid) / n, "uniqueness": sum(unique) / n, "novelty": sum(novel) / n,
            "vun": sum(v and u and o for v, u, o in zip(valid, unique, novel)) / n}


# ---------------------------------------------------------------------------- conditioning


def mean_degree(g) -> float:
    n = g.number_of_nodes()
    return 2.0 * g.number_of_edges() / n if n else 0.0


def condition_errors(graphs: Sequence, nodes: Sequence[int], degrees: Sequence[float]) -> dict[str, float]:
    """Requested against generated: the share with the exact node count, mean |node error|, mean
    |mean-degree error| (where a degree was requested)."""
    node_err = [abs(g.number_of_nodes() - int(n)) for g, n in zip(graphs, nodes)]
    deg_err = [abs(mean_degree(g) - float(d)) for g, d in zip(graphs, degrees) if d == d]  # NaN: not requested
    out = {"nodes_exact": sum(e == 0 for e in node_err) / len(node_err),
           "nodes_abs_error": float(np.mean(node_err))}
    if deg_err:
        out["mean_degree_abs_error"] = float(np.mean(deg_err))
    return out
