"""The spiking neurons the model zoo builds with: IF, LIF and PLIF, all with ATan surrogate gradients.

Every SNN in :mod:`snnprune.models` takes a ``neuron=`` keyword naming one of these. The defaults
follow the papers: IF for the ImageNet SEW-ResNets (Fang et al., "Deep Residual Learning in Spiking
Neural Networks", NeurIPS 2021, ImageNet experiments) and PLIF for their DVS nets (same paper; PLIF from
Fang et al., "Incorporating Learnable Membrane Time Constant to Enhance Learning of Spiking Neural
Networks", ICCV 2021). All use the arctangent surrogate (``surrogate.ATan()``) and a detached reset,
as in both papers' code.
"""

from __future__ import annotations

from typing import Any

from spikingjelly.activation_based import neuron, surrogate

from .._validation import resolve_name

__all__ = ["NEURONS", "neuron_spec", "make_neuron"]

#: neuron name -> (SpikingJelly class, the keyword arguments specific to it)
NEURONS: dict[str, tuple[type[neuron.BaseNode], dict[str, Any]]] = {
    "if": (neuron.IFNode, {}),
    "lif": (neuron.LIFNode, {"tau": 2.0}),
    "plif": (neuron.ParametricLIFNode, {"init_tau": 2.0}),
}


def neuron_spec(kind: str) -> tuple[type[neuron.BaseNode], dict[str, Any]]:
    """Return ``(neuron class, keyword arguments)`` for ``kind`` in ``NEURONS``.

    This is the form SpikingJelly's model builders take (``spiking_neuron=cls, **kwargs``).

    Args:
        kind: ``"if"``, ``"lif"`` or ``"plif"`` (any case).

    Returns:
        The neuron class and its keyword arguments (ATan surrogate, ``detach_reset=True``, and
        the kind's own, e.g. ``tau`` for LIF).

    Example:
        >>> cls, kwargs = neuron_spec("lif")
        >>> cls.__name__, kwargs["tau"], kwargs["detach_reset"]
        ('LIFNode', 2.0, True)
    """
    cls, extra = NEURONS[resolve_name("neuron", kind, NEURONS)]  # "LIF", "Lif" and "lif" alike
    return cls, {"surrogate_function": surrogate.ATan(), "detach_reset": True, **extra}


def make_neuron(kind: str) -> neuron.BaseNode:
    """Build one spiking-neuron layer of ``kind`` (single-step; the wrapper sets multi-step).

    Args:
        kind: ``"if"``, ``"lif"`` or ``"plif"`` (any case), as for :func:`neuron_spec`.

    Returns:
        A new SpikingJelly neuron module.

    Example:
        >>> type(make_neuron("plif")).__name__
        'ParametricLIFNode'
    """
    cls, kwargs = neuron_spec(kind)
    return cls(**kwargs)
