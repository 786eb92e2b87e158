"""The molecule task: the valence processor, each metric on known inputs, the bad inputs, and a
tiny model trained, sampled and evaluated end to end."""

import numpy as np
import pytest
import torch

from tasks.molecule import metrics
from tasks.molecule.conditioning import PropertyScale
from tasks.molecule.properties import parse_all, property_of, smiles_properties
from tasks.molecule.valence import MoleculeConstraints, type_capacities

SMILES = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C#N", "O=S(=O)(N)c1ccccc1Cl", "FC(F)(F)CBr", "c1cc[nH]c1"]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers_vq.molecules import MoleculeConfig, MoleculeTokenizer

    tok = MoleculeTokenizer(MoleculeConfig(max_atoms=12, atom_order="smiles"))
    tok.fit(SMILES)
    return tok


@pytest.fixture(scope="module")
def constraints(tokenizer):
    return MoleculeConstraints(tokenizer.layout, type_capacities(tokenizer.config.atom_types))


def _state(tokenizer, atoms: dict, bonds: dict):
    """Token ids with the given atom types (slot -> name or 'pad') and bonds ((i, j) -> order); the
    rest undecided (the mask id)."""
    lay, v = tokenizer.layout, tokenizer.vocab_size
    ids = torch.full((1, lay.length), v)
    for i, name in atoms.items():
        ids[0, i] = 0 if name == "pad" else tokenizer.type_index[name] + 1
    slot = {(int(r), int(c)): lay.max_nodes + e for e, (r, c) in enumerate(zip(lay.rows, lay.cols))}
    for (i, j), order in bonds.items():
        ids[0, slot[(i, j)]] = lay.no_edge + order
    return ids, slot


def _allowed(constraints, ids):
    v = constraints.vocab
    return torch.isfinite(constraints(torch.zeros(1, ids.shape[1], v), ids, torch.arange(ids.shape[1])))[0]


def test_capacities_follow_rdkit_valences(tokenizer):
    caps = dict(zip(tokenizer.config.atom_types, type_capacities(tokenizer.config.atom_types)))
    assert caps["C"] == 4 and caps["N"] == 3 and caps["O"] == 2 and caps["S"] == 6 and caps["F"] == 1
    # an explicit hydrogen takes one; charged atoms count like their isoelectronic elements
    assert type_capacities(["NH1", "N+1", "O-1", "N+1H1"]) == [2, 4, 1, 3]


def test_every_real_molecule_is_allowed_at_any_masking(tokenizer):
    from tokenizers_vq.data.molecules import moses_file, read_smiles
    from tokenizers_vq.molecules import MoleculeConfig, MoleculeTokenizer

    tok = MoleculeTokenizer(MoleculeConfig(max_atoms=27, atom_order="smiles"))
    smiles = SMILES + read_smiles(moses_file("train"), 300)
    tok.fit(smiles)
    ids = tok.encode(smiles).ids
    rules = MoleculeConstraints(tok.layout, type_capacities(tok.config.atom_types), connected=True)
    g = torch.Generator().manual_seed(0)
    for rate in (0.0, 0.3, 0.7, 0.95, 1.0):
        hidden = (torch.rand(ids.shape, generator=g) < rate) & ~ids.eq(0)  # padding given, as in sampling
        pad = ids[:, :27] == 0
        hidden[:, 27:] &= ~(pad[:, tok.layout.rows] | pad[:, tok.layout.cols])
        xt = torch.where(hidden, tok.vocab_size, ids)
        out = rules(torch.zeros(*ids.shape, tok.vocab_size), xt, torch.arange(ids.shape[1]))
        assert torch.isfinite(out.gather(-1, ids[..., None])).all()


def test_valence_forbids_what_would_overfill_an_atom(tokenizer, constraints):
    k, lay = len(tokenizer.config.atom_types), tokenizer.layout
    ids, slot = _state(tokenizer, {0: "C", 5: "O"}, {(0, 1): 1, (0, 2): 1, (0, 3): 2, (5, 6): 2})
    ok = _allowed(constraints, ids)
    assert ok[slot[(0, 4)]].tolist()[k + 1:] == [True, False, False, False]  # carbon full: no bond only
    assert ok[slot[(5, 7)]].tolist()[k + 1:] == [True, False, False, False]  # O=: full
    assert ok[slot[(1, 4)]][k + 2:].all()  # two undecided atoms: any order
    # an undecided atom with a double and a single bond: types of capacity >= 3 only (C, N, S)
    ok = _allowed(constraints, _state(tokenizer, {}, {(0, 1): 2, (0, 2): 1})[0])
    assert {tokenizer.config.atom_types[t - 1] for t in range(1, k + 1) if ok[0, t]} == {"C", "N", "S"}
    assert not ok[0, 0]  # an atom with bonds is no padding
    # a decided token that still fits is pinned; one an overshoot made misfit is forbidden
    ids, slot = _state(tokenizer, {0: "O"}, {(0, 1): 1, (0, 2): 1, (0, 3): 1})
    ok = _allowed(constraints, ids)
    for s in (slot[(0, 1)], slot[(0, 2)], slot[(0, 3)]):
        assert ok[s].tolist()[k + 1:] == [True, False, False, False]
    assert not ok[0, tokenizer.type_index["O"] + 1]  # O cannot hold three bonds any more
    ok = _allowed(constraints, _state(tokenizer, {0: "C"}, {(0, 1): 2})[0])
    assert ok[slot[(0, 1)]].sum() == 1 and ok[slot[(0, 1)], lay.no_edge + 2]


def test_padding_stays_a_suffix_and_takes_no_bond(tokenizer, constraints):
    k = len(tokenizer.config.atom_types)
    ids, slot = _state(tokenizer, {3: "pad"}, {})
    ok = _allowed(constraints, ids)
    assert not ok[4, 1:k + 1].any() and ok[4, 0]  # after a pad: only padding
    assert ok[slot[(1, 3)]].tolist()[k + 1:] == [True, False, False, False]  # a pad takes no bond
    assert ok[slot[(4, 5)]].tolist()[k + 1:] == [True, False, False, False]  # nor an atom that must be one
    assert not ok[:12, k + 1:].any() and not ok[12:, :k + 1].any()  # node and bond slots keep their kinds
    ok = _allowed(constraints, _state(tokenizer, {6: "C"}, {})[0])
    assert not ok[2, 0] and ok[2, 1:k + 1].all()  # before a real atom: no padding
    ids, _ = _state(tokenizer, {}, {(2, 5): 1})
    assert not _allowed(constraints, ids)[:5, 0].any()  # no pad before an atom with a bond


def test_drawing_one_token_at_a_time_under_the_processor_always_gives_valid_molecules(tokenizer, constraints):
    """Random logits, random order: validity comes from the processor, not from luck."""
    n, length, v = 64, tokenizer.layout.length, tokenizer.vocab_size
    g = torch.Generator().manual_seed(0)
    state = torch.full((n, length), v)
    order = torch.argsort(torch.rand(n, length, generator=g), 1)
    rows = torch.arange(n)
    for step in range(length):
        out = constraints(torch.randn(n, length, v, generator=g), state, torch.arange(length))
        pos = order[:, step]
        state[rows, pos] = torch.multinomial(torch.softmax(out[rows, pos], -1), 1, generator=g)[:, 0]
    mols = tokenizer.decode(state)
    assert metrics.validity(mols) == 1.0
    # without valence, the same draw breaks molecules
    loose = MoleculeConstraints(tokenizer.layout, type_capacities(tokenizer.config.atom_types), valence=False)
    state = torch.full((n, length), v)
    for step in range(length):
        out = loose(torch.randn(n, length, v, generator=g), state, torch.arange(length))
        pos = order[:, step]
        state[rows, pos] = torch.multinomial(torch.softmax(out[rows, pos], -1), 1, generator=g)[:, 0]
    assert metrics.validity(tokenizer.decode(state)) < 0.5
    # the connectivity rule (SMILES atom order) joins the pieces of sparse graphs (no bond favoured, as in
    # molecules); what stays apart is an atom whose earlier atoms are all full (monovalent halogens)
    connected, sparse = {}, torch.zeros(v)
    sparse[tokenizer.layout.no_edge] = 3.0
    for rule in (False, True):
        rules = MoleculeConstraints(tokenizer.layout, type_capacities(tokenizer.config.atom_types), connected=rule)
        state = torch.full((n, length), v)
        for step in range(length):
            out = rules(torch.randn(n, length, v, generator=g) + sparse, state, torch.arange(length))
            pos = order[:, step]
            state[rows, pos] = torch.multinomial(torch.softmax(out[rows, pos], -1), 1, generator=g)[:, 0]
        mols = tokenizer.decode(state)
        assert metrics.validity(mols) == 1.0
        connected[rule] = metrics.connected(mols)
    print(connected)
    assert connected[True] > 0.8 and connected[True] > connected[False] + 0.2


def test_metrics_on_known_sets(tokenizer):
    from rdkit import Chem

    mols = parse_all(["CCO"] * 5, "x")
    smiles = metrics.canonical_smiles(mols)
    assert metrics.uniqueness(smiles) == pytest.approx(1 / 5)
    assert metrics.internal_diversity(mols) == pytest.approx(0.0)
    assert metrics.novelty(smiles, {"CCO"}) == 0.0 and metrics.novelty(smiles, {"CCC"}) == 1.0
    # a five-bonded carbon built from tokens does not sanitize: 1 of 2 valid
    ids, _ = _state(tokenizer, {i: "C" for i in range(6)}, {(0, j): 1 for j in range(1, 6)})
    ids[ids == tokenizer.vocab_size] = 0  # undecided atoms -> padding, undecided bonds -> none below
    ids[0, 12:][ids[0, 12:] == 0] = tokenizer.layout.no_edge
    ok = tokenizer.encode("CCO").ids
    both = tokenizer.decode(torch.cat([ids, ok]))
    assert both[0] is None and "valence" in tokenizer.last_invalid[0].lower() and both[1] is not None
    assert metrics.validity(both) == 0.5
    assert metrics.connected(parse_all(["CC.O", "CCO"], "x") + [None]) == pytest.approx(1 / 3)
    # two molecules: IntDiv = 1 - their Tanimoto similarity
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    pair = parse_all(["CCO", "c1ccccc1O"], "x")
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    sim = DataStructs.TanimotoSimilarity(*(gen.GetFingerprint(m) for m in pair))
    assert metrics.internal_diversity(pair) == pytest.approx(1 - sim) and 0 < sim < 1
    assert Chem.MolToSmiles(pair[0]) == "CCO"


def test_property_distances_and_conditioning_error_on_known_values():
    a = {"logp": np.array([0.0, 1.0, 2.0])}
    assert metrics.property_distances(a, a)["logp"] == 0.0
    assert metrics.property_distances({"logp": a["logp"] + 0.5}, a)["logp"] == pytest.approx(0.5)
    mols = parse_all(["CCO", "c1ccccc1"], "x") + [None]
    logp = [property_of(m, "logp") for m in mols[:2]]
    err = metrics.conditioning_error(np.array([logp[0] + 1.0, logp[1] - 1.0, 5.0]), mols, "logp")
    assert err["mae"] == pytest.approx(1.0) and err["valid"] == pytest.approx(2 / 3)
    values = smiles_properties(["CCO"], "x")
    assert values["mw"][0] == pytest.approx(46.07, abs=0.01) and 0 < values["qed"][0] < 1
    # the SA scorer rdkit ships works offline and ranks synthetic complexity: ethanol < camphor < prednisolone
    sa = smiles_properties(["CCO", "CC1(C)C2CCC1(C)C(=O)C2", "C[C@]12C[C@H](O)[C@H]3[C@@H](CCC4=CC(=O)C=C[C@@]43C)"
                            "[C@@H]1CC[C@]2(O)C(=O)CO"], "x")["sa"]
    assert sa[0] == pytest.approx(1.98, abs=0.05) and sa[0] < sa[1] < sa[2]


def test_bad_inputs_name_the_problem():
    scale = PropertyScale.fit("logp", np.array([-1.0, 0.5, 3.0]))
    with pytest.raises(ValueError, match=r"requested\[1\]: logP 7.5 lies outside the training molecules' "
                                         r"range \[-1, 3\]"):
        scale.condition([0.0, 7.5])
    with pytest.raises(ValueError, match=r"reference\[1\]: rdkit cannot parse SMILES 'C1CC\(\('"):
        smiles_properties(["CCO", "C1CC(("], "reference")
    assert scale.condition([-1.0, 3.0]).embeddings.shape == (2, 1, 1)


def test_soft_bins_give_each_range_of_values_its_own_direction():
    scale = PropertyScale.fit("logp", np.array([-1.0, 0.5, 3.0]), bins=5)  # centres at logP -1, 0, 1, 2, 3
    cond = scale.condition([-1.0, 1.0, 3.0, 1.5])
    assert cond.embeddings.shape == (4, 1, 6) and scale.width == 6
    assert scale.values(cond) == pytest.approx([-1.0, 1.0, 3.0, 1.5])  # the first column is the value
    bins = cond.embeddings[:, 0, 1:]
    assert bins.argmax(1).tolist()[:3] == [0, 2, 4] and float(bins[1, 2]) == pytest.approx(1.0)
    assert float(bins[1, 1]) == pytest.approx(float(np.exp(-0.5)), rel=1e-5)  # one spacing away
    assert float(bins[3, 2]) == pytest.approx(float(bins[3, 3]))  # half way: two bins alike
    assert scale.unconditional(3).embeddings.shape == (3, 1, 6) and bool(scale.unconditional(3).drop.all())


@pytest.mark.parametrize("overrides, message", [
    (["task.property_bins=1"], "task.property_bins: 1; expected 0"),
    (["model.cond_embed_dim=1"], r"set model.cond_embed_dim=17 \(1 \+ task.property_bins\)"),
])
def test_the_condition_width_must_match_the_bins(overrides, message):
    from ddm.config import ConfigError
    from ddm.experiment import load_experiment
    from ddm.task import build_task

    with pytest.raises(ConfigError, match=message):
        build_task(load_experiment("configs/tasks/molecule_cpu.yaml", overrides)).check()


@pytest.fixture(scope="module")
def tiny_molecule_run(tmp_path_factory):
    """A tiny tokenizer and model trained through the experiment front end, then evaluated."""
    import yaml

    from ddm.experiment import load_experiment
    from ddm.task import build_task

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("molecule")
    tok = yaml.safe_load(open("configs/tokenizers/molecules_gen.yaml"))
    # MOSES's atom types, as the full run fits them from 30,000 molecules: the model's 13 tokens
    tok["tokenizer"].update(max_atoms=27, atom_types=["C", "N", "O", "S", "F", "Cl", "Br", "NH1"])
    tok["data"].update(num_train=96, num_heldout=16)
    tok["run_dir"] = str(root / "tok")
    (root / "tok.yaml").write_text(yaml.safe_dump(tok))
    task = build_task(load_experiment("configs/tasks/molecule_cpu.yaml", [
        f"task.tokenizer_config={root / 'tok.yaml'}", "task.num_test=40", "task.ablation_samples=6",
        "task.condition_samples=6", "task.picture_molecules=4", "model.d_model=32", "model.depth=1",
        "model.heads=2", "train.steps=6", "train.batch_size=8", "train.log_every=3", "train.warmup_steps=1",
        "train.checkpoint_every=0", "train.eval_every=0", "train.progress=false", "sample.steps=6",
        "sample.num_samples=8", "sample.batch_size=8", f"run_dir={root / 'run'}"]))
    task.prepare()
    task.train()
    return task, task.evaluate()


def test_the_molecule_task_trains_samples_and_evaluates_end_to_end(tiny_molecule_run):
    task, result = tiny_molecule_run
    main = "diffusion, valence processor + recheck"
    for row in (main, "diffusion, no valence processor", "diffusion, valence processor, no recheck",
                "diffusion, valence processor, no connectivity rule",
                "autoregressive, valence processor", "MOSES training molecules (floor)"):
        for key in ("validity", "connected", "w1_qed", "w1_logp", "w1_sa", "w1_mw"):
            assert f"{row}/{key}" in result
    assert result["MOSES training molecules (floor)/validity"] == 1.0
    assert result[f"{main}/nfe"] > 0 and 0 <= result[f"{main}/validity"] <= 1
    assert "conditioning/conditional/mae" in result and "conditioning/unconditional/mae" in result
    # the same masks on shuffled conditions: only what the model reads of its condition differs
    assert result["heldout_elbo_shuffled_conditions"] != result["heldout_elbo_bits_per_token"]
    assert (task.run_dir / "samples_diffusion.png").is_file()
    # `ddm sample` writes ids and SMILES (one line per sample)
    out = task.sample()
    assert out["samples"] == 8 and len((task.run_dir / "samples" / "samples.smi").read_text().splitlines()) == 8


def test_the_task_refuses_requests_outside_the_training_range(tiny_molecule_run):
    import dataclasses

    task, _ = tiny_molecule_run
    high = task.scale.high + 1.0
    task.config.task = dataclasses.replace(task.config.task, sample_property=[high])
    try:
        with pytest.raises(ValueError, match=r"task.sample_property \(logP\)\[0\]: logP .* lies outside the "
                                             r"training molecules' range \["):
            task.sample_conditions(4)
    finally:
        task.config.task = dataclasses.replace(task.config.task, sample_property=[])
    fixed = task.sample_fixed(50)
    atoms = (~fixed.mask[:, :27]).sum(1)
    assert atoms.min() >= 1 and set(atoms.tolist()) <= set(task.atom_counts.nonzero()[:, 0].tolist())


def test_smiles_atom_order_round_trips_and_puts_bonds_next_to_the_diagonal():
    from tokenizers_vq.molecules import MoleculeConfig, MoleculeTokenizer, canonical

    molecules = ["CC(=O)Nc1ccc(O)cc1", "O=S(=O)(N)c1ccccc1Cl", "CCCCCCO"]
    near = {}
    for order in ("canonical", "smiles"):
        tok = MoleculeTokenizer(MoleculeConfig(max_atoms=16, atom_order=order))
        tok.fit(molecules)
        ids = tok.encode(molecules).ids
        assert tok.decode_smiles(ids) == [canonical(s) for s in molecules]
        _, edges = tok.layout.from_ids(ids)
        bonded = edges.nonzero()
        near[order] = float(((bonded[:, 1] - bonded[:, 2]).abs() == 1).float().mean())
    assert near["smiles"] > 0.7 > near["canonical"]  # hexanol in SMILES order is a chain along the diagonal
