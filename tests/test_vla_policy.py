"""The policy on synthetic features: it learns instruction-dependent chunks with each decoder,
decodes in the promised number of calls, saves and loads, executes chunks with a receding
horizon, and refuses bad input with errors that name it."""

import numpy as np
import pytest
import torch

from ddm.config import DiffusionConfig, SampleConfig, TrainConfig
from ddm.training import Trainer
from tasks.vla import schema
from tasks.vla.config import PolicyConfig
from tasks.vla.data import ChunkDataset, action_chunks, identity_collate
from tasks.vla.policy import VLAPolicy

CHUNK, DIMS = 4, 4


def tiny_config(decoder="diffusion", **kw):
    base = dict(decoder=decoder, cameras=["corner3"], image_tokens=1, image_dim=8, text_dim=6, chunk=CHUNK,
                execute=2, num_bins=16, d_model=32, depth=1, heads=2, dropout=0.0)
    base.update(kw)
    return PolicyConfig(**base)


def synthetic_features(n=64, seed=0):
    """Two tasks told apart only by the instruction vector: task 0 moves +x with the gripper
    closed, task 1 moves -x with it open; the images are noise."""
    g = torch.Generator().manual_seed(seed)
    task = torch.arange(n) % 2
    text = torch.eye(2, 6)
    chunks = torch.zeros(n, CHUNK, DIMS)
    chunks[:, :, 0] = torch.where(task == 0, 0.6, -0.6)[:, None]
    chunks[:, :, 1] = torch.linspace(-0.5, 0.5, CHUNK)  # a ramp inside the chunk: positions matter
    chunks[:, :, 3] = (task == 0).float()[:, None]
    chunks[:, :, :3] += 0.02 * torch.randn(n, CHUNK, 3, generator=g)
    feats = {"images": torch.randn(n, 1, 8, generator=g).half(), "text": text, "text_index": task,
             "state": torch.randn(n, 4, generator=g)}
    return feats, chunks, task


def train_tiny(decoder, steps=150, seed=0, **config):
    torch.manual_seed(seed)
    feats, chunks, task = synthetic_features()
    policy = VLAPolicy(tiny_config(decoder, **config))
    policy.fit_statistics(chunks, feats["state"])
    data = ChunkDataset(feats, policy.targets(chunks))
    cfg = TrainConfig(steps=steps, batch_size=32, lr=3e-3, warmup_steps=10, checkpoint_every=0, log_every=50,
                      progress=False, seed=seed)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Trainer(policy, lambda m, b, g: m(b, g), data, cfg, tmp, collate_fn=identity_collate).train()
    policy.eval()
    return policy, feats, chunks, task, result


def batch_features(feats, rows):
    return {"images": feats["images"][rows].float(), "text": feats["text"][feats["text_index"][rows]],
            "state": feats["state"][rows]}


@pytest.mark.parametrize("decoder,steps,calls,diffusion", [
    ("diffusion", 2, 2, {}), ("autoregressive", 2, CHUNK * DIMS, {}), ("regression", 2, 1, {}),
    ("hybrid", 3, 3, {}),  # the bins in 2 calls, their residuals in the third
    ("joint", 4, 4, {"continuous_time": "independent"}),  # the values' last step sees every bin
])
def test_each_decoder_learns_instruction_dependent_chunks(decoder, steps, calls, diffusion):
    policy, feats, chunks, task, result = train_tiny(decoder, diffusion=DiffusionConfig(**diffusion))
    assert result.step == 150
    policy.config.sample.steps = steps  # the hybrid spends the last call on the residuals
    rows = torch.tensor([0, 1, 2, 3])
    actions, nfe = policy.predict_chunk(batch_features(feats, rows), torch.Generator().manual_seed(0))
    assert actions.shape == (4, CHUNK, DIMS) and actions.dtype == torch.float32
    assert nfe == calls
    target = chunks[rows]
    # direction and gripper follow the instruction; x within a few bins (bin width 1.2/16 here)
    assert (actions[:, :, 0].sign() == target[:, :, 0].sign()).all()
    assert (actions[:, :, 0] - target[:, :, 0]).abs().max() < 0.25
    assert torch.equal(actions[:, :, 3], target[:, :, 3].round())
    # the ramp inside the chunk (steps of 0.33): a decoder blind to positions misses its ends by 0.5
    assert (actions[:, :, 1] - target[:, :, 1]).abs().max() < 0.45


def test_the_hybrid_head_places_actions_inside_their_bins():
    # Four bins are coarse: bins alone miss by up to half a bin (0.15 on x here); the hybrid's
    # residual head, read once the bins are chosen, gets much closer, in the same number of calls.
    errors = {}
    for decoder in ("diffusion", "hybrid"):
        policy, feats, chunks, _, _ = train_tiny(decoder, steps=200, num_bins=4)
        policy.config.sample.steps = 2
        rows = torch.arange(16)
        actions, nfe = policy.predict_chunk(batch_features(feats, rows), torch.Generator().manual_seed(0))
        assert nfe == 2
        errors[decoder] = float((actions[:, :, :2] - chunks[rows][:, :, :2]).abs().mean())
        assert torch.equal(actions[:, :, 3], chunks[rows][:, :, 3].round())  # the gripper from its token
    assert errors["hybrid"] < 0.5 * errors["diffusion"], errors


def test_the_hybrid_decoder_needs_two_calls():
    policy, feats, *_ = train_tiny("hybrid", steps=1)
    policy.config.sample.steps = 1
    with pytest.raises(ValueError, match="hybrid decoder: sample.steps=1"):
        policy.predict_chunk(batch_features(feats, torch.arange(2)))


def test_fewer_decoder_calls_than_a_quarter_of_autoregressive_with_the_shipped_config():
    from ddm.experiment import load_experiment

    cfg = load_experiment("configs/vla/mt10_cpu.yaml").policy
    assert cfg.sample.steps * 4 <= cfg.chunk * cfg.action_dim  # the diffusion budget vs AR's one call per token
    assert cfg.sample.order == "confidence" and cfg.sample.remasking == "recheck" and cfg.sample.cache_prefix


def test_the_prefix_cache_changes_nothing_and_seeds_repeat():
    policy, feats, *_ = train_tiny("diffusion", steps=30)
    policy.config.sample.temperature = 1.0  # sampled tokens: the generator matters
    f = batch_features(feats, torch.arange(6))
    a, _ = policy.predict_chunk(f, torch.Generator().manual_seed(3))
    b, _ = policy.predict_chunk(f, torch.Generator().manual_seed(3))
    policy.config.sample.cache_prefix = False
    c, _ = policy.predict_chunk(f, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.allclose(a, c)


def test_save_and_load_give_the_same_actions(tmp_path):
    from ddm.hub import load_pretrained

    policy, feats, *_ = train_tiny("diffusion", steps=30)
    f = batch_features(feats, torch.arange(4))
    before, _ = policy.predict_chunk(f)
    policy.save_pretrained(tmp_path / "p")
    loaded = load_pretrained(tmp_path / "p")
    assert isinstance(loaded, VLAPolicy) and loaded.config == policy.config
    after, _ = loaded.eval().predict_chunk(f)
    assert torch.equal(before, after)
    assert torch.equal(loaded.tokenizer.stats.low, policy.tokenizer.stats.low)


def test_decoded_tokens_always_fit_their_dimension():
    # An untrained model predicts uniformly over the vocabulary; the constraint keeps gripper
    # tokens out of the bin dims and the reverse, so every chunk decodes.
    torch.manual_seed(0)
    feats, chunks, _ = synthetic_features()
    policy = VLAPolicy(tiny_config("diffusion", sample=SampleConfig(steps=4, temperature=1.0))).eval()
    policy.fit_statistics(chunks, feats["state"])
    actions, _ = policy.predict_chunk(batch_features(feats, torch.arange(32)), torch.Generator().manual_seed(1))
    assert set(actions[:, :, 3].unique().tolist()) <= {0.0, 1.0}


def test_action_chunks_stay_inside_their_episode():
    actions = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 2)
    episode = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    chunks = action_chunks(actions, episode, 3)
    assert chunks[:, :, 0].tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 5], [4, 5, 6], [5, 6, 6],
                                        [6, 6, 6], [7, 8, 9], [8, 9, 9], [9, 9, 9]]


# The runner: receding horizon and bad input -----------------------------------------


class FakeEncoder:
    """Stands in for the frozen encoders: the runner's contract, not the features, is under test."""

    cameras = ["corner3"]
    image_tokens = 1
    stage = "head"

    def __call__(self, obs):
        schema.check_observation(obs, self.cameras)
        n = 1
        return {"images": torch.zeros(n, 1, 8), "text": torch.zeros(n, 6), "state": torch.zeros(n, 4)}


def _obs():
    return {schema.image_key("corner3"): np.zeros((32, 32, 3), np.uint8), schema.STATE: np.zeros(4, np.float32),
            schema.TASK: "push the puck to the goal"}


def test_runner_executes_k_actions_of_each_chunk_then_replans():
    from tasks.vla.runner import PolicyRunner

    torch.manual_seed(0)
    feats, chunks, _ = synthetic_features()
    policy = VLAPolicy(tiny_config("diffusion", execute=3)).eval()
    policy.fit_statistics(chunks, feats["state"])
    runner = PolicyRunner(policy, encoder=FakeEncoder(), action_dim=4)
    first_chunk = runner.predict_chunk(_obs())[0]
    runner.reset(seed=0)
    runner.stats.chunks = runner.stats.nfe = 0
    played = [runner.act(_obs()) for _ in range(7)]
    assert runner.stats.chunks == 3  # actions 0-2, 3-5, 6: three plans for seven actions
    assert runner.stats.actions == 7 and runner.stats.nfe_per_chunk == policy.config.sample.steps
    assert all(a.shape == (4,) for a in played)
    assert np.array_equal(np.stack(played[:3]), first_chunk[:3])  # same seed, same first chunk
    runner.reset()
    runner.act(_obs())
    assert runner.stats.chunks == 4  # a reset drops the rest of the chunk


def test_runner_temporal_ensembling_averages_the_open_chunks():
    from tasks.vla.runner import PolicyRunner

    policy = VLAPolicy(tiny_config("diffusion", chunk=4, execute=2)).eval()
    for ensemble, expected in [(0.0, [1, 1, 3, 3, 5]), (0.5, None)]:
        runner = PolicyRunner(policy, encoder=FakeEncoder(), ensemble=ensemble)
        values = iter([1.0, 3.0, 5.0])
        runner.predict_chunk = lambda obs: np.full((1, 4, 4), next(values), np.float32)
        played = [float(runner.act(_obs())[0]) for _ in range(5)]
        if expected is not None:  # off: the newest chunk alone (the receding horizon)
            assert played == expected
            continue
        w = np.exp(-0.5)  # the previous chunk, one chunk old
        assert played[:2] == [1.0, 1.0]  # one chunk is open
        assert np.allclose(played[2:], [(w * 1 + 3) / (w + 1)] * 2 + [(w * 3 + 5) / (w + 1)])
    with pytest.raises(ValueError, match="ensemble: -1"):
        PolicyRunner(policy, encoder=FakeEncoder(), ensemble=-1.0)


def test_runner_refuses_bad_input():
    from tasks.vla.runner import PolicyRunner

    policy = VLAPolicy(tiny_config()).eval()
    policy.fit_statistics(synthetic_features()[1], torch.randn(8, 4))
    with pytest.raises(ValueError, match="policy .checkpoint. outputs 4-d actions, the environment takes 7-d"):
        PolicyRunner(policy, encoder=FakeEncoder(), action_dim=7)
    runner = PolicyRunner(policy, encoder=FakeEncoder())
    obs = _obs()
    del obs[schema.image_key("corner3")]
    with pytest.raises(KeyError, match="observation.images.corner3"):
        runner.act(obs)
    with pytest.raises(ValueError, match="execute: 9 is not in"):
        PolicyRunner(policy, encoder=FakeEncoder(), execute=9)
    with pytest.raises(ValueError, match=r"features\['state'\]: expected \[B, 4\]"):
        policy.predict_chunk({"images": torch.zeros(1, 1, 8), "text": torch.zeros(1, 6), "state": torch.zeros(1, 5)})


def test_bad_configs_name_the_field():
    from ddm.config import ConfigError
    from ddm.experiment import load_experiment

    with pytest.raises(ConfigError, match="policy.execute"):
        tiny_config(execute=5)
    with pytest.raises(ConfigError, match=r"eval.tasks\[0\]: unknown task 'fly-v3'; known tasks: reach-v3"):
        load_experiment("configs/vla/smoke.yaml", ["eval.tasks=[fly-v3]"])
    with pytest.raises(ConfigError, match="eval.seed: .* overlaps the demonstration seeds"):
        load_experiment("configs/vla/smoke.yaml", ["demos.episodes=20000"])
    with pytest.raises(ConfigError, match="policy.cameras"):
        load_experiment("configs/vla/smoke.yaml", ["policy.cameras=[corner2]"])
    with pytest.raises(ConfigError, match=r"eval.execute: 99 actions cannot be played from a chunk of \d+"):
        load_experiment("configs/vla/smoke.yaml", ["eval.execute=99"])
    with pytest.raises(ConfigError, match="eval.ensemble: -1.0 is out of range"):
        load_experiment("configs/vla/smoke.yaml", ["eval.ensemble=-1"])
    with pytest.raises(ConfigError, match=r"task.decoders\[1\]: unknown VLA action decoder 'flow'; registered: "
                                          "autoregressive, diffusion, hybrid, joint, regression"):
        load_experiment("configs/vla/smoke.yaml", ["task.decoders=[diffusion,flow]"])
    with pytest.raises(ConfigError, match=r"policy.image_dim: 1280, but the 'stride16' image features "
                                          r"\(policy.image_stage\) have 112 channels"):
        load_experiment("configs/vla/smoke.yaml", ["policy.image_stage=stride16"])
    with pytest.raises(ConfigError, match="policy.image_stage: unknown image feature stage 'stride8'"):
        load_experiment("configs/vla/smoke.yaml", ["policy.image_stage=stride8"])


def test_guidance_works_for_a_policy_trained_with_condition_dropout():
    # The decoder carries the policy's diffusion section, so guidance sees the trained dropout.
    policy, feats, *_ = train_tiny("diffusion", steps=5, diffusion=DiffusionConfig(cond_dropout=0.2))
    policy.config.sample.guidance_scale = 2.0
    actions, nfe = policy.predict_chunk(batch_features(feats, torch.arange(3)))
    assert actions.shape[0] == 3 and nfe == 2 * policy.config.sample.steps  # a guided call counts twice
    untrained = VLAPolicy(tiny_config("diffusion", sample=SampleConfig(steps=2, guidance_scale=2.0))).eval()
    untrained.fit_statistics(synthetic_features()[1], torch.randn(8, 4))
    with pytest.raises(ValueError, match="not trained with condition dropout"):
        untrained.predict_chunk(batch_features(feats, torch.arange(3)))


def test_eval_switches_become_decoder_sampler_fields():
    from tasks.vla.config import EvalSection
    from tasks.vla.config import EVAL_SEED_START
    from tasks.vla.evaluate import results_name, sampler_overrides

    assert sampler_overrides(EvalSection()) == {}
    assert sampler_overrides(EvalSection(steps=2, learned=True, cache_targets=True)) == \
        {"steps": 2, "learned": True, "cache_targets": True}
    skip = sampler_overrides(EvalSection(skip_blocks=[1, 2]))
    assert skip == {"skip_blocks": [1, 2]}
    assert results_name("diffusion", skip, 20_000) == "diffusion_skip_blocks1-2_seed20000"
    assert results_name("diffusion", {"steps": 2, "learned": True}, EVAL_SEED_START) == "diffusion_steps2_learned"
