"""Deterministic data order and seeds: everything is a function of (seed, step).

There is no loader state to save: the examples of optimizer step `s` are
positions [s*G, (s+1)*G) of an endless stream made of one permutation per epoch,
so a resumed run reads exactly what an uninterrupted run would have read.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed mixed from `parts` (nearby inputs give unrelated seeds)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class StepSampler:
    """The dataset indices each process and micro-batch reads at an optimizer step.

    A global batch of G = batch_size * grad_accum * num_processes positions is
    laid out as [micro-batch][process][example].
    """

    def __init__(self, num_examples: int, seed: int, batch_size: int, grad_accum: int,
                 num_processes: int) -> None:
        self.num_examples = num_examples
        self.seed = seed
        self.batch_size = batch_size
        self.num_processes = num_processes
        self.global_size = batch_size * grad_accum * num_processes
        self._perms: dict[int, torch.Tensor] = {}

    def _epoch(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            # A step spans at most a few epochs: keep only the latest ones.
            for old in [e for e in self._perms if e < epoch - 1]:
                del self._perms[old]
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(self.num_examples, generator=gen)
        return self._perms[epoch]

    def indices(self, step: int, micro: int, process: int) -> list[int]:
        start = step * self.global_size + (micro * self.num_processes + process) * self.batch_size
        positions = range(start, start + self.batch_size)
        return [int(self._epoch(p // self.num_examples)[p % self.num_examples]) for p in positions]


def fetch(dataset: Any, indices: list[int], collate_fn: Callable[[list], Any]) -> Any:
    """Read and collate examples; uses the dataset's batched `__getitems__` when it has one."""
    getitems = getattr(dataset, "__getitems__", None)
    examples = getitems(indices) if getitems is not None else [dataset[i] for i in indices]
    return collate_fn(examples)
