"""The training engine: run a recipe on one process or many (torchrun), with atomic checkpoints,
exact resume, JSONL/TensorBoard logs and rich progress output."""

from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .trainer import RunResult, train

__all__ = ["train", "RunResult", "atomic_save", "load_checkpoint", "CheckpointError"]
