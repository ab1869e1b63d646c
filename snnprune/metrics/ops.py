"""Synaptic operations (SOPs) and multiply-accumulates (MACs) of a model on one batch, pruned
weights excluded.

**The counting rule**, per call of a layer, with ``W`` the layer's *effective* weight (for a
parametrized, pruned layer the weight its forward uses) and "kept" the weights that count:

* **input of events** (every input value a non-negative integer: binary spikes, or the 0/1/2...
  counts a SEW-ADD block passes on): the layer costs **SOPs** = the sum over input events, an
  event of value k counting k times, of the **kept** synapses it drives into valid output
  positions. Exactly ``sum(conv(x, kept))`` (``sum(x @ kept.T)`` for a linear map): stride,
  padding (an event drives no padded position), dilation and groups are those of the layer.
  ``dense_sops`` is the same with every weight counted: what SpikingJelly's ``SynOpCounter``
  reports for binary inputs.
* **real-valued input** (analog images into the stem, ReLU activations of an ANN): the layer costs
  **MACs** = kept weights x output positions, i.e. for each output channel the kept weights of its
  filter times the number of output positions (``N x H_out x W_out`` per time step, rows for a
  linear map). Padded taps count as in the dense convention, so ``macs / dense_macs`` is exactly
  ``1 - sparsity`` of the layer.
* ``dense_macs`` = all weights x output positions, recorded for *every* layer (SOP layers too): the
  dense ANN-equivalent cost of the same computation, every time step counted.

A weight is kept when the pruning method keeps it (for a pruned layer, what ``finalize`` will
leave: a soft mask that never reaches 0, like LTP's sigmoid, counts by its hard mask), and when it
is non-zero in a plain layer.

**Which layers, and how** (:data:`RULES`, a table from a module type to a *rule*): ``nn.Conv1d/2d/3d``
and ``nn.Linear`` (SpikingJelly's ``layer.Conv*d``/``layer.Linear`` and the layers inside a
``SeqToANNContainer`` are subclasses) and ``nn.MultiheadAttention`` (its input projections on
query, key and value, and ``out_proj`` on the attention's weighted sum, which is real-valued:
MACs). A rule is ``rule(module, args, kwargs, output) -> list[Synapses]``: which input meets which
weight in that call; the counting above is then the same for every rule. ``count_ops(...,
rules={MyLayer: rule})`` adds or replaces rules (the most derived type of a module's MRO found in
the table wins; ``None`` removes a type's rule). A module with a rule is counted by it alone: its
children are not hooked (so ``out_proj`` is counted once, by the attention's rule). Every tensor
the Pruner can prune (:func:`snnprune.selection.prunable_tensors`) that no rule counted is named in
``OpsReport.skipped`` with the reason (a transposed conv, a layer the forward never called).

**Spiking or not.** A model holding a spiking neuron (the table of :mod:`.firing`: SpikingJelly,
snnTorch, Norse) has each layer's input examined: events -> SOPs, else MACs. A model without one
is counted as MACs throughout (an ANN, an ANN twin); if a conv or linear layer of it receives binary
inputs, a warning says so once (a spiking net whose neurons are not in the table: pass
``spiking=True``; ``spiking=False`` says it is an ANN and silences the warning). Bias additions,
batch norm, pooling, residual additions and neuron updates are not counted (as in SpikingJelly's
``SynOpCounter``).

**Time steps and the batch.** A layer in multi-step mode (``step_mode="m"``, input ``[T, N, ...]``)
is counted per step along its first dimension; a layer inside a ``SeqToANNContainer`` (or a
non-stateful ``StepModeContainer`` in multi-step mode) splits its ``[T*N, ...]`` input with the
container's T. Any other call is counted per row of its input and placed once the forward is over,
with T and the batch N taken from the spiking neurons (their output ``[T, N, ...]`` in multi-step
mode; in single-step mode the batch of each call and T the number of calls): a call on ``N`` rows
is the layer's next time step (a single-step loop over T; an ANN calls each layer once, so T = 1),
a call on ``T*N`` rows covers all T steps, the rows step-major (the fold-T pattern: a plain
``nn.Conv2d`` on ``x.flatten(0, 1)`` between multi-step neurons). Without neurons, N is the first
dimension of the first layer's input (its batch dimension: 1 for a sequence-first attention) and T
is 1; ``count_ops(..., T=, batch_size=)`` sets them (a warning when the
neurons say otherwise). ``LayerOps.per_step`` lists the counts of each step; per-sample values
divide by ``batch_size``.

**Why module hooks, not SpikingJelly's ``op_counter``.** SpikingJelly 2.0's ``op_counter``
(``DispatchCounterMode`` + ``SynOpCounter``, rules per aten op) counts every weight, pruned or
not, and counts a SEW-ADD block's {0,1,2} output as dense MACs; its ``extra_rules`` could replace
both rules, but at aten level a multi-step layer has already folded T into the batch, so the
per-step split needs the module (its step mode and container) anyway, and a dispatch mode sends
every aten op of the forward (each neuron update of each step) through Python. A forward hook per
layer sees the module (name, step mode, padding mode, effective weight) and its unflattened
input, and is exact. The counting itself is cheap: the batch is summed (where the step split is
known) before one convolution of the event map with the per-tap count of kept synapses (one or two
output channels per group), which by linearity equals ``sum(conv(x, kept))``; it runs in float32
when every partial sum is below 2**24 (exact integers) and in float64 otherwise.

Example::

    >>> import torch
    >>> from torch import nn
    >>> fc = nn.Linear(3, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = fc.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    >>> r = count_ops(fc, torch.tensor([[1.0, 1.0, 2.0]]), spiking=True)   # events 1, 1, 2
    >>> r.sops, r.dense_sops, r.layers[""].kind                # 1*1 + 1*0 + 2*2 kept synapses
    (5, 8, 'sop')
    >>> count_ops(fc, torch.tensor([[0.5, 1.0, 2.0]])).macs    # real-valued: 3 kept weights x 1 row
    3
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import layer
from torch import nn
from torch.nn.utils import parametrize

from ..selection import prunable_tensors
from .firing import (
    FiringRecorder,
    FiringReport,
    call_model,
    is_spiking,
    measuring_forward,
)
from .sparsity import kept_mask

__all__ = ["LayerOps", "OpsReport", "StepOps", "Synapses", "Rule", "RULES", "count_ops",
           "conv_rule", "linear_rule", "attention_rule"]

_EXACT_FLOAT32 = 2**24  # every integer below this is exact in float32
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_KEYS = ("events", "sops", "dense_sops", "macs", "dense_macs", "input_numel", "positions")


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
    """What one layer (one weight tensor) cost, summed over the time steps in ``per_step``.

    ``kind`` is "sop" (event input), "mac" (real-valued input) or "mixed" (both, across calls);
    ``events`` the sum of the input values for "sop" (spike counts), the non-zero inputs for "mac";
    ``positions`` the output positions (N x spatial output, or rows), every step counted;
    ``nnz``/``numel`` the kept / all weights of the effective weight.
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
    ``T`` (the most time steps any layer saw), ``batch_size`` (the samples per-sample values divide
    by) and ``skipped`` (prunable tensors not counted -> why)."""

    layers: dict[str, LayerOps] = field(default_factory=dict)
    firing: FiringReport = field(default_factory=FiringReport)
    batch_size: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

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
    def mean_firing_rate(self) -> float | None:
        """Spikes per neuron per step over every spiking neuron; None when the model has none."""
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
            d["skipped"] = dict(self.skipped)
        return d

    def __str__(self) -> str:
        rate = self.mean_firing_rate
        firing = "no spiking neuron" if rate is None else f"firing rate {rate:.4f}"
        return (f"{self.sops:.4g} SOPs + {self.macs:.4g} MACs (dense {self.dense_macs:.4g} MACs), "
                f"T={self.T}, batch {self.batch_size}, {firing}")

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
        for name, why in self.skipped.items():
            rows.append(f"  not counted {name}: {why}")
        return "\n".join(rows)


# ---------------------------------------------------------------- the rules


@dataclass
class Synapses:
    """One input meeting one weight in one call of a layer: what a counting rule returns.

    Args:
        x: the input as the weight sees it: ``[..., in_features]`` for a linear map,
            ``[N, C, *spatial]`` for a conv (``[T, N, ...]`` in a multi-step layer).
        module: the module holding the weight; the report names the count after it (its path,
            plus ``.tensor`` when the tensor is not ``weight``: ``attn.in_proj_weight``).
        tensor: the weight's attribute name on ``module``.
        rows: the output rows of the weight that ``x`` meets (query, key and value each meet a
            third of ``in_proj_weight``); None: all.
        conv: True when the weight is a convolution's (``module`` gives stride, padding, dilation,
            groups and padding mode); False for a linear map.
        batch_dim: the dimension of ``x`` that runs over samples (1 for a sequence-first
            attention input); None when ``x`` is one unbatched sample.
        analog: True when the input is real-valued whatever its values (MACs).

    Example::

        >>> fc = nn.Linear(4, 2)
        >>> rule = lambda module, args, kwargs, out: [Synapses(args[0], module)]   # linear_rule
        >>> count_ops(nn.Sequential(fc), torch.rand(3, 4), rules={nn.Linear: rule}).macs
        24
    """

    x: torch.Tensor
    module: nn.Module
    tensor: str = "weight"
    rows: slice | None = None
    conv: bool = False
    batch_dim: int | None = 0
    analog: bool = False


#: ``rule(module, args, kwargs, output) -> list[Synapses]``
Rule = Callable[[nn.Module, tuple, dict, Any], list[Synapses]]


def conv_rule(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> list[Synapses]:
    """A convolution: its input meets its ``weight`` with the layer's geometry.

    Args:
        module: the conv layer; args, kwargs: what its forward was called with; out: its output.

    Returns:
        One :class:`Synapses`.

    Example::

        >>> conv = nn.Conv2d(1, 2, 3)
        >>> [s.conv for s in conv_rule(conv, (torch.zeros(1, 1, 5, 5),), {}, None)]
        [True]
    """
    return [Synapses(args[0], module, conv=True)]


def linear_rule(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> list[Synapses]:
    """A linear map: its input (any leading dimensions) meets its ``weight``.

    Args:
        module: the linear layer; args, kwargs: what its forward was called with; out: its output.

    Returns:
        One :class:`Synapses`.

    Example::

        >>> [s.tensor for s in linear_rule(nn.Linear(3, 2), (torch.zeros(4, 3),), {}, None)]
        ['weight']
    """
    return [Synapses(args[0], module)]


def attention_rule(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> list[Synapses]:
    """``nn.MultiheadAttention``: query, key and value meet their input projections (a third of
    ``in_proj_weight`` each, or ``q/k/v_proj_weight``); ``out_proj`` meets the attention's weighted
    sum of the values, which is real-valued and seen by no hook: MACs over the output's rows.

    Args:
        module: the attention; args, kwargs: query, key, value (positional or by name) and the
            rest; out: its output ``(attended, weights)``.

    Returns:
        Four :class:`Synapses`: query, key, value, and ``out_proj``.

    Example::

        >>> attn = nn.MultiheadAttention(4, 2, batch_first=True)
        >>> r = count_ops(attn, (torch.rand(2, 3, 4),) * 3)
        >>> r.layers["in_proj_weight"].macs, r.layers["out_proj"].macs   # 3 x 16 weights x 6 rows; 16 x 6
        (288, 96)
    """
    q, k, v = (args[i] if i < len(args) else kwargs[name] for i, name in enumerate(("query", "key", "value")))
    batch_dim = None if q.dim() == 2 else (0 if module.batch_first else 1)
    e = module.embed_dim
    if module.in_proj_weight is not None:
        uses = [Synapses(t, module, "in_proj_weight", rows=slice(i * e, (i + 1) * e), batch_dim=batch_dim)
                for i, t in enumerate((q, k, v))]
    else:
        uses = [Synapses(t, module, f"{p}_proj_weight", batch_dim=batch_dim) for p, t in zip("qkv", (q, k, v))]
    attended = out[0] if isinstance(out, tuple) else out  # same rows and width as out_proj's input
    return [*uses, Synapses(attended, module.out_proj, batch_dim=batch_dim, analog=True)]


#: module type -> counting rule (the most derived type of a module's MRO found here wins)
RULES: dict[type[nn.Module], Rule | None] = {
    nn.Conv1d: conv_rule,
    nn.Conv2d: conv_rule,
    nn.Conv3d: conv_rule,
    nn.Linear: linear_rule,
    nn.MultiheadAttention: attention_rule,
}


def _rule_for(module: nn.Module, rules: Mapping[type, Rule | None]) -> Rule | None:
    for cls in type(module).__mro__:
        if cls in rules:
            return rules[cls]
    return None


# ---------------------------------------------------------------- counting one call


class _Weights:
    """Counting tensors derived from a weight's kept mask (computed once per count)."""

    def __init__(self, s: Synapses) -> None:
        module, tensor = s.module, s.tensor
        w = getattr(module, tensor).detach()
        # what the pruning method keeps (a soft mask that never reaches 0 counts by its hard mask);
        # w != 0 for a plain layer. int32 sums below: counts < 2**31
        kept = kept_mask(module, tensor) if parametrize.is_parametrized(module, tensor) else w != 0
        if s.rows is not None:
            kept = kept[s.rows]
        self.numel = kept.numel()
        self.nnz = int(kept.sum())
        if not s.conv:
            self.fan_out = kept.sum(0, dtype=torch.int32).double()  # kept synapses of each input
            self.out = kept.shape[0]
        else:
            g = module.groups
            out, cin_g = kept.shape[0], kept.shape[1]
            per_tap = kept.reshape(g, out // g, -1).sum(1, dtype=torch.int32).reshape(g, *kept.shape[1:])
            dense = torch.full_like(per_tap, out // g)
            # [2g, Cin/g, *k]: per group, channel 2j counts kept synapses, 2j+1 all of them
            self.taps = torch.stack([per_tap, dense], 1).reshape(2 * g, cin_g, *kept.shape[2:]).float()
            self.bound = (out // g) * kept[0].numel()  # largest count per output element per unit input


def _padding(conv: nn.Module, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
    """(before, after) padding of each spatial dimension, as the layer pads."""
    k = conv.kernel_size
    if conv.padding == "valid":
        return [(0, 0)] * len(spatial)
    if conv.padding == "same":
        total = [d * (kk - 1) for d, kk in zip(conv.dilation, k)]
        return [(t // 2, t - t // 2) for t in total]
    return [(p, p) for p in conv.padding]


def _out_positions(conv: nn.Module, spatial: tuple[int, ...]) -> int:
    """Output positions of one sample: the product of the output's spatial sizes."""
    size = 1
    for n, (a, b), d, kk, s in zip(spatial, _padding(conv, spatial), conv.dilation, conv.kernel_size, conv.stride):
        size *= max((n + a + b - d * (kk - 1) - 1) // s + 1, 0)
    return size


def _conv_sops(conv: nn.Module, w: _Weights, x: torch.Tensor):
    """Per-slot events, SOPs and dense SOPs of a conv on event input ``x`` [S, B, C, *spatial]."""
    S, B = x.shape[:2]
    # sum over the batch first: sum_n conv(x_n, M) = conv(sum_n x_n, M)
    xs = x.sum(1) if B > 1 else x[:, 0]
    bound = w.bound * float(xs.max()) if xs.numel() else 0.0
    if bound >= _EXACT_FLOAT32:  # (covers an inexact batch sum too: it would exceed 2**24)
        xs = x.sum(1, dtype=torch.float64)
    ev = xs.reshape(S, -1).sum(1, dtype=torch.float64)
    padding = conv.padding  # zeros: the conv pads (an event drives no zero-padded position)
    if conv.padding_mode != "zeros":  # reflect/circular padding copies events: pad them in
        pads = _padding(conv, tuple(xs.shape[2:]))
        xs = F.pad(xs, [p for pair in reversed(pads) for p in pair], mode=conv.padding_mode)
        padding = 0
    y = _CONV[xs.dim() - 2](xs, w.taps.to(xs.dtype), None, conv.stride, padding, conv.dilation, conv.groups)
    y = y.reshape(S, conv.groups, 2, -1).sum((1, 3), dtype=torch.float64)  # [S, 2]
    return ev, y[:, 0], y[:, 1]


@dataclass
class _Call:
    """One layer's counts from one call, per slot: per time step ("time") or per input row
    ("rows", placed in time once the forward is over)."""

    name: str
    type: str
    kind: str
    nnz: int
    numel: int
    layout: str
    counts: dict[str, list[int]]
    batch: int = 1  # samples in each slot ("time": the batch; "rows": 1)
    second: int | None = None  # size of the dimension after the rows (a [T, N, F] input to a linear map)

    @property
    def slots(self) -> int:
        return len(self.counts["events"])

    def merge(self, other: _Call) -> None:
        """Another use of the same weight in the same call (query, key and value)."""
        self.nnz += other.nnz
        self.numel += other.numel
        self.kind = self.kind if self.kind == other.kind else "mixed"
        if other.slots != self.slots:  # cannot be aligned: one slot each
            self.counts = {k: [sum(v)] for k, v in self.counts.items()}
            other_counts = {k: [sum(v)] for k, v in other.counts.items()}
        else:
            other_counts = other.counts
        for k, v in other_counts.items():
            self.counts[k] = [a + b for a, b in zip(self.counts[k], v)]


class _Counter:
    def __init__(self, model: nn.Module, spiking: bool, rules: Mapping[type, Rule | None]) -> None:
        self.model = model
        self.spiking = spiking
        self.rules = rules
        self.calls: list[_Call] = []
        self.binary: list[str] = []  # layers fed 0/1 inputs (checked when counting an ANN)
        self.hooked: dict[int, str] = {}  # id(module) -> name, for modules a rule covers
        self.called: set[str] = set()  # names of the hooked modules the forward called
        self.covered_by: dict[str, str] = {}  # module name -> the hooked module it lies inside
        self._names = {id(m): n for n, m in model.named_modules()}
        self._weights: dict[tuple, _Weights] = {}
        self._time: list[int] = []
        self._handles: list[Any] = []

    def __enter__(self) -> Self:
        covered: list[str] = []
        for name, module in self.model.named_modules():
            inside = next((c for c in covered if c == "" or name.startswith(c + ".")), None)
            if inside is not None:
                self.covered_by[name] = inside
                continue
            rule = _rule_for(module, self.rules)
            if rule is not None:
                covered.append(name)
                self.hooked[id(module)] = name
                self._handles.append(module.register_forward_hook(self._hook(name, rule), with_kwargs=True))
            if _flattens_time(module):
                self._handles.append(module.register_forward_pre_hook(self._push))
                self._handles.append(module.register_forward_hook(self._pop))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def skipped(self, report: OpsReport) -> dict[str, str]:
        """Every prunable tensor no rule counted, and why."""
        out = {}
        for name, module, _ in prunable_tensors(self.model):
            if name in report.layers:
                continue
            path = self._names[id(module)]
            parent = self.covered_by.get(path)
            if id(module) in self.hooked or (parent is not None and parent not in self.called):
                out[name] = "not called in the forward"
            elif parent is not None:
                out[name] = f"inside {parent!r}, whose rule does not count it"
            else:
                out[name] = f"no counting rule for {type(module).__name__}"
        return out

    def _push(self, module: nn.Module, args: tuple) -> None:
        self._time.append(args[0].shape[0])

    def _pop(self, module: nn.Module, args: tuple, out: Any) -> None:
        self._time.pop()

    def _hook(self, name: str, rule: Rule):
        def hook(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            self.called.add(name)
            calls: dict[str, _Call] = {}
            for s in rule(module, args, kwargs, out):
                call = self._count(module, s)
                if call.name in calls:
                    calls[call.name].merge(call)
                else:
                    calls[call.name] = call
            self.calls.extend(calls.values())

        return hook

    def _name(self, s: Synapses) -> str:
        path = self._names.get(id(s.module), "")
        return path if s.tensor == "weight" else f"{path}.{s.tensor}".lstrip(".")

    def _arrange(self, hooked: nn.Module, s: Synapses, w_dim: int) -> tuple[torch.Tensor, str, int | None]:
        """``s.x`` as [slots, batch, ...]: the layout ("time" or "rows") and, for rows of a
        linear map, the size of the next dimension."""
        x = s.x.detach()
        if s.batch_dim is None:
            return x[None, None], "rows", None
        if getattr(hooked, "step_mode", "s") == "m" and (not s.conv or x.dim() == w_dim + 1):
            return x.reshape(x.shape[0], -1, *x.shape[2:]), "time", None  # [T, N, ...]
        x = x.movedim(s.batch_dim, 0)
        if self._time and x.shape[0] % self._time[-1] == 0:
            T = self._time[-1]
            return x.reshape(T, -1, *x.shape[1:]), "time", None
        second = x.shape[1] if not s.conv and x.dim() >= 3 else None
        return x.unsqueeze(1), "rows", second

    def _count(self, hooked: nn.Module, s: Synapses) -> _Call:
        key = (id(s.module), s.tensor, None if s.rows is None else (s.rows.start, s.rows.stop))
        w = self._weights.get(key)
        if w is None:
            w = self._weights[key] = _Weights(s)
        kept_dim = getattr(s.module, s.tensor).dim()
        x, layout, second = self._arrange(hooked, s, kept_dim)
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()  # half-precision sums of counts would not be exact
        S, B = x.shape[:2]
        name = self._name(s)
        integral = bool(x.numel()) and not s.analog and bool(x.min() >= 0) and torch.equal(x, x.round())
        events = self.spiking and integral
        if not self.spiking and integral and bool(x.max() == 1):
            self.binary.append(name)
        if s.conv:
            positions = B * _out_positions(s.module, tuple(x.shape[3:]))
        else:
            positions = x[0].numel() // max(x.shape[-1], 1)
        counts = {"input_numel": [x[0].numel()] * S, "positions": [positions] * S,
                  "dense_macs": [w.numel * positions] * S}
        if events:
            if s.conv:
                ev, sops, dense = _conv_sops(s.module, w, x)
            else:
                per_input = x.reshape(S, -1, x.shape[-1]).sum(1, dtype=torch.float64)  # [S, in]
                ev, sops, dense = per_input.sum(1), per_input @ w.fan_out, per_input.sum(1) * w.out
            counts.update(events=[round(v) for v in ev.tolist()], sops=[round(v) for v in sops.tolist()],
                          dense_sops=[round(v) for v in dense.tolist()], macs=[0] * S)
        else:
            counts.update(events=x.reshape(S, -1).count_nonzero(1).tolist(), sops=[0] * S, dense_sops=[0] * S,
                          macs=[w.nnz * positions] * S)
        return _Call(name, type(s.module).__name__, "sop" if events else "mac", w.nnz, w.numel, layout, counts,
                     B, second)


def _flattens_time(module: nn.Module) -> bool:
    """True for containers that fold [T, N, ...] into [T*N, ...] for their children."""
    if isinstance(module, layer.SeqToANNContainer):
        return True
    if isinstance(module, layer.StepModeContainer):
        return module.step_mode == "m" and not module.stateful
    return False


# ---------------------------------------------------------------- placing the calls in time


def _steps(call: _Call, T: int, N: int | None) -> tuple[list[StepOps], bool]:
    """The call's counts as time steps, and whether they are steps 0..T-1 (else: the next step)."""
    c = call.counts
    rows = [StepOps(**{k: c[k][i] for k in _KEYS}) for i in range(call.slots)]
    if call.layout == "time":
        return rows, True
    R = call.slots
    if N and T > 1 and R == T * N:  # the fold-T pattern: rows t*N .. t*N + N-1 are step t
        steps = [StepOps() for _ in range(T)]
        for i, r in enumerate(rows):
            steps[i // N].add(r)
        return steps, True
    if N and T > 1 and R == T != N and call.second == N:  # a [T, N, F] input to a plain linear map
        return rows, True
    one = StepOps()
    for r in rows:
        one.add(r)
    return [one], False


def _evidence(firing: FiringReport, calls: list[_Call]) -> tuple[int | None, int | None]:
    """T and the batch said by the spiking neurons, else by the layers of known layout."""
    T, N = firing.T, firing.batch_size
    timed = [c for c in calls if c.layout == "time"]
    if T is None and timed:
        T = max(c.slots for c in timed)
    if N is None and timed:
        N = timed[0].batch
    return T, N


def _assemble(report: OpsReport, calls: list[_Call], T: int, N: int | None) -> None:
    for call in calls:
        steps, stepped = _steps(call, T, N)
        rec = report.layers.get(call.name)
        if rec is None:
            rec = report.layers[call.name] = LayerOps(call.name, call.type, call.kind, call.nnz, call.numel)
        elif rec.kind != call.kind:
            rec.kind = "mixed"
        if stepped or not rec.per_step:
            if len(rec.per_step) < len(steps):
                rec.per_step.extend(StepOps() for _ in range(len(steps) - len(rec.per_step)))
            for total, s in zip(rec.per_step, steps):
                total.add(s)
        else:  # a call on one step's rows: the next time step
            rec.per_step.extend(steps)


def count_ops(
    model: nn.Module,
    inputs: Any,
    *,
    spiking: bool | None = None,
    rules: Mapping[type[nn.Module], Rule | None] | None = None,
    T: int | None = None,
    batch_size: int | None = None,
    eval_mode: bool = True,
    reset: bool = True,
) -> OpsReport:
    """Run ``model`` once on ``inputs`` and count the SOPs and MACs of every layer a rule covers
    (conv, linear, multi-head attention; the rule in the module docstring), pruned weights
    excluded, plus the firing rate of every spiking neuron layer.

    Args:
        model: any ``nn.Module``: a SpikingJelly network in single- or multi-step mode, an
            snnTorch or Norse network, an ANN (twin); pruned or not (parametrized layers are
            counted through their effective weight).
        inputs: what the model takes: ``model(inputs)``; a tuple/list is unpacked, a dict passed as
            keywords.
        spiking: None: decide per layer from its input values if the model holds a spiking neuron
            (SpikingJelly, snnTorch, Norse: :data:`~snnprune.metrics.firing.SPIKING_NEURONS`),
            count MACs everywhere otherwise (warning once if a layer gets binary inputs); True:
            decide per layer from the input values; False: MACs everywhere.
        rules: ``{module type: rule}`` added to (or replacing) :data:`RULES`; ``None`` as a rule
            removes the type's rule. A rule is ``rule(module, args, kwargs, output) ->
            list[Synapses]``.
        T: time steps per forward, for a model whose neurons are not in the table (the neurons
            say it otherwise; a warning when they disagree).
        batch_size: samples per forward, likewise (default: from the neurons, else the batch
            dimension of the first counted layer's input).
        eval_mode: run in eval mode (batch norm statistics untouched); training flags are restored.
        reset: reset neuron states (SpikingJelly, snnTorch) before and after the forward.

    Returns:
        :class:`OpsReport`: ``.sops``, ``.macs``, ``.dense_macs``, ``.dense_sops``, ``.layers``,
        ``.firing_rates``, ``.mean_firing_rate`` (None without neurons), ``.T``, ``.batch_size``,
        ``.per_step``, ``.skipped``, ``.summary()``, ``.to_dict()``.

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> net = nn.Sequential(nn.Linear(2, 3), neuron.IFNode(step_mode="m"), nn.Linear(3, 1))
        >>> x = torch.rand(4, 5, 2)                       # [T=4, N=5, 2]
        >>> r = count_ops(net, x)
        >>> r.T, r.batch_size, r.layers["0"].kind, r.layers["2"].kind
        (4, 5, 'mac', 'sop')
    """
    table = dict(RULES)
    table.update(rules or {})
    auto = spiking is None
    if auto:
        spiking = is_spiking(model)
    with measuring_forward(model, eval_mode, reset), _Counter(model, spiking, table) as counter, \
            FiringRecorder(model) as firing:
        call_model(model, inputs)
    T_seen, N_seen = _evidence(firing.report, counter.calls)
    if (T is not None and T_seen is not None and T != T_seen) or (
            batch_size is not None and N_seen is not None and batch_size != N_seen):
        warnings.warn(f"count_ops: T={T}, batch_size={batch_size} given, but the spiking neurons saw "
                      f"T={T_seen} steps of batch {N_seen}; counting with the values given", stacklevel=2)
    steps = T if T is not None else (T_seen or 1)
    # without neurons: the batch dimension of the input of the first layer counted
    batch = batch_size or N_seen or next((c.slots for c in counter.calls), 0)
    report = OpsReport(firing=firing.report, batch_size=batch)
    _assemble(report, counter.calls, steps, batch)
    report.skipped = counter.skipped(report)
    if auto and not spiking and counter.binary:
        layers = ", ".join(repr(n) if n else "the model itself" for n in dict.fromkeys(counter.binary))
        warnings.warn(f"count_ops: {type(model).__name__} holds no spiking neuron of SpikingJelly, snnTorch or Norse, "
                      f"so every layer was counted as MACs (an ANN), yet {layers} received binary inputs. If they "
                      "are spikes, pass spiking=True to count SOPs (and T=, batch_size= if the time steps are "
                      "folded into the batch); spiking=False says it is an ANN and silences this", stacklevel=2)
    return report
