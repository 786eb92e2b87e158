"""Training examples of the policy: one per demo frame, its features and the action chunk ahead.

The chunk of frame i is the actions of frames i .. i + chunk - 1 of the same episode;
near the end of an episode it is padded with the episode's last action (the expert
stops at success, so "keep doing the last thing" is the honest continuation).
"""

from __future__ import annotations

import torch
from torch import Tensor


def action_chunks(actions: Tensor, episode: Tensor, chunk: int) -> Tensor:
    """actions [N, A] in episode order, episode [N] -> chunks [N, chunk, A]."""
    if actions.ndim != 2 or episode.shape != actions.shape[:1]:
        raise ValueError(f"action_chunks: expected actions [N, A] and episode [N], got {tuple(actions.shape)} "
                         f"and {tuple(episode.shape)}")
    n = actions.shape[0]
    # Index of each episode's last frame, for every frame.
    change = torch.ones(n, dtype=torch.bool)
    change[:-1] = episode[1:] != episode[:-1]
    last = torch.zeros(n, dtype=torch.long)
    ends = change.nonzero().flatten()
    starts = torch.cat((torch.zeros(1, dtype=torch.long), ends[:-1] + 1))
    for s, e in zip(starts.tolist(), ends.tolist()):
        last[s:e + 1] = e
    idx = torch.arange(n)[:, None] + torch.arange(chunk)[None, :]
    idx = torch.minimum(idx, last[:, None])
    return actions[idx]


class ChunkDataset:
    """Map-style dataset for the trainer; `__getitems__` returns a ready batch (collate: identity).

    Holds per frame: image tokens (float16, widened per batch), the index of its
    instruction, the state, and the action chunk's targets (`VLAPolicy.targets`): token ids
    [chunk * A], normalised values [chunk, A] (regression, joint) and bin residuals [chunk * A]
    (hybrid).
    """

    def __init__(self, features: dict, targets: dict[str, Tensor]):
        n = features["images"].shape[0]
        for name, x in (*targets.items(), ("state", features["state"])):
            if x.shape[0] != n:
                raise ValueError(f"ChunkDataset: {name} has {x.shape[0]} rows, the features have {n}")
        self.images = features["images"]
        self.text = features["text"].float()
        self.text_index = features["text_index"]
        self.state = features["state"].float()
        self.targets = {k: v.long() if k == "ids" else v.float() for k, v in targets.items()}

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        i = torch.as_tensor(indices, dtype=torch.long)
        return {"images": self.images[i].float(), "text": self.text[self.text_index[i]], "state": self.state[i],
                **{k: v[i] for k, v in self.targets.items()}}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def identity_collate(batch):
    return batch
