"""The graph task's data: the tokenizer config's SBM and planar graphs, each with its family and
(SBM) its number of communities, relabelled 0..n-1 in one canonical node order.

The order is a free choice of representation (the graphs are unlabelled; metrics compare them up
to isomorphism), and it decides how far apart the tokens of related pairs lie. Reverse
Cuthill-McKee (the default) is the classic bandwidth-reducing order: neighbours get nearby
indices, so a planar graph's edges crowd along the diagonal of the adjacency. `bfs` is
GraphRNN's breadth-first order from a node of highest degree; `given` keeps the generator's
order (SBM: community by community, which gives the model the communities for free; planar:
random points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ORDERS = ("rcm", "bfs", "given")


def order_nodes(g, order: str):
    """A copy of g without attributes, its nodes relabelled 0..n-1 in `order` (ORDERS)."""
    import networkx as nx

    if order not in ORDERS:
        raise ValueError(f"node order: unknown order {order!r}; known: {', '.join(ORDERS)}")
    if order == "given":
        sequence = list(g.nodes)
    else:
        sequence = []
        # component by component, largest first, so every node is placed
        for component in sorted(nx.connected_components(g), key=lambda c: (-len(c), min(c))):
            sub = g.subgraph(component)
            if order == "rcm":
                sequence += list(nx.utils.reverse_cuthill_mckee_ordering(sub))
            else:
                start = max(sorted(sub.nodes), key=sub.degree)
                sequence += [start] + [v for _, v in nx.bfs_edges(sub, start,
                                                                  sort_neighbors=lambda vs: sorted(
                                                                      vs, key=lambda u: (-sub.degree(u), u)))]
    index = {v: i for i, v in enumerate(sequence)}
    out = nx.Graph()
    out.add_nodes_from(range(len(sequence)))
    out.add_edges_from((index[u], index[v]) for u, v in g.edges)
    return out


@dataclass
class GraphSet:
    graphs: list  # networkx graphs, nodes 0..n-1 in the task's order, no attributes
    families: list[str]  # "sbm" or "planar", per graph
    communities: list[int]  # SBM: the generating number of blocks; planar: 0

    def of(self, family: str) -> "GraphSet":
        keep = [i for i, f in enumerate(self.families) if f == family]
        return GraphSet([self.graphs[i] for i in keep], [family] * len(keep), [self.communities[i] for i in keep])

    def __len__(self) -> int:
        return len(self.graphs)

    def node_counts(self) -> np.ndarray:
        return np.array([g.number_of_nodes() for g in self.graphs])

    def mean_degrees(self) -> np.ndarray:
        return np.array([2.0 * g.number_of_edges() / g.number_of_nodes() for g in self.graphs])


def graph_sets(data_config, splits: dict, order: str) -> dict[str, GraphSet]:
    """{"train", "heldout"} GraphSets from `build_graph_data`'s splits (which interleave the families
    in the order of data_config.families)."""
    families = list(data_config.families)
    out = {}
    for name, graphs in splits.items():
        fams = [families[i % len(families)] for i in range(len(graphs))]
        blocks = [len({d.get("type", 0) for _, d in g.nodes(data=True)}) if f == "sbm" else 0
                  for g, f in zip(graphs, fams)]
        out[name] = GraphSet([order_nodes(g, order) for g in graphs], fams, blocks)
    return out
