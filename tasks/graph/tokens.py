"""The graph task's token streams (`tokenizers_vq.graphs.AdjacencyLayout` with one node type and
one edge type): 0 padding node, 1 node, 2 no edge, 3 edge; node tokens first, then one token
per pair i < j, so a sample is symmetric by construction.

- `node_count_tokens`: what a sampler is given for graphs of chosen sizes;
- `node_entities`: the nodes each token belongs to, for node embeddings in the model;
- `kind_processor`: node slots may hold only node tokens and pair slots only edge tokens (a
  logits processor for training and sampling alike);
- `decode_graphs`: ids -> networkx graphs that never refuses a sample: the node count is read
  from the node tokens, an edge to a padding node is dropped and a token of the wrong kind
  in a pair slot is read as "no edge"; both are counted (the autoregressive baseline, which
  samples without the processor, can make them).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ddm.sampling.constraints import AllowedTokens


def node_count_tokens(nodes: Tensor, layout) -> tuple[Tensor, Tensor]:
    """(ids [B, L], given [B, L]) for graphs of `nodes` nodes: every node token (real, then padding)
    and the "no edge" of every pair touching a padding node are given; the pairs among real nodes
    are left to the sampler. The first max_nodes ids are the autoregressive baseline's prompt."""
    n_max = layout.max_nodes
    if (nodes > n_max).any() or (nodes < 1).any():
        raise ValueError(f"nodes: every count must be in [1, {n_max}], got {nodes.tolist()}")
    types = torch.where(torch.arange(n_max)[None] < nodes[:, None], 0, -1)
    stream = layout.to_ids(types, torch.zeros(len(nodes), n_max, n_max, dtype=torch.long))
    given = ~stream.mask
    given[:, :n_max] = True
    return stream.ids, given


def node_entities(layout) -> list[list[int]]:
    """The nodes of every token (`model.position_entities`): node token i -> [i, S], pair token
    (i, j) -> [i, j]; S = max_nodes marks a node slot."""
    slot = layout.max_nodes
    return [[i, slot] for i in range(slot)] + [[int(r), int(c)] for r, c in zip(layout.rows, layout.cols)]


def kind_processor(layout) -> AllowedTokens:
    allowed = torch.zeros(layout.length, layout.vocab_size, dtype=torch.bool)
    allowed[:layout.max_nodes, :layout.no_edge] = True
    allowed[layout.max_nodes:, layout.no_edge:] = True
    return AllowedTokens(allowed)


def decode_graphs(ids: Tensor, layout) -> tuple[list, dict[str, float]]:
    """ids [B, L] -> (networkx graphs, {"malformed_pairs": share of pair slots among real nodes
    holding a node token, "edges_to_padding": mean count per graph of edges to padding nodes})."""
    import networkx as nx

    n_max = layout.max_nodes
    node_ids, pair_ids = ids[:, :n_max], ids[:, n_max:]
    real = node_ids > 0
    counts = real.long().cumprod(1).sum(1)  # real nodes before the first padding
    rows, cols = layout.rows, layout.cols
    graphs, wrong, real_pairs, dangling = [], 0, 0, 0
    for b in range(len(ids)):
        n = int(counts[b])
        inside = (rows < n) & (cols < n)
        edge = pair_ids[b] > layout.no_edge
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from(zip(rows[inside & edge].tolist(), cols[inside & edge].tolist()))
        graphs.append(g)
        wrong += int((inside & (pair_ids[b] < layout.no_edge)).sum())
        real_pairs += int(inside.sum())
        dangling += int((~inside & edge).sum())
    return graphs, {"malformed_pairs": wrong / max(real_pairs, 1), "edges_to_padding": dangling / max(len(ids), 1)}
