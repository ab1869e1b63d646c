"""Sparsity training on batch-norm scales: an L1 penalty ``l1 * sum |gamma|`` over the BN layers.

Network slimming (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017, Eq. 1) and Optimal Thresholding (Ye et al., ICONIP 2020, §3.1) train with
this penalty so that unimportant channels get near-zero scales ``gamma``, which
:func:`~snnprune.channels.prune_channels` then cuts. ``BNSparsity`` applies it in any training loop,
next to the optimizer, like :class:`snnprune.Pruner`::

    bn = BNSparsity(model, l1=1e-4)
    for x, y in loader:
        optimizer.zero_grad(); loss_fn(model(x), y).backward()
        optimizer.step()
        bn.step(optimizer)          # proximal L1 step on every gamma

Two ways to apply the L1 term:

* **proximal** (default): after ``optimizer.step()``, ``gamma <- sign(gamma) * max(|gamma| - l1 * lr, 0)``
  with ``lr`` the learning rate of gamma's parameter group: the soft-threshold (ISTA) step of the
  L1 term. It puts unimportant scales at exactly zero and keeps them there, so the cut between
  dead and live channels is a clean gap and does not depend on ``delta`` being tuned to the noise
  floor; it is also what snnprune's soft-threshold weight pruning does for weights.
* **subgradient** (``proximal=False``, the papers' form): call ``bn.apply_subgradient()`` after
  ``backward()`` and *before* ``optimizer.step()``; it adds ``l1 * sign(gamma)`` to gamma's
  gradient. Scales then oscillate around zero at amplitude ~``l1 * lr`` (more with momentum)
  instead of reaching it. ``bn.step(optimizer)`` only counts steps in this mode.

The proximal step reads the learning rate from the optimizer, so it is exact for plain SGD; with
momentum or Adam it is the usual proximal-gradient approximation (the shrinkage per step is
``l1 * lr`` whatever the optimizer's own step size).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..selection import BATCH_NORMS, Selector, matches

__all__ = ["BNSparsity"]


class BNSparsity:
    """L1 sparsity on the scales ``gamma`` of the batch norms of ``model``.

    Args:
        model: any network; every affine batch norm (BatchNorm1d/2d/3d, SyncBatchNorm, SpikingJelly's) is a candidate.
        l1: the penalty strength ``s`` (1e-4 in network slimming, 2e-4 in the OT examples).
        include: which BNs (a name glob, a type, a predicate ``(name, module) -> bool`` or a list);
            None takes every affine BN.
        proximal: True (default) for the proximal step in :meth:`step`; False for the subgradient
            added by :meth:`apply_subgradient` (see the module docstring for why proximal is default).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
        >>> _ = net[1].weight.data.copy_(torch.tensor([0.5, -1e-5]))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> bn = BNSparsity(net, l1=1e-3)
        >>> bn.step(opt)                     # after opt.step(): shrink by l1 * lr = 1e-4
        >>> net[1].weight.data
        tensor([0.4999, 0.0000])
    """

    def __init__(self, model: nn.Module, l1: float = 1e-4, include: Selector = None, proximal: bool = True) -> None:
        if not (math.isfinite(l1) and l1 >= 0):
            raise ValueError(f"l1 must be a finite non-negative number, got {l1}")
        self.l1 = float(l1)
        self.proximal = bool(proximal)
        self.steps = 0
        self._bns = [
            (name, m) for name, m in model.named_modules()
            if isinstance(m, BATCH_NORMS) and m.weight is not None and (include is None or matches(include, name, m))
        ]
        if not self._bns:
            raise ValueError(f"{type(model).__name__} has no affine batch norm selected for BN sparsity")

    def names(self) -> list[str]:
        """Names of the batch norms under the penalty."""
        return [n for n, _ in self._bns]

    def gammas(self) -> dict[str, torch.Tensor]:
        """``name -> gamma`` (the live parameters; detach or clone before keeping them)."""
        return {n: m.weight for n, m in self._bns}

    def regularization(self) -> torch.Tensor:
        """``l1 * sum |gamma|`` (differentiable; for logging, or as a loss term instead of either mode)."""
        return self.l1 * sum(m.weight.abs().sum() for _, m in self._bns)

    @torch.no_grad()
    def apply_subgradient(self) -> None:
        """Add ``l1 * sign(gamma)`` to every gamma's gradient; call between backward() and optimizer.step()."""
        if self.proximal:
            raise RuntimeError("apply_subgradient() is for BNSparsity(proximal=False); the proximal mode uses step()")
        for _, m in self._bns:
            if m.weight.grad is None:
                m.weight.grad = torch.zeros_like(m.weight)
            m.weight.grad.add_(torch.sign(m.weight), alpha=self.l1)

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer | None = None, *, lr: float | None = None) -> None:
        """Call right after ``optimizer.step()``: the proximal L1 step (proximal mode), and count the step.

        The learning rate of each gamma is its parameter group's ``lr``; ``lr=`` overrides it.
        """
        if self.proximal:
            if lr is None:
                if optimizer is None or not hasattr(optimizer, "param_groups"):
                    raise ValueError("BNSparsity.step needs the optimizer (or lr=) to read the learning rate")
                group_lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
            for name, m in self._bns:
                if lr is not None:
                    step_lr = lr
                elif id(m.weight) in group_lr:
                    step_lr = group_lr[id(m.weight)]
                else:
                    raise ValueError(f"{name}.weight is not in the optimizer (after channel pruning, build a "
                                     "new optimizer and a new BNSparsity)")
                shrink = self.l1 * float(step_lr)
                w = m.weight
                w.copy_(torch.where(w.abs() > shrink, w - shrink * torch.sign(w), torch.zeros_like(w)))
        self.steps += 1

    def state_dict(self) -> dict:
        """Plain data: l1, mode, step count and the BN names."""
        return {"l1": self.l1, "proximal": self.proximal, "steps": self.steps, "names": self.names()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; the BN names must match this model's selection."""
        if list(state["names"]) != self.names():
            raise ValueError("the saved BNSparsity covers other batch norms than this one")
        self.l1 = float(state["l1"])
        self.proximal = bool(state["proximal"])
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        mode = "proximal" if self.proximal else "subgradient"
        return f"BNSparsity(l1={self.l1:g}, {mode}, {len(self._bns)} batch norms, steps={self.steps})"
