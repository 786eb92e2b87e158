"""Molecule tokenizer: MOSES round trips, charges / explicit H, invalid inputs, save/load."""

import pytest
import torch

from tokenizers_vq import load_tokenizer
from tokenizers_vq.data.molecules import moses_file, parsable, read_smiles
from tokenizers_vq.molecules import MoleculeConfig, MoleculeTokenizer, canonical

# charges (nitro, zwitterion, ammonium), aromatic N-H, S(VI), a triple bond, fused aromatics
SPECIAL = ["C[N+](=O)[O-]", "c1cc[nH]c1", "C[NH3+]", "CC(=O)[O-]", "CS(=O)(=O)c1ccccc1", "CC#N",
           "c1ccc2[nH]ccc2c1", "O=c1cc[nH]c(=O)[nH]1", "[O-][n+]1ccccc1"]


@pytest.fixture(scope="module")
def moses():
    return read_smiles(moses_file("train"), 150)


@pytest.fixture(scope="module")
def tok(moses):
    t = MoleculeTokenizer(MoleculeConfig(max_atoms=32))
    t.fit(moses[:100] + SPECIAL)
    return t


def test_moses_round_trip(tok, moses):
    held = moses[100:]
    assert tok.evaluate(held)["canonical_smiles_identical"] == 1.0
    stream = tok.encode(held)
    assert stream.ids.shape == (50, 32 + 32 * 31 // 2) and int(stream.ids.max()) < tok.vocab_size
    assert tok.decode_smiles(stream) == [canonical(s) for s in held]


def test_charges_and_explicit_hydrogens_round_trip(tok):
    assert tok.decode_smiles(tok.encode(SPECIAL)) == [canonical(s) for s in SPECIAL]
    assert {"N+1", "O-1"} <= set(tok.config.atom_types)


def test_unparsable_smiles(tok):
    good, bad = parsable(["CCO", "C1CC(", "", "c1ccccc1"])
    assert good == ["CCO", "c1ccccc1"] and bad == ["C1CC(", ""]
    with pytest.raises(ValueError, match=r"smiles\[1\]: rdkit cannot parse SMILES 'C1CC\('"):
        tok.encode(["CCO", "C1CC("])


def test_other_clear_errors(tok):
    with pytest.raises(ValueError, match="more than max_atoms=32"):
        tok.encode("C" * 33)
    with pytest.raises(ValueError, match="atom type 'Si'"):
        tok.encode("C[Si](C)(C)C")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode(torch.full((1, tok.layout.length), tok.vocab_size))
    with pytest.raises(RuntimeError, match="no atom types"):
        MoleculeTokenizer(MoleculeConfig()).encode("CC")


def test_invalid_tokens_decode_to_none_with_a_reason(tok):
    ids = tok.encode("CC(C)(C)C").ids.clone()  # neopentane: the centre carbon has four bonds
    # make every C-C bond double: carbons with 8 bonds are no molecule
    edges = ids[0, 32:]
    edges[edges == tok.layout.no_edge + 1] = tok.layout.no_edge + 2
    (mol,) = tok.decode(ids)
    assert mol is None and "valence" in tok.last_invalid[0].lower()


def test_save_load_same_ids(tok, moses, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.config.atom_types == tok.config.atom_types
    assert torch.equal(loaded.encode(moses).ids, tok.encode(moses).ids)


def test_picture_and_files(tok, moses, tmp_path):
    paths = tok.save_pictures(moses[:4], tmp_path)
    assert all(p.is_file() for p in paths)
    tok.write_output(tok.decode(tok.encode(moses[:3])), tmp_path / "out.smi")
    assert tok.read_input(tmp_path / "out.smi") == [canonical(s) for s in moses[:3]]


def test_a_tokenizer_whose_atom_types_were_fitted_is_loaded_again_by_its_config(tmp_path):
    """`fit` fills the empty atom_types; a second `fit_or_load` with the same config must take the saved
    folder (a task's `ddm run` prepares twice), and a config that names other types is still refused."""
    from ddm.config import ConfigError
    from tokenizers_vq.task import fit_or_load

    config = tmp_path / "mol.yaml"
    config.write_text("task: {name: tokenizer, kind: molecule}\ntokenizer: {max_atoms: 32}\n"
                      f"data: {{file: train, num_train: 100, num_heldout: 20}}\nrun_dir: {tmp_path / 'run'}\n")
    first = fit_or_load(config, tmp_path / "tok", kind="molecule")
    assert first.config.atom_types
    again = fit_or_load(config, tmp_path / "tok", kind="molecule")
    assert again.config.atom_types == first.config.atom_types
    config.write_text(config.read_text().replace("{max_atoms: 32}", "{max_atoms: 32, atom_types: [C]}"))
    with pytest.raises(ConfigError, match="atom_types"):
        fit_or_load(config, tmp_path / "tok", kind="molecule")
