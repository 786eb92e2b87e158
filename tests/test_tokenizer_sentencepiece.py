"""Text tokenizer: a sentencepiece model (unigram or BPE) on KJV verses; exact round trips, the
end-of-text id, padding, save/load, clear errors."""

import pytest
import torch

from tokenizers_vq import TOKENIZERS, load_tokenizer
from tokenizers_vq.data.text import TextDataConfig, build_text_data
from tokenizers_vq.sentencepiece import SentencePieceConfig, SentencePieceTokenizer


@pytest.fixture(scope="module")
def data():
    return build_text_data(TextDataConfig(max_verses=1500, heldout_every=10))


@pytest.fixture(scope="module")
def tok(data):
    t = SentencePieceTokenizer(SentencePieceConfig(vocab_size=600, max_length=128))
    t.fit(data["train"])
    return t


def test_registered_as_its_own_kind():
    assert TOKENIZERS.get("sentencepiece") is SentencePieceTokenizer


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_heldout_round_trip_is_exact(data, model_type):
    t = SentencePieceTokenizer(SentencePieceConfig(vocab_size=500, model_type=model_type, max_length=128))
    t.fit(data["train"])
    m = t.evaluate(data["heldout"])
    assert m["texts"] == 150 and m["exact_round_trip"] == 1.0 and m["unknown_tokens"] == 0
    assert t.vocab_size == 500 and 2.0 < m["chars_per_token"] < 6.0  # pieces longer than characters


def test_padding_mask_and_one_text(tok, data):
    texts = data["heldout"][:4]
    stream = tok.encode(texts)
    assert stream.ids.shape == (4, 128) and stream.shape == (128,)
    assert torch.equal(stream.mask, stream.ids != tok.pad_id) and tok.pad_id == 0
    assert tok.decode(stream) == texts and tok.decode(stream.ids) == texts
    one = tok.encode("And God said, Let there be light.", max_length=0)
    assert one.ids.shape[0] == 1 and bool(one.mask.all())
    assert tok.decode(one.ids[0]) == ["And God said, Let there be light."]


def test_unseen_characters_and_spaces_round_trip(tok):
    text = "Naïve café — 東京 🙂\ttabs  and  spaces, a line\nbreak "  # characters never seen: bytes
    rows = tok.encode_rows(text)
    assert tok.model.unk_id() not in rows[0]
    assert tok.decode(tok.encode(text)) == [text]


def test_end_of_text_separates_texts(tok):
    rows = tok.encode_rows(["In the beginning", "God created"], add_eos=True)
    assert rows[0][-1] == tok.eos_id == 2 and rows[1][-1] == tok.eos_id
    joined = torch.tensor([rows[0] + rows[1]])
    assert tok.decode(joined) == ["In the beginning\nGod created\n"]


def test_clear_errors(tok, data):
    with pytest.raises(ValueError, match=r"texts\[1\] has \d+ tokens, more than max_length=128"):
        tok.encode(["short", "word " * 300])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode(torch.tensor([[5, tok.vocab_size]]))
    with pytest.raises(TypeError, match=r"texts\[0\]: expected a string"):
        tok.encode([3])
    with pytest.raises(ValueError, match="no texts given"):
        tok.encode([])
    with pytest.raises(RuntimeError, match="no sentencepiece model"):
        SentencePieceTokenizer(SentencePieceConfig()).encode("x")
    with pytest.raises(ValueError, match="could not train a 5000-piece unigram model"):
        SentencePieceTokenizer(SentencePieceConfig(vocab_size=5000)).fit(data["train"][:20])
    with pytest.raises(ValueError, match="more than max_sentence_chars=100"):
        SentencePieceTokenizer(SentencePieceConfig(max_sentence_chars=100)).fit(["a" * 101])
    with pytest.raises(ValueError, match="only empty texts"):
        SentencePieceTokenizer(SentencePieceConfig()).fit(["", ""])


def test_save_load_same_ids(tok, data, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "sentencepiece.model").is_file()
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, SentencePieceTokenizer) and loaded.vocab_size == tok.vocab_size
    assert torch.equal(loaded.encode(data["heldout"], max_length=0).ids, tok.encode(data["heldout"], max_length=0).ids)
    (tmp_path / "tok" / "sentencepiece.model").unlink()
    with pytest.raises(FileNotFoundError, match="sentencepiece model is missing"):
        load_tokenizer(tmp_path / "tok")
