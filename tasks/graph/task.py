"""The graph task: masked diffusion over full adjacency tokens of SBM and planar graphs (the
SPECTRE / DiGress benchmarks, at CPU size), unconditional within a family and conditioned on
target statistics (node count, mean degree, SBM communities).

    ddm run --config configs/tasks/graph_cpu.yaml

`prepare` fits the (lossless) graph tokenizer of `task.tokenizer_config` into <run_dir>/tokenizer
and encodes its data section's graphs in one canonical node order (`data.py`): a token per node
slot, then a token per node pair i < j, symmetric by construction. Each training graph is a row
`task.condition_copies` times, each copy with its own statistics hidden at random
(`conditions.py`), so one model serves every mix of conditions; node tokens and the pairs touching
padding nodes are given, never targets. `ddm train` trains the denoiser; `ddm eval` trains the
autoregressive baseline once (same transformer made causal, same rows and steps), then, per
family, draws graphs unconditionally (node counts from the training graphs) and under the
statistics of held-out graphs, and prints degree / clustering / spectral MMD² against held-out
graphs (next to the training graphs' own), validity, uniqueness, novelty, V.U.N. and the
conditioning errors for both models (`metrics.py`, `validity.py`); it writes a PNG of samples.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from datasets import Dataset

from ddm.config import ConfigError, bounded, positive
from ddm.experiment import load_experiment
from ddm.model import Condition
from ddm.sampling import ExpectedCount, Fixed, Sampler, sample_many
from ddm.task import DiffusionTask, register_task
from tokenizers_vq import tokenizer_for_task
from tokenizers_vq.graphs import draw_graphs

from . import metrics
from .conditions import COND_DIM, FAMILIES, DegreeScale, Requests, check_family, check_requests, condition_vectors, \
    hide_targets, make_requests
from .data import ORDERS, graph_sets
from .planarity import PlanarityConstraint
from .tokens import decode_graphs, kind_processor, node_count_tokens, node_entities
from .validity import SBMParameters, planar_valid, sbm_blocks, sbm_valid


@dataclass
class GraphTaskConfig:
    name: str = "graph"
    tokenizer_config: str = "configs/tokenizers/graph_gen.yaml"  # a graph tokenizer experiment: its data
    node_order: Literal["rcm", "bfs", "given"] = "rcm"  # the canonical node order of the tokens (data.py)
    condition_copies: int = positive(2)  # training rows per graph, each with its own statistics hidden
    hide_degree: float = bounded(0.5, 0.0, 1.0)  # the share of rows whose mean degree is hidden
    hide_communities: float = bounded(0.5, 0.0, 1.0)  # ... whose SBM community count is hidden
    samples_per_family: int = positive(100)  # graphs per family and row of the table
    sbm_alpha: float = bounded(0.01, 0.0, 1.0)  # the SBM test's significance level (validity.py)
    conditioned: bool = True  # evaluate the conditioned rows
    baseline: bool = True  # train and compare the autoregressive baseline
    planar_constraint: bool = True  # also sample planar graphs under the planarity processor (its own row)
    planar_min_probability: float = bounded(0.05, 0.0, 1.0)  # edges less likely are not tested but dropped
    # conditioned rows are also sampled with the edge count steered to the request (n * degree / 2) by
    # `ddm.sampling.ExpectedCount`, each its own row next to the model alone (and, for planar graphs,
    # with the planarity processor as well)
    edge_count_guidance: bool = True
    # node embeddings in the tokens: a pair token (i, j) carries learned vectors of nodes i and j, a node
    # token its node's and a node-slot vector (`model.position_entities`, filled in from the layout)
    node_positions: bool = False
    # soft bins of the requested mean degree in the condition vector (conditions.py); model.cond_embed_dim
    # = 7 + degree_bins
    degree_bins: int = bounded(0, 0)
    picture_graphs: int = positive(8)  # graphs per family in samples.png


@register_task("graph")
class GraphTask(DiffusionTask):
    Config = GraphTaskConfig
    resumable = DiffusionTask.resumable + ("task.samples_per_family", "task.sbm_alpha", "task.conditioned",
                                           "task.baseline", "task.picture_graphs", "task.planar_constraint",
                                           "task.planar_min_probability", "task.edge_count_guidance")

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        t, m = self.config.task, self.config.model
        if t.node_order not in ORDERS:
            raise ConfigError(f"task.node_order: unknown order {t.node_order!r}; known: {', '.join(ORDERS)}")
        if t.degree_bins == 1:
            raise ConfigError("task.degree_bins: 1; expected 0 (the degree alone) or at least 2 bins")
        if m.cond_embed_dim != COND_DIM + t.degree_bins:
            raise ConfigError(f"model.cond_embed_dim: the graph task's condition vector has "
                              f"{COND_DIM + t.degree_bins} numbers ({COND_DIM} + task.degree_bins) "
                              f"(conditions.py), got {m.cond_embed_dim}")
        if m.num_classes or m.cond_vocab_size or m.continuous_dim:
            raise ConfigError("model: the graph model is conditioned on its condition vector only; set "
                              "model.num_classes, cond_vocab_size and continuous_dim to 0")

    def setup(self) -> None:
        t, m = self.config.task, self.config.model
        self.data_config = load_experiment(t.tokenizer_config).data
        self.tokenizer = tokenizer_for_task(t.tokenizer_config, None, self.run_dir, "graph")
        self.layout = self.tokenizer.layout
        tc = self.tokenizer.config
        if tc.node_types != 1 or tc.edge_types != 1:
            raise ConfigError(f"{t.tokenizer_config}: the graph task models unattributed graphs (node_types=1, "
                              f"edge_types=1), got node_types={tc.node_types}, edge_types={tc.edge_types}")
        if m.vocab_size != self.layout.vocab_size or list(m.shape) != [self.layout.length]:
            raise ConfigError(f"model: vocab_size={m.vocab_size}, shape={m.shape} do not match the tokenizer of "
                              f"{t.tokenizer_config}: expected vocab_size={self.layout.vocab_size} and shape="
                              f"[{self.layout.length}] ({tc.max_nodes} node tokens + one per node pair)")
        if t.node_positions:
            self.config.model = dataclasses.replace(m, position_entities=node_entities(self.layout))
        d = self.data_config
        self.sbm = SBMParameters(d.min_blocks, d.max_blocks, d.min_block_size, d.max_block_size, d.p_in, d.p_out,
                                 t.sbm_alpha)
        self.sets = graph_sets(d, type(self.tokenizer).build_data(d), t.node_order)
        self.families = [f for f in FAMILIES if f in d.families]
        train = self.sets["train"]
        self.degree_scale = DegreeScale.fit(t.degree_bins, list(train.families), train.mean_degrees())
        if d.num_heldout < 2 * t.samples_per_family:
            raise ConfigError(f"task.samples_per_family: {t.samples_per_family} needs {2 * t.samples_per_family} "
                              f"held-out graphs per family (half the reference, half the real-data row); "
                              f"{t.tokenizer_config} has data.num_heldout={d.num_heldout}")
        self._training_index: dict = {}

    # ------------------------------------------------------------------ rows for the trainer
    def _requests_of(self, split: str) -> Requests:
        s = self.sets[split]
        return Requests(list(s.families), torch.tensor(s.node_counts()), torch.tensor(s.mean_degrees()).float(),
                        torch.tensor(s.communities))

    def _rows(self, split: str, copies: int) -> Dataset:
        t = self.config.task
        graphs = self.sets[split].graphs
        stream = self.tokenizer.encode(graphs)
        context = torch.zeros_like(stream.mask)
        context[:, :self.layout.max_nodes] = stream.mask[:, :self.layout.max_nodes]  # the real nodes: given
        generator = torch.Generator().manual_seed(self.config.train.seed)
        parts = []
        for _ in range(copies):
            requests = hide_targets(self._requests_of(split), t.hide_degree, t.hide_communities, generator)
            parts.append({"ids": stream.ids, "padding": ~stream.mask, "context": context,
                          "cond_embeddings": condition_vectors(requests, self.layout.max_nodes, self.degree_scale)})
        columns = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
        return Dataset.from_dict(columns).with_format("torch")

    def train_dataset(self) -> Dataset:
        return self._rows("train", self.config.task.condition_copies)

    def eval_dataset(self) -> Dataset:
        return self._rows("heldout", 1)

    def processors(self) -> list:
        return [kind_processor(self.layout)]

    # ------------------------------------------------------------------ requests
    def requests(self, family: str, count: int | None = None, nodes=None, mean_degree=None, communities=None,
                 seed: int = 0) -> Requests:
        """Checked requests for `count` graphs of `family`; node counts not given are drawn from the
        family's training graphs (as DiGress samples them). Any argument may be one value or one per graph."""
        check_family(family)
        if family not in self.families:
            raise ValueError(f"family: this model was trained on {', '.join(self.families)}, not {family}")
        if count is None:
            lengths = [len(v) for v in (nodes, mean_degree, communities) if isinstance(v, (list, tuple, torch.Tensor))]
            count = lengths[0] if lengths else 1
        nodes, degrees, blocks = check_requests(family, count, nodes, mean_degree, communities,
                                                self.layout.max_nodes, (self.sbm.min_blocks, self.sbm.max_blocks))
        if any(n is None for n in nodes):
            pool = self.sets["train"].of(family).node_counts()
            g = torch.Generator().manual_seed(seed)
            drawn = pool[torch.randint(len(pool), (count,), generator=g).numpy()]
            nodes = [int(d) if n is None else n for n, d in zip(nodes, drawn)]
            for n, d in zip(nodes, degrees):  # a degree requested without a count is checked against the draw
                if d is not None and d > n - 1:
                    raise ValueError(f"mean_degree: {d} is impossible for {n} nodes (a simple graph of n nodes "
                                     f"has a mean degree of at most n - 1 = {n - 1}); give `nodes` too")
        return make_requests(family, nodes, degrees, blocks)

    def _condition(self, requests: Requests) -> Condition:
        return Condition(embeddings=condition_vectors(requests, self.layout.max_nodes, self.degree_scale))

    def generate_graphs(self, model, family: str, count: int | None = None, nodes=None, mean_degree=None,
                        communities=None, seed: int = 0, steps: int | None = None, planar_constraint: bool = False,
                        edge_count: bool = False):
        """Graphs of `family` from the diffusion model: (graphs, requests, {"nfe", "ms_per_graph", ...}).
        `planar_constraint` (planar only): decode under the planarity processor (planarity.py).
        `edge_count`: steer each graph's edge count to its request, nodes * mean degree / 2
        (`ExpectedCount`; graphs without a requested degree are left alone)."""
        requests = self.requests(family, count, nodes, mean_degree, communities, seed)
        if planar_constraint and family != "planar":
            raise ValueError(f"planar_constraint: the planarity processor is for planar graphs, not {family}")
        cfg = self.sample_config(**({} if steps is None else {"steps": steps}))
        ids, given = node_count_tokens(requests.nodes, self.layout)
        processors = self.processors()
        count = None
        if edge_count:
            if requests.degrees.isnan().all():
                raise ValueError("edge_count: no graph has a requested mean degree to take its edge count from")
            pairs = torch.arange(self.layout.length) >= self.layout.max_nodes
            count = ExpectedCount(self.layout.no_edge + 1, requests.nodes * requests.degrees / 2,
                                  model.config.mask_id, counted=pairs)
            processors.append(count)
        if planar_constraint:
            # after the count's tilt, so the planarity tests see the edges this step will likely commit;
            # the count then tilts again over the edges left allowed
            processors.append(PlanarityConstraint(self.layout, model.config.mask_id,
                                                  self.config.task.planar_min_probability))
            processors += [count] if count is not None else []
        model.eval()
        start = time.perf_counter()
        result = sample_many(model, len(requests), cfg.batch_size, sampler=Sampler.for_model(model, cfg),
                             cond=self._condition(requests), fixed=Fixed(ids, given),
                             generator=torch.Generator().manual_seed(seed), processors=processors)
        seconds = time.perf_counter() - start
        graphs, faults = decode_graphs(result.ids, self.layout)
        return graphs, requests, {"nfe": float(result.nfe), "ms_per_graph": 1000 * seconds / len(requests), **faults}

    def baseline_graphs(self, baseline, family: str, count: int | None = None, nodes=None, mean_degree=None,
                        communities=None, seed: int = 0):
        """The same from the autoregressive baseline: the node tokens come first, so the node count is
        its prompt; it samples the pairs in raster order under the same condition vector."""
        requests = self.requests(family, count, nodes, mean_degree, communities, seed)
        ids, _ = node_count_tokens(requests.nodes, self.layout)
        start = time.perf_counter()
        out, nfe = self.baseline_sample(baseline, len(requests), cond=self._condition(requests),
                                        prompt=ids[:, :self.layout.max_nodes], seed=seed)
        seconds = time.perf_counter() - start
        graphs, faults = decode_graphs(out, self.layout)
        return graphs, requests, {"nfe": float(nfe), "ms_per_graph": 1000 * seconds / len(requests), **faults}

    # ------------------------------------------------------------------ `ddm sample` hooks
    def _default_requests(self, n: int) -> Requests:
        """`ddm sample`: n graphs, the families in turn, each unconditional within its family."""
        families = [self.families[r % len(self.families)] for r in range(n)]
        nodes = torch.zeros(n, dtype=torch.long)
        for i, family in enumerate(self.families):
            rows = [r for r in range(n) if families[r] == family]
            if rows:
                nodes[rows] = self.requests(family, count=len(rows), seed=self.config.sample.seed + i).nodes
        return Requests(families, nodes, torch.full((n,), float("nan")), torch.zeros(n, dtype=torch.long))

    def sample_conditions(self, n: int) -> Condition:
        return self._condition(self._default_requests(n))

    def sample_fixed(self, n: int) -> Fixed:
        return Fixed(*node_count_tokens(self._default_requests(n).nodes, self.layout))

    def sample_metrics(self, ids: torch.Tensor, cond) -> dict[str, float]:
        graphs, faults = decode_graphs(ids, self.layout)
        is_sbm = cond.embeddings[:, 0, 0] > 0.5
        out = {"uniqueness": metrics.uniqueness(graphs), **faults}
        for family, rows in (("sbm", is_sbm), ("planar", ~is_sbm)):
            chosen = [g for g, r in zip(graphs, rows.tolist()) if r]
            if chosen:
                out[f"{family}_validity"] = float(np.mean(self.valid(family, chosen)))
        return out

    # ------------------------------------------------------------------ figures
    def valid(self, family: str, graphs: list) -> list[bool]:
        if family == "planar":
            return [planar_valid(g) for g in graphs]
        return [sbm_valid(g, self.sbm) for g in graphs]

    def training_index(self, family: str) -> metrics.IsomorphismIndex:
        if family not in self._training_index:
            self._training_index[family] = metrics.IsomorphismIndex(self.sets["train"].of(family).graphs)
        return self._training_index[family]

    def describe(self, family: str, graphs: list, requests: Requests | None = None) -> dict[str, float]:
        """MMD² against the family's first samples_per_family held-out graphs (the reference), V.U.N.
        figures, and, for requests with targets, the conditioning errors."""
        reference = self.sets["heldout"].of(family).graphs[:self.config.task.samples_per_family]
        out = {**metrics.mmd_figures(graphs, reference),
               **metrics.vun_figures(graphs, self.valid(family, graphs), self.training_index(family)),
               "mean_nodes": float(np.mean([g.number_of_nodes() for g in graphs])),
               "mean_degree": float(np.mean([metrics.mean_degree(g) for g in graphs]))}
        if requests is not None:
            out.update(metrics.condition_errors(graphs, requests.nodes.tolist(), requests.degrees.tolist()))
            asked = requests.communities.tolist()
            if any(asked):
                found = [sbm_blocks(g, self.sbm) for g, a in zip(graphs, asked) if a]
                out["communities_match"] = float(np.mean([f == a for f, a in zip(found, [a for a in asked if a])]))
        return out

    def evaluate_model(self, model) -> dict[str, float]:
        t, cfg = self.config.task, self.config
        k, seed = t.samples_per_family, cfg.sample.seed
        baseline = self.baseline_model() if t.baseline else None
        rows: dict[str, dict[str, dict[str, float]]] = {}
        shown = {}
        for family in self.families:
            held = self.sets["heldout"].of(family)
            train = self.sets["train"].of(family)
            fam_rows = rows.setdefault(family, {})
            # real graphs through the same figures: training graphs (the MMD floor; novelty is 0 by
            # definition) and the second half of the held-out graphs (the first half is the reference)
            fam_rows["training graphs"] = {key: value for key, value in self.describe(family, train.graphs[:k]).items()
                                           if key not in ("novelty", "vun")}
            fam_rows["held-out graphs"] = self.describe(family, held.graphs[k:2 * k])
            print(f"graph: {family}, diffusion, unconditional ({k} graphs)", flush=True)
            graphs, _, info = self.generate_graphs(model, family, count=k, seed=seed)
            fam_rows["diffusion"] = {**self.describe(family, graphs), **info}
            shown[family] = graphs
            if family == "planar" and t.planar_constraint:
                print(f"graph: {family}, diffusion under the planarity constraint ({k} graphs)", flush=True)
                graphs, _, info = self.generate_graphs(model, family, count=k, seed=seed, planar_constraint=True)
                fam_rows["diffusion + planarity constraint"] = {**self.describe(family, graphs), **info}
                shown[f"{family} planarity constraint"] = graphs
            if baseline is not None:
                print(f"graph: {family}, autoregressive, unconditional ({k} graphs)", flush=True)
                graphs, _, info = self.baseline_graphs(baseline, family, count=k, seed=seed)
                fam_rows["autoregressive"] = {**self.describe(family, graphs), **info}
                shown[f"{family} autoregressive"] = graphs
            if t.conditioned:
                target = held.graphs[:k]  # the statistics of the reference graphs, as requests
                asked = dict(nodes=[g.number_of_nodes() for g in target],
                             mean_degree=[float(x) for x in held.mean_degrees()[:k]],
                             communities=held.communities[:k] if family == "sbm" else None)
                print(f"graph: {family}, diffusion, conditioned ({k} graphs)", flush=True)
                graphs, requests, info = self.generate_graphs(model, family, seed=seed, **asked)
                fam_rows["diffusion, conditioned"] = {**self.describe(family, graphs, requests), **info}
                steered = [("+ edge count", False)] if t.edge_count_guidance else []
                if steered and family == "planar" and t.planar_constraint:
                    steered.append(("+ planarity + edge count", True))
                for name, planar in steered:
                    print(f"graph: {family}, diffusion, conditioned {name} ({k} graphs)", flush=True)
                    graphs, requests, info = self.generate_graphs(model, family, seed=seed, edge_count=True,
                                                                  planar_constraint=planar, **asked)
                    fam_rows[f"diffusion, cond. {name}"] = {**self.describe(family, graphs, requests), **info}
                if baseline is not None:
                    print(f"graph: {family}, autoregressive, conditioned ({k} graphs)", flush=True)
                    graphs, requests, info = self.baseline_graphs(baseline, family, seed=seed, **asked)
                    fam_rows["autoregressive, conditioned"] = {**self.describe(family, graphs, requests), **info}
            fam_rows["training graphs"]["mean_degree_std"] = float(train.mean_degrees().std())
        pictures = []
        for name, graphs in shown.items():
            path = self.run_dir / f"samples_{name.replace(' ', '_')}.png"
            pictures.append(draw_graphs(graphs[:t.picture_graphs], path))
        elbo = self.heldout_elbo(model)
        print(self.report(rows, elbo))
        for p in pictures:
            print(f"picture: {p}")
        out = {f"{family}/{name}/{key}": value for family, fam_rows in rows.items()
               for name, row in fam_rows.items() for key, value in row.items()}
        if elbo is not None:
            out["heldout_elbo_bits_per_token"] = elbo
        return out

    def report(self, rows: dict, elbo: float | None) -> str:
        t, s, d = self.config.task, self.config.sample, self.data_config
        lines = [f"graph task: {', '.join(self.families)}; at most {self.layout.max_nodes} nodes, "
                 f"{self.layout.length} tokens a graph, node order {t.node_order}; SBM {d.min_blocks}-{d.max_blocks} "
                 f"communities of {d.min_block_size}-{d.max_block_size} nodes, p_in {d.p_in}, p_out {d.p_out}; planar "
                 f"Delaunay graphs of {d.planar_min_nodes or d.planar_nodes}-{d.planar_nodes} nodes; "
                 f"{t.samples_per_family} graphs a row; sampler {s.steps} steps, {s.order} order, "
                 f"temperature {s.temperature}",
                 f"  MMD²: degree / clustering / spectral histograms against {t.samples_per_family} held-out graphs "
                 "(the reference; the held-out row is as many others) with the Gaussian TV kernel (GRAN / SPECTRE / "
                 "DiGress definitions; orbit MMD needs ORCA: not computed); sampler guidance "
                 f"{s.guidance_scale}. valid: planar = "
                 f"connected and planar; SBM = the spectral-partition Wald test of validity.py (alpha {t.sbm_alpha}). "
                 "V.U.N.: valid, first of its isomorphism class, isomorphic to no training graph. Unconditional rows: "
                 "node counts drawn from the family's training graphs; conditioned rows: node count, mean degree "
                 "(and SBM communities) of the reference graphs requested"]
        head = (f"  {'':<42} {'degree':>8} {'cluster':>8} {'spectral':>8} {'valid':>6} {'unique':>6} {'novel':>6} "
                f"{'V.U.N.':>6} {'nodes=':>6} {'|deg err|':>9} {'comm.':>6} {'bad':>5} {'NFE':>5} {'ms/graph':>8}")

        def cell(r, k, fmt, width):
            return f"{format(r[k], fmt):>{width}}" if k in r else f"{'-':>{width}}"

        for family, fam_rows in rows.items():
            train = fam_rows["training graphs"]
            lines.append(f" {family}: training mean degree {self.sets['train'].of(family).mean_degrees().mean():.2f} "
                         f"± {train['mean_degree_std']:.2f} (std)")
            lines.append(head)
            for name, r in fam_rows.items():
                bad = dict(r)
                if "malformed_pairs" in r:
                    bad["bad"] = r["malformed_pairs"] + r["edges_to_padding"]
                lines.append(f"  {name:<42} {cell(r, 'degree_mmd', '.4f', 8)} {cell(r, 'clustering_mmd', '.4f', 8)} "
                             f"{cell(r, 'spectral_mmd', '.4f', 8)} {cell(r, 'validity', '.1%', 6)} "
                             f"{cell(r, 'uniqueness', '.1%', 6)} {cell(r, 'novelty', '.1%', 6)} "
                             f"{cell(r, 'vun', '.1%', 6)} {cell(r, 'nodes_exact', '.0%', 6)} "
                             f"{cell(r, 'mean_degree_abs_error', '.3f', 9)} {cell(r, 'communities_match', '.0%', 6)} "
                             f"{cell(bad, 'bad', '.3f', 5)} {cell(r, 'nfe', '.0f', 5)} "
                             f"{cell(r, 'ms_per_graph', '.1f', 8)}")
        lines.append("  bad: malformed pair tokens (share of real pairs) + edges to padding nodes per graph (the "
                     "autoregressive baseline samples without the token-kind processor); comm.: SBM community count "
                     "found by the partition = requested")
        if elbo is not None:
            lines.append(f"  held-out ELBO: {elbo:.4f} bits per real pair token")
        return "\n".join(lines)


__all__ = ["GraphTask", "GraphTaskConfig"]
