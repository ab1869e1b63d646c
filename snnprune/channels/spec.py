"""``ChannelSpec``: which channels of which layers a channel-pruned model kept, as plain data.

A channel-pruned model no longer matches the architecture its builder makes, so its
``state_dict`` alone cannot be loaded. The spec closes that gap: it records, for every layer whose
shape changed, the original indices of the channels it kept along each pruned dimension (``"out"``:
conv filters / BN channels / linear outputs; ``"in"``: conv / linear inputs), plus the final shape
of each of the layer's tensors. ``spec.apply(model)`` re-slices a freshly built model by those
indices with Torch-Pruning's per-layer pruning functions (no tracing, no batch-norm scales
needed), after which the pruned ``state_dict`` loads with ``strict=True``.

``spec.to_state()`` holds only str / int / lists, so a checkpoint containing it loads with
``torch.load(path, weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch_pruning import ops
from torch_pruning.pruner import function as tp_function

from ..models.cifar_resnet import PadShortcut

__all__ = ["ChannelSpec", "layer_pruner", "CUSTOM_PRUNERS"]

_FORMAT = 1
DIMS = ("out", "in")


class _PadShortcutPruner(tp_function.BasePruningFunc):
    """An option-A shortcut as a layer of its own: its inputs belong to the channel group before it,
    its outputs to the group after it (Torch-Pruning would otherwise take the channel padding for
    an element-wise op and couple a 16-channel stream to a 32-channel one index by index)."""

    TARGET_MODULES = (PadShortcut,)

    def prune_out_channels(self, layer: PadShortcut, idxs) -> PadShortcut:
        layer.prune_outputs(idxs)
        return layer

    def prune_in_channels(self, layer: PadShortcut, idxs) -> PadShortcut:
        layer.prune_inputs(idxs)
        return layer

    def get_out_channels(self, layer: PadShortcut) -> int:
        return len(layer.sources)

    def get_in_channels(self, layer: PadShortcut) -> int:
        return layer.in_channels


#: layer type -> its channel pruning functions, for the layers Torch-Pruning does not know
CUSTOM_PRUNERS = {PadShortcut: _PadShortcutPruner()}


def layer_pruner(module: nn.Module):
    """Torch-Pruning's per-layer pruning functions for ``module`` (conv, depthwise conv, BN, linear, ...)."""
    pruner = CUSTOM_PRUNERS.get(type(module)) or tp_function.PrunerBox.get(ops.module2type(module))
    if pruner is None:
        raise TypeError(f"Torch-Pruning has no channel pruning function for {type(module).__name__}")
    return pruner


@dataclass
class ChannelSpec:
    """The kept channels of a channel-pruned model, by layer name (as in ``model.named_modules()``).

    Attributes:
        layers: ``name -> {"out": kept original indices, "in": ...}`` (only the pruned dimensions).
        sizes: ``name -> {"out": original size, "in": ...}`` for the same dimensions.
        shapes: ``"<layer>.<tensor>" -> final shape`` of every parameter and buffer of those layers.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
        >>> spec = ChannelSpec(layers={"0": {"out": [0, 2]}, "1": {"out": [0, 2]}, "2": {"in": [0, 2]}},
        ...                    sizes={"0": {"out": 4}, "1": {"out": 4}, "2": {"in": 4}})
        >>> spec.apply(net)[2].weight.shape
        torch.Size([2, 2, 1, 1])
        >>> ChannelSpec.from_state(spec.to_state()) == spec
        True
    """

    layers: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)

    # -- queries ---------------------------------------------------------------------------------
    def kept(self, name: str, dim: str = "out") -> list[int] | None:
        """Kept original indices of layer ``name`` along ``dim`` ("out"/"in"), or None if not pruned."""
        return self.layers.get(name, {}).get(dim)

    def removed(self, name: str, dim: str = "out") -> list[int]:
        """Removed original indices of layer ``name`` along ``dim`` (empty if not pruned)."""
        kept = self.kept(name, dim)
        if kept is None:
            return []
        keep = set(kept)
        return [i for i in range(self.sizes[name][dim]) if i not in keep]

    def widths(self) -> dict[str, tuple[int, int]]:
        """``name -> (kept, original)`` output widths of every layer whose outputs were pruned."""
        return {n: (len(d["out"]), self.sizes[n]["out"]) for n, d in self.layers.items() if "out" in d}

    def __len__(self) -> int:
        return len(self.layers)

    def then(self, later: ChannelSpec) -> ChannelSpec:
        """The one spec equal to applying ``self`` and then ``later`` (a second cut of the pruned model).

        Example:
            >>> a = ChannelSpec({"c": {"out": [0, 2, 3]}}, {"c": {"out": 4}})
            >>> b = ChannelSpec({"c": {"out": [1, 2]}, "d": {"in": [0]}}, {"c": {"out": 3}, "d": {"in": 2}})
            >>> a.then(b).layers
            {'c': {'out': [2, 3]}, 'd': {'in': [0]}}
        """
        layers = {n: dict(d) for n, d in self.layers.items()}
        sizes = {n: dict(d) for n, d in self.sizes.items()}
        for name, dims in later.layers.items():
            for dim, kept in dims.items():
                first = self.kept(name, dim)
                layers.setdefault(name, {})[dim] = kept if first is None else [first[i] for i in kept]
                sizes.setdefault(name, {}).setdefault(dim, later.sizes[name][dim])
        shapes = {**self.shapes, **later.shapes}
        return ChannelSpec({n: {d: layers[n][d] for d in DIMS if d in layers[n]} for n in layers}, sizes, shapes)

    # -- (de)serialisation -----------------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain data (str, int, lists) for a checkpoint; inverse of :meth:`from_state`."""
        return {
            "format": _FORMAT,
            "layers": {n: {d: [int(i) for i in idx] for d, idx in dims.items()} for n, dims in self.layers.items()},
            "sizes": {n: {d: int(s) for d, s in dims.items()} for n, dims in self.sizes.items()},
            "shapes": {k: [int(s) for s in v] for k, v in self.shapes.items()},
        }

    @classmethod
    def from_state(cls, state: dict) -> ChannelSpec:
        """Rebuild a spec from :meth:`to_state` output (e.g. read back with ``weights_only=True``)."""
        if state.get("format") != _FORMAT:
            raise ValueError(f"unknown ChannelSpec format {state.get('format')!r} (this version reads {_FORMAT})")
        return cls(
            layers={n: {d: [int(i) for i in idx] for d, idx in dims.items()} for n, dims in state["layers"].items()},
            sizes={n: {d: int(s) for d, s in dims.items()} for n, dims in state["sizes"].items()},
            shapes={k: [int(s) for s in v] for k, v in state["shapes"].items()},
        )

    # -- rebuilding ------------------------------------------------------------------------------
    def apply(self, model: nn.Module) -> nn.Module:
        """Shrink a freshly built ``model`` (same builder and arguments) to this spec, in place.

        Every recorded layer is cut to its kept indices along each recorded dimension by
        Torch-Pruning's function for its type (``prune_conv_out_channels``, ...; a depthwise conv's
        "out" also cuts its inputs and groups). The values that stay are the fresh model's own:
        load the pruned ``state_dict`` afterwards. Returns ``model``. Raises if the model does not
        have the original sizes, or if a tensor's shape then differs from the recorded one.
        Build an optimizer only after this: pruned layers get new ``nn.Parameter`` objects.
        """
        modules = dict(model.named_modules())
        for name, dims in self.layers.items():
            if name not in modules:
                raise KeyError(f"the model has no layer {name!r} (a spec applies to the model it was made on, "
                               "e.g. the SpikingNet, not its .body)")
            module = modules[name]
            pruner = layer_pruner(module)
            for dim in DIMS:
                if dim not in dims:
                    continue
                size = pruner.get_out_channels(module) if dim == "out" else pruner.get_in_channels(module)
                if size == len(dims[dim]):  # a depthwise conv's inputs were cut with its outputs
                    continue
                if size != self.sizes[name][dim]:
                    raise ValueError(f"{name}: {dim} size is {size}, the spec was made on {self.sizes[name][dim]}")
                keep = set(dims[dim])
                removed = [i for i in range(size) if i not in keep]
                if dim == "out":
                    pruner.prune_out_channels(module, removed)
                else:
                    pruner.prune_in_channels(module, removed)
        self.check(model)
        return model

    def check(self, model: nn.Module) -> None:
        """Raise ValueError unless every recorded tensor of ``model`` has its recorded shape."""
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        bad = [f"{k}: {list(tensors[k].shape)} != {v}" for k, v in self.shapes.items()
               if k in tensors and list(tensors[k].shape) != v]
        missing = [k for k in self.shapes if k not in tensors]
        if bad or missing:
            problems = bad + [f"missing {k}" for k in missing]
            raise ValueError("model does not match the ChannelSpec: " + "; ".join(problems))

    @staticmethod
    def _shapes_of(model: nn.Module, names) -> dict[str, list[int]]:
        modules = dict(model.named_modules())
        shapes = {}
        for name in names:
            for kind in (modules[name].named_parameters(recurse=False), modules[name].named_buffers(recurse=False)):
                for tname, t in kind:
                    if isinstance(t, torch.Tensor) and t.dim() > 0:
                        shapes[f"{name}.{tname}"] = list(t.shape)
        return shapes
