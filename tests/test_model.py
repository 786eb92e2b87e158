import pytest
import torch

from ddm.config import ConfigError, ModelConfig
from ddm.model import Condition, MaskedDiffusionTransformer


def make(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(**{"vocab_size": 11, "shape": [12], "d_model": 32, "depth": 2, "heads": 2, **kw})
    model = MaskedDiffusionTransformer(cfg).eval()
    torch.nn.init.normal_(model.heads.discrete.weight, std=0.5)  # the head starts at zero: make outputs vary
    return model


def rand_ids(cfg, b=3, seed=0):
    return torch.randint(0, cfg.vocab_size + 1, (b, cfg.seq_len), generator=torch.Generator().manual_seed(seed))


def test_output_shapes_and_mask_never_predicted():
    m = make(continuous_dim=3)
    out = m(rand_ids(m.config), values=torch.randn(3, 12, 3))
    assert out.logits.shape == (3, 12, 11)  # V entries: the mask id (11) has no logit
    assert out.continuous.shape == (3, 12, 3) and out.logits.dtype == torch.float32


def test_target_attends_bidirectionally():
    m = make()
    ids = rand_ids(m.config)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 11
    # changing the last token changes the prediction at the first position
    assert not torch.allclose(m(ids).logits[:, 0], m(changed).logits[:, 0])


@pytest.mark.parametrize("kw", [
    {"cond_vocab_size": 7, "cond_len": 20},
    {"num_classes": 4},
    {"cond_embed_dim": 5},
    {"cond_vocab_size": 7, "cond_len": 20, "num_classes": 4, "cond_embed_dim": 5, "time_conditioning": True},
])
def test_cached_prefix_is_exact_and_condition_matters(kw):
    m = make(**kw)
    b = 3
    g = torch.Generator().manual_seed(1)
    cond = Condition(
        tokens=torch.randint(0, 7, (b, 20), generator=g) if "cond_vocab_size" in kw else None,
        classes=torch.tensor([0, 1, 3]) if "num_classes" in kw else None,
        embeddings=torch.randn(b, 2, 5, generator=g) if "cond_embed_dim" in kw else None)
    ids, t = rand_ids(m.config, b), torch.rand(b, generator=g)
    direct = m(ids, t=t, cond=cond).logits
    cached = m(ids, t=t, prefix=m.encode_prefix(cond)).logits
    torch.testing.assert_close(direct, cached, rtol=0, atol=1e-6)
    other = m(ids, t=t, cond=cond.dropped()).logits
    assert not torch.allclose(direct, other)  # the null condition is a different condition


def test_prefix_does_not_attend_to_target():
    m = make(cond_vocab_size=7, cond_len=8)
    cond = Condition(tokens=torch.randint(0, 7, (2, 8)))
    a, b = m.encode_prefix(cond), m.encode_prefix(cond)
    assert all(torch.equal(x, y) for x, y in zip(a.keys, b.keys))
    # target logits with a cached prefix equal those computed in one go for different targets
    for seed in range(3):
        ids = rand_ids(m.config, 2, seed)
        torch.testing.assert_close(m(ids, prefix=a).logits, m(ids, cond=cond).logits, rtol=0, atol=1e-6)


def test_padded_condition_tokens_are_ignored():
    m = make(cond_vocab_size=7, cond_len=6)
    tokens = torch.tensor([[1, 2, 3, 0, 0, 0], [4, 5, 6, 1, 2, 3]])
    mask = torch.tensor([[True, True, True, False, False, False], [True] * 6])
    ids = rand_ids(m.config, 2)
    out = m(ids, cond=Condition(tokens=tokens, token_mask=mask)).logits
    garbage = tokens.clone()
    garbage[0, 3:] = 6
    out2 = m(ids, cond=Condition(tokens=garbage, token_mask=mask)).logits
    torch.testing.assert_close(out, out2)


def test_axial_positions_distinguish_axes():
    m = make(shape=[3, 4], positions="axial", d_model=32, heads=2)
    assert m.target_coords.shape == (12, 2)
    out = m(rand_ids(m.config))
    assert out.logits.shape == (3, 12, 11) and torch.isfinite(out.logits).all()


def test_learned_positions_tell_positions_apart_when_everything_is_masked():
    """Rotary attention rotates queries and keys, not values: with every token masked all values
    are equal, so every position of an unconditional model gets the same prediction, whatever
    the weights. Learned positions break the tie. Data: position 0 is always token 3, the
    others uniform; a few Adam steps on fully masked rows."""
    def first_position_share(**kw):
        m = make(**kw).train()
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)
        masked = torch.full((32, 12), m.config.mask_id)
        for _ in range(60):
            x = torch.randint(0, 11, (32, 12), generator=g)
            x[:, 0] = 3
            loss = torch.nn.functional.cross_entropy(m(masked).logits.transpose(1, 2), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            probs = m.eval()(masked[:1]).logits.softmax(-1)[0]
        return float(probs[0, 3]), float(probs[5, 3])

    first, middle = first_position_share(learned_positions=True)
    assert first > 0.9 and middle < 0.2
    first, middle = first_position_share()
    assert abs(first - middle) < 1e-5
    with pytest.raises(ConfigError, match="model.learned_positions"):
        ModelConfig(learned_positions=True, body="hf")


def test_position_entities_add_one_vector_per_entity_and_serve_cached_calls():
    """Positions 0-5 belong to entity 0 and one other; 6-11 to entity 1 and one other (a pair
    layout in miniature): each position's embedding is its token's plus its entities' vectors."""
    entities = [[0, 2 + i % 3] for i in range(6)] + [[1, 2 + i % 3] for i in range(6)]
    m = make(position_entities=entities)
    emb = m.target_embedding
    ids = rand_ids(m.config)
    with torch.no_grad():
        got = emb(ids, None, None) - emb.tokens(ids)
        table = emb.entities.weight
        want = table[torch.tensor(entities)].sum(1)
        assert torch.allclose(got, want.expand_as(got), atol=1e-6)
        assert not torch.allclose(got[0, 0], got[0, 6])  # different entities, different positions
        # a sampler's partial call (positions given by index) sees the same vectors
        index = torch.tensor([[11, 0, 4]] * 3)
        part = emb(ids.gather(1, index), None, None, index=index) - emb.tokens(ids.gather(1, index))
        assert torch.allclose(part, want[index], atol=1e-6)
        full, cache = m.forward_cached(ids, None, None, None, None)
        assert torch.allclose(full.logits, m(ids).logits, atol=1e-5)
    assert "target_embedding.entities.weight" in dict(m.named_parameters())


@pytest.mark.parametrize("entities, message", [
    ([[0, 1]] * 11, "11 rows for 12 target positions"),
    ([[0, 1]] * 11 + [[0]], r"position_entities\[11\]: expected a list of 2 entity ids"),
    ([[0, 1]] * 11 + [[0, -1]], r"position_entities\[11\]: entity ids are ints >= 0"),
])
def test_position_entities_must_fit_the_target(entities, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(vocab_size=11, shape=[12], d_model=32, heads=2, position_entities=entities)
    with pytest.raises(ConfigError, match="body=hf brings its own"):
        ModelConfig(vocab_size=11, shape=[2], d_model=32, heads=2, position_entities=[[0], [1]], body="hf")


@pytest.mark.parametrize("call, message", [
    (lambda m: m(torch.zeros(12, dtype=torch.long)), "ids: expected a tensor of rank 2"),
    (lambda m: m(torch.zeros(2, 10, dtype=torch.long)), "expected 12 tokens per row"),
    (lambda m: m(torch.full((2, 12), 12)), "token id 12 is outside the vocabulary"),
    (lambda m: m(torch.full((2, 12), -1)), "token id -1 is outside"),
    (lambda m: m(torch.zeros(2, 12)), "expected integer token ids"),
])
def test_bad_inputs_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call(make())


def test_bad_conditions_name_the_problem():
    m = make(num_classes=4, cond_vocab_size=7, cond_len=5)
    ids = rand_ids(m.config, 2)
    with pytest.raises(ValueError, match="pass a Condition"):
        m(ids)
    with pytest.raises(ValueError, match="class id 4 is unknown"):
        m(ids, cond=Condition(classes=torch.tensor([0, 4]), tokens=torch.zeros(2, 5, dtype=torch.long)))
    with pytest.raises(ValueError, match="takes at most 5"):
        m(ids, cond=Condition(classes=torch.tensor([0, 1]), tokens=torch.zeros(2, 6, dtype=torch.long)))
    with pytest.raises(ValueError, match="token id 7 is outside the condition vocabulary"):
        m(ids, cond=Condition(classes=torch.tensor([0, 1]), tokens=torch.full((2, 5), 7)))
