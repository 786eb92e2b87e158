"""The autoregressive baseline: causal attention, exact incremental decoding, training and sampling."""

import pytest
import torch

from ddm.autoregressive import AutoregressiveObjective, sample_autoregressive, shift_right
from ddm.config import ConfigError, ModelConfig, TrainConfig
from ddm.model import Condition, MaskedDiffusionTransformer


def causal_model(**kw) -> MaskedDiffusionTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=8, shape=[10], d_model=32, depth=2, heads=2, causal=True, **kw)
    model = MaskedDiffusionTransformer(cfg).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.heads.discrete.weight, std=0.5)  # zero-initialised otherwise
    return model


def test_causal_outputs_ignore_later_tokens():
    model = causal_model()
    ids = torch.randint(0, 8, (3, 10), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 8
    a, b = model(ids).logits, model(changed).logits
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


@pytest.mark.parametrize("with_prefix, learned_positions", [(False, False), (True, False), (False, True)])
def test_incremental_decoding_equals_the_full_forward(with_prefix, learned_positions):
    kw = dict(cond_vocab_size=5, cond_len=4) if with_prefix else {}
    model = causal_model(learned_positions=learned_positions, **kw)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 8, (2, 10), generator=g)
    cond = None
    if with_prefix:  # rows of different prefix lengths
        cond = Condition(tokens=torch.randint(0, 5, (2, 4), generator=g),
                         token_mask=torch.tensor([[True] * 4, [True, True, False, False]]))
    full = model(ids, cond=cond).logits
    cache = model.encode_prefix(cond) if cond is not None else None
    steps = []
    for i in range(10):
        out, cache = model.extend(ids[:, i:i + 1], i, cache)
        steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_bidirectional_model_refuses_incremental_decoding_and_config_checks():
    model = MaskedDiffusionTransformer(ModelConfig(vocab_size=8, shape=[4], d_model=32, depth=1, heads=2))
    with pytest.raises(ValueError, match="causal"):
        model.extend(torch.zeros(1, 1, dtype=torch.long), 0, None)
    with pytest.raises(ValueError, match="causal"):
        sample_autoregressive(model, 2)
    with pytest.raises(ConfigError, match="model.causal"):
        ModelConfig(causal=True, time_conditioning=True)


def test_objective_learns_a_deterministic_chain_and_sampling_reproduces_it(tmp_path):
    from ddm.training import Trainer

    # x_{i+1} = x_i + 1 mod 8 from a uniform start: 3 bits for the first token, 0 after.
    starts = torch.randint(0, 8, (512, 1), generator=torch.Generator().manual_seed(3))
    data = [{"ids": (starts[j] + torch.arange(10)) % 8} for j in range(512)]
    model = causal_model()
    model.train()
    cfg = TrainConfig(steps=60, batch_size=32, lr=1e-2, warmup_steps=5, progress=False, log_every=50,
                      checkpoint_every=0)
    Trainer(model, AutoregressiveObjective(), data, cfg, tmp_path).train()
    model.eval()
    r1 = sample_autoregressive(model, 64, generator=torch.Generator().manual_seed(4))
    r2 = sample_autoregressive(model, 64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(r1.ids, r2.ids) and r1.nfe == 10
    follows = ((r1.ids[:, 1:] - r1.ids[:, :-1]) % 8 == 1).float().mean()
    assert follows > 0.97
    assert len(set(r1.ids[:, 0].tolist())) >= 6  # the first token stays diverse
    assert torch.equal(shift_right(r1.ids, 8)[:, 1:], r1.ids[:, :-1])


def test_a_prompt_is_kept_and_the_rest_is_drawn_given_it():
    model = causal_model()
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    a = sample_autoregressive(model, prompt=prompt, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.ids[:, :3], prompt) and a.ids.shape == (2, 10) and a.nfe == 10
    # the continuation depends on the prompt: greedy decoding after two different prompts differs
    other = sample_autoregressive(model, prompt=torch.tensor([[7, 7, 7], [0, 0, 0]]), temperature=0.0)
    same = sample_autoregressive(model, prompt=prompt, temperature=0.0)
    assert not torch.equal(other.ids[:, 3:], same.ids[:, 3:])
    with pytest.raises(ValueError, match=r"prompt: expected \[batch=2, P <= 10\]"):
        sample_autoregressive(model, 2, prompt=torch.zeros(2, 11, dtype=torch.long))
