"""The training speed switches give the plain path's loss and gradients (within rounding):
model.activation, train.sparse_head, train.fused_optimizer, train.compile."""

from __future__ import annotations

import pytest
import torch

from ddm.config import ConfigError, DiffusionConfig, ModelConfig, TrainConfig
from ddm.hub import load_pretrained
from ddm.model import MaskedDiffusionTransformer
from ddm.objectives import DiffusionObjective
from ddm.process import MaskingProcess
from ddm.sampling.constraints import LogitsProcessor
from ddm.training import Trainer


def tiny(diffusion: DiffusionConfig | None = None, **kw) -> MaskedDiffusionTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(**{"vocab_size": 11, "shape": [12], "d_model": 32, "depth": 2, "heads": 2, **kw})
    model = MaskedDiffusionTransformer(cfg, diffusion)
    torch.nn.init.normal_(model.heads.discrete.weight, std=0.5)  # the head starts at zero: make outputs vary
    return model


def batch(cfg: ModelConfig, b: int = 4, seed: int = 0, **extra) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"ids": torch.randint(0, cfg.vocab_size, (b, cfg.seq_len), generator=g), **extra}


def loss_and_grads(model, objective, data, seed: int = 3):
    model.zero_grad(set_to_none=True)
    loss, metrics = objective(model, data, torch.Generator().manual_seed(seed))
    loss.backward()
    return loss.detach(), metrics, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a, b, atol=1e-6, rtol=1e-5):
    (la, ma, ga), (lb, mb, gb) = a, b
    torch.testing.assert_close(la, lb, atol=atol, rtol=rtol)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert ma[k] == pytest.approx(mb[k], rel=rtol, abs=atol), k
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], atol=atol, rtol=rtol, msg=k)


def test_where_gives_the_logits_at_those_positions():
    m = tiny(DiffusionConfig(continuous_loss="regression"), continuous_dim=2).eval()
    data = batch(m.config)
    where = torch.rand(data["ids"].shape, generator=torch.Generator().manual_seed(1)) < 0.4
    full, part = m(data["ids"]), m(data["ids"], where=where)
    torch.testing.assert_close(part.logits, full.logits[where], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(part.continuous, full.continuous)  # the continuous head still runs everywhere


@pytest.mark.parametrize("diffusion, extra", [
    ({}, {}),
    ({"weighting": "flat"}, {}),
    ({"visible_noise": 0.2, "visible_weight": 0.5}, {}),
    ({}, {"padding": "last3"}),
    ({"continuous_loss": "regression"}, {"values": True}),
])
def test_sparse_head_gives_the_same_loss_and_gradients(diffusion, extra):
    cfg = DiffusionConfig(**diffusion)
    m = tiny(cfg, continuous_dim=3 if extra.get("values") else 0).train()
    process = MaskingProcess.from_config(cfg, m.config.mask_id)
    data = batch(m.config)
    if extra.get("padding"):
        data["padding"] = torch.zeros_like(data["ids"], dtype=torch.bool)
        data["padding"][:, -3:] = True
    if extra.get("values"):
        data["values"] = torch.randn(*data["ids"].shape, 3, generator=torch.Generator().manual_seed(2))
    plain = loss_and_grads(m, DiffusionObjective(process, cfg), data)
    sparse = loss_and_grads(m, DiffusionObjective(process, cfg, sparse_head=True), data)
    assert_same(plain, sparse)
    assert plain[2]["heads.discrete.weight"].abs().sum() > 0


def test_sparse_head_is_off_with_logits_processors():
    class Nothing(LogitsProcessor):
        def __call__(self, logits, ids):
            return logits

    process = MaskingProcess.from_config(DiffusionConfig(), 11)
    assert not DiffusionObjective(process, DiffusionConfig(), [Nothing()], sparse_head=True).sparse_head


def test_exact_gelu_is_close_and_old_checkpoints_keep_tanh(tmp_path):
    tanh, erf = tiny(), tiny(activation="gelu")
    assert tanh.config.activation == "gelu_tanh"  # the default: trained models stay as they were
    erf.load_state_dict(tanh.state_dict())  # the switch adds no parameter
    cfg = DiffusionConfig()
    process = MaskingProcess.from_config(cfg, 11)
    data = batch(tanh.config)
    a = loss_and_grads(tanh.train(), DiffusionObjective(process, cfg), data)
    b = loss_and_grads(erf.train(), DiffusionObjective(process, cfg), data)
    assert_same(a, b, atol=1e-3, rtol=1e-2)  # GELU's tanh form is within ~1e-3 of the exact one
    # a folder saved before the field existed has no "activation" key: it loads as gelu_tanh, equal
    tanh.eval().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    import json
    saved = json.loads(path.read_text())
    del saved["config"]["activation"]
    path.write_text(json.dumps(saved))
    loaded = load_pretrained(tmp_path)
    assert loaded.config.activation == "gelu_tanh"
    ids = data["ids"]
    assert torch.equal(loaded(ids).logits, tanh(ids).logits)
    with pytest.raises(ConfigError, match="activation"):
        ModelConfig(body="hf", hf_config={"model_type": "bert"}, activation="gelu")


class Data:
    def __init__(self, cfg: ModelConfig, n: int = 16):
        self.ids = torch.randint(0, cfg.vocab_size, (n, cfg.seq_len), generator=torch.Generator().manual_seed(5))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"ids": self.ids[i]}


def train_weights(tmp_path, name: str, steps: int = 3, **switches) -> tuple[dict, Trainer]:
    m = tiny()
    cfg = DiffusionConfig()
    objective = DiffusionObjective(MaskingProcess.from_config(cfg, m.config.mask_id), cfg)
    train = TrainConfig(steps=steps, batch_size=4, warmup_steps=0, log_every=1, checkpoint_every=0, progress=False,
                        **switches)
    trainer = Trainer(m, objective, Data(m.config), train, tmp_path / name)
    trainer.train()
    return m.state_dict(), trainer


def test_fused_optimizer_trains_the_same(tmp_path):
    plain, _ = train_weights(tmp_path, "plain")
    fused, _ = train_weights(tmp_path, "fused", fused_optimizer=True)
    for k in plain:
        torch.testing.assert_close(plain[k], fused[k], atol=1e-6, rtol=1e-5, msg=k)
    # the switch may change on resume: the resumed run follows its own setting, not the checkpoint's
    train_weights(tmp_path, "resumed", 2)
    resumed, _ = train_weights(tmp_path, "resumed", 3)
    train_weights(tmp_path, "switched", 2, fused_optimizer=True)
    switched, trainer = train_weights(tmp_path, "switched", 3)
    assert trainer.optimizer.param_groups[0]["fused"] is None
    for k in plain:
        torch.testing.assert_close(resumed[k], switched[k], atol=1e-6, rtol=1e-5, msg=k)


@pytest.mark.slow  # the compilation: ~25 s on two busy cores
def test_compile_trains_the_same(tmp_path, one_thread):
    plain, _ = train_weights(tmp_path, "plain", 2)
    compiled, _ = train_weights(tmp_path, "compiled", 2, compile=True)
    for k in plain:
        torch.testing.assert_close(plain[k], compiled[k], atol=1e-5, rtol=1e-4, msg=k)


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv3 = torch.nn.Conv3d(2, 4, 3, padding=1)

    def forward(self, image, clip):
        return self.conv2(image).square().mean() + self.conv3(clip).square().mean()


class ConvData:
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randn(3, 8, 8, generator=g), "clip": torch.randn(2, 3, 4, 4, generator=g)}


def test_channels_last_trains_the_same_and_saves_in_the_default_order(tmp_path):
    weights = []
    for on in (False, True):
        torch.manual_seed(0)
        net = ConvNet()
        train = TrainConfig(steps=2, batch_size=4, warmup_steps=0, checkpoint_every=0, progress=False,
                            channels_last=on)
        trainer = Trainer(net, lambda m, b, g: (m(b["image"], b["clip"]), {}), ConvData(), train, tmp_path / str(on))
        if on:
            assert net.conv2.weight.is_contiguous(memory_format=torch.channels_last)
            assert net.conv3.weight.is_contiguous(memory_format=torch.channels_last_3d)
        trainer.train_to_end()
        assert all(p.is_contiguous() for p in net.parameters())  # as safetensors saves them
        weights.append(net.state_dict())
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], atol=1e-6, rtol=1e-5, msg=k)
