"""Two-process training for tests/test_trainer.py; run under `accelerate launch`.

usage: ddp_train.py OUT_DIR [STEPS CHECKPOINT_EVERY]
Every process writes OUT_DIR/rank{i}.json: the dataset indices it read, whether it was
interrupted and a hash of its final weights (equal on all processes when gradients are
all-reduced).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_trainer import ToyData, make_trainer, toy_loss  # noqa: E402

from ddm.training import end_processes  # noqa: E402


def train(out_dir: Path, steps: int, checkpoint_every: int) -> dict:
    seen: list[int] = []

    def loss_fn(model: torch.nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        seen.extend(batch["index"].tolist())
        return toy_loss(model, batch, gen)

    # 24 steps x 2 processes x 8 examples < 1024: no example is read twice.
    trainer = make_trainer(out_dir, loss_fn, data=ToyData(1024), steps=steps, lr=5e-2, log_every=1,
                           checkpoint_every=checkpoint_every)
    result = trainer.train()
    digest = hashlib.sha256()
    for value in trainer.model.state_dict().values():
        digest.update(value.detach().cpu().numpy().tobytes())
    acc = trainer.accelerator
    return {"rank": acc.process_index, "num_processes": acc.num_processes, "steps": result.step,
            "interrupted": result.interrupted, "seen": seen, "weights_sha256": digest.hexdigest()}


def main(out_dir: Path, steps: int = 24, checkpoint_every: int = 12) -> None:
    report = train(out_dir, steps, checkpoint_every)  # the trainer (and its DDP wrapper) is gone here
    (out_dir / f"rank{report['rank']}.json").write_text(json.dumps(report))
    end_processes()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *map(int, sys.argv[2:4]))
