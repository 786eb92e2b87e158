"""Graph tokenizer: exact round trips on SBM and planar graphs, clear errors, save/load."""

import networkx as nx
import pytest
import torch

from tokenizers_vq import load_tokenizer
from tokenizers_vq.data.graphs import GraphDataConfig, build_graph_data
from tokenizers_vq.graphs import GraphConfig, GraphTokenizer


@pytest.fixture(scope="module")
def graphs():
    return build_graph_data(GraphDataConfig(num_train=2, num_heldout=25, planar_nodes=40))["heldout"]


@pytest.fixture(scope="module")
def tok():
    return GraphTokenizer(GraphConfig(max_nodes=64, node_types=4, edge_types=1))


def test_round_trip_is_exact(tok, graphs):
    assert len(graphs) == 50
    stream = tok.encode(graphs)
    assert stream.ids.shape == (50, 64 + 64 * 63 // 2) and int(stream.ids.max()) < tok.vocab_size == 7
    decoded = tok.decode(stream)
    assert all(tok.same_graph(a, b) for a, b in zip(graphs, decoded))
    assert tok.evaluate(graphs)["exact_round_trip"] == 1.0
    # the mask marks real nodes and pairs of real nodes
    n = graphs[0].number_of_nodes()
    assert int(stream.mask[0, :64].sum()) == n and int(stream.mask[0, 64:].sum()) == n * (n - 1) // 2


def test_families_look_right(graphs):
    sbm, planar = graphs[0::2], graphs[1::2]
    assert all(nx.check_planarity(g)[0] and g.number_of_nodes() == 40 for g in planar)
    assert all(16 <= g.number_of_nodes() <= 64 and len({d["type"] for _, d in g.nodes(data=True)}) >= 2
               for g in sbm)
    again = build_graph_data(GraphDataConfig(num_train=2, num_heldout=25, planar_nodes=40))["heldout"]
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(graphs, again))  # deterministic


def test_edge_types_and_arbitrary_labels_round_trip():
    tok = GraphTokenizer(GraphConfig(max_nodes=5, node_types=3, edge_types=2))
    g = nx.Graph()
    g.add_nodes_from([("a", {"type": 2}), ("b", {"type": 0}), ("c", {})])
    g.add_edges_from([("a", "b", {"type": 2}), ("b", "c")])
    (back,) = tok.decode(tok.encode(g))
    assert tok.same_graph(g, back) and back.edges[0, 1]["type"] == 2 and back.nodes[2]["type"] == 0


def test_clear_errors(tok):
    with pytest.raises(ValueError, match="65 nodes, more than max_nodes=64"):
        tok.encode([nx.path_graph(65)])
    with pytest.raises(TypeError, match="undirected"):
        tok.encode([nx.DiGraph([(0, 1)])])
    bad = nx.path_graph(3)
    nx.set_node_attributes(bad, 7, "type")
    with pytest.raises(ValueError, match="type=7"):
        tok.encode(bad)
    ids = tok.encode(nx.path_graph(3)).ids
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode(torch.where(ids == 0, tok.vocab_size, ids))
    gap = ids.clone()
    gap[0, 1] = 0  # node 1 becomes padding while node 2 is real
    with pytest.raises(ValueError, match="padding must come last"):
        tok.decode(gap)
    dangling = ids.clone()
    dangling[0, 64 + 5] = tok.layout.no_edge + 1  # pair (0, 6): node 6 is padding
    with pytest.raises(ValueError, match="one of them padding"):
        tok.decode(dangling)
    swapped = ids.clone()
    swapped[0, 0] = tok.layout.no_edge
    with pytest.raises(ValueError, match="node slot 0 holds edge token"):
        tok.decode(swapped)


def test_save_load_same_ids_and_files(tok, graphs, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert torch.equal(loaded.encode(graphs).ids, tok.encode(graphs).ids)
    tok.write_output(graphs[:3], tmp_path / "g.json")
    assert all(nx.utils.graphs_equal(a, b) for a, b in zip(graphs[:3], tok.read_input(tmp_path / "g.json")))


def test_picture(tok, graphs, tmp_path):
    (path,) = tok.save_pictures(graphs[:4], tmp_path)
    assert path.is_file() and path.stat().st_size > 1000
