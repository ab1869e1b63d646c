"""Activity sparsity: a differentiable penalty on the firing rate of spiking neuron layers.

A spiking net's synaptic operations are spikes times the synapses they reach
(:mod:`snnprune.metrics.ops`): pruning weights shrinks the second factor only. The
:class:`ActivityRegularizer` shrinks the first: added to the loss, it penalises the mean firing
rate of every chosen spiking neuron layer,

    penalty = sum over layers l of  coef_l * max(rate_l - target_rate, 0)

where ``rate_l`` is the layer's spikes per neuron per time step over the forwards since the last
penalty (the definition of :mod:`snnprune.metrics.firing`). A surrogate-gradient neuron
(SpikingJelly, snnTorch, Norse) emits spikes whose backward is the surrogate's, so the rate, and
the penalty, carry a gradient to the weights and thresholds upstream of each layer. Which modules
are spiking neurons is the table :data:`snnprune.metrics.SPIKING_NEURONS`.

The penalty is an L1 term on the rate (as snnTorch's ``functional.reg.l1_rate_sparsity``, per layer
and with a floor): below ``target_rate`` a layer costs nothing.

Through the :class:`~snnprune.Pruner`: ``Pruner(..., activity=1e-2)`` (every neuron layer) or
``activity={"body.features.4.*": 1e-2}`` (name globs, the first that matches a layer wins); the
penalty is part of :meth:`~snnprune.Pruner.regularization`. In a recipe: ``pruning.activity``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from spikingjelly.activation_based import neuron, surrogate
    >>> net = nn.Sequential(nn.Linear(4, 8), neuron.IFNode(v_threshold=0.5, surrogate_function=surrogate.ATan()))
    >>> reg = ActivityRegularizer(net, coef=0.1)
    >>> out = net(torch.ones(2, 4))
    >>> penalty = reg.penalty()            # 0.1 x the rate of layer "1"
    >>> penalty.requires_grad, round(float(penalty.detach()), 6) == round(0.1 * reg.last_rates["1"], 6)
    (True, True)
"""

from __future__ import annotations

import fnmatch
import math
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .metrics.firing import spikes_of, spiking_neurons

__all__ = ["ActivityRegularizer"]


def _coefs(names: list[str], coef: float | Mapping[str, float]) -> dict[str, float]:
    """The coefficient of each neuron layer: one for all, or the first glob of ``coef`` that
    matches the layer's name (layers no glob matches are not penalised)."""
    def check(value, where: str) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"activity coefficient{where} must be a number >= 0, got {value!r}") from None
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"activity coefficient{where} must be a finite number >= 0, got {value}")
        return value

    if not isinstance(coef, Mapping):
        value = check(coef, "")
        return dict.fromkeys(names, value)
    globs = {str(g): check(v, f" of {g!r}") for g, v in coef.items()}
    unused = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if unused:
        raise ValueError(f"activity: no spiking neuron layer matches {unused[0]!r}; the neuron layers are "
                         f"{', '.join(repr(n) for n in names[:6])}{' ...' if len(names) > 6 else ''}")
    out = {}
    for name in names:
        glob = next((g for g in globs if fnmatch.fnmatchcase(name, g)), None)
        if glob is not None:
            out[name] = globs[glob]
    return out


class ActivityRegularizer:
    """A firing-rate penalty on the spiking neuron layers of ``model`` (forward hooks).

    The hooks record the spikes of every forward run with gradients enabled (evaluation under
    ``torch.no_grad()`` is not recorded); :meth:`penalty` turns what was recorded since its last
    call into the penalty and starts afresh, so call it once per training step, after the forward
    (``loss = task_loss + reg.penalty()``).

    Args:
        model: a model holding spiking neurons of :data:`snnprune.metrics.SPIKING_NEURONS`.
        coef: the penalty's coefficient: one number for every chosen layer, or ``{name glob:
            coefficient}`` (the first glob that matches a layer's name gives its coefficient;
            layers no glob matches are not penalised).
        target_rate: the rate below which a layer costs nothing (spikes per neuron per step).
        layers: name globs of the neuron layers to penalise (None: all).

    Raises:
        ValueError: no spiking neuron layer in ``model`` (or none chosen), a negative or
            non-finite coefficient, a glob matching no neuron layer, a target outside [0, 1].

    Example::

        >>> from spikingjelly.activation_based import neuron
        >>> net = nn.Sequential(nn.Linear(2, 2), neuron.IFNode(), nn.Linear(2, 2), neuron.IFNode())
        >>> ActivityRegularizer(net, {"1": 0.5, "*": 0.1}).coefs
        {'1': 0.5, '3': 0.1}
    """

    def __init__(self, model: nn.Module, coef: float | Mapping[str, float], target_rate: float = 0.0,
                 layers: str | list[str] | None = None) -> None:
        neurons = spiking_neurons(model)
        if not neurons:
            raise ValueError(f"activity: {type(model).__name__} holds no spiking neuron layer (SpikingJelly, snnTorch, "
                             "Norse) whose firing rate could be penalised")
        globs = [layers] if isinstance(layers, str) else layers
        chosen = [(n, m) for n, m, _ in neurons if globs is None or any(fnmatch.fnmatchcase(n, g) for g in globs)]
        if not chosen:
            raise ValueError(f"activity: layers={layers!r} matches no spiking neuron layer")
        target_rate = float(target_rate)
        if not 0.0 <= target_rate <= 1.0:
            raise ValueError(f"activity: target_rate must be in [0, 1] (spikes per neuron per step), got {target_rate}")
        #: the coefficient of each penalised neuron layer
        self.coefs = {n: c for n, c in _coefs([n for n, _ in chosen], coef).items() if c > 0}
        self.target_rate = target_rate
        #: the rates (floats) the last :meth:`penalty` was computed from
        self.last_rates: dict[str, float] = {}
        self._spikes: dict[str, list[torch.Tensor]] = {}
        self._neurons: dict[str, int] = {}
        self._epoch = {"penalty": 0.0, "steps": 0, "spikes": {}, "neurons": {}}
        me = weakref.ref(self)  # the hooks do not keep a dropped regulariser (and its Pruner) alive
        handles = [m.register_forward_hook(_hook(me, n)) for n, m in chosen if n in self.coefs]
        self._remove = weakref.finalize(self, _remove_all, handles)

    def _record(self, name: str, out: Any) -> None:
        spikes = spikes_of(out)
        if spikes is None or not torch.is_grad_enabled():
            return
        self._spikes.setdefault(name, []).append(spikes.float().sum())
        self._neurons[name] = self._neurons.get(name, 0) + spikes.numel()

    def penalty(self) -> torch.Tensor:
        """The penalty of the forwards since the last call (0 when none was recorded).

        Returns:
            A scalar tensor: ``sum_l coef_l * max(rate_l - target_rate, 0)``, differentiable
            through the neurons' surrogate gradients.
        """
        terms, rates = [], {}
        for name, sums in self._spikes.items():
            spikes = torch.stack(sums).sum()
            rate = spikes / self._neurons[name]
            rates[name] = float(rate.detach())
            terms.append(self.coefs[name] * torch.clamp(rate - self.target_rate, min=0))
            epoch = self._epoch
            epoch["spikes"][name] = epoch["spikes"].get(name, 0.0) + float(spikes.detach())
            epoch["neurons"][name] = epoch["neurons"].get(name, 0) + self._neurons[name]
        self._spikes.clear()
        self._neurons.clear()
        self.last_rates = rates
        if not terms:
            return torch.zeros(())
        total = torch.stack(terms).sum()
        self._epoch["penalty"] += float(total.detach())
        self._epoch["steps"] += 1
        return total

    def metrics(self) -> dict[str, Any]:
        """What the penalties since the last call measured, for a log line; starts afresh.

        Returns:
            ``activity_penalty`` (the mean penalty per call of :meth:`penalty`) and
            ``activity_rates`` (``{layer: spikes per neuron per step}`` over the same forwards);
            ``{}`` when nothing was recorded.
        """
        epoch, self._epoch = self._epoch, {"penalty": 0.0, "steps": 0, "spikes": {}, "neurons": {}}
        if not epoch["steps"]:
            return {}
        return {"activity_penalty": epoch["penalty"] / epoch["steps"],
                "activity_rates": {n: s / max(epoch["neurons"][n], 1) for n, s in epoch["spikes"].items()}}

    def remove(self) -> None:
        """Take the hooks off the model (a finalized model records nothing)."""
        self._remove()
        self._spikes.clear()
        self._neurons.clear()

    def __repr__(self) -> str:
        return f"ActivityRegularizer(layers={len(self.coefs)}, target_rate={self.target_rate})"


def _hook(ref: weakref.ref, name: str):
    def hook(module: nn.Module, args: Any, out: Any) -> None:
        reg = ref()
        if reg is not None:
            reg._record(name, out)

    return hook


def _remove_all(handles: list) -> None:
    for h in handles:
        h.remove()
