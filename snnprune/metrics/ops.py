"""Synaptic operations (SOPs) and multiply-accumulates (MACs) of a model on one batch, pruned
weights excluded.

**The counting rule**, per call of a conv (``nn.Conv1d/2d/3d``, SpikingJelly ``layer.Conv*d``) or
linear layer (``nn.Linear``, ``layer.Linear``), with ``W`` the layer's *effective* weight
(``module.weight``: for a parametrized, pruned layer the weight its forward uses):

* **input of events** (every input value a non-negative integer: binary spikes, or the 0/1/2...
  counts a SEW-ADD block passes on): the layer costs **SOPs** = the sum over input events, an
  event of value k counting k times, of the **non-zero** synapses it drives into valid output
  positions. Exactly ``sum(conv(x, W != 0))`` (``sum(x @ (W != 0).T)`` for a linear layer): stride,
  padding (an event drives no padded position), dilation and groups are those of the layer.
  ``dense_sops`` is the same with every weight counted (``W != 0`` replaced by ones): what
  SpikingJelly's ``SynOpCounter`` reports for binary inputs.
* **real-valued input** (analog images into the stem, ReLU activations of an ANN): the layer costs
  **MACs** = non-zero weights x output positions, i.e. for each output channel the non-zero weights
  of its filter times the number of output positions (``N x H_out x W_out`` per time step, rows for
  a linear layer). Padded taps count as in the dense convention, so ``macs / dense_macs`` is
  exactly ``1 - sparsity`` of the layer.
* ``dense_macs`` = all weights x output positions, recorded for *every* layer (SOP layers too): the
  dense ANN-equivalent cost of the same computation, every time step counted.

A weight counts when the pruning method keeps it (for a pruned layer, what ``finalize`` will
leave: a soft mask that never reaches 0, like LTP's sigmoid, counts by its hard mask), and when it
is non-zero in a plain layer.

A model without SpikingJelly neurons (an ANN, an ANN twin) is counted as MACs throughout
(``spiking=None`` detects this; ``spiking=True`` forces the per-call decision above, ``False`` MACs
everywhere): a ReLU layer whose input happens to be all zero is still a dense MAC layer. Bias
additions, batch norm, pooling, residual additions and neuron updates are not counted (as in
SpikingJelly's ``SynOpCounter``).

**Time steps.** A layer in multi-step mode (``step_mode="m"``, input ``[T, N, ...]``) is counted
per step along its first dimension; a layer inside a ``SeqToANNContainer`` (or a non-stateful
``StepModeContainer`` in multi-step mode) splits its ``[T*N, ...]`` input with the container's T;
otherwise each call of the layer is one time step (single-step networks driven by a loop over T;
an ANN calls each layer once, so T = 1). ``LayerOps.per_step`` lists the counts of each step.

**Why module hooks, not SpikingJelly's ``op_counter``.** SpikingJelly 2.0's ``op_counter``
(``DispatchCounterMode`` + ``SynOpCounter``, rules per aten op) counts every weight, pruned or
not, and counts a SEW-ADD block's {0,1,2} output as dense MACs; its ``extra_rules`` could replace
both rules, but at aten level a multi-step layer has already folded T into the batch, so the
per-step split needs the module (its step mode and container) anyway, and a dispatch mode sends
every aten op of the forward (each neuron update of each step) through Python. A forward hook per
conv/linear layer sees the module (name, step mode, padding mode, effective weight) and its
unflattened input, and is exact. The counting itself is cheap: the batch is summed before one
convolution of the event map with the per-tap count of non-zero synapses (one or two output
channels per group), which by linearity equals ``sum(conv(x, W != 0))``; it runs in float32 when
every partial sum is below 2**24 (exact integers) and in float64 otherwise. From SpikingJelly we use
its energy presets (:mod:`.energy`) and the spiking-neuron base class (:mod:`.firing`).

Example::

    >>> import torch
    >>> from torch import nn
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = fc.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    >>> r = count_ops(fc, torch.tensor([[1.0, 1.0, 2.0]]), spiking=True)   # events 1, 1, 2
    >>> r.sops, r.dense_sops, r.layers[""].kind                # 1*1 + 1*0 + 2*2 non-zero synapses
    (5, 8, 'sop')
    >>> count_ops(fc, torch.tensor([[0.5, 1.0, 2.0]])).macs    # real-valued: 3 non-zero weights x 1 row
    3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import layer
from torch import nn
from torch.nn.utils import parametrize

from .firing import (
    FiringRecorder,
    FiringReport,
    call_model,
    is_spiking,
    measuring_forward,
)
from .sparsity import kept_mask

__all__ = ["LayerOps", "OpsReport", "StepOps", "count_ops"]

_EXACT_FLOAT32 = 2**24  # every integer below this is exact in float32
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@dataclass
class StepOps:
    """Counts of one layer (or a whole model) at one time step."""

    sops: int = 0
    dense_sops: int = 0
    macs: int = 0
    dense_macs: int = 0
    events: int = 0
    input_numel: int = 0
    positions: int = 0

    def add(self, other: StepOps) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


class _Totals:
    """``sops``, ``dense_sops``, ``macs``, ``dense_macs``: sums over the parts (``_sum``)."""

    def _sum(self, key: str) -> int:
        raise NotImplementedError

    @property
    def sops(self) -> int:
        return self._sum("sops")

    @property
    def dense_sops(self) -> int:
        return self._sum("dense_sops")

    @property
    def macs(self) -> int:
        return self._sum("macs")

    @property
    def dense_macs(self) -> int:
        return self._sum("dense_macs")


@dataclass
class LayerOps(_Totals):
    """What one conv/linear layer cost, summed over the time steps in ``per_step``.

    ``kind`` is "sop" (event input), "mac" (real-valued input) or "mixed" (both, across calls);
    ``events`` the sum of the input values for "sop" (spike counts), the non-zero inputs for "mac";
    ``positions`` the output positions (N x spatial output, or rows), every step counted;
    ``nnz``/``numel`` the non-zero / all weights of the effective weight.
    """

    name: str
    type: str
    kind: str
    nnz: int
    numel: int
    per_step: list[StepOps] = field(default_factory=list)

    def _sum(self, key: str) -> int:
        return sum(getattr(s, key) for s in self.per_step)

    @property
    def T(self) -> int:
        return len(self.per_step)

    @property
    def events(self) -> int:
        return self._sum("events")

    @property
    def input_numel(self) -> int:
        return self._sum("input_numel")

    @property
    def positions(self) -> int:
        return self._sum("positions")

    @property
    def ops(self) -> int:
        """SOPs + MACs of this layer (one of the two is 0 unless ``kind == "mixed"``)."""
        return self.sops + self.macs

    @property
    def input_rate(self) -> float:
        """Firing rate of the layer's input: events per input element per time step (a SEW-ADD
        value 2 counts twice); for a "mac" layer the fraction of non-zero inputs."""
        return self.events / max(self.input_numel, 1)

    @property
    def weight_density(self) -> float:
        return self.nnz / max(self.numel, 1)


@dataclass
class OpsReport(_Totals):
    """Operations of a model on one batch: totals, ``layers`` (name -> :class:`LayerOps`, call
    order), the spiking neuron layers' ``firing`` (:class:`~snnprune.metrics.firing.FiringReport`),
    ``T`` (the most time steps any layer saw) and ``batch_size`` (of the first layer called)."""

    layers: dict[str, LayerOps] = field(default_factory=dict)
    firing: FiringReport = field(default_factory=FiringReport)
    batch_size: int = 0
    skipped: list[str] = field(default_factory=list)

    def _sum(self, key: str) -> int:
        return sum(getattr(layer_, key) for layer_ in self.layers.values())

    @property
    def T(self) -> int:
        return max((lo.T for lo in self.layers.values()), default=0)

    @property
    def per_step(self) -> list[StepOps] | None:
        """Model totals per time step, or None when the layers saw different numbers of steps."""
        if len({lo.T for lo in self.layers.values()}) > 1:
            return None
        steps = [StepOps() for _ in range(self.T)]
        for lo in self.layers.values():
            for total, s in zip(steps, lo.per_step):
                total.add(s)
        return steps

    @property
    def firing_rates(self) -> dict[str, float]:
        """Mean spikes per neuron per time step of each spiking neuron layer."""
        return self.firing.rates

    @property
    def mean_firing_rate(self) -> float:
        return self.firing.mean

    def to_dict(self, layers: bool = False) -> dict[str, Any]:
        """Plain numbers for logging (totals, per-sample values, per-step totals; per layer if
        ``layers``)."""
        n = max(self.batch_size, 1)
        d: dict[str, Any] = {
            "sops": self.sops, "dense_sops": self.dense_sops, "macs": self.macs,
            "dense_macs": self.dense_macs, "T": self.T, "batch_size": self.batch_size,
            "sops_per_sample": self.sops / n, "macs_per_sample": self.macs / n,
            "dense_macs_per_sample": self.dense_macs / n, "mean_firing_rate": self.mean_firing_rate,
        }
        steps = self.per_step
        d["sops_per_step"] = None if steps is None else [s.sops for s in steps]
        d["macs_per_step"] = None if steps is None else [s.macs for s in steps]
        if layers:
            d["layers"] = {
                name: {"kind": lo.kind, "T": lo.T, "sops": lo.sops, "dense_sops": lo.dense_sops,
                       "macs": lo.macs, "dense_macs": lo.dense_macs, "events": lo.events,
                       "input_rate": lo.input_rate, "positions": lo.positions, "nnz": lo.nnz,
                       "numel": lo.numel}
                for name, lo in self.layers.items()
            }
            d["firing_rates"] = self.firing_rates
        return d

    def __str__(self) -> str:
        return (f"{self.sops:.4g} SOPs + {self.macs:.4g} MACs (dense {self.dense_macs:.4g} MACs), "
                f"T={self.T}, batch {self.batch_size}, firing rate {self.mean_firing_rate:.4f}")

    def summary(self) -> str:
        """A per-layer table and the totals, as text."""
        rows = [(f"{'layer':<32} {'kind':>5} {'T':>3} {'in rate':>8} {'density':>8} "
                f"{'SOPs':>11} {'MACs':>11} {'dense MACs':>11}")]
        for name, lo in self.layers.items():
            rows.append(f"{name[-32:]:<32} {lo.kind:>5} {lo.T:>3} {lo.input_rate:>8.4f} "
                        f"{lo.weight_density:>8.4f} {lo.sops:>11.4g} {lo.macs:>11.4g} {lo.dense_macs:>11.4g}")
        rows.append(str(self))
        for name, rate in self.firing_rates.items():
            rows.append(f"  firing {name}: {rate:.4f}")
        return "\n".join(rows)


def _is_counted(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.conv._ConvNd):
        return not module.transposed
    return isinstance(module, nn.Linear)


def _flattens_time(module: nn.Module) -> bool:
    """True for containers that fold [T, N, ...] into [T*N, ...] for their children."""
    if isinstance(module, layer.SeqToANNContainer):
        return True
    if isinstance(module, layer.StepModeContainer):
        return module.step_mode == "m" and not module.stateful
    return False


class _Weights:
    """Per-layer counting tensors derived from the effective weight (computed once per count)."""

    def __init__(self, module: nn.Module) -> None:
        w = module.weight.detach()
        # what the pruning method keeps (a soft mask that never reaches 0 counts by its hard mask);
        # w != 0 for a plain layer. int32 sums below: counts < 2**31
        kept = kept_mask(module) if parametrize.is_parametrized(module, "weight") else w.bool()
        self.numel = w.numel()
        if isinstance(module, nn.Linear):
            self.fan_out = kept.sum(0, dtype=torch.int32).double()  # non-zero synapses of each input
            self.nnz = int(self.fan_out.sum())
            self.out = w.shape[0]
        else:
            g = module.groups
            out, cin_g = w.shape[0], w.shape[1]
            per_tap = kept.reshape(g, out // g, -1).sum(1, dtype=torch.int32).reshape(g, *w.shape[1:])  # [g, Cin/g, *k]
            self.nnz = int(per_tap.sum())
            dense = torch.full_like(per_tap, out // g)
            # [2g, Cin/g, *k]: per group, channel 2j counts non-zero synapses, 2j+1 all of them
            self.taps = torch.stack([per_tap, dense], 1).reshape(2 * g, cin_g, *w.shape[2:]).float()
            self.bound = (out // g) * w[0].numel()  # largest count per output element per unit input


class _Counter:
    def __init__(self, model: nn.Module, spiking: bool) -> None:
        self.model = model
        self.spiking = spiking
        self.report = OpsReport()
        self._weights: dict[int, _Weights] = {}
        self._time: list[int] = []
        self._handles: list[Any] = []

    def __enter__(self) -> Self:
        for name, module in self.model.named_modules():
            if _is_counted(module):
                self._handles.append(module.register_forward_hook(self._hook(name)))
            elif isinstance(module, nn.modules.conv._ConvNd):
                self.report.skipped.append(name)
            if _flattens_time(module):
                self._handles.append(module.register_forward_pre_hook(self._push))
                self._handles.append(module.register_forward_hook(self._pop))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _push(self, module: nn.Module, args: tuple) -> None:
        self._time.append(args[0].shape[0])

    def _pop(self, module: nn.Module, args: tuple, out: Any) -> None:
        self._time.pop()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self._count(name, module, args[0].detach(), out)

        return hook

    def _count(self, name: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> None:
        weights = self._weights.get(id(module))
        if weights is None:
            weights = self._weights[id(module)] = _Weights(module)
        linear = isinstance(module, nn.Linear)
        out_features = module.out_features if linear else module.out_channels
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # half-precision sums of counts would not be exact
        # x, out -> [T, B, ...] with the sample layout the layer's forward sees
        stepped = True  # the call covers steps 0..T-1 (else: it is the next single step)
        if getattr(module, "step_mode", "s") == "m" and (linear or x.dim() == module.weight.dim() + 1):
            T = x.shape[0]
            x = x.reshape(T, -1, *x.shape[2:])
            out = out.reshape(T, -1, *out.shape[2:])
        elif self._time and x.shape[0] % self._time[-1] == 0:
            T = self._time[-1]
            x = x.reshape(T, -1, *x.shape[1:])
            out = out.reshape(T, -1, *out.shape[1:])
        else:
            T, stepped = 1, False
            x, out = x.unsqueeze(0), out.unsqueeze(0)
        if not self.report.batch_size:
            self.report.batch_size = x.shape[1]
        events = self.spiking and bool(x.min() >= 0) and torch.equal(x, x.round()) if x.numel() else False
        positions = out[0].numel() // out_features
        steps = [StepOps(input_numel=x[0].numel(), positions=positions,
                         dense_macs=weights.numel * positions) for _ in range(T)]
        if events:
            if linear:
                counts = x.reshape(T, -1, x.shape[-1]).sum(1, dtype=torch.float64)  # [T, in]
                ev = counts.sum(1)
                sops = counts @ weights.fan_out
                dense = ev * weights.out
            else:
                ev, sops, dense = self._conv_sops(module, weights, x)
            for s, e, so, de in zip(steps, ev.tolist(), sops.tolist(), dense.tolist()):
                s.events, s.sops, s.dense_sops = round(e), round(so), round(de)
        else:
            nonzero = x.reshape(T, -1).count_nonzero(1).tolist()
            for s, nz in zip(steps, nonzero):
                s.events, s.macs = nz, weights.nnz * positions
        kind = "sop" if events else "mac"
        rec = self.report.layers.get(name)
        if rec is None:
            rec = self.report.layers[name] = LayerOps(name, type(module).__name__, kind, weights.nnz, weights.numel)
        elif rec.kind != kind:
            rec.kind = "mixed"
        if stepped or not rec.per_step:
            if len(rec.per_step) < T:
                rec.per_step.extend(StepOps() for _ in range(T - len(rec.per_step)))
            for total, s in zip(rec.per_step, steps):
                total.add(s)
        else:  # a single-step call: the next time step
            rec.per_step.extend(steps)

    @staticmethod
    def _conv_sops(module: nn.Module, weights: _Weights, x: torch.Tensor):
        """Per-step events, SOPs and dense SOPs of a conv layer on event input ``x`` [T, B, C, ...]."""
        T, B = x.shape[:2]
        # sum over the batch first: sum_n conv(x_n, M) = conv(sum_n x_n, M)
        xs = x.sum(1) if B > 1 else x[:, 0]
        bound = weights.bound * float(xs.max()) if xs.numel() else 0.0
        if bound >= _EXACT_FLOAT32:  # (covers an inexact batch sum too: it would exceed 2**24)
            xs = x.sum(1, dtype=torch.float64)
        dtype = xs.dtype
        ev = xs.reshape(T, -1).sum(1, dtype=torch.float64)
        if module.padding_mode != "zeros":
            xs = F.pad(xs, module._reversed_padding_repeated_twice, mode=module.padding_mode)
            padding = 0
        else:
            padding = module.padding
        y = _CONV[xs.dim() - 2](xs, weights.taps.to(dtype), None, module.stride, padding,
                                module.dilation, module.groups)  # [T, 2g, *out]
        y = y.reshape(T, module.groups, 2, -1).sum((1, 3), dtype=torch.float64)  # [T, 2]
        return ev, y[:, 0], y[:, 1]


def count_ops(
    model: nn.Module,
    inputs: Any,
    *,
    spiking: bool | None = None,
    eval_mode: bool = True,
    reset: bool = True,
) -> OpsReport:
    """Run ``model`` once on ``inputs`` and count the SOPs and MACs of every conv/linear layer
    (rule in the module docstring), pruned (zero) weights excluded, plus the firing rate of every
    spiking neuron layer.

    Args:
        model: any ``nn.Module``: a ``SpikingNet``, a SpikingJelly network in single- or multi-step
            mode, an ANN (twin); pruned or not (parametrized layers are counted through their
            effective ``module.weight``).
        inputs: what the model takes: ``model(inputs)``; a tuple/list is unpacked.
        spiking: None: decide per layer from its input values if the model contains SpikingJelly
            neurons, count MACs everywhere otherwise; True: decide per layer from the input
            values; False: MACs everywhere.
        eval_mode: run in eval mode (batch norm statistics untouched); training flags are restored.
        reset: reset SpikingJelly neuron states before and after the forward.

    Returns:
        :class:`OpsReport`: ``.sops``, ``.macs``, ``.dense_macs``, ``.dense_sops``, ``.layers``,
        ``.firing_rates``, ``.T``, ``.per_step``, ``.summary()``, ``.to_dict()``.
    """
    if spiking is None:
        spiking = is_spiking(model)
    with measuring_forward(model, eval_mode, reset), _Counter(model, spiking) as counter, \
            FiringRecorder(model) as firing:
        call_model(model, inputs)
    counter.report.firing = firing.report
    return counter.report
