"""NIR export (Neuromorphic Intermediate Representation) through SpikingJelly's ``nir_exchange``.

NIR describes spiking networks for neuromorphic hardware and other simulators. What maps
(SpikingJelly 2.0 with nirtorch): Linear, ungrouped zero-padded Conv1d/Conv2d, AvgPool2d, Flatten,
IF, LIF, PLIF (as a LIF with fixed tau), CUBA-LIF, and residual ``+``. What does not:
BatchNorm (fold it into the preceding conv: ``fuse_bn=True``), max pooling and adaptive pooling
(no NIR node), soft reset (``v_reset=None``), the SEW connect functions AND/IAND (products), and
ReLU (an ANN twin is not a spiking net). :func:`export_nir` checks the model first and names the
first layer that does not map, with what to do about it.

A :class:`~snnprune.models.SpikingNet` is exported as its multi-step ``.body`` (the encoder and
the mean over time stay outside NIR); ``example_input`` may be a static batch, which is encoded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._common import atomic_write, plain_copy

__all__ = ["export_nir", "first_unmapped", "fuse_conv_bn"]

_HINTS = {
    "batchnorm": "NIR has no batch norm: fold it into the preceding conv with export_nir(..., fuse_bn=True)",
    "maxpool": "NIR has no max pooling: replace it by an AvgPool2d of the same kernel and stride "
               "(this changes the network; retrain or fine-tune before deploying)",
    "adaptive": "NIR has no adaptive pooling: replace it by an AvgPool2d whose kernel is the feature map size",
    "soft_reset": "NIR does not distinguish soft reset: build the neurons with a hard reset (v_reset=0.0)",
    "cnf": "NIR graphs only sum inputs: use the ADD connect function (cnf='ADD'); AND/IAND are products",
    "relu": "NIR carries spiking nets: export the SNN, not its ANN twin",
    "conv": "NIR maps only ungrouped, zero-padded convolutions",
    "other": "NIR maps Linear, Conv1d/2d, AvgPool2d, Flatten, IF/LIF/PLIF/CUBA-LIF neurons and residual '+'",
}


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return "maxpool"
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                           nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return "adaptive"
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)):
        return "relu"
    return "other"


def _mapped_types() -> dict[type, str]:
    from spikingjelly.activation_based import layer, neuron

    types = {t: "weight" for t in (nn.Linear, layer.Linear, nn.Conv1d, layer.Conv1d, nn.Conv2d, layer.Conv2d)}
    types.update({t: "plain" for t in (nn.AvgPool2d, layer.AvgPool2d, nn.Flatten, layer.Flatten)})
    types.update({t: "neuron" for t in (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode, neuron.CUBALIFNode)})
    return types


def first_unmapped(model: nn.Module, prefix: str = "") -> tuple[str, str] | None:
    """``(layer name, what to do)`` for the first layer of ``model`` that NIR cannot express, or
    None. Layers are visited in registration order (the order of ``named_modules()``)."""
    mapped = _mapped_types()

    def visit(name: str, module: nn.Module) -> tuple[str, str] | None:
        cnf = getattr(module, "cnf", None)
        if isinstance(cnf, str) and cnf.upper() != "ADD":
            return name, f"{type(module).__name__} with cnf={cnf!r}: {_HINTS['cnf']}"
        role = mapped.get(type(module))
        if role == "neuron" and getattr(module, "v_reset", 0.0) is None:
            return name, f"{type(module).__name__} with soft reset: {_HINTS['soft_reset']}"
        if role == "weight" and isinstance(module, (nn.Conv1d, nn.Conv2d)) and (
            module.groups != 1 or module.padding_mode != "zeros"
        ):
            how = f"groups={module.groups}, padding_mode={module.padding_mode!r}"
            return name, f"{type(module).__name__}({how}): {_HINTS['conv']}"
        if role is not None or isinstance(module, _Passthrough):
            return None  # mapped as a whole (a neuron's surrogate function is part of it)
        children = list(module.named_children())
        if not children:
            return name, f"{type(module).__name__}: {_HINTS[_kind(module)]}"
        for child_name, child in children:  # a container: torch.fx traces through it
            found = visit(f"{name}.{child_name}" if name else child_name, child)
            if found is not None:
                return found
        return None

    return visit(prefix, model)


class _Passthrough(nn.Module):
    """What a folded BatchNorm becomes outside an ``nn.Sequential``: torch.fx traces through it
    (it is not a torch.nn leaf, unlike ``nn.Identity``), so it leaves no node in the NIR graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a conv (its next sibling) into that
    conv, in place, and drop the BatchNorm; return ``model``.

    Call it on an eval-mode copy: BN's running statistics are what gets folded. In an
    ``nn.Sequential`` (SpikingJelly's conv-BN-neuron blocks, snnprune's ``ConvBNNeuron``) the BN is
    removed; elsewhere it becomes a pass-through module.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(model.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            if first not in parent._modules or second not in parent._modules:
                continue  # one of them was folded away already
            conv, bn = parent._modules[first], parent._modules[second]
            if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, nn.modules.batchnorm._BatchNorm) \
                    and bn.num_features == conv.out_channels and bn.track_running_stats:
                fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
                parent._modules[first] = fused
                if isinstance(parent, nn.Sequential):
                    del parent._modules[second]
                else:
                    parent._modules[second] = _Passthrough()
    return model


def export_nir(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike,
    *,
    fuse_bn: bool = False,
    dt: float = 1e-4,
):
    """Export the finalized ``model`` (a deep copy) to a NIR graph in ``path`` (HDF5); return the
    ``nir.NIRGraph``.

    ``example_input`` is what the (multi-step) network takes, ``[T, N, ...]``; for a
    ``SpikingNet`` a static batch ``[N, C, H, W]`` is encoded first and the ``.body`` exported.
    ``fuse_bn=True`` folds each BatchNorm into its preceding conv first (eval statistics). A layer
    NIR cannot express raises ``ValueError`` naming the first such layer and what to do; read the
    graph back with ``spikingjelly.activation_based.nir_exchange.import_from_nir(path, dt=dt,
    step_mode='m')``.
    """
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    from ..models.spiking_net import SpikingNet

    plain, prefix = plain_copy(model), ""
    if isinstance(plain, SpikingNet):
        example_input = plain.encode(example_input)
        plain, prefix = plain.body, "body"
    if fuse_bn:
        fuse_conv_bn(plain)
    problem = first_unmapped(plain, prefix)
    if problem is not None:
        layer_name, why = problem
        raise ValueError(f"cannot export to NIR: layer {layer_name or '<root>'!r} is a {why}")
    functional.reset_net(plain)
    try:
        graph = export_to_nir(plain, example_input.detach(), None, dt=dt)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise ValueError(
            f"cannot export to NIR: {type(exc).__name__}: {text[0] if text else ''} "
            "(NIR traces the forward with torch.fx: only module calls and '+' between them map; "
            "Python control flow on tensors, functional calls such as torch.flatten and products do not)"
        ) from exc
    finally:
        functional.reset_net(plain)
    import nir

    atomic_write(Path(path), lambda tmp: nir.write(tmp, graph))
    return graph

