"""The typed config of a VLA experiment (`configs/vla/*.yaml`), one kind of `ddm` experiment.

    task:     {name: vla, decoders: [diffusion, ...]}: the policies trained and evaluated
    demos:    which expert episodes to record
    encoder:  the frozen encoders' settings (feature tokens per camera)
    policy:   decoder kind, action chunk, receding horizon, bins, transformer size, sampler
    train:    ddm.config.TrainConfig (the one trainer)
    eval:     closed-loop evaluation: tasks, episodes, held-out seeds, workers, GIFs
    run_dir:  demos, cached features, one policy folder per decoder, results

Every field goes through `ddm.config`: an unknown key, a wrong type or a value out of
range fails at load with the dotted field named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ddm.config import ConfigError, DiffusionConfig, SampleConfig, bounded, positive, registered
from ddm.experiment import Experiment

from .encoders import IMAGE_STAGES, check_stage
from .env import ACTION_DIM, DEFAULT_MAX_STEPS, MT10_TASKS, STATE_DIM, check_task

DECODERS = "tasks.vla.decoders:DECODERS"  # the registry of action decoders
EVAL_SEED_START = 10_000  # demonstrations use seeds from demos.seed up; evaluation never goes below this


def _check_tasks(tasks: list[str], where: str) -> None:
    for i, task in enumerate(tasks):
        try:
            check_task(task)
        except ValueError as e:
            raise ConfigError(f"{where}[{i}]: {e}") from None


@dataclass
class VLATaskConfig:
    name: str = "vla"
    decoders: list[str] = registered(DECODERS, ["diffusion"])  # the policies `ddm train` / `ddm eval` run


@dataclass
class DemoSection:
    """Which expert episodes to record: episode e of every task runs on scene seed + e."""

    tasks: list[str] = field(default_factory=lambda: list(MT10_TASKS))
    episodes: int = positive(2)  # attempted per task; failed ones are dropped
    size: int = bounded(84, 16)  # square images, pixels
    cameras: list[str] = field(default_factory=lambda: ["corner3", "gripperPOV"])
    max_steps: int = bounded(DEFAULT_MAX_STEPS, 1, DEFAULT_MAX_STEPS)
    seed: int = bounded(0, 0)
    workers: int = positive(1)
    # DART (Laskey et al. 2017): the env plays the expert's hand motion plus Gaussian noise of
    # this std (action units, gripper untouched) while the expert's own action is recorded, so
    # the demos show how to come back from the small errors a policy makes.
    action_noise: float = bounded(0.0, 0.0)
    hold: int = bounded(0, 0)  # steps recorded after the first success, the expert still acting

    def __post_init__(self) -> None:
        _check_tasks(self.tasks, "demos.tasks")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"demos.tasks: tasks repeat: {self.tasks}")
        if not self.cameras:
            raise ConfigError("demos.cameras: give at least one camera")


@dataclass
class EncoderSection:
    pool: int = positive(2)  # image features pooled to pool x pool tokens per camera
    batch_size: int = positive(64)  # images per encoder call while precomputing


@dataclass
class PolicyConfig:
    """Everything a saved policy needs to rebuild itself (stored in its config.json)."""

    decoder: str = registered(DECODERS, "diffusion")
    cameras: list[str] = field(default_factory=lambda: ["corner3", "gripperPOV"])
    image_size: int = bounded(84, 16)  # the pixels the policy was trained on (renders at this size)
    image_tokens: int = positive(4)  # feature tokens per camera (encoder.pool squared)
    image_stage: str = "head"  # which EfficientNet feature map: head (stride 32) or stride16
    image_dim: int = positive(1280)  # its channels: 1280 (head) or 112 (stride16); tests use small fakes
    text_dim: int = positive(384)
    state_dim: int = positive(STATE_DIM)
    action_dim: int = positive(ACTION_DIM)
    gripper_dims: list[int] = field(default_factory=lambda: [ACTION_DIM - 1])
    chunk: int = positive(8)  # actions per decoded chunk
    execute: int = positive(4)  # actions executed from each chunk before re-planning (receding horizon)
    num_bins: int = bounded(64, 2)
    d_model: int = positive(128)
    depth: int = positive(4)
    heads: int = positive(4)
    mlp_ratio: float = positive(4.0)
    dropout: float = bounded(0.1, 0.0, 0.9)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(
        steps=4, order="confidence", temperature=0.0, remasking="recheck", num_samples=1, batch_size=1))

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ConfigError("policy.cameras: give at least one camera")
        try:
            check_stage(self.image_stage, "policy.image_stage")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.execute > self.chunk:
            raise ConfigError(f"policy.execute: {self.execute} actions cannot be executed from a chunk of "
                              f"{self.chunk} (policy.chunk)")
        if any(not 0 <= d < self.action_dim for d in self.gripper_dims):
            raise ConfigError(f"policy.gripper_dims: {self.gripper_dims} has a dim outside [0, {self.action_dim})")


@dataclass
class EvalSection:
    tasks: list[str] = field(default_factory=lambda: list(MT10_TASKS))
    episodes: int = positive(20)  # per task
    seed: int = bounded(EVAL_SEED_START, EVAL_SEED_START)  # episode e of every task runs on seed + e
    max_steps: int = bounded(DEFAULT_MAX_STEPS, 1, DEFAULT_MAX_STEPS)
    workers: int = positive(2)
    gifs: int = bounded(3, 0)  # rollout GIFs saved (first episode of the first `gifs` tasks)
    gif_every: int = positive(2)  # keep every n-th frame in a GIF
    execute: int = bounded(0, 0)  # actions played per decoded chunk (0: the policy's own policy.execute)
    ensemble: float = bounded(0.0, 0.0)  # temporal ensembling of overlapping chunks, exp(-ensemble * age) (0: off)
    steps: int = bounded(0, 0)  # decoder steps per chunk (0: the policy's own policy.sample.steps)
    learned: bool = False  # decode with the sampler distilled for those steps (ddm distill)
    cache_targets: bool = False  # decode with the approximate target cache (sample.cache_targets)
    skip_blocks: list[int] = field(default_factory=list)  # decode reusing these blocks' changes (sample.skip_blocks)

    def __post_init__(self) -> None:
        _check_tasks(self.tasks, "eval.tasks")


@dataclass
class VLAExperiment(Experiment):
    demos: DemoSection = field(default_factory=DemoSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        super().__post_init__()
        missing = [c for c in self.policy.cameras if c not in self.demos.cameras]
        if missing:
            raise ConfigError(f"policy.cameras: {missing} are not recorded by the demos (demos.cameras="
                              f"{self.demos.cameras})")
        if self.policy.image_size != self.demos.size:
            raise ConfigError(f"policy.image_size: {self.policy.image_size} differs from demos.size="
                              f"{self.demos.size}; the policy sees the pixels the demos were recorded at")
        stage = self.policy.image_stage
        if self.policy.image_dim != IMAGE_STAGES[stage]:
            raise ConfigError(f"policy.image_dim: {self.policy.image_dim}, but the {stage!r} image features "
                              f"(policy.image_stage) have {IMAGE_STAGES[stage]} channels")
        if self.policy.image_tokens != self.encoder.pool ** 2:
            raise ConfigError(f"policy.image_tokens: {self.policy.image_tokens} != encoder.pool^2 = "
                              f"{self.encoder.pool ** 2}")
        if self.eval.execute > self.policy.chunk:
            raise ConfigError(f"eval.execute: {self.eval.execute} actions cannot be played from a chunk of "
                              f"{self.policy.chunk} (policy.chunk)")
        last_demo_seed = self.demos.seed + self.demos.episodes - 1
        if last_demo_seed >= self.eval.seed:
            raise ConfigError(f"eval.seed: {self.eval.seed} overlaps the demonstration seeds "
                              f"{self.demos.seed}..{last_demo_seed}; evaluation must use unseen scenes")

    # Where things live under run_dir.
    @property
    def demos_dir(self) -> Path:
        return Path(self.run_dir) / "demos"

    @property
    def features_path(self) -> Path:
        return Path(self.run_dir) / "features.safetensors"

    def decoder_name(self, decoder: str | None = None) -> str:
        """A decoder's name in file names (one named by its import path, module:Class, too)."""
        return (decoder or self.policy.decoder).replace(":", "_")

    def policy_dir(self, decoder: str | None = None) -> Path:
        return Path(self.run_dir) / f"policy_{self.decoder_name(decoder)}"
