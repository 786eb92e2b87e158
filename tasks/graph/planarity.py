"""A logits processor that keeps planar samples planar: constrained decoding, as valence masks keep
molecules valid (a sampler part, reported as its own row next to the plain model).

At every step, for each still-masked pair (i, j) between real nodes, the edge token is forbidden
when adding (i, j) to the edges committed so far would make the graph non-planar
(`networkx.check_planarity`). Two shortcuts keep it affordable on a CPU: an edge that joins two
components of the committed graph can never break planarity, and an edge whose probability is
below `min_probability` is forbidden without a test (a truncation like top-p: such an edge is
rarely drawn, and testing every unlikely pair of every graph at every step would cost minutes).
Candidates are tested likeliest first, and an edge more likely than not joins the graph the later
ones are tested against; still, tokens committed in the same step are drawn independently, so a
sample can end non-planar (or disconnected); validity is measured on the result.
"""

from __future__ import annotations

import torch
from torch import Tensor


class PlanarityConstraint:
    def __init__(self, layout, mask_id: int, min_probability: float = 0.05):
        self.layout, self.mask_id, self.min_probability = layout, mask_id, min_probability
        self.tests = 0  # planarity tests run (cost)

    def __call__(self, logits: Tensor, ids: Tensor, positions: Tensor) -> Tensor:
        lay = self.layout
        slots = positions - lay.max_nodes  # pair index of each row of logits (negative: a node slot)
        pairs = (slots >= 0).nonzero()[:, 0]
        if not len(pairs):
            return logits
        logits = logits.clone()
        p_edge = torch.softmax(logits.float(), -1)[..., lay.no_edge + 1]  # [B, M]
        counts = (ids[:, :lay.max_nodes] > 0).long().cumprod(1).sum(1)
        for b in range(ids.shape[0]):
            self._row(logits[b], ids[b], p_edge[b], pairs, slots, int(counts[b]))
        return logits

    def _row(self, logits: Tensor, ids: Tensor, p_edge: Tensor, pairs: Tensor, slots: Tensor, n: int) -> None:
        import networkx as nx

        lay = self.layout
        edge = lay.no_edge + 1
        rows, cols = lay.rows.tolist(), lay.cols.tolist()
        pair_ids = ids[lay.max_nodes:]
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from((rows[s], cols[s]) for s in (pair_ids == edge).nonzero()[:, 0].tolist())
        component = {v: c for c, nodes in enumerate(nx.connected_components(g)) for v in nodes}
        # likeliest first: an edge more likely than not stays in the graph the later candidates are
        # tested against, since this step will probably commit it (fewer same-step conflicts)
        order = pairs[torch.argsort(p_edge[pairs], descending=True, stable=True)]
        for m in order.tolist():
            s = int(slots[m])
            i, j = rows[s], cols[s]
            if pair_ids[s] != self.mask_id or i >= n or j >= n:
                continue  # decided already, or given "no edge" (a padding node)
            p = float(p_edge[m])
            if p < self.min_probability:
                logits[m, edge] = float("-inf")
                continue
            bridge = component[i] != component[j]  # joining two planar pieces keeps the graph planar
            g.add_edge(i, j)
            if not bridge:
                self.tests += 1
                if not nx.check_planarity(g)[0]:
                    g.remove_edge(i, j)
                    logits[m, edge] = float("-inf")
                    continue
            if p < 0.5:
                g.remove_edge(i, j)
            elif bridge:
                old, new = component[j], component[i]
                component = {v: new if c == old else c for v, c in component.items()}
