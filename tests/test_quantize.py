"""int8 denoisers (`ddm.quantize`): load, sample with the one loop, stay close to float32."""

import pytest
import torch
from torch import nn

from ddm.config import ConfigError, DiffusionConfig, SampleConfig
from ddm.experiment import load_experiment
from ddm.hub import load_pretrained
from ddm.model import Condition, MaskedDiffusionTransformer
from ddm.quantize import Int8Linear, is_quantized, quantize
from ddm.sampling import Sampler
from ddm.task import build_task

from conftest import make_tiny_denoiser


def trained_like(tmp_path):
    """A saved class-conditional denoiser with every weight perturbed (so no layer is trivial)."""
    model = make_tiny_denoiser(vocab_size=9, length=16, depth=2, num_classes=3,
                               diffusion=DiffusionConfig(cond_dropout=0.1),
                               sample=SampleConfig(steps=4, order="confidence"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    model.save_pretrained(tmp_path / "model")
    return load_pretrained(tmp_path / "model")


def test_a_loaded_model_quantizes_to_a_denoiser_with_its_sections(tmp_path, one_thread):
    model = trained_like(tmp_path)
    q = quantize(model, "int8")
    assert type(q) is MaskedDiffusionTransformer and is_quantized(q) and not is_quantized(model)
    assert q.config == model.config and q.diffusion == model.diffusion and q.sample == model.sample
    assert q.pretrained_dir == model.pretrained_dir and not q.training
    kinds = {name: type(m) for name, m in q.named_modules() if isinstance(m, (nn.Linear, Int8Linear))}
    assert {kind for name, kind in kinds.items() if name.startswith("blocks.")} == {Int8Linear}
    assert {kind for name, kind in kinds.items() if not name.startswith("blocks.")} == {nn.Linear}  # heads: fp32
    # the float32 model is untouched
    assert not any(isinstance(m, Int8Linear) for m in model.modules())
    assert quantize(model, "none") is model


def test_int8_logits_stay_close_to_float32(tmp_path, one_thread):
    model = trained_like(tmp_path)
    q = quantize(model, "int8")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 9, (16, 16), generator=g)
    ids[torch.rand(ids.shape, generator=g) < 0.5] = model.config.mask_id
    cond = Condition(classes=torch.arange(16) % 3)
    with torch.no_grad():
        a, b = model(ids, cond=cond).logits, q(ids, cond=cond).logits
        prefix = q.encode_prefix(cond)  # the cached prefix path gives the same int8 logits
        assert torch.allclose(q(ids, prefix=prefix).logits, b, atol=1e-5)
    spread = (a.max(-1).values - a.min(-1).values).mean()
    # measured: 0.15 of a spread of 7.7 (with 7-bit inputs: 0.25)
    assert (a - b).abs().max() < 0.1 * spread, ((a - b).abs().max(), spread)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.95
    p, r = a.log_softmax(-1).exp(), b.log_softmax(-1)
    kl = (p * (p.log() - r)).sum(-1)  # KL(fp32 || int8) per position, nats; measured: max 0.003, mean 0.0003
    assert kl.max() < 0.03 and kl.mean() < 0.003, (kl.max(), kl.mean())


def test_int8_samples_with_the_one_loop(tmp_path, one_thread):
    q = quantize(trained_like(tmp_path), "int8")
    sampler = Sampler.from_pretrained(q, steps=4, guidance_scale=2.0)
    result = sampler(q, cond=Condition(classes=torch.tensor([0, 1, 2, 1])), generator=torch.Generator().manual_seed(0))
    assert result.ids.shape == (4, 16) and int(result.ids.max()) < 9 and result.nfe == 8
    again = sampler(q, cond=Condition(classes=torch.tensor([0, 1, 2, 1])), generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.ids, again.ids)  # seeded: the same samples


def test_bad_mode_device_and_model_are_refused(tmp_path):
    model = trained_like(tmp_path)
    with pytest.raises(ValueError, match=r"quantize: unknown mode 'int4'; expected one of none, int8"):
        quantize(model, "int4")
    with pytest.raises(ValueError, match=r"quantize: int8 runs on the CPU only; the model is on meta"):
        quantize(make_tiny_denoiser().to("meta"), "int8")
    with pytest.raises(ValueError, match=r"quantize: Linear holds no denoiser"):
        quantize(nn.Linear(4, 4), "int8")
    with pytest.raises(ValueError, match=r"already quantized"):
        quantize(quantize(model, "int8"), "int8")
    with pytest.raises(ConfigError, match=r"sample.quantize"):
        load_experiment("configs/tasks/synthetic_cpu.yaml", ["sample.quantize=int4"])


def test_the_task_loads_the_int8_model_when_the_sample_section_asks(tmp_path, one_thread):
    overrides = [f"run_dir={tmp_path}", "model.depth=1", "model.d_model=32", "model.heads=2"]
    task = build_task(load_experiment("configs/tasks/synthetic_cpu.yaml", overrides))
    torch.manual_seed(0)
    task.build_model().save_pretrained(tmp_path / "model")
    assert not is_quantized(task.load_model())
    task = build_task(load_experiment("configs/tasks/synthetic_cpu.yaml", overrides + ["sample.quantize=int8"]))
    model = task.load_model()
    assert is_quantized(model) and not is_quantized(task.load_model(quantized=False))
    result = Sampler.for_model(model, task.sample_config(steps=4))(model, 2, generator=torch.Generator().manual_seed(0))
    assert result.ids.shape == (2, 32)
    task = build_task(load_experiment("configs/tasks/synthetic_cpu.yaml",
                                      overrides + ["sample.quantize=int8", "sample.learned=true"]))
    with pytest.raises(ConfigError, match=r"sample.quantize: int8 with sample.learned=true"):
        task.load_model()


def test_a_policy_gets_its_decoder_quantized_and_its_projector_kept(one_thread):
    from tasks.vla.config import PolicyConfig
    from tasks.vla.policy import VLAPolicy

    torch.manual_seed(0)
    policy = VLAPolicy(PolicyConfig(decoder="diffusion", cameras=["corner3"], image_tokens=1, image_dim=8, text_dim=6,
                                    chunk=4, execute=2, num_bins=16, d_model=32, depth=1, heads=2, dropout=0.0)).eval()
    chunks = torch.rand(64, 4, policy.config.action_dim) * 2 - 1
    for d in policy.config.gripper_dims:
        chunks[..., d] = (chunks[..., d] > 0).float()
    policy.fit_statistics(chunks, torch.randn(64, policy.config.state_dim))
    q = quantize(policy, "int8")
    assert is_quantized(q) and is_quantized(q.decoder) and type(q.observation.text) is nn.Linear
    assert isinstance(q.decoder.blocks[0].qkv, Int8Linear)
    assert not isinstance(policy.decoder.blocks[0].qkv, Int8Linear)  # the float32 policy is untouched
    c = policy.config
    feats = {"images": torch.randn(3, 1, 8), "text": torch.randn(3, 6), "state": torch.randn(3, c.state_dim)}
    chunk, nfe = q.predict_chunk(feats, torch.Generator().manual_seed(0))
    assert chunk.shape == (3, 4, c.action_dim) and torch.isfinite(chunk).all() and nfe == c.sample.steps
