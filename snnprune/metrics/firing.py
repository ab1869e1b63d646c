"""Firing rates of the spiking neuron layers of a model, measured on one batch, and the table of
what a spiking neuron is.

The firing rate of a layer is its **mean number of spikes per neuron per time step**: all spikes the
layer emitted during the forward, divided by (neurons x time steps), where "neurons" counts every
sample of the batch (``N x C x H x W`` for a conv feature map). Where no spiking neuron was seen
the rate is ``None``, never 0.0 (a 0.0 means neurons that stayed silent).

**The neuron table** (:data:`SPIKING_NEURONS`, the one place that says what a spiking neuron is)
maps a class, by its import path and name, to how its layer steps through time:

* SpikingJelly: every ``neuron.BaseNode``/``SimpleBaseNode`` (IF, LIF, PLIF, ...); its
  ``step_mode`` says whether a call is one step (``"s"``) or all of them (``"m"``, output
  ``[T, N, ...]``).
* snnTorch: ``Leaky``, ``Synaptic``, ``Lapicque``, ``Alpha``, ``RLeaky``, ``RSynaptic``, ``SLSTM``,
  ``SConv2dLSTM`` (and their subclasses): one step per call; the output is the spikes, or a tuple
  whose first element is (``spk, mem`` when ``init_hidden=False``).
* Norse: every ``SNNCell``/``SNNRecurrentCell`` (``LIFCell``, ``LIFBoxCell``, ``IAFCell``,
  ``LSNNCell``, ...: one step per call) and ``SNN``/``SNNRecurrent`` (``LIF``, ``IAF``, ``LSNN``,
  ...: ``[T, N, ...]`` per call; a sequence form of ``LIFBoxCell``, which Norse 1.1 does not ship,
  would be one of these), output ``(spikes, state)``; the leaky integrators ``LICell``, ``LI`` and
  ``LIBoxCell`` emit voltages, not spikes, and are not neurons here.

A subclass counts as its nearest listed ancestor (the most derived class listed wins, so an entry
``None`` excludes a subclass of a listed class). snnTorch and Norse are never imported by this
module: their classes are looked up only once the library is loaded (a model built from them has
loaded it), so the table works without them installed. Another library's neuron is added with one
entry: ``SPIKING_NEURONS[("mylib.neurons", "MyLIF")] = "s"``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from spikingjelly.activation_based import neuron, functional
    >>> net = nn.Sequential(nn.Identity(), neuron.IFNode(v_threshold=1.0, step_mode="m"))
    >>> x = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])   # [T=2, N=1, 2 neurons]
    >>> rates = firing_rates(net, x)
    >>> rates["1"], rates.layers["1"].per_step, rates.T, rates.batch_size
    (0.25, [0.5, 0.0], 2, 1)
    >>> print(firing_rates(nn.Linear(2, 2), torch.ones(1, 2)).mean)   # no neuron: None
    None
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import torch
from spikingjelly.activation_based import base, functional
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["SPIKING_NEURONS", "FiringRecorder", "FiringReport", "NeuronFiring", "firing_rates", "is_spiking",
           "neuron_steps", "spiking_neurons"]

#: (import path, class name) -> how a layer of that class steps: "s" one time step per call,
#: "m" every time step per call (output ``[T, N, ...]``), "step_mode" its ``step_mode``
#: attribute says which; None: not a spiking neuron (a subclass that emits no spikes).
SPIKING_NEURONS: dict[tuple[str, str], str | None] = {
    ("spikingjelly.activation_based.neuron", "BaseNode"): "step_mode",
    ("spikingjelly.activation_based.neuron", "SimpleBaseNode"): "step_mode",
    **{("snntorch", name): "s" for name in
       ("Leaky", "Synaptic", "Lapicque", "Alpha", "RLeaky", "RSynaptic", "SLSTM", "SConv2dLSTM")},
    ("norse.torch.module.snn", "SNNCell"): "s",
    ("norse.torch.module.snn", "SNNRecurrentCell"): "s",
    ("norse.torch.module.snn", "SNN"): "m",
    ("norse.torch.module.snn", "SNNRecurrent"): "m",
    ("norse.torch", "LICell"): None,
    ("norse.torch", "LI"): None,
    ("norse.torch", "LIBoxCell"): None,
}


def _loaded_classes() -> dict[type, str | None]:
    """The classes of :data:`SPIKING_NEURONS` whose library is loaded, with their step rule."""
    out = {}
    for (path, name), rule in SPIKING_NEURONS.items():
        if path.partition(".")[0] not in sys.modules:
            continue  # a model built from this library would have loaded it
        try:
            cls = getattr(importlib.import_module(path), name)
        except (ImportError, AttributeError):  # another version of the library
            continue
        out[cls] = rule
    return out


def neuron_steps(module: nn.Module, classes: dict[type, str | None] | None = None) -> str | None:
    """How ``module`` steps through time if it is a spiking neuron of :data:`SPIKING_NEURONS`.

    Args:
        module: any module.
        classes: the table's loaded classes (looked up when None).

    Returns:
        "s" (one step per call), "m" (``[T, N, ...]`` per call), or None if it is not a neuron.

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> neuron_steps(neuron.LIFNode(step_mode="m")), neuron_steps(torch.nn.ReLU())
        ('m', None)
    """
    classes = _loaded_classes() if classes is None else classes
    for cls in type(module).__mro__:
        if cls in classes:
            rule = classes[cls]
            if rule == "step_mode":
                return "m" if getattr(module, "step_mode", "s") == "m" else "s"
            return rule
    return None


def spiking_neurons(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Every spiking neuron layer of ``model`` (see the table).

    Args:
        model: any module.

    Returns:
        ``(name, module, "s" | "m")`` per neuron layer, in ``named_modules()`` order.

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> [(n, s) for n, _, s in spiking_neurons(nn.Sequential(nn.Linear(2, 2), neuron.IFNode()))]
        [('1', 's')]
    """
    classes = _loaded_classes()
    found = []
    for name, module in model.named_modules():
        steps = neuron_steps(module, classes)
        if steps is not None:
            found.append((name, module, steps))
    return found


def is_spiking(model: nn.Module) -> bool:
    """True if ``model`` contains a spiking neuron layer of SpikingJelly, snnTorch or Norse.

    Example::

        >>> is_spiking(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
        False
    """
    return bool(spiking_neurons(model))


@dataclass
class NeuronFiring:
    """Spikes of one spiking neuron layer, per time step.

    ``spikes[t]`` is the number of spikes (the sum of the layer's output) at step ``t`` over the
    whole batch, ``neurons[t]`` the number of neurons at that step (batch included), ``batch``
    the number of samples each step had (None for an unbatched output).
    """

    name: str
    spikes: list[float] = field(default_factory=list)
    neurons: list[int] = field(default_factory=list)
    batch: int | None = None

    @property
    def T(self) -> int:
        """Number of time steps seen."""
        return len(self.spikes)

    @property
    def total_spikes(self) -> float:
        return float(sum(self.spikes))

    @property
    def rate(self) -> float:
        """Mean spikes per neuron per time step."""
        return self.total_spikes / max(sum(self.neurons), 1)

    @property
    def per_step(self) -> list[float]:
        """Firing rate at each time step."""
        return [s / max(n, 1) for s, n in zip(self.spikes, self.neurons)]


@dataclass
class FiringReport:
    """Firing of every spiking neuron layer (``layers``, by module name, in call order).

    ``report[name]`` is that layer's rate; ``rates`` all of them; ``mean`` the rate over every
    neuron of every layer (spikes / neuron-steps), None when no spiking neuron was seen; ``T``
    the most time steps a layer saw and ``batch_size`` the samples per step most layers saw
    (None without neurons): the time and batch evidence :func:`~snnprune.metrics.ops.count_ops`
    uses.
    """

    layers: dict[str, NeuronFiring] = field(default_factory=dict)

    def __getitem__(self, name: str) -> float:
        return self.layers[name].rate

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def rates(self) -> dict[str, float]:
        return {name: f.rate for name, f in self.layers.items()}

    @property
    def mean(self) -> float | None:
        spikes = sum(f.total_spikes for f in self.layers.values())
        neurons = sum(sum(f.neurons) for f in self.layers.values())
        return spikes / neurons if neurons else None

    @property
    def total_spikes(self) -> float:
        return float(sum(f.total_spikes for f in self.layers.values()))

    @property
    def T(self) -> int | None:
        return max((f.T for f in self.layers.values()), default=None)

    @property
    def batch_size(self) -> int | None:
        batches = Counter(f.batch for f in self.layers.values() if f.batch is not None)
        return batches.most_common(1)[0][0] if batches else None

    def __str__(self) -> str:
        if self.mean is None:
            return "no spiking neuron seen (firing rate None)"
        return f"firing rate {self.mean:.4f} spikes/neuron/step over {len(self.layers)} neuron layers"


def spikes_of(out: Any) -> torch.Tensor | None:
    """The spikes in a neuron's output: the output itself, or the first element of a tuple
    (snnTorch's ``spk, mem``, Norse's ``spikes, state``); None when there is no tensor.

    Example::

        >>> spikes_of((torch.ones(2), "state"))
        tensor([1., 1.])
    """
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return out if torch.is_tensor(out) else None


class FiringRecorder:
    """Context manager recording the spikes of every spiking neuron layer of ``model`` (forward
    hooks on the layers of :data:`SPIKING_NEURONS`).

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> net = neuron.IFNode()                           # single-step: each call is one step
        >>> with FiringRecorder(net) as rec:
        ...     _ = net(torch.tensor([[0.6, 0.0]])); _ = net(torch.tensor([[0.6, 0.0]]))
        >>> rec.report.layers[""].per_step, rec.report.layers[""].batch
        ([0.0, 0.5], 1)
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.report = FiringReport()
        self._handles: list[Any] = []

    def _hook(self, name: str, steps: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            out = spikes_of(out)
            if out is None:
                return
            rec = self.report.layers.get(name)
            if rec is None:
                rec = self.report.layers[name] = NeuronFiring(name)
            out = out.detach()
            if steps != "m" or out.dim() == 0:
                out = out.unsqueeze(0)  # a single-step call: one time step
            if out.dim() > 2 or (out.dim() == 2 and steps == "m"):
                rec.batch = out.shape[1]
            per_step = out[0].numel()
            # float32 sums of 0/1 spikes are exact below 2**24 neurons (and cheaper than float64)
            exact = out.dtype == torch.float64 or (out.dtype == torch.float32 and per_step < 2**24)
            counts = out.reshape(out.shape[0], -1).sum(1, dtype=None if exact else torch.float64).tolist()
            rec.spikes.extend(counts)
            rec.neurons.extend([per_step] * len(counts))

        return hook

    def __enter__(self) -> Self:
        for name, module, steps in spiking_neurons(self.model):
            self._handles.append(module.register_forward_hook(self._hook(name, steps)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _reset_state(model: nn.Module) -> None:
    if any(isinstance(m, base.MemoryModule) for m in model.modules()):
        functional.reset_collected_modules(functional.collect_reset_modules(model))
    for _, module, _ in spiking_neurons(model):
        if not isinstance(module, base.MemoryModule) and callable(getattr(module, "reset_mem", None)):
            module.reset_mem()  # snnTorch's hidden state (init_hidden=True keeps it between calls)


@contextlib.contextmanager
def measuring_forward(model: nn.Module, eval_mode: bool = True, reset: bool = True) -> Iterator[None]:
    """The setting of a measuring forward: no autograd, parametrized weights computed once
    (``parametrize.cached``), ``eval()`` for the duration if ``eval_mode`` (the training flags of
    every module are restored after), neuron states (SpikingJelly's, snnTorch's hidden state)
    reset before and after if ``reset``."""
    flags = [(m, m.training) for m in model.modules()]
    if eval_mode:
        model.eval()
    if reset:
        _reset_state(model)
    try:
        with torch.no_grad(), parametrize.cached():
            yield
    finally:
        if reset:
            _reset_state(model)
        for m, training in flags:
            m.training = training


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(*inputs)`` for a tuple/list, ``model(**inputs)`` for a dict, else ``model(inputs)``."""
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def firing_rates(model: nn.Module, inputs: Any, *, eval_mode: bool = True, reset: bool = True) -> FiringReport:
    """Run ``model`` on ``inputs`` once and return the firing of every spiking neuron layer.

    Args:
        model: any ``nn.Module``; its spiking neuron layers are those of :data:`SPIKING_NEURONS`
            (SpikingJelly, snnTorch, Norse).
        inputs: what the model takes: ``model(inputs)`` (a tuple/list is unpacked, a dict passed
            as keywords).
        eval_mode: run in eval mode (training flags restored after).
        reset: reset neuron states before and after the forward.

    Returns:
        :class:`FiringReport`: ``report[name]`` a layer's rate, ``.rates``, ``.mean`` (None
        without neurons), ``.layers[name].per_step``, ``.T``, ``.batch_size``.

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> firing_rates(neuron.IFNode(v_threshold=0.5), torch.tensor([[1.0, 0.0]])).mean
        0.5
    """
    with measuring_forward(model, eval_mode, reset), FiringRecorder(model) as rec:
        call_model(model, inputs)
    return rec.report
