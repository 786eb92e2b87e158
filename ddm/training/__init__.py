"""The one trainer every model in the project uses (see `trainer.py`)."""

from ddm.training.checkpoint import latest_checkpoint, list_checkpoints
from ddm.training.ema import EMA
from ddm.training.trainer import Trainer, TrainingDiverged, TrainResult, end_processes

__all__ = ["EMA", "Trainer", "TrainResult", "TrainingDiverged", "end_processes", "latest_checkpoint", "list_checkpoints"]
