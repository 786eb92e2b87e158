"""What the sampling loops, the objectives and guidance ask of a model: the `Denoiser` protocol.

Our transformer, the `transformers` adapter and exact references such as the synthetic
task's oracle all meet it; nothing else about a model is assumed. A trained denoiser also
carries the sections it was trained with (`ddm.hub`): its diffusion process, its default
sampler and the task it was trained for, so it can be sampled as trained.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

from torch import Tensor

from ..config import DiffusionConfig, ModelConfig, SampleConfig
from .condition import Condition, Prefix
from .tokens import DenoiserOutput


@runtime_checkable
class Denoiser(Protocol):
    config: ModelConfig  # vocab_size, shape / seq_len and mask_id of the target
    diffusion: DiffusionConfig  # how it was trained: the schedule it reads t by, condition dropout
    supports_prefix_cache: bool  # encode_prefix gives keys/values that serve every step

    def __call__(self, ids: Tensor, t: Tensor | None = None, cond: Condition | None = None,
                 prefix: Prefix | None = None, values: Tensor | None = None) -> DenoiserOutput: ...

    def encode_prefix(self, cond: Condition | None) -> Prefix | None: ...

    def parameters(self) -> Iterator[Tensor]: ...


# The sections a denoiser folder carries beside its ModelConfig (see ddm.hub).
DENOISER_SECTIONS: dict[str, type] = {"diffusion": DiffusionConfig, "sample": SampleConfig, "task": dict}


def attach_sections(model: Any, diffusion: DiffusionConfig | None = None, sample: SampleConfig | None = None,
                    task: dict | None = None) -> None:
    """Set a denoiser's sections: defaults where not given; `task` stays None for a bare model."""
    model.diffusion = diffusion if diffusion is not None else DiffusionConfig()
    model.sample = sample if sample is not None else SampleConfig()
    model.task = task
