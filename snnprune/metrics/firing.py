"""Firing rates of the spiking neuron layers of a model, measured on one batch.

The firing rate of a layer is its **mean number of spikes per neuron per time step**: all spikes the
layer emitted during the forward, divided by (neurons x time steps), where "neurons" counts every
sample of the batch (``N x C x H x W`` for a conv feature map). A spiking neuron layer is any
SpikingJelly ``neuron.BaseNode`` (IF, LIF, PLIF, ...). Time steps follow the layer's step mode:
in multi-step mode (``step_mode="m"``) the first dimension of the output is T; in single-step mode
every call is one time step (a network driven by a Python loop over T).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from spikingjelly.activation_based import neuron, functional
    >>> net = nn.Sequential(nn.Identity(), neuron.IFNode(v_threshold=1.0, step_mode="m"))
    >>> x = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])   # [T=2, N=1, 2 neurons]
    >>> rates = firing_rates(net, x)
    >>> rates["1"], rates.layers["1"].per_step
    (0.25, [0.5, 0.0])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import torch
from spikingjelly.activation_based import base, functional, neuron
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["FiringRecorder", "FiringReport", "NeuronFiring", "firing_rates", "is_spiking"]


@dataclass
class NeuronFiring:
    """Spikes of one spiking neuron layer, per time step.

    ``spikes[t]`` is the number of spikes (the sum of the layer's output) at step ``t`` over the
    whole batch, ``neurons[t]`` the number of neurons at that step (batch included).
    """

    name: str
    spikes: list[float] = field(default_factory=list)
    neurons: list[int] = field(default_factory=list)

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
    neuron of every layer (spikes / neuron-steps).
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
    def mean(self) -> float:
        spikes = sum(f.total_spikes for f in self.layers.values())
        neurons = sum(sum(f.neurons) for f in self.layers.values())
        return spikes / neurons if neurons else 0.0

    @property
    def total_spikes(self) -> float:
        return float(sum(f.total_spikes for f in self.layers.values()))

    def __str__(self) -> str:
        return f"firing rate {self.mean:.4f} spikes/neuron/step over {len(self.layers)} neuron layers"


def is_spiking(model: nn.Module) -> bool:
    """True if ``model`` contains a SpikingJelly spiking neuron layer."""
    return any(isinstance(m, neuron.BaseNode) for m in model.modules())


class FiringRecorder:
    """Context manager recording the spikes of every ``neuron.BaseNode`` of ``model`` (forward hooks).

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> net = neuron.IFNode()                           # single-step: each call is one step
        >>> with FiringRecorder(net) as rec:
        ...     _ = net(torch.tensor([0.6, 0.0])); _ = net(torch.tensor([0.6, 0.0]))
        >>> rec.report.layers[""].per_step
        [0.0, 0.5]
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.report = FiringReport()
        self._handles: list[Any] = []

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if not torch.is_tensor(out):
                return
            rec = self.report.layers.get(name)
            if rec is None:
                rec = self.report.layers[name] = NeuronFiring(name)
            out = out.detach()
            if getattr(module, "step_mode", "s") != "m" or out.dim() == 0:
                out = out.unsqueeze(0)  # a single-step call: one time step
            per_step = out[0].numel()
            # float32 sums of 0/1 spikes are exact below 2**24 neurons (and cheaper than float64)
            exact = out.dtype == torch.float64 or (out.dtype == torch.float32 and per_step < 2**24)
            steps = out.reshape(out.shape[0], -1).sum(1, dtype=None if exact else torch.float64).tolist()
            rec.spikes.extend(steps)
            rec.neurons.extend([per_step] * len(steps))

        return hook

    def __enter__(self) -> Self:
        for name, module in self.model.named_modules():
            if isinstance(module, neuron.BaseNode):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _reset_state(model: nn.Module) -> None:
    if any(isinstance(m, base.MemoryModule) for m in model.modules()):
        functional.reset_collected_modules(functional.collect_reset_modules(model))


@contextlib.contextmanager
def measuring_forward(model: nn.Module, eval_mode: bool = True, reset: bool = True) -> Iterator[None]:
    """The setting of a measuring forward: no autograd, parametrized weights computed once
    (``parametrize.cached``), ``eval()`` for the duration if ``eval_mode`` (the training flags of
    every module are restored after), SpikingJelly state reset before and after if ``reset``."""
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

    The forward runs without autograd, in eval mode unless ``eval_mode=False`` (training flags are
    restored after), with the SpikingJelly neuron states reset before and after unless
    ``reset=False``. ``inputs`` is passed as ``model(inputs)`` (a tuple/list is unpacked).
    """
    with measuring_forward(model, eval_mode, reset), FiringRecorder(model) as rec:
        call_model(model, inputs)
    return rec.report
