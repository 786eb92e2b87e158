"""The one tokenizer interface, for every modality.

    tok = ImageTokenizer(ImageTokenizerConfig(...))    # or Tokenizer.from_pretrained(dir)
    stream = tok.encode(x)          # TokenStream: ids [B, *shape] (+ values)
    x_hat = tok.decode(stream)      # or tok.decode(ids)
    tok.vocab_size
    tok.save_pretrained(dir)        # the project's format: config.json + model.safetensors

A tokenizer is a `ddm.hub.PretrainedModel`, so it is saved and loaded like every other
model here (fitted statistics are buffers; files such as a text model go through
`save_files`). `fit` learns what the tokenizer learns: learned ones go through the
project's one trainer (`LearnedTokenizer`); fixed ones fit statistics or nothing.

For tokenizer experiments (`tokenizers_vq.task`: `ddm train|eval --config
configs/tokenizers/<name>.yaml`), a tokenizer class also names its data section
(`DataConfig`, `build_data`), its held-out metrics (`evaluate`) and its pictures. A class
joins by `@TOKENIZERS.register("kind")` (`tokenizers_vq.registry`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ddm.config import TrainConfig
from ddm.hub import PretrainedModel

from .stats import codebook_stats
from .stream import TokenStream


class Tokenizer(PretrainedModel):
    DataConfig: type = object  # the `data:` section of a tokenizer config
    learned: bool = False  # trains through the project's trainer (needs a `train:` section)
    # config fields that `fit` fills in where the config leaves them empty (e.g. a molecule
    # tokenizer's atom types): a saved tokenizer still matches the config that left them empty
    fitted_fields: tuple[str, ...] = ()

    # Interface -------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, x: Any) -> TokenStream:
        raise NotImplementedError

    def decode(self, stream: TokenStream | torch.Tensor) -> Any:
        raise NotImplementedError

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None) -> dict[str, float]:
        """Learn from `train` (a data set from `build_data`). Fixed tokenizers learn nothing."""
        return {}

    # For the command -------------------------------------------------------
    @classmethod
    def build_data(cls, data_config: Any) -> dict[str, Any]:
        """{"train": ..., "heldout": ...} data sets of this modality."""
        raise NotImplementedError

    def evaluate(self, heldout: Any) -> dict[str, float]:
        """Reconstruction and codebook figures on held-out data."""
        raise NotImplementedError

    def save_pictures(self, heldout: Any, out_dir: Path) -> list[Path]:
        """Pictures of held-out reconstructions; returns the files written."""
        return []

    # Helpers for subclasses --------------------------------------------------
    def check_ids(self, ids: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """ids (a tensor or a TokenStream) as int64 [B, *shape], every id in [0, vocab_size); clear
        errors otherwise."""
        ids = as_ids(ids)
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids: expected a tensor or TokenStream, got {type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise TypeError(f"ids: expected integer ids, got {ids.dtype}")
        ids = ids.long()
        if shape is not None:
            shape = tuple(shape)
            if tuple(ids.shape[1:]) != shape:
                if ids.ndim == 2 and ids.shape[1] == math.prod(shape):
                    ids = ids.reshape(ids.shape[0], *shape)  # flat [B, N] from the diffusion model
                else:
                    raise ValueError(f"ids: expected [B, *{shape}] (or [B, {math.prod(shape)}]), "
                                     f"got {tuple(ids.shape)}")
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.vocab_size:
                bad = lo if lo < 0 else hi
                raise ValueError(f"ids: id {bad} is outside the vocabulary [0, {self.vocab_size}) of this "
                                 f"{type(self).__name__} (a mask id left in a sample?)")
        return ids


def as_ids(stream: TokenStream | torch.Tensor) -> torch.Tensor:
    return stream.ids if isinstance(stream, TokenStream) else stream


class LearnedTokenizer(Tokenizer):
    """An encoder, a quantizer (`self.quantizer`, a `Quantizer`) and a decoder, trained end to end.

    Subclasses implement `reconstruct(x) -> (x_hat, codes [B, ..., Q], aux_loss)` and
    `reconstruction_loss(x, x_hat)`; batches are dicts whose "x" entry is the input.
    """

    learned = True

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(x_hat, x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.reconstruct(x)

    def loss(self, model: torch.nn.Module, batch: dict, generator: torch.Generator):
        """The trainer's loss_fn: reconstruction + quantizer loss, with the batch's codebook stats."""
        x = batch["x"]
        x_hat, codes, aux = model(x)  # `model` may be the DDP-wrapped self
        recon = self.reconstruction_loss(x, x_hat)
        stats = codebook_stats(codes.detach().cpu(), self.quantizer.codebook_sizes)
        return recon + aux, {"recon": float(recon.detach()), "aux": float(aux.detach()),
                             "usage": stats["usage"], "perplexity": stats["perplexity"]}

    def fit(self, train: Any, train_config: TrainConfig | None = None, out_dir: str | Path | None = None,
            heldout: Any = None, save_to: str | Path | None = None) -> dict[str, float]:
        """Train through the one trainer (checkpoints in out_dir); `save_to`: the pretrained folder
        it writes when training finishes (never for an interrupted run)."""
        from ddm.training import Trainer

        if train_config is None or out_dir is None:
            raise ValueError(f"{type(self).__name__}.fit: a learned tokenizer needs train_config and out_dir")
        eval_fn = (lambda model: model.evaluate(heldout)) if heldout is not None and train_config.eval_every else None
        trainer = Trainer(self, self.loss, train, train_config, out_dir, eval_fn=eval_fn)
        return trainer.train_to_end(save_to=save_to).metrics
