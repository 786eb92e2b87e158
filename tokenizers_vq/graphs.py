"""Graphs as token streams: node-type tokens, then edge-type tokens over the upper triangle.

A graph of n <= max_nodes nodes becomes max_nodes node tokens (real nodes first, then
the padding type) followed by max_nodes * (max_nodes - 1) / 2 edge tokens, one per
pair i < j in row-major order ("no edge" included), so decoding is exact. One
vocabulary holds both kinds:

    0                     padding node
    1 .. K                node types 0 .. K-1
    K + 1                 no edge
    K + 2 .. K + 1 + E    edge types 1 .. E

The layout (`AdjacencyLayout`) is shared with the molecule tokenizer (atoms, bonds).
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddm.config import positive

from .base import Tokenizer
from .data.graphs import GraphDataConfig, build_graph_data
from .stream import TokenStream
from .registry import TOKENIZERS


def _is_int(t: Any) -> bool:
    return isinstance(t, numbers.Integral) and not isinstance(t, bool)  # numpy ints too


class AdjacencyLayout:
    """Node types [B, N] (-1: padding) and edge types [B, N, N] (0: none) <-> ids [B, L]."""

    def __init__(self, max_nodes: int, node_types: int, edge_types: int) -> None:
        self.max_nodes, self.node_types, self.edge_types = max_nodes, node_types, edge_types
        self.rows, self.cols = torch.triu_indices(max_nodes, max_nodes, offset=1)
        self.no_edge = node_types + 1

    @property
    def vocab_size(self) -> int:
        return self.node_types + self.edge_types + 2

    @property
    def length(self) -> int:
        return self.max_nodes + len(self.rows)

    def to_ids(self, nodes: torch.Tensor, edges: torch.Tensor) -> TokenStream:
        n = (nodes >= 0).sum(1)
        node_ids = nodes + 1  # padding -1 -> 0
        edge_ids = edges[:, self.rows, self.cols] + self.no_edge
        ids = torch.cat([node_ids, edge_ids], 1).long()
        real = torch.arange(self.max_nodes)[None] < n[:, None]
        mask = torch.cat([real, real[:, self.rows] & real[:, self.cols]], 1)
        return TokenStream(ids, (self.length,), mask=mask)

    def from_ids(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, L] (already checked against the vocabulary) -> (nodes, edges); clear errors
        where a token of the wrong kind sits in a slot or the padding is not a suffix."""
        n_max, k = self.max_nodes, self.node_types
        node_ids, edge_ids = ids[:, :n_max], ids[:, n_max:]
        bad = node_ids > k
        if bad.any():
            b, i = bad.nonzero()[0].tolist()
            raise ValueError(f"ids: example {b}, node slot {i} holds edge token {int(node_ids[b, i])} "
                             f"(node tokens are [0, {k}])")
        bad = edge_ids <= k
        if bad.any():
            b, e = bad.nonzero()[0].tolist()
            raise ValueError(f"ids: example {b}, edge slot {e} (nodes {int(self.rows[e])}, {int(self.cols[e])}) "
                             f"holds node token {int(edge_ids[b, e])} (edge tokens are [{k + 1}, {self.vocab_size}))")
        real = node_ids > 0
        not_suffix = real[:, 1:] & ~real[:, :-1]
        if not_suffix.any():
            b, i = not_suffix.nonzero()[0].tolist()
            raise ValueError(f"ids: example {b} has a real node at slot {i + 1} after a padding node; "
                             f"padding must come last")
        nodes = node_ids - 1
        edges = torch.zeros(len(ids), n_max, n_max, dtype=torch.long)
        edges[:, self.rows, self.cols] = edge_ids - self.no_edge
        edges = edges + edges.transpose(1, 2)
        dangling = (edges > 0) & ~(real[:, :, None] & real[:, None, :])
        if dangling.any():
            b, i, j = dangling.nonzero()[0].tolist()
            raise ValueError(f"ids: example {b} has an edge between nodes {i} and {j}, one of them padding")
        return nodes, edges


@dataclass
class GraphConfig:
    max_nodes: int = positive(64)
    node_types: int = positive(4)  # node attribute `type` in [0, node_types)
    edge_types: int = positive(1)  # edge attribute `type` in [1, edge_types]
    node_attr: str = "type"  # absent: type 0
    edge_attr: str = "type"  # absent: type 1


@TOKENIZERS.register("graph")
class GraphTokenizer(Tokenizer):
    config_class = GraphConfig
    DataConfig = GraphDataConfig

    def __init__(self, config: GraphConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = AdjacencyLayout(config.max_nodes, config.node_types, config.edge_types)

    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    def _arrays(self, g: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        import networkx as nx

        c = self.config
        if not isinstance(g, nx.Graph) or g.is_directed() or g.is_multigraph():
            raise TypeError(f"graphs[{index}]: expected an undirected networkx.Graph, got {type(g).__name__}")
        n = g.number_of_nodes()
        if n > c.max_nodes:
            raise ValueError(f"graphs[{index}]: {n} nodes, more than max_nodes={c.max_nodes}")
        order = {v: i for i, v in enumerate(g.nodes)}
        nodes = torch.full((c.max_nodes,), -1, dtype=torch.long)
        for v, i in order.items():
            t = g.nodes[v].get(c.node_attr, 0)
            if not _is_int(t) or not 0 <= t < c.node_types:
                raise ValueError(f"graphs[{index}]: node {v!r} has {c.node_attr}={t!r}, "
                                 f"expected an int in [0, {c.node_types})")
            nodes[i] = int(t)
        edges = torch.zeros(c.max_nodes, c.max_nodes, dtype=torch.long)
        for u, v, data in g.edges(data=True):
            if u == v:
                raise ValueError(f"graphs[{index}]: self-loop at node {u!r}; the upper triangle has no diagonal")
            t = data.get(c.edge_attr, 1)
            if not _is_int(t) or not 1 <= t <= c.edge_types:
                raise ValueError(f"graphs[{index}]: edge ({u!r}, {v!r}) has {c.edge_attr}={t!r}, "
                                 f"expected an int in [1, {c.edge_types}]")
            edges[order[u], order[v]] = edges[order[v], order[u]] = int(t)
        return nodes, edges

    def encode(self, graphs: Any) -> TokenStream:
        """A networkx graph or a list of them -> ids [B, max_nodes + max_nodes (max_nodes - 1) / 2]."""
        import networkx as nx

        graphs = [graphs] if isinstance(graphs, nx.Graph) else list(graphs)
        if not graphs:
            raise ValueError("encode: no graphs given")
        arrays = [self._arrays(g, i) for i, g in enumerate(graphs)]
        return self.layout.to_ids(torch.stack([a[0] for a in arrays]), torch.stack([a[1] for a in arrays]))

    def decode(self, stream: TokenStream | torch.Tensor) -> list:
        """ids -> networkx graphs with nodes 0..n-1 (in encoding order) carrying node and edge types."""
        import networkx as nx

        ids = self.check_ids(stream.ids if isinstance(stream, TokenStream) else stream, (self.layout.length,))
        nodes, edges = self.layout.from_ids(ids)
        out = []
        for b in range(len(ids)):
            g = nx.Graph()
            n = int((nodes[b] >= 0).sum())
            g.add_nodes_from((i, {self.config.node_attr: int(nodes[b, i])}) for i in range(n))
            i, j = torch.triu_indices(n, n, offset=1)
            types = edges[b, i, j]
            g.add_edges_from((int(u), int(v), {self.config.edge_attr: int(t)})
                             for u, v, t in zip(i[types > 0], j[types > 0], types[types > 0]))
            out.append(g)
        return out

    def same_graph(self, a: Any, b: Any) -> bool:
        """Equal after relabelling a's nodes 0..n-1 in node order (what a round trip gives), types included."""
        import networkx as nx

        a = nx.convert_node_labels_to_integers(a)
        c = self.config
        node_type = lambda g, v: g.nodes[v].get(c.node_attr, 0)  # noqa: E731
        edge_type = lambda g, u, v: g.edges[u, v].get(c.edge_attr, 1)  # noqa: E731
        return (list(a.nodes) == list(b.nodes) and {frozenset(e) for e in a.edges} == {frozenset(e) for e in b.edges}
                and all(node_type(a, v) == node_type(b, v) for v in a.nodes)
                and all(edge_type(a, u, v) == edge_type(b, u, v) for u, v in a.edges))

    @classmethod
    def build_data(cls, data_config: GraphDataConfig) -> dict[str, Any]:
        return build_graph_data(data_config)

    def evaluate(self, heldout: list) -> dict[str, float]:
        stream = self.encode(heldout)
        decoded = self.decode(stream)
        exact = [self.same_graph(a, b) for a, b in zip(heldout, decoded)]
        edge_slots = stream.ids[:, self.config.max_nodes:]
        real_pairs = stream.mask[:, self.config.max_nodes:]
        return {"graphs": len(heldout), "exact_round_trip": sum(exact) / len(exact),
                "round_trip_failures": len(exact) - sum(exact), "tokens_per_graph": stream.length,
                "mean_nodes": sum(g.number_of_nodes() for g in heldout) / len(heldout),
                "mean_edges": sum(g.number_of_edges() for g in heldout) / len(heldout),
                # what a denoiser faces: how rare "edge" is among the real node pairs
                "edge_fraction_of_real_pairs": float((edge_slots > self.layout.no_edge)[real_pairs].double().mean())}

    def save_pictures(self, heldout: list, out_dir: Path) -> list[Path]:
        return [draw_graphs(self.decode(self.encode(heldout[:8])), Path(out_dir) / "graphs_decoded.png",
                            self.config.node_attr)]

    def read_input(self, path: str | Path) -> list:
        """A JSON list of networkx node-link graphs."""
        import networkx as nx

        return [nx.node_link_graph(d, edges="edges") for d in json.loads(Path(path).read_text())]

    def write_output(self, graphs: list, path: str | Path) -> None:
        import networkx as nx

        Path(path).write_text(json.dumps([nx.node_link_data(g, edges="edges") for g in graphs]))


def draw_graphs(graphs: list, path: Path, node_attr: str = "type", columns: int = 4) -> Path:
    """Draw graphs in a grid (nodes coloured by type) with networkx and matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    rows = (len(graphs) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, g in zip(axes.flat, graphs):
        colours = [g.nodes[v].get(node_attr, 0) for v in g.nodes]
        nx.draw_networkx(g, pos=nx.spring_layout(g, seed=0), ax=ax, node_size=25, with_labels=False,
                         node_color=colours, cmap="tab10", vmin=0, vmax=9, width=0.5)
        ax.set_title(f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
