"""Run state: where a run is (epoch, step, running sums, history, best accuracy), and the random
number generators' states, captured and restored so that a resumed run draws the same numbers.

The dict form (:meth:`RunState.state_dict`) is the top level of ``last.pt`` and ``best.pt``, with
the same keys since the first release, so that old run folders resume.

Example::

    >>> s = RunState()
    >>> s.advance(); s.advance(); s.end_epoch({"epoch": 1})
    >>> s.epoch, s.global_step, s.step_in_epoch, len(s.history)
    (1, 2, 0, 1)
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

__all__ = ["RunState", "rng_state", "set_rng_state", "seed_everything"]


@dataclass
class RunState:
    epoch: int = 0  #: epochs completed
    step_in_epoch: int = 0  #: optimizer steps done in the current epoch
    global_step: int = 0
    best_acc: float = 0.0
    history: list[dict] = field(default_factory=list)  #: one metrics dict per completed epoch
    partial: list = field(default_factory=lambda: [0.0, 0, 0])  #: this epoch's [loss sum, correct, seen]
    skipped_in_epoch: int = 0  #: batches of the current epoch skipped for a non-finite loss or gradient

    def advance(self) -> None:
        self.step_in_epoch += 1
        self.global_step += 1

    def end_epoch(self, metrics: dict) -> None:
        self.epoch += 1
        self.step_in_epoch = 0
        self.partial = [0.0, 0, 0]
        self.skipped_in_epoch = 0
        self.history.append(metrics)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, default in self.state_dict().items():  # a key added later keeps its default
            setattr(self, key, state[key] if key in _FIRST_KEYS else state.get(key, default))


#: the keys every checkpoint has held since the first release (a later key may be missing)
_FIRST_KEYS = ("epoch", "step_in_epoch", "global_step", "best_acc", "history", "partial")


def rng_state() -> dict:
    """This process's torch (CPU and CUDA), Python and NumPy generator states, as tensors and
    plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_gauss": [int(np_state[3]), float(np_state[4])],
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
