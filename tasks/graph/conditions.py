"""What a graph is generated under: a family, a node count and, optionally, target statistics.

A request becomes one condition vector (`model.cond_embed_dim` = COND_DIM + bins), read by the
model as a prefix:

    [is_sbm, is_planar, nodes / max_nodes, degree_given, mean_degree / 10,
     communities_given, communities / 4, degree bins...]

The degree bins (`DegreeScale`, `task.degree_bins`; none by default) are soft bins of the mean
degree standardised within its family (`ddm.model.soft_bins`): a family's degrees span a narrow
range (planar 4.8 +- 0.24), which mean_degree / 10 maps to a sliver of one input that a small
model barely reads.

A statistic that is not requested has its "given" flag and value (and bins) at 0, and the
training rows hide each statistic at random (`hide_targets`), so one model samples a family
unconditionally (family and node count only, the node count drawn from the family's training
graphs, as DiGress samples it) or under any mix of targets. The node count is exact by
construction as well: the sampler is given the node tokens and the "no edge" of every pair
touching a padding node (`tokens.node_count_tokens`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ddm.model import soft_bins

FAMILIES = ("sbm", "planar")
COND_DIM = 7  # without degree bins
DEGREE_SCALE, COMMUNITY_SCALE = 10.0, 4.0


@dataclass
class Requests:
    """One row per graph to generate."""

    families: list[str]
    nodes: Tensor  # [B] long
    degrees: Tensor  # [B] float, NaN: not requested
    communities: Tensor  # [B] long, 0: not requested

    def __len__(self) -> int:
        return len(self.families)


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family: unknown graph family {family!r}; known: {', '.join(FAMILIES)}")
    return family


def _per_row(value, count: int, name: str) -> list:
    if value is None:
        return [None] * count
    if isinstance(value, (list, tuple, Tensor)):
        values = value.tolist() if isinstance(value, Tensor) else list(value)
        if len(values) != count:
            raise ValueError(f"{name}: {len(values)} values for {count} graphs")
        return values
    return [value] * count


def check_requests(family: str, count: int, nodes, mean_degree, communities, max_nodes: int,
                   block_range: tuple[int, int]) -> tuple[list, list, list]:
    """Per-row (nodes, mean degree, communities), each checked: clear errors for what no graph of
    this model can be (more nodes than it has slots, a negative or impossible mean degree,
    communities for a planar graph or outside the trained range)."""
    check_family(family)
    if not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError(f"count: expected a positive number of graphs, got {count!r}")
    nodes, degrees, blocks = (_per_row(nodes, count, "nodes"), _per_row(mean_degree, count, "mean_degree"),
                              _per_row(communities, count, "communities"))
    for n in nodes:
        if n is None:
            continue
        if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"nodes: expected a positive whole number of nodes, got {n!r}")
        if n > max_nodes:
            raise ValueError(f"nodes: {n} nodes is more than this model's maximum of {max_nodes} "
                             f"(the tokenizer's max_nodes: one node token per slot)")
    for n, d in zip(nodes, degrees):
        if d is None:
            continue
        if not isinstance(d, numbers.Real) or isinstance(d, bool) or not math.isfinite(d):
            raise ValueError(f"mean_degree: expected a finite number, got {d!r}")
        if d < 0:
            raise ValueError(f"mean_degree: {d} is negative; a mean degree is at least 0")
        if n is not None and d > n - 1:
            raise ValueError(f"mean_degree: {d} is impossible for {n} nodes (a simple graph of n nodes has a "
                             f"mean degree of at most n - 1 = {n - 1})")
    lo, hi = block_range
    for n, b in zip(nodes, blocks):
        if b is None:
            continue
        if family != "sbm":
            raise ValueError(f"communities: only SBM graphs have communities, not {family} graphs")
        if not isinstance(b, numbers.Integral) or isinstance(b, bool) or not lo <= b <= hi:
            raise ValueError(f"communities: {b!r} is outside the {lo}-{hi} communities this model was trained on")
        if n is not None and b > n:
            raise ValueError(f"communities: {b} communities cannot be made of {n} nodes")
    return nodes, degrees, blocks


def make_requests(family: str, nodes: list, degrees: list, blocks: list) -> Requests:
    """Checked per-row values (None: not requested; every node count must be set) -> Requests."""
    if any(n is None for n in nodes):
        raise ValueError("nodes: every row needs a node count (draw them from the training graphs)")
    return Requests([family] * len(nodes), torch.tensor([int(n) for n in nodes]),
                    torch.tensor([float("nan") if d is None else float(d) for d in degrees]),
                    torch.tensor([0 if b is None else int(b) for b in blocks]))


@dataclass
class DegreeScale:
    """Soft bins of the mean degree, standardised with each family's training graphs; the bins
    span the training z range of the families together."""

    bins: int = 0
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # family -> (mean, std)
    low: float = 0.0
    high: float = 0.0

    @classmethod
    def fit(cls, bins: int, families: list[str], degrees) -> "DegreeScale":
        """From the training graphs' families and mean degrees (one per graph)."""
        degrees = torch.as_tensor(degrees, dtype=torch.float64)
        stats, z = {}, []
        for f in sorted(set(families)):
            d = degrees[torch.tensor([g == f for g in families])]
            stats[f] = (float(d.mean()), max(float(d.std(unbiased=False)), 1e-8))
            z.append((d - stats[f][0]) / stats[f][1])
        z = torch.cat(z) if z else torch.zeros(1)
        return cls(bins, stats, float(z.min()), float(z.max()))

    def columns(self, requests: Requests) -> Tensor:
        """[B, bins]: the bins of each requested degree, zeros where none is requested."""
        out = torch.zeros(len(requests), self.bins)
        given = ~torch.isnan(requests.degrees)
        if self.bins and given.any():
            mean = torch.tensor([self.stats[f][0] for f in requests.families], dtype=torch.float64)
            std = torch.tensor([self.stats[f][1] for f in requests.families], dtype=torch.float64)
            z = (requests.degrees.double() - mean) / std
            out[given] = soft_bins(z[given], self.low, self.high, self.bins).float()
        return out


def condition_vectors(requests: Requests, max_nodes: int, degree_scale: DegreeScale | None = None) -> Tensor:
    """[B, 1, COND_DIM + bins] float: one prefix vector per graph (see the module docstring)."""
    b = len(requests)
    bins = degree_scale.bins if degree_scale is not None else 0
    out = torch.zeros(b, COND_DIM + bins)
    out[:, 0] = torch.tensor([f == "sbm" for f in requests.families], dtype=torch.float)
    out[:, 1] = torch.tensor([f == "planar" for f in requests.families], dtype=torch.float)
    out[:, 2] = requests.nodes.float() / max_nodes
    given = ~torch.isnan(requests.degrees)
    out[:, 3] = given.float()
    out[:, 4] = torch.where(given, requests.degrees, 0.0) / DEGREE_SCALE
    out[:, 5] = (requests.communities > 0).float()
    out[:, 6] = requests.communities.float() / COMMUNITY_SCALE
    if bins:
        out[:, COND_DIM:] = degree_scale.columns(requests)
    return out[:, None, :]


def hide_targets(requests: Requests, hide_degree: float, hide_communities: float,
                 generator: torch.Generator) -> Requests:
    """The same rows with each statistic hidden at random (the training rows' condition dropout
    per target; the family and node count stay)."""
    b = len(requests)
    drop_degree = torch.rand(b, generator=generator) < hide_degree
    drop_blocks = torch.rand(b, generator=generator) < hide_communities
    return Requests(requests.families, requests.nodes, requests.degrees.masked_fill(drop_degree, float("nan")),
                    requests.communities.masked_fill(drop_blocks, 0))

