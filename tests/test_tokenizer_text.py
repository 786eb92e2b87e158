"""Text tokenizer: byte-level BPE on KJV verses, exact round trips, padding, save/load."""

import pytest
import torch

from tokenizers_vq import load_tokenizer
from tokenizers_vq.data.text import TextDataConfig, build_text_data, read_verses
from tokenizers_vq.text import TextConfig, TextTokenizer


@pytest.fixture(scope="module")
def data():
    return build_text_data(TextDataConfig(max_verses=1500, heldout_every=10))


@pytest.fixture(scope="module")
def tok(data):
    t = TextTokenizer(TextConfig(vocab_size=600, max_length=128))
    t.fit(data["train"])
    return t


def test_verses_are_split_without_references():
    verses = read_verses(40)
    assert verses[0] == "In the beginning God created the heavens and the earth."
    assert len(verses) == 40 and not any(v[:1].isdigit() for v in verses)


def test_heldout_round_trip_is_exact(tok, data):
    m = tok.evaluate(data["heldout"])
    assert m["texts"] == 150 and m["exact_round_trip"] == 1.0 and m["too_long_for_max_length"] == 0
    assert tok.vocab_size <= 600


def test_padding_mask_and_one_text(tok, data):
    texts = data["heldout"][:4]
    stream = tok.encode(texts)
    assert stream.ids.shape == (4, 128) and stream.shape == (128,)
    assert torch.equal(stream.mask, stream.ids != tok.pad_id)
    assert tok.decode(stream) == texts and tok.decode(stream.ids) == texts
    one = tok.encode("And God said, Let there be light.", max_length=0)
    assert one.ids.shape[0] == 1 and bool(one.mask.all())
    assert tok.decode(one.ids[0]) == ["And God said, Let there be light."]


def test_unseen_characters_round_trip(tok):
    text = "Naïve café — 東京 🙂\ttabs  and  spaces"  # bytes never seen in training
    assert tok.decode(tok.encode(text)) == [text]


def test_clear_errors(tok):
    with pytest.raises(ValueError, match=r"texts\[1\] has \d+ tokens, more than max_length=128"):
        tok.encode(["short", "word " * 300])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode(torch.tensor([[5, tok.vocab_size]]))
    with pytest.raises(TypeError, match=r"texts\[0\]: expected a string"):
        tok.encode([3])
    with pytest.raises(RuntimeError, match="no BPE model"):
        TextTokenizer(TextConfig()).encode("x")


def test_save_load_same_ids(tok, data, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, TextTokenizer) and loaded.vocab_size == tok.vocab_size
    assert torch.equal(loaded.encode(data["heldout"]).ids, tok.encode(data["heldout"]).ids)
