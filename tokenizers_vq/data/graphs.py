"""Graph data sets for the graph tokenizer: stochastic block models and planar graphs.

These are the two standard graph-generation benchmarks (SPECTRE, DiGress), drawn here
from fixed seeds: an SBM has 2-4 communities of 8-16 nodes (node type = community),
edge probability `p_in` inside a community and `p_out` across; a planar graph is the
Delaunay triangulation of `planar_nodes` uniform random points in the unit square
(node type 0), or of a uniform number of points in [planar_min_nodes, planar_nodes]
where `planar_min_nodes` is set. Every edge has type 1.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from ddm.config import ConfigError, bounded, positive


@dataclass
class GraphDataConfig:
    families: list[Literal["sbm", "planar"]] = field(default_factory=lambda: ["sbm", "planar"])
    num_train: int = positive(200)  # per family
    num_heldout: int = positive(500)  # per family
    seed: int = 0
    min_blocks: int = positive(2)
    max_blocks: int = positive(4)
    min_block_size: int = positive(8)
    max_block_size: int = positive(16)
    p_in: float = bounded(0.3, 0.0, 1.0)
    p_out: float = bounded(0.05, 0.0, 1.0)
    planar_nodes: int = bounded(64, 3)
    planar_min_nodes: int = bounded(0, 0)  # 0: every planar graph has planar_nodes nodes

    def __post_init__(self) -> None:
        if not self.families:
            raise ConfigError("data.families: empty; expected some of 'sbm', 'planar'")
        if self.min_blocks > self.max_blocks or self.min_block_size > self.max_block_size:
            raise ConfigError("data.min_blocks/min_block_size: a minimum exceeds its maximum")
        if self.planar_min_nodes and not 3 <= self.planar_min_nodes <= self.planar_nodes:
            raise ConfigError(f"data.planar_min_nodes: {self.planar_min_nodes} is outside [3, planar_nodes="
                              f"{self.planar_nodes}] (0: a fixed node count)")


def sbm_graph(cfg: GraphDataConfig, rng: random.Random):
    import networkx as nx

    sizes = [rng.randint(cfg.min_block_size, cfg.max_block_size)
             for _ in range(rng.randint(cfg.min_blocks, cfg.max_blocks))]
    probs = [[cfg.p_in if i == j else cfg.p_out for j in range(len(sizes))] for i in range(len(sizes))]
    g = nx.stochastic_block_model(sizes, probs, seed=rng.randrange(2**31))
    out = nx.Graph()
    out.add_nodes_from((v, {"type": int(d["block"])}) for v, d in sorted(g.nodes(data=True)))  # blocks contiguous
    out.add_edges_from((u, v, {"type": 1}) for u, v in g.edges)
    return out


def planar_graph(cfg: GraphDataConfig, rng: random.Random):
    import networkx as nx
    import numpy as np
    from scipy.spatial import Delaunay

    # the count is drawn only for a range, so fixed-size data sets keep their seeds' graphs
    n = rng.randint(cfg.planar_min_nodes, cfg.planar_nodes) if cfg.planar_min_nodes else cfg.planar_nodes
    points = np.random.default_rng(rng.randrange(2**31)).random((n, 2))
    g = nx.Graph()
    g.add_nodes_from((i, {"type": 0}) for i in range(n))
    for simplex in Delaunay(points).simplices:
        a, b, c = (int(v) for v in simplex)
        g.add_edges_from([(a, b, {"type": 1}), (b, c, {"type": 1}), (a, c, {"type": 1})])
    return g


FAMILIES = {"sbm": sbm_graph, "planar": planar_graph}


def build_graph_data(cfg: GraphDataConfig) -> dict[str, list]:
    """{"train": [networkx.Graph], "heldout": [...]}; each split interleaves the families."""
    out = {}
    for split, count in (("train", cfg.num_train), ("heldout", cfg.num_heldout)):
        rngs = {f: random.Random(f"{cfg.seed}-{split}-{f}") for f in cfg.families}
        out[split] = [FAMILIES[f](cfg, rngs[f]) for _ in range(count) for f in cfg.families]
    return out
