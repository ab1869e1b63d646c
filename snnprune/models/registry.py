"""The model registry: every network snnprune trains is built by name with ``create_model``.

Each entry records what a caller needs to feed it: whether it is spiking, the default per-sample
input shape ``(C, H, W)``, and whether that input is event frames (a batch ``[T, N, C, H, W]``)
rather than static images (``[N, C, H, W]``). Registering a spiking model also registers its ANN
twin as ``<name>_ann`` (see :mod:`snnprune.models.twin`), also reachable as
``create_model(name, twin=True)``.

Names are compared case-insensitively with ``-`` and ``_`` alike (``"SEW-Digits"`` is
``"sew_digits"``), as are the string options of the builders (``neuron``, ``cnf``, ``encoder``,
``shortcut``). ``create_model`` checks the common size keywords (``num_classes``, ``in_channels``,
``T``, ``input_size``: integers >= 1) before building, so a bad value fails with one ValueError
naming it rather than somewhere inside a forward pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .._validation import check_positive_int, normalise_name
from .twin import ann_twin

__all__ = ["ModelEntry", "register_model", "unregister_model", "create_model", "list_models", "model_entry"]

TWIN_SUFFIX = "_ann"
#: builder keywords that must be integers >= 1 wherever a builder takes them
POSITIVE_INT_KWARGS = ("num_classes", "in_channels", "T", "input_size")


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model.

    Attributes:
        name: the registered name.
        builder: ``builder(**kwargs) -> nn.Module``.
        spiking: True for a ``SpikingNet``; False for ANNs, including twins.
        input_shape: default per-sample input ``(C, H, W)``.
        events: True if the natural input is event frames ``[T, N, C, H, W]``.
        twin_of: for an ANN twin, the name of its SNN; else None.
    """

    name: str
    builder: Callable[..., nn.Module]
    spiking: bool
    input_shape: tuple[int, int, int]
    events: bool = False
    twin_of: str | None = None

    @property
    def summary(self) -> str:
        """One line saying what the model is (the first line of its builder's docstring)."""
        if self.twin_of is not None:
            return f"ANN twin of {self.twin_of} (spiking neurons -> ReLU)"
        doc = (self.builder.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, ModelEntry] = {}


def _add(entry: ModelEntry) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"a model named {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def register_model(
    name: str | None = None,
    *,
    spiking: bool,
    input_shape: tuple[int, int, int],
    events: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model builder under ``name`` (default: the function's name).

    A spiking builder must return a ``SpikingNet``; its ANN twin is registered as ``<name>_ann``.

    Args:
        name: the registered name (case-insensitive, ``-`` and ``_`` alike); default the builder's
            ``__name__``. A name already registered raises ValueError.
        spiking: True if the builder returns a ``SpikingNet`` (its ANN twin is registered too).
        input_shape: the default per-sample input ``(C, H, W)``.
        events: True if the natural input is event frames ``[T, N, C, H, W]``.

    Returns:
        The decorator; it returns the builder unchanged.

    Example:
        >>> @register_model("tiny_mlp_example", spiking=False, input_shape=(1, 4, 4))
        ... def tiny_mlp(num_classes: int = 10) -> nn.Module:
        ...     "A two-layer perceptron."
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))
        >>> create_model("tiny_mlp_example", num_classes=3)[1].out_features
        3
        >>> unregister_model("tiny_mlp_example")
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        entry_name = normalise_name(name or builder.__name__)
        _add(ModelEntry(entry_name, builder, spiking, tuple(input_shape), events))
        if spiking:

            def twin_builder(**kwargs) -> nn.Module:
                return ann_twin(builder(**kwargs))

            _add(ModelEntry(entry_name + TWIN_SUFFIX, twin_builder, False, tuple(input_shape), events, entry_name))
        return builder

    return decorate


def unregister_model(name: str) -> None:
    """Remove ``name`` (and its ANN twin, if any) from the registry, e.g. to re-register it.

    Args:
        name: a registered model (not a twin: unregister its SNN instead).

    Example:
        >>> register_model("scratch_example", spiking=False, input_shape=(1, 1, 1))(nn.Identity) and None
        >>> unregister_model("scratch_example"); "scratch_example" in list_models()
        False
    """
    entry = model_entry(name)
    if entry.twin_of is not None:
        raise ValueError(f"{name!r} is the twin of {entry.twin_of!r}: unregister that instead")
    del _REGISTRY[entry.name]
    _REGISTRY.pop(entry.name + TWIN_SUFFIX, None)


def model_entry(name: str) -> ModelEntry:
    """Return the ``ModelEntry`` of ``name`` (any case, ``-`` or ``_``); an unknown name raises
    ValueError with suggestions.

    Args:
        name: a registered model name.

    Returns:
        Its :class:`ModelEntry`.

    Example:
        >>> model_entry("SEW-Gesture").name, model_entry("sew_gesture").events
        ('sew_gesture', True)
    """
    key = normalise_name(name)
    try:
        return _REGISTRY[key]
    except KeyError:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}") from None


def create_model(name: str, *, twin: bool = False, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with ``kwargs`` (e.g. ``num_classes``, ``T``).

    ``twin=True`` builds the ANN twin of a spiking model (the same as ``create_model(name + "_ann")``).

    Args:
        name: a registered model (:func:`list_models`), any case, ``-`` or ``_``.
        twin: build the ANN twin of a spiking model instead.
        **kwargs: the builder's keyword arguments; ``num_classes``, ``in_channels``, ``T`` and
            ``input_size`` must be integers >= 1.

    Returns:
        The model, with freshly initialised weights (nothing is downloaded).

    Raises:
        ValueError: an unknown name (with the closest names), a bad size keyword, or
            ``twin=True`` for an ANN.

    Example:
        >>> import torch
        >>> net = create_model("sew_digits", T=2)
        >>> net(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 10])
        >>> create_model("sew_digits", T=2.5)
        Traceback (most recent call last):
        ...
        ValueError: T must be an integer >= 1, got 2.5
        >>> create_model("sew_resnet19")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown model 'sew_resnet19'. Did you mean 'sew_resnet18'...
    """
    entry = model_entry(name)
    if twin:
        if not entry.spiking:
            raise ValueError(f"{name!r} is not a spiking model, so it has no ANN twin")
        entry = model_entry(entry.name + TWIN_SUFFIX)
    for key in POSITIVE_INT_KWARGS:
        if key in kwargs:
            kwargs[key] = check_positive_int(key, kwargs[key])
    return entry.builder(**kwargs)


def list_models(spiking: bool | None = None) -> list[str]:
    """Sorted names of the registered models; ``spiking=True/False`` keeps SNNs / ANNs only.

    Args:
        spiking: None for every model, True for the SNNs, False for the ANNs (twins included).

    Returns:
        The names, sorted.

    Example:
        >>> "sew_resnet18" in list_models(spiking=True), "sew_resnet18_ann" in list_models(spiking=False)
        (True, True)
    """
    return sorted(n for n, e in _REGISTRY.items() if spiking is None or e.spiking == spiking)
