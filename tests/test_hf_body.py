"""The `transformers` encoder body (`ddm.model.hf.HFDenoiser`): tiny BERT models built from
configs or local folders; nothing is downloaded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from ddm.config import ConfigError, ModelConfig  # noqa: E402
from ddm.hub import load_pretrained  # noqa: E402
from ddm.model import Condition, build_denoiser  # noqa: E402
from ddm.model.hf import HFDenoiser  # noqa: E402

BERT = {"model_type": "bert"}


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=8, shape=[8], d_model=32, depth=2, heads=4, mlp_ratio=2.0,
                body="hf", hf_config=dict(BERT))
    base.update(kw)
    return ModelConfig(**base)


def with_random_head(model: HFDenoiser) -> HFDenoiser:
    """The discrete head starts at zero (uniform predictions); randomise it so outputs depend on inputs."""
    torch.nn.init.normal_(model.heads.discrete.weight, std=0.5)
    return model.eval()


def masked_ids(b: int, cfg: ModelConfig, gen: torch.Generator) -> torch.Tensor:
    ids = torch.randint(0, cfg.vocab_size, (b, cfg.seq_len), generator=gen)
    mask = torch.rand(b, cfg.seq_len, generator=gen) < 0.5
    return ids.masked_fill(mask, cfg.mask_id)


def test_builds_from_config_and_output_shapes():
    torch.manual_seed(0)
    cfg = tiny(time_conditioning=True, continuous_dim=3)
    model = build_denoiser(cfg)
    assert isinstance(model, HFDenoiser) and not model.supports_prefix_cache
    enc = model.encoder.config
    assert (enc.hidden_size, enc.num_hidden_layers, enc.num_attention_heads, enc.intermediate_size) == (32, 2, 4, 64)
    assert enc.hidden_dropout_prob == 0.0 and enc.vocab_size <= 2
    gen = torch.Generator().manual_seed(0)
    ids = masked_ids(3, cfg, gen)
    out = model(ids, t=torch.rand(3, generator=gen), values=torch.randn(3, 8, 3, generator=gen))
    assert out.logits.shape == (3, 8, 8) and out.logits.dtype == torch.float32
    assert out.continuous.shape == (3, 8, 3)
    assert torch.allclose(out.logits, torch.zeros_like(out.logits))  # zero-initialised head: uniform
    with pytest.raises(ValueError, match="t: the model is time-conditioned"):
        model(ids)
    with pytest.raises(ValueError, match="ids: expected 8 tokens"):
        model(ids[:, :5], t=torch.rand(3))


def test_hf_config_values_win_over_model_fields():
    cfg = tiny(hf_config={"model_type": "bert", "intermediate_size": 48, "num_attention_heads": 2})
    model = HFDenoiser(cfg)
    assert model.encoder.config.intermediate_size == 48 and model.encoder.config.num_attention_heads == 2
    with pytest.raises(ConfigError, match="model.d_model"):
        HFDenoiser(tiny(hf_config={"model_type": "bert", "hidden_size": 64}))
    with pytest.raises(ConfigError, match="model_type"):
        HFDenoiser(tiny(hf_config={}))


def test_class_and_token_prefix_conditioning_with_padding():
    torch.manual_seed(0)
    cfg = tiny(num_classes=3, cond_vocab_size=5, cond_len=4)
    model = with_random_head(HFDenoiser(cfg))
    gen = torch.Generator().manual_seed(1)
    ids = masked_ids(3, cfg, gen)
    tokens = torch.randint(0, 5, (3, 4), generator=gen)
    token_mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
    cond = Condition(tokens=tokens, token_mask=token_mask, classes=torch.tensor([0, 1, 2]))
    with torch.no_grad():
        out = model(ids, cond=cond)
        assert out.logits.shape == (3, 8, 8) and torch.isfinite(out.logits).all()
        # encode_prefix + forward(prefix=...) is the same computation as forward(cond=...)
        prefix = model.encode_prefix(cond)
        assert prefix.keys == [] and prefix.hidden.shape == (3, 5, 32) and prefix.length == 5
        assert torch.equal(model(ids, prefix=prefix).logits, out.logits)
        # padded condition tokens are invisible: changing them changes nothing
        other = tokens.masked_fill(~token_mask, 4)
        again = model(ids, cond=Condition(tokens=other, token_mask=token_mask, classes=cond.classes))
        assert torch.allclose(again.logits, out.logits, atol=1e-5)
        # ... while the class and the real condition tokens do matter
        swapped = model(ids, cond=Condition(tokens=tokens, token_mask=token_mask, classes=torch.tensor([1, 2, 0])))
        assert not torch.allclose(swapped.logits, out.logits, atol=1e-4)
        # dropped rows use the learned null condition, and stay finite
        dropped = model(ids, cond=cond.dropped(torch.tensor([True, False, True])))
        assert torch.isfinite(dropped.logits).all()
        assert torch.allclose(dropped.logits[1], out.logits[1], atol=1e-5)
    with pytest.raises(ValueError, match="cond: the model is conditional"):
        model(ids)
    with pytest.raises(ValueError, match="cond.classes"):
        model(ids, cond=Condition(tokens=tokens, token_mask=token_mask, classes=torch.tensor([0, 1, 7])))


def test_training_reduces_masked_loss(one_thread):
    """Toy task: every row repeats one random token; masked tokens are read from the visible ones."""
    torch.manual_seed(0)
    cfg = tiny()
    model = HFDenoiser(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        x0 = torch.randint(0, cfg.vocab_size, (32, 1), generator=gen).expand(32, cfg.seq_len)
        mask = torch.rand(32, cfg.seq_len, generator=gen) < 0.5
        mask[:, 0] = False  # at least one visible token per row
        logits = model(x0.masked_fill(mask, cfg.mask_id)).logits
        loss = F.cross_entropy(logits[mask], x0[mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 1.9  # ~log(8) at the uniform start
    assert last < 0.25 * first, (first, last)


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(num_classes=2, time_conditioning=True)
    model = with_random_head(HFDenoiser(cfg))
    gen = torch.Generator().manual_seed(2)
    ids, t, cond = masked_ids(2, cfg, gen), torch.rand(2, generator=gen), Condition(classes=torch.tensor([0, 1]))
    model.save_pretrained(tmp_path / "m")
    for loaded in (HFDenoiser.from_pretrained(tmp_path / "m", expected_config=cfg), load_pretrained(tmp_path / "m")):
        assert isinstance(loaded, HFDenoiser)
        loaded.eval()
        with torch.no_grad():
            assert torch.equal(loaded(ids, t, cond).logits, model(ids, t, cond).logits)


def test_loads_encoder_from_local_transformers_folder(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=64))
    bert.save_pretrained(tmp_path / "bert")
    cfg = ModelConfig(vocab_size=8, shape=[8], d_model=32, depth=2, heads=4, body="hf",
                      hf_path=str(tmp_path / "bert"))
    model = with_random_head(build_denoiser(cfg))
    assert isinstance(model, HFDenoiser)
    ref = bert.state_dict()["encoder.layer.1.attention.self.query.weight"]
    assert torch.equal(model.encoder.state_dict()["encoder.layer.1.attention.self.query.weight"], ref)
    ids = masked_ids(2, cfg, torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (2, 8, 8) and torch.isfinite(logits).all()
    # a ddm checkpoint of it round-trips too (the architecture is read from hf_path again)
    model.save_pretrained(tmp_path / "ddm")
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "ddm").eval()(ids).logits, logits)
    # the folder's hidden size must match model.d_model
    with pytest.raises(ConfigError, match="model.d_model"):
        HFDenoiser(ModelConfig(vocab_size=8, shape=[8], d_model=64, depth=2, heads=4, body="hf",
                               hf_path=str(tmp_path / "bert")))


def test_missing_hf_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.hf_path: .*nothing is downloaded"):
        HFDenoiser(tiny(hf_config={}, hf_path=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        HFDenoiser(tiny(hf_config={}, hf_path=str(tmp_path / "empty")))
    with pytest.raises(FileNotFoundError, match="model.hf_path"):
        HFDenoiser(tiny(hf_config={}, hf_path="bert-base-uncased"))  # a hub id is not a folder
