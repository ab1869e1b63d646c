"""Process-group set-up for ``torchrun``: the ranks, the device, rank-0-only side effects.

``SNNPRUNE_DIST_TIMEOUT`` (seconds; default torch's, 10 minutes for nccl and 30 for gloo) bounds
how long a collective waits for the other processes: a process that died or hangs ends the others
with a :class:`DistributedError` after that long, rather than a job that never returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup", "teardown", "DistributedError", "is_collective_failure", "TIMEOUT_ENV"]

TIMEOUT_ENV = "SNNPRUNE_DIST_TIMEOUT"


class DistributedError(RuntimeError):
    """A collective failed: another process died, hung past the timeout or lost its connection.
    The message is one line; the run folder's last checkpoint is intact (``--resume`` continues)."""


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the process group failing (gloo/nccl errors, timeouts, lost peers)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "timed out"))


def _timeout() -> timedelta | None:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}")
    return timedelta(seconds=seconds)


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def all_gather(self, value: float) -> list[float]:
        """``value`` from every rank, in rank order (a one-element list without torchrun)."""
        if not self.distributed:
            return [value]
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


def setup(device: str = "auto") -> DistContext:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), start the process group (nccl
    on CUDA, gloo on CPU) and pick this process's device. Without torchrun: one process."""
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = 'cuda' but no CUDA device is available: use device = 'auto' or 'cpu'")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        timeout = _timeout()
        dist.init_process_group(backend="nccl" if want_cuda else "gloo", **({"timeout": timeout} if timeout else {}))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
