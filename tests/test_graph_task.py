"""The graph task: its metrics and validity tests on known graphs, requests and their errors, the
token layout's given tokens and decoder, and one tiny model trained, sampled and evaluated end to end."""

import random

import networkx as nx
import numpy as np
import pytest
import torch

from tasks.graph import metrics
from tasks.graph.conditions import DegreeScale, Requests, check_requests, condition_vectors, hide_targets
from tasks.graph.data import order_nodes
from tasks.graph.planarity import PlanarityConstraint
from tasks.graph.tokens import decode_graphs, kind_processor, node_count_tokens, node_entities
from tasks.graph.validity import SBMParameters, planar_valid, sbm_blocks, sbm_valid
from tokenizers_vq.data.graphs import GraphDataConfig, planar_graph, sbm_graph
from tokenizers_vq.graphs import AdjacencyLayout, GraphConfig, GraphTokenizer

SBM_DATA = GraphDataConfig(families=["sbm"], min_blocks=2, max_blocks=3, min_block_size=5, max_block_size=8,
                           p_in=0.7, p_out=0.04)
SBM = SBMParameters(2, 3, 5, 8, 0.7, 0.04, 0.01)


def shuffled(g, seed):
    nodes = list(g.nodes)
    random.Random(seed).shuffle(nodes)
    return nx.relabel_nodes(g, dict(zip(g.nodes, nodes)))


# ---------------------------------------------------------------------------- metrics


def test_uniqueness_counts_isomorphism_classes():
    g = nx.cycle_graph(6)
    assert metrics.uniqueness([g] * 5) == pytest.approx(1 / 5)  # a duplicated set
    assert metrics.uniqueness([g, shuffled(g, 1), shuffled(g, 2)]) == pytest.approx(1 / 3)  # relabelled copies
    assert metrics.uniqueness([nx.cycle_graph(6), nx.path_graph(6), nx.star_graph(5)]) == 1.0
    # same WL hash, not isomorphic: two triangles against a 6-cycle (both 2-regular on 6 nodes)
    two_triangles = nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))
    assert metrics.IsomorphismIndex.key(two_triangles) == metrics.IsomorphismIndex.key(g)
    assert metrics.uniqueness([g, two_triangles]) == 1.0


def test_novelty_and_vun_against_the_training_graphs():
    training = metrics.IsomorphismIndex([nx.cycle_graph(5), nx.complete_graph(4)])
    samples = [shuffled(nx.cycle_graph(5), 3), nx.path_graph(5), nx.path_graph(5), nx.star_graph(4)]
    assert metrics.novel_flags(samples, training) == [False, True, True, True]
    figures = metrics.vun_figures(samples, [True, True, True, False], training)
    # valid: 3 of 4; unique: the second path repeats; V.U.N.: only the first path is all three
    assert figures == {"validity": 0.75, "uniqueness": 0.75, "novelty": 0.75, "vun": 0.25}
    with pytest.raises(ValueError, match="valid: 2 flags for 4 graphs"):
        metrics.vun_figures(samples, [True, True], training)


def test_mmd_is_zero_for_the_same_set_and_grows_with_the_difference():
    cycles = [nx.cycle_graph(n) for n in range(6, 12)]
    chorded = [nx.cycle_graph(n) for n in range(6, 12)]
    for g in chorded:
        g.add_edge(0, len(g) // 2)  # two nodes of degree 3, still no triangle
    cliques = [nx.complete_graph(n) for n in range(6, 12)]
    same = metrics.mmd_figures(cycles, cycles)
    assert all(abs(v) < 1e-12 for v in same.values())
    near, far = metrics.mmd_figures(cycles, chorded), metrics.mmd_figures(cycles, cliques)
    assert far["degree_mmd"] > near["degree_mmd"] > 0
    assert far["clustering_mmd"] > 0.5 and near["clustering_mmd"] < 1e-12  # no triangles in either
    assert far["spectral_mmd"] > 0
    # the kernel on total variation: histograms with disjoint support are at distance 1
    assert metrics.gaussian_tv_mmd2([np.array([1.0, 0])], [np.array([0, 1.0])], 1.0) == pytest.approx(
        2 - 2 * np.exp(-0.5))
    assert metrics.spectral_histogram(nx.path_graph(7)).sum() == 7  # one count per eigenvalue


def test_condition_errors_on_known_graphs():
    graphs = [nx.cycle_graph(6), nx.complete_graph(4)]  # mean degrees 2 and 3
    errors = metrics.condition_errors(graphs, [6, 5], [2.5, float("nan")])
    assert errors == {"nodes_exact": 0.5, "nodes_abs_error": 0.5, "mean_degree_abs_error": 0.5}


# ---------------------------------------------------------------------------- validity


def test_planar_validity_is_connected_and_planar():
    assert planar_valid(nx.grid_2d_graph(5, 5))
    assert all(planar_valid(planar_graph(GraphDataConfig(planar_nodes=20), random.Random(i))) for i in range(5))
    assert not planar_valid(nx.complete_graph(5))
    assert not planar_valid(nx.complete_bipartite_graph(3, 3))
    assert not planar_valid(nx.disjoint_union(nx.cycle_graph(4), nx.cycle_graph(4)))  # planar, not connected


def test_the_sbm_test_passes_true_sbms_and_fails_erdos_renyi_graphs():
    rng = random.Random(0)
    sbms = [sbm_graph(SBM_DATA, rng) for _ in range(40)]
    valid = np.mean([sbm_valid(g, SBM) for g in sbms])
    er = [nx.gnm_random_graph(g.number_of_nodes(), g.number_of_edges(), seed=i) for i, g in enumerate(sbms)]
    invalid = np.mean([not sbm_valid(g, SBM) for g in er])
    assert valid >= 0.8 and invalid >= 0.9, (valid, invalid)
    blocks = [len({d["type"] for _, d in g.nodes(data=True)}) for g in sbms]
    assert np.mean([sbm_blocks(g, SBM) == b for g, b in zip(sbms, blocks)]) >= 0.8
    assert not sbm_valid(nx.path_graph(4), SBM)  # too few nodes for two communities


# ---------------------------------------------------------------------------- data, requests, tokens


def test_planar_graphs_can_have_a_range_of_sizes():
    from ddm.config import ConfigError

    sizes = {planar_graph(GraphDataConfig(planar_nodes=24, planar_min_nodes=12), random.Random(i)).number_of_nodes()
             for i in range(40)}
    assert min(sizes) >= 12 and max(sizes) <= 24 and len(sizes) > 5
    assert planar_graph(GraphDataConfig(planar_nodes=9), random.Random(0)).number_of_nodes() == 9  # as before
    with pytest.raises(ConfigError, match="planar_min_nodes: 30 is outside"):
        GraphDataConfig(planar_nodes=24, planar_min_nodes=30)


def test_node_orders_keep_the_graph_and_rcm_narrows_the_band():
    g = shuffled(planar_graph(GraphDataConfig(planar_nodes=24), random.Random(3)), 0)

    def bandwidth(h):
        return max(abs(u - v) for u, v in h.edges)

    for order in ("rcm", "bfs", "given"):
        h = order_nodes(g, order)
        assert sorted(h.nodes) == list(range(24)) and nx.is_isomorphic(g, h)
    assert bandwidth(order_nodes(g, "rcm")) < bandwidth(nx.convert_node_labels_to_integers(g))
    with pytest.raises(ValueError, match="unknown order 'random'"):
        order_nodes(g, "random")


@pytest.mark.parametrize("family, nodes, degree, blocks, match", [
    ("sbm", 30, None, None, "30 nodes is more than this model's maximum of 24"),
    ("sbm", 0, None, None, "expected a positive whole number of nodes"),
    ("planar", 12, -1.0, None, "mean_degree: -1.0 is negative"),
    ("planar", 12, 11.5, None, "11.5 is impossible for 12 nodes"),
    ("planar", 12, float("nan"), None, "expected a finite number"),
    ("planar", 12, None, 2, "only SBM graphs have communities"),
    ("sbm", 12, None, 5, "outside the 2-3 communities"),
    ("tree", 12, None, None, "unknown graph family 'tree'; known: sbm, planar"),
])
def test_impossible_requests_are_refused(family, nodes, degree, blocks, match):
    with pytest.raises(ValueError, match=match):
        check_requests(family, 1, nodes, degree, blocks, 24, (2, 3))


def test_condition_vectors_and_hidden_targets():
    req = Requests(["sbm", "planar"], torch.tensor([12, 20]), torch.tensor([4.0, float("nan")]),
                   torch.tensor([3, 0]))
    v = condition_vectors(req, 24)
    assert v.shape == (2, 1, 7)
    assert v[0, 0].tolist() == pytest.approx([1, 0, 0.5, 1, 0.4, 1, 0.75])
    assert v[1, 0].tolist() == pytest.approx([0, 1, 20 / 24, 0, 0, 0, 0])
    many = Requests(["sbm"] * 2000, torch.full((2000,), 12), torch.full((2000,), 4.0), torch.full((2000,), 2))
    hidden = hide_targets(many, 0.5, 0.25, torch.Generator().manual_seed(0))
    assert torch.isnan(hidden.degrees).float().mean() == pytest.approx(0.5, abs=0.05)
    assert (hidden.communities == 0).float().mean() == pytest.approx(0.25, abs=0.05)
    assert torch.equal(hidden.nodes, many.nodes)


def test_degree_bins_read_the_degree_within_its_family():
    families = ["sbm"] * 3 + ["planar"] * 3
    scale = DegreeScale.fit(5, families, [3.0, 4.0, 5.0, 4.6, 4.8, 5.0])
    assert scale.stats["planar"][0] == pytest.approx(4.8) and scale.stats["sbm"][0] == pytest.approx(4.0)
    req = Requests(["planar", "sbm", "planar"], torch.tensor([12, 12, 12]), torch.tensor([4.8, 4.8, float("nan")]),
                   torch.tensor([0, 0, 0]))
    v = condition_vectors(req, 24, scale)
    assert v.shape == (3, 1, 12) and torch.equal(v[..., :7], condition_vectors(req, 24))
    bins = v[:, 0, 7:]
    # bins at z = -1.22 .. 1.22 (both families' training range): 4.8 is the planar mean (z 0, the middle
    # bin) but above the SBM mean (z 0.98, nearest the top bin)
    assert scale.low == pytest.approx(-1.2247, abs=1e-4) and scale.high == pytest.approx(1.2247, abs=1e-4)
    assert int(bins[0].argmax()) == 2 and bins[0, 2] == pytest.approx(1.0)
    assert int(bins[1].argmax()) == 4
    assert (bins[2] == 0).all()  # no degree requested: no bins


def test_given_tokens_fix_the_node_count_and_decoding_forgives_and_counts_faults():
    layout = AdjacencyLayout(6, 1, 1)
    ids, given = node_count_tokens(torch.tensor([4, 6]), layout)
    assert ids[0, :6].tolist() == [1, 1, 1, 1, 0, 0] and ids[1, :6].tolist() == [1] * 6
    assert int((~given[0]).sum()) == 6 and int((~given[1]).sum()) == 15  # free: the pairs among real nodes
    assert (ids[0][given[0]][6:] == layout.no_edge).all()
    tok = GraphTokenizer(GraphConfig(max_nodes=6, node_types=1, edge_types=1))
    g = nx.cycle_graph(5)
    graphs, faults = decode_graphs(tok.encode([g]).ids, layout)
    assert nx.is_isomorphic(graphs[0], g) and faults == {"malformed_pairs": 0.0, "edges_to_padding": 0.0}
    bad = tok.encode([g]).ids.clone()
    bad[0, 6 + 14] = layout.no_edge + 1  # the last pair (4, 5): node 5 is padding
    bad[0, 6 + 0] = 1  # a node token in the pair slot (0, 1)
    graphs, faults = decode_graphs(bad, layout)
    assert graphs[0].number_of_nodes() == 5 and graphs[0].number_of_edges() == 4  # (0, 1) read as no edge
    assert faults == {"malformed_pairs": 0.1, "edges_to_padding": 1.0}
    allowed = kind_processor(layout).allowed
    assert allowed[:6, :2].all() and not allowed[:6, 2:].any() and allowed[6:, 2:].all() and not allowed[6:, :2].any()
    with pytest.raises(ValueError, match=r"every count must be in \[1, 6\]"):
        node_count_tokens(torch.tensor([7]), layout)


def test_node_entities_name_the_nodes_of_every_token():
    layout = AdjacencyLayout(6, 1, 1)
    entities = node_entities(layout)
    assert len(entities) == layout.length == 6 + 15
    assert entities[:6] == [[i, 6] for i in range(6)]  # node tokens: the node and the node-slot marker
    assert entities[6] == [0, 1] and entities[6 + 14] == [4, 5]  # pairs in the stream's order


def test_the_planarity_constraint_forbids_the_edge_that_would_break_planarity():
    layout, mask = AdjacencyLayout(6, 1, 1), 4
    pairs = list(zip(layout.rows.tolist(), layout.cols.tolist()))

    def state(edges, masked, nodes=5):
        ids = torch.tensor([1] * nodes + [0] * (6 - nodes) + [layout.no_edge] * len(pairs))
        for k, (i, j) in enumerate(pairs):
            if (i, j) in edges:
                ids[6 + k] = layout.no_edge + 1
            if (i, j) in masked:
                ids[6 + k] = mask
        return ids[None]

    def edge_allowed(ids, probability=0.9):
        logits = torch.zeros(1, layout.length, 4)
        logits[..., 3] = float(np.log(probability / (1 - probability)))  # p(edge) against "no edge" (2)
        logits[..., :2] = float("-inf")
        out = PlanarityConstraint(layout, mask)(logits, ids, torch.arange(layout.length))
        return {pairs[k] for k in range(len(pairs)) if ids[0, 6 + k] == mask and out[0, 6 + k, 3] > float("-inf")}

    k5 = {(i, j) for i, j in pairs if j < 5}
    # K5 less one edge is planar; the last edge would make K5
    assert edge_allowed(state(k5 - {(3, 4)}, {(3, 4)})) == set()
    # a triangle and a separate edge: any pair between them is a bridge, allowed
    assert edge_allowed(state({(0, 1), (1, 2), (0, 2), (3, 4)}, {(2, 3), (0, 4)})) == {(2, 3), (0, 4)}
    # two masked edges that are each fine but together make K5: the likelier one (tested first) is
    # kept in the graph, so the second is refused
    assert len(edge_allowed(state(k5 - {(3, 4), (2, 4)}, {(3, 4), (2, 4)}))) == 1
    assert edge_allowed(state({(0, 1)}, {(1, 2)}), probability=0.01) == set()  # unlikely: dropped untested


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_graph_run(tmp_path_factory):
    """A tiny graph model and its baseline trained through the experiment front end, then evaluated."""
    import yaml

    from ddm.experiment import load_experiment
    from ddm.task import build_task

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("graph")
    tok = yaml.safe_load(open("configs/tokenizers/graph_gen.yaml"))
    tok["tokenizer"]["max_nodes"] = 12
    tok["data"].update(num_train=24, num_heldout=12, min_block_size=3, max_block_size=4, planar_nodes=10,
                       planar_min_nodes=6)
    tok["run_dir"] = str(root / "tok")
    (root / "tok.yaml").write_text(yaml.safe_dump(tok))
    cfg = load_experiment("configs/tasks/graph_cpu.yaml", [
        f"task.tokenizer_config={root / 'tok.yaml'}", "task.samples_per_family=6", "model.shape=[78]",
        "model.d_model=32", "model.depth=1", "train.steps=8", "train.batch_size=8", "train.log_every=4",
        "train.checkpoint_every=0", "sample.steps=4", "sample.batch_size=6", "sample.num_samples=6",
        "task.node_positions=true",  # off in the config; on here so the folder round trip of the entities is run
        f"run_dir={root / 'run'}"])
    task = build_task(cfg)
    task.prepare()
    task.train()
    return task, task.evaluate()


def test_the_graph_task_trains_samples_and_evaluates_end_to_end(tiny_graph_run, capsys):
    task, result = tiny_graph_run
    for family in ("sbm", "planar"):
        for row in ("diffusion", "autoregressive", "diffusion, conditioned", "autoregressive, conditioned"):
            for key in ("degree_mmd", "clustering_mmd", "spectral_mmd", "validity", "uniqueness", "novelty", "vun"):
                assert np.isfinite(result[f"{family}/{row}/{key}"]), (family, row, key)
            assert result[f"{family}/{row}/mean_nodes"] > 0
        for row in ("diffusion, conditioned", "autoregressive, conditioned"):
            assert result[f"{family}/{row}/nodes_exact"] == 1.0  # exact by construction, both models
        assert result[f"{family}/held-out graphs/validity"] >= 0.5
        assert result[f"{family}/diffusion/malformed_pairs"] == 0.0  # the token-kind processor
    assert result["planar/diffusion + planarity constraint/validity"] >= result["planar/diffusion/validity"]
    assert result["planar/held-out graphs/validity"] == 1.0
    assert "sbm/diffusion, conditioned/communities_match" in result
    for row in ("sbm/diffusion, cond. + edge count", "planar/diffusion, cond. + edge count",
                "planar/diffusion, cond. + planarity + edge count"):
        assert result[f"{row}/nodes_exact"] == 1.0 and np.isfinite(result[f"{row}/mean_degree_abs_error"]), row
    for name in ("samples_planar.png", "samples_sbm_autoregressive.png", "samples_planar_planarity_constraint.png"):
        assert (task.run_dir / name).is_file()
    out = task.sample()
    assert out["samples"] == 6 and 0 < out["uniqueness"] <= 1


def test_requested_node_counts_are_kept_and_impossible_requests_are_refused(tiny_graph_run):
    task, _ = tiny_graph_run
    model = task.load_model()
    graphs, requests, info = task.generate_graphs(model, "sbm", nodes=[7, 12, 9], mean_degree=3.0, communities=2,
                                                  seed=1)
    assert [g.number_of_nodes() for g in graphs] == [7, 12, 9] and info["malformed_pairs"] == 0.0
    graphs, _, _ = task.baseline_graphs(task.baseline_model(), "planar", nodes=[6, 10], seed=1)
    assert [g.number_of_nodes() for g in graphs] == [6, 10]
    with pytest.raises(ValueError, match="13 nodes is more than this model's maximum of 12"):
        task.generate_graphs(model, "planar", nodes=13)
    with pytest.raises(ValueError, match="mean_degree: -2.0 is negative"):
        task.generate_graphs(model, "planar", nodes=8, mean_degree=-2.0)
    with pytest.raises(ValueError, match="unknown graph family 'grid'"):
        task.generate_graphs(model, "grid", count=2)
    with pytest.raises(ValueError, match="mean_degree: 40.0 is impossible for"):
        task.generate_graphs(model, "planar", count=2, mean_degree=40.0)  # node counts drawn: at most 10


def test_the_edge_count_is_steered_to_the_requested_mean_degree(tiny_graph_run):
    """One pair a step, the steered edge count is the request's exactly (n * degree / 2); a graph
    without a requested degree is left to the model, and a batch with none is refused."""
    task, _ = tiny_graph_run
    model = task.load_model()
    asked = dict(nodes=[7, 9, 8], mean_degree=[2.0, 4.0, None], communities=2, seed=3, steps=task.layout.length)
    steered, _, _ = task.generate_graphs(model, "sbm", edge_count=True, **asked)
    plain, _, _ = task.generate_graphs(model, "sbm", **asked)
    assert [g.number_of_edges() for g in steered[:2]] == [7, 18]
    assert sorted(steered[2].edges) == sorted(plain[2].edges)
    with pytest.raises(ValueError, match="edge_count: no graph has a requested mean degree"):
        task.generate_graphs(model, "planar", nodes=[6, 8], edge_count=True)


def test_the_task_refuses_a_model_that_does_not_fit_its_tokens(tiny_graph_run):
    from ddm.config import ConfigError
    from ddm.experiment import load_experiment
    from ddm.task import build_task

    task, _ = tiny_graph_run
    base = [f"task.tokenizer_config={task.config.task.tokenizer_config}", f"run_dir={task.run_dir}",
            "model.d_model=32", "model.depth=1", "task.samples_per_family=6"]
    with pytest.raises(ConfigError, match=r"expected vocab_size=4 and shape=\[78\]"):
        build_task(load_experiment("configs/tasks/graph_cpu.yaml", base)).prepare()  # the config's [300]
    with pytest.raises(ConfigError, match=r"condition vector has 23 numbers \(7 \+ task.degree_bins\)"):
        build_task(load_experiment("configs/tasks/graph_cpu.yaml", [*base, "model.cond_embed_dim=8"]))
    with pytest.raises(ConfigError, match="condition vector has 7 numbers"):
        build_task(load_experiment("configs/tasks/graph_cpu.yaml", [*base, "task.degree_bins=0"]))
    with pytest.raises(ConfigError, match="task.degree_bins: 1; expected 0"):
        build_task(load_experiment("configs/tasks/graph_cpu.yaml", [*base, "task.degree_bins=1",
                                                                     "model.cond_embed_dim=8"]))


def test_the_conditioning_benchmark_chooses_on_requests_it_does_not_report(tiny_graph_run, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import graph_conditioning

    task, _ = tiny_graph_run
    graph_conditioning.main(["--config", "configs/tasks/graph_cpu.yaml",
                             f"task.tokenizer_config={task.config.task.tokenizer_config}", f"run_dir={task.run_dir}",
                             "model.shape=[78]", "model.d_model=32", "model.depth=1", "task.samples_per_family=3",
                             "sample.steps=4", "sample.batch_size=6", "task.node_positions=true", "--orders",
                             "confidence", "entropy",
                             "--guidance", "0"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("  selection") or line.startswith("  test")]
    assert [r[:3] for r in rows[:2]] == [["selection", "confidence", "0.0"], ["selection", "entropy", "0.0"]]
    assert rows[2][:2] == ["test", "confidence"]  # the config's own sampler first, then the chosen one
    assert [r[3] for r in rows] == ["4"] * len(rows)  # the config's steps (no --steps)
    chosen = min(rows[:2], key=lambda r: float(r[4]))[1]
    assert f"chosen on the selection requests: order {chosen}, guidance 0, 4 steps" in out
    assert "held-out graphs 3..5" in out and "held-out graphs 0..2" in out


def test_node_positions_reach_the_model_and_its_folder(tiny_graph_run, tmp_path):
    from ddm.cli import main
    from ddm.experiment import load_experiment
    from ddm.task import build_task

    task, _ = tiny_graph_run  # trained with task.node_positions=true
    assert task.config.model.position_entities == node_entities(task.layout)
    model = task.load_model()
    assert model.target_embedding.entities.num_embeddings == 13  # 12 nodes + the node-slot marker
    assert main(["sample", "--model", str(task.run_dir / "model"), "--out", str(tmp_path / "s")]) == 0  # the folder alone
    off = build_task(load_experiment("configs/tasks/graph_cpu.yaml", [
        f"task.tokenizer_config={task.config.task.tokenizer_config}", "task.node_positions=false",
        "task.samples_per_family=6", "model.shape=[78]", f"run_dir={tmp_path / 'off'}"]))
    off.prepare()
    assert off.config.model.position_entities == [] and off.build_model().target_embedding.entities is None
