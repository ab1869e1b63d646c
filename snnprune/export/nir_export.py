"""NIR export (Neuromorphic Intermediate Representation): a spiking net as a graph that other
simulators and neuromorphic hardware read.

The graph is written here from a torch.fx trace of the (finalized, eval-mode) network, node by
node, so that the importers of snnTorch, Norse and SpikingJelly read it:

* **What maps.** Linear, ungrouped zero-padded Conv1d/Conv2d, AvgPool2d, Flatten (modules or
  ``torch.flatten``), IF, LIF and PLIF neurons (PLIF as a LIF of its current tau), and ``+``
  (residual and SEW ADD connections: NIR sums every edge into a node).
* **Batch norm** that directly follows a convolution is folded into it (eval statistics). A
  pruned weight stays exactly zero (zero times the BN scale).
* **Max pooling of spikes** has an exact NIR form: a sum pool, then a threshold at 0.5 (one if
  any input in the window spiked). The threshold is written as an IF node with threshold 0.5 and
  reset to 0: on the non-negative integer sums it sees, its membrane is back at 0 after every
  step, so it fires exactly when the sum is at least 1 (none of the three importers reads NIR's
  ``Threshold`` node). Pooling a sum of spike trains (a SEW ADD block's output, values 0, 1, 2)
  adds one level per possible count: ``max = [any >= 1] + [any >= 2]``, where ``[x >= 2]`` is
  the threshold of ``x - [x >= 1]``. A padded sum pool is written as a convolution with a
  one-hot-per-channel kernel of ones (the importers drop SumPool2d's padding).
* **Adaptive average pooling** to 1x1 becomes an AvgPool2d over the feature map (nothing when the
  map is already 1x1).
* **Conventions.** One time step lasts ``dt`` (default 1e-4 s): an IF node has ``r = 1/dt``, a
  LIF node ``tau = tau_steps * dt``; NIR's ``start_dim`` of Flatten and all types leave out the
  batch (and time) dimensions; pooling and convolution sizes are pairs; nodes are named after the
  layers (dots as underscores) and listed in execution order from ``input`` to ``output``.

What does not map: soft reset (``v_reset=None``), the SEW connect functions AND/IAND (products),
max pooling of analog values, grouped convolutions, batch norm that follows no convolution, and
any ANN (an ANN twin is not a spiking net). :func:`export_nir` names the first such layer.

A :class:`~snnprune.models.SpikingNet` is exported as its multi-step ``.body`` (the encoder and
the mean over time stay outside NIR); ``example_input`` may be a static batch, which is encoded.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from ..selection import BATCH_NORMS
from ._common import atomic_write, plain_copy

__all__ = ["export_nir", "first_unmapped", "fuse_conv_bn"]

_HINTS = {
    "batchnorm": "NIR has no batch norm, and this one does not directly follow a convolution it could be folded into",
    "maxpool": "NIR has no max pooling: it is mapped exactly only when it pools spikes or sums of spikes",
    "adaptive": "NIR has no adaptive pooling: only an adaptive average pool to 1x1 maps (as an AvgPool2d)",
    "soft_reset": "NIR does not distinguish soft reset: build the neurons with a hard reset (v_reset=0.0)",
    "cnf": "NIR graphs only sum inputs: use the ADD connect function (cnf='ADD'); AND/IAND are products",
    "relu": "NIR carries spiking nets: export the SNN, not its ANN twin",
    "conv": "NIR maps only ungrouped, zero-padded convolutions",
    "other": "NIR maps Linear, Conv1d/2d, AvgPool2d, max pooling of spikes, Flatten, IF/LIF/PLIF neurons, "
             "batch norm after a conv (folded) and residual '+'",
}
_NO_LEAK_STEPS = 1e8  # a LIF time constant (in steps) whose leak float32 arithmetic cannot see
_IF_NODES = ("IF", "LIF")
_ANN = "an ANN twin is not a spiking net: NIR carries spiking nets; export the SNN, or export this ANN to ONNX"


def _kind(module: nn.Module) -> str:
    if isinstance(module, BATCH_NORMS):
        return "batchnorm"
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return "maxpool"
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                           nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return "adaptive"
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU)):
        return "relu"
    return "other"


def _neuron_types() -> tuple[type, ...]:
    from spikingjelly.activation_based import neuron

    return (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode)


def _leaf_types() -> tuple[type, ...]:
    """Modules the trace does not enter: each becomes NIR nodes (or nothing) as a whole."""
    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
            nn.Identity, nn.Dropout, BATCH_NORMS) + _neuron_types()


def first_unmapped(model: nn.Module, prefix: str = "") -> tuple[str, str] | None:
    """``(layer name, what to do)`` for the first layer of ``model`` that NIR cannot express, or
    None. Layers are visited in registration order (the order of ``named_modules()``); batch
    norm counts as unmapped here (:func:`export_nir` folds it into the conv before it first).

    Args:
        model: the network (a SpikingJelly net, or the ``.body`` of a ``SpikingNet``).
        prefix: prepended to the names reported (``"body"`` for a ``SpikingNet``'s body).

    Returns:
        ``(name, reason)`` of the first layer that does not map, or None.

    Example:
        >>> from spikingjelly.activation_based import layer, neuron
        >>> first_unmapped(nn.Sequential(layer.Linear(2, 2), neuron.IFNode(v_reset=None)))[1][:30]
        'IFNode with soft reset: NIR do'
    """
    mapped = _leaf_types()

    def visit(name: str, module: nn.Module) -> tuple[str, str] | None:
        cnf = getattr(module, "cnf", None)
        if isinstance(cnf, str) and cnf.upper() != "ADD":
            return name, f"{type(module).__name__} with cnf={cnf!r}: {_HINTS['cnf']}"
        if isinstance(module, _neuron_types()) and getattr(module, "v_reset", 0.0) is None:
            return name, f"{type(module).__name__} with soft reset: {_HINTS['soft_reset']}"
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and (module.groups != 1 or module.padding_mode != "zeros"):
            how = f"groups={module.groups}, padding_mode={module.padding_mode!r}"
            return name, f"{type(module).__name__}({how}): {_HINTS['conv']}"
        if isinstance(module, BATCH_NORMS):
            return name, f"{type(module).__name__}: {_HINTS['batchnorm']}"
        if isinstance(module, mapped) or isinstance(module, _Passthrough):
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

    Args:
        model: the network, changed in place.

    Returns:
        ``model``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
        >>> fuse_conv_bn(net)
        Sequential(
          (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))
        )
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in list(model.modules()):
        names = [name for name, _ in parent.named_children()]
        for first, second in zip(names, names[1:]):
            children = dict(parent.named_children())
            if first not in children or second not in children:
                continue  # one of them was folded away already
            conv, bn = children[first], children[second]
            if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, BATCH_NORMS) \
                    and bn.num_features == conv.out_channels and bn.track_running_stats:
                fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
                setattr(parent, first, fused)  # nn.Module.__setattr__ replaces the child in place
                if isinstance(parent, nn.Sequential):
                    delattr(parent, second)
                else:
                    setattr(parent, second, _Passthrough())
    return model


# -- the graph ---------------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, _leaf_types()) or super().is_leaf_module(module, qualified_name)


@dataclass
class _Value:
    """A tensor of the traced forward as NIR sees it: the sum of the outputs of ``sources``.

    ``bound`` is the largest value it can take when it counts spikes (1 for a neuron's output, the
    sum of the bounds for a sum of such), None for analog values."""

    sources: list[str]
    bound: int | None
    shape: tuple[int, ...]  # without the batch (and time) dimensions


def _pair(value) -> np.ndarray:
    return np.array(value if isinstance(value, (tuple, list)) else (value, value), dtype=np.int64)


class _GraphWriter:
    """Builds the NIR nodes and edges from a traced module, node by node in execution order."""

    def __init__(self, gm: fx.GraphModule, lead: int, dt: float, if_node: str) -> None:
        self.gm, self.lead, self.dt, self.if_node = gm, lead, dt, if_node
        self.nodes: dict = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[fx.Node, _Value] = {}

    # -- helpers
    def add(self, name: str, node, inputs: list[str] = ()) -> str:
        self.nodes[name] = node
        self.edges.extend((source, name) for source in inputs)
        return name

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(node.meta["tensor_meta"].shape)[self.lead:]

    def fail(self, where: str, why: str):
        raise ValueError(f"cannot export to NIR: {where}: {why}")

    def integrate_and_fire(self, shape: tuple[int, ...], threshold: float, reset: float):
        """An IF neuron as ``if_node`` says: an IF node, or a LIF node without leak."""
        import nir

        ones = np.ones(shape, dtype=np.float32)
        if self.if_node == "IF":
            return nir.IF(r=ones / self.dt, v_threshold=threshold * ones, v_reset=reset * ones)
        # tau = 1e8 steps and r = tau / dt: v += x - v * 1e-8, which float32 rounds to v += x
        tau = _NO_LEAK_STEPS * self.dt
        return nir.LIF(tau=tau * ones, r=_NO_LEAK_STEPS * ones, v_leak=reset * ones,
                       v_threshold=threshold * ones, v_reset=reset * ones)

    def threshold(self, name: str, shape: tuple[int, ...], inputs: list[str]) -> str:
        """An IF neuron firing when its (non-negative integer) input is at least 1: its membrane
        is back at 0 after every step (input 0 leaves it there, input >= 1 fires and resets it)."""
        return self.add(name, self.integrate_and_fire(shape, 0.5, 0.0), inputs)

    # -- the walk
    def run(self) -> None:
        import nir

        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                shape = self.shape(node)
                self.values[node] = _Value([self.add("input", nir.Input(input_type=np.array(shape)))], None, shape)
            elif node.op == "call_module":
                self.values[node] = self.module(node, self.gm.get_submodule(node.target))
            elif node.op in ("call_function", "call_method"):
                self.values[node] = self.function(node)
            elif node.op == "output":
                value = node.args[0]
                if not isinstance(value, fx.Node):
                    self.fail("the output", "the net returns several tensors; NIR graphs have one output")
                out = self.values[value]
                self.add("output", nir.Output(output_type=np.array(out.shape)), out.sources)
            else:
                self.fail(f"{node.op} {node.target}", _HINTS["other"])

    def module(self, node: fx.Node, module: nn.Module) -> _Value:  # noqa: C901  (one branch per layer type)
        import nir

        (arg,) = node.args
        value, name, shape = self.values[arg], node.name, self.shape(node)
        where = f"layer {node.target!r}"
        if isinstance(module, (nn.Identity, nn.Dropout)):
            return value
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().cpu().numpy()
            nir_node = nir.Linear(weight) if module.bias is None else \
                nir.Affine(weight, module.bias.detach().cpu().numpy())
            return _Value([self.add(name, nir_node, value.sources)], None, shape)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
                self.fail(where, f"{type(module).__name__}(groups={module.groups}): {_HINTS['conv']}")
            weight = module.weight.detach().cpu().numpy()
            bias = np.zeros(weight.shape[0], weight.dtype) if module.bias is None else \
                module.bias.detach().cpu().numpy()
            if isinstance(module, nn.Conv2d):
                conv = nir.Conv2d(input_shape=np.array(value.shape[-2:]), weight=weight, stride=_pair(module.stride),
                                  padding=_pair(module.padding), dilation=_pair(module.dilation), groups=1, bias=bias)
            else:
                conv = nir.Conv1d(input_shape=int(value.shape[-1]), weight=weight, stride=int(module.stride[0]),
                                  padding=int(module.padding[0]), dilation=int(module.dilation[0]), groups=1,
                                  bias=bias)
            return _Value([self.add(name, conv, value.sources)], None, shape)
        if isinstance(module, nn.Flatten):
            per_step = getattr(module, "step_mode", None) is not None  # SpikingJelly's: applied to each step
            return self.flatten(name, value, module.start_dim, module.end_dim, 1 if per_step else self.lead)
        if isinstance(module, nn.AvgPool2d):
            if module.ceil_mode or module.divisor_override is not None or \
                    (np.any(_pair(module.padding)) and not module.count_include_pad):
                self.fail(where, "an AvgPool2d with ceil_mode, divisor_override or count_include_pad=False")
            stride = module.stride or module.kernel_size
            pool = nir.AvgPool2d(kernel_size=_pair(module.kernel_size), stride=_pair(stride),
                                 padding=_pair(module.padding))
            return _Value([self.add(name, pool, value.sources)], None, shape)
        if isinstance(module, nn.AdaptiveAvgPool2d):
            if shape == value.shape:
                return value  # the map already has the output size: nothing to average
            if shape[-2:] != (1, 1):
                self.fail(where, _HINTS["adaptive"])
            size = _pair(value.shape[-2:])
            pool = nir.AvgPool2d(kernel_size=size, stride=size, padding=np.zeros(2, np.int64))
            return _Value([self.add(name, pool, value.sources)], None, shape)
        if isinstance(module, nn.MaxPool2d):
            return self.max_pool(node, module, value, shape, where)
        if isinstance(module, _neuron_types()):
            return _Value([self.add(name, self.neuron(module, shape, where), value.sources)], 1, shape)
        if isinstance(module, BATCH_NORMS):
            self.fail(where, f"{type(module).__name__}: {_HINTS['batchnorm']}")
        self.fail(where, f"{type(module).__name__}: {_HINTS[_kind(module)]}")

    def neuron(self, module: nn.Module, shape: tuple[int, ...], where: str):
        import nir
        from spikingjelly.activation_based import neuron

        if module.v_reset is None:
            self.fail(where, f"{type(module).__name__} with soft reset: {_HINTS['soft_reset']}")
        if isinstance(module, neuron.IFNode):
            return self.integrate_and_fire(shape, float(module.v_threshold), float(module.v_reset))
        ones = np.ones(shape, dtype=np.float32)
        threshold, reset = float(module.v_threshold) * ones, float(module.v_reset) * ones
        if isinstance(module, neuron.ParametricLIFNode):
            tau = 1.0 / float(module.w.detach().sigmoid())
        else:
            tau = float(module.tau)
        # SpikingJelly: v += (x - (v - v_reset)) / tau, or v += x - (v - v_reset) / tau
        # without decay_input; NIR: tau dv/dt = (v_leak - v) + r x, one step lasting dt.
        return nir.LIF(tau=tau * self.dt * ones, r=(1.0 if module.decay_input else tau) * ones,
                       v_leak=reset, v_threshold=threshold, v_reset=reset)

    def flatten(self, name: str, value: _Value, start: int, end: int, batch_dims: int) -> _Value:
        import nir

        def batch_free(dim: int) -> int:
            return dim - batch_dims if dim >= 0 else dim

        node = nir.Flatten(input_type={"input": np.array(value.shape)}, start_dim=batch_free(start),
                           end_dim=batch_free(end))
        out_shape = tuple(int(s) for s in node.output_type["output"])
        return _Value([self.add(name, node, value.sources)], value.bound, out_shape)

    def max_pool(self, node: fx.Node, module: nn.MaxPool2d, value: _Value, shape, where: str) -> _Value:
        """``max`` over each window of a value counting spikes (0..bound), as sums and thresholds."""
        import nir

        if value.bound is None:
            self.fail(where, f"MaxPool2d of analog values (not spikes): {_HINTS['maxpool']}")
        if module.ceil_mode or _pair(module.dilation).tolist() != [1, 1]:
            self.fail(where, "a MaxPool2d with ceil_mode or dilation: " + _HINTS["maxpool"])
        kernel, stride, padding = _pair(module.kernel_size), _pair(module.stride or module.kernel_size), \
            _pair(module.padding)
        channels = value.shape[0]

        def sum_pool(name: str, inputs: list[str]) -> str:
            if not padding.any():
                return self.add(name, nir.SumPool2d(kernel_size=kernel, stride=stride, padding=padding), inputs)
            # importers drop SumPool2d's padding: a convolution summing each channel's window instead
            weight = np.zeros((channels, channels, *kernel), dtype=np.float32)
            weight[np.arange(channels), np.arange(channels)] = 1.0
            conv = nir.Conv2d(input_shape=np.array(value.shape[-2:]), weight=weight, stride=stride, padding=padding,
                              dilation=np.ones(2, np.int64), groups=1, bias=np.zeros(channels, np.float32))
            return self.add(name, conv, inputs)

        name, fired, rest = node.name, [], list(value.sources)
        for level in range(1, value.bound + 1):
            suffix = "" if level == 1 else str(level)
            pooled = sum_pool(f"{name}_sum{suffix}", rest)
            fired.append(self.threshold(f"{name}_any{suffix}", shape, [pooled]))  # [max >= level]
            if level < value.bound:  # rest -= [rest >= 1]: what is left is max(x - level, 0)
                at_least = self.threshold(f"{name}_ge{level}", value.shape, rest)
                eye = -np.eye(channels, dtype=np.float32)[:, :, None, None]
                minus = nir.Conv2d(input_shape=np.array(value.shape[-2:]), weight=eye, stride=np.ones(2, np.int64),
                                   padding=np.zeros(2, np.int64), dilation=np.ones(2, np.int64), groups=1,
                                   bias=np.zeros(channels, np.float32))
                rest = rest + [self.add(f"{name}_minus{level}", minus, [at_least])]
        return _Value(fired, value.bound, shape)

    def function(self, node: fx.Node) -> _Value:
        target = node.target
        name = getattr(target, "__name__", str(target))
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if target in (operator.add, torch.add, operator.iadd) or (node.op == "call_method" and target == "add"):
            if len(tensors) != 2 or len(node.args) != 2:
                self.fail(f"'{name}' in the forward", "only sums of two tensors map to NIR (edges into one node)")
            a, b = (self.values[t] for t in tensors)
            bound = None if a.bound is None or b.bound is None else a.bound + b.bound
            return _Value(a.sources + b.sources, bound, self.shape(node))
        if target is torch.flatten or (node.op == "call_method" and target == "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(node.name, self.values[tensors[0]], start, end, self.lead)
        if target in (operator.mul, torch.mul, operator.sub, torch.sub, operator.rsub):
            self.fail(f"'{name}' in the forward", _HINTS["cnf"])
        self.fail(f"'{name}' in the forward", "NIR maps module calls and '+' between them; "
                  "other functions (torch.* calls, products, indexing) have no NIR node")


def _spiking(model: nn.Module) -> bool:
    from spikingjelly.activation_based import neuron

    from ..models.twin import ANNTwin

    return not isinstance(model, ANNTwin) and any(isinstance(m, neuron.BaseNode) for m in model.modules())


def export_nir(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | os.PathLike,
    *,
    dt: float = 1e-4,
    if_node: str = "IF",
):
    """Export the finalized ``model`` (a deep copy) to a NIR graph in ``path`` (HDF5).

    Batch norm is folded into the convolution before it, max pooling of spikes becomes sum pools
    and thresholds (exact), and the graph follows the conventions the snnTorch, Norse and
    SpikingJelly importers read (see the module docstring and ``docs/export.md``). A layer NIR
    cannot express raises ``ValueError`` naming the first such layer and what to do; nothing is
    written then.

    Args:
        model: a spiking network: a ``SpikingNet`` (its multi-step ``.body`` is exported) or a
            SpikingJelly network, under pruning or not.
        example_input: what the network takes, ``[T, N, ...]`` for a multi-step net; for a
            ``SpikingNet`` a static batch ``[N, C, H, W]`` is encoded first. It fixes the shapes.
        path: the file to write.
        dt: the length of one time step in seconds: an IF node gets ``r = 1/dt``, a LIF node
            ``tau = tau_steps * dt``. The default is SpikingJelly's and snnTorch's (which assumes
            1e-4 for LIF nodes); read the graph back with the same ``dt``.
        if_node: how IF neurons (and the thresholds of max pooling) are written: ``"IF"`` (NIR's IF
            node: SpikingJelly and Norse read it exactly; snnTorch 1.0 turns it into a leaky neuron
            whose output the next layer cannot take) or ``"LIF"`` (a LIF node without leak:
            ``tau = 1e8`` steps, ``r = tau / dt``, which snnTorch and SpikingJelly read as an IF
            neuron; Norse ignores ``r``, so not for Norse).

    Returns:
        The ``nir.NIRGraph`` written.

    Example:
        >>> import tempfile
        >>> from snnprune.models import create_model
        >>> from spikingjelly.activation_based.nir_exchange import import_from_nir
        >>> net = create_model("sew_digits", T=2).eval()
        >>> path = tempfile.mkdtemp() + "/digits.nir"
        >>> graph = export_nir(net, torch.rand(1, 1, 8, 8), path)
        >>> type(graph.nodes["features_2_sum"]).__name__, type(graph.nodes["features_2_any"]).__name__
        ('SumPool2d', 'IF')
        >>> sj = import_from_nir(path)   # SpikingJelly, single-step: one call per time step
    """
    import nir

    from ..models.spiking_net import SpikingNet

    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if if_node not in _IF_NODES:
        raise ValueError(f"if_node must be one of {_IF_NODES}, got {if_node!r}")
    if not _spiking(model):
        raise ValueError(f"cannot export to NIR: {type(model).__name__} has no spiking neuron ({_ANN})")
    plain, prefix = plain_copy(model), ""
    if isinstance(plain, SpikingNet):
        example_input = plain.encode(example_input)
        plain, prefix = plain.body, "body"
    fuse_conv_bn(plain)
    problem = first_unmapped(plain, prefix)
    if problem is not None:
        layer_name, why = problem
        raise ValueError(f"cannot export to NIR: layer {layer_name or '<root>'!r} is a {why}")
    graph = _graph(plain, example_input.detach(), dt, if_node, prefix)
    atomic_write(Path(path), lambda tmp: nir.write(tmp, graph))
    return graph


def _graph(plain: nn.Module, example_input: torch.Tensor, dt: float, if_node: str, prefix: str):
    import nir
    from spikingjelly.activation_based import functional
    from torch.fx.passes.shape_prop import ShapeProp

    lead = 2 if any(getattr(m, "step_mode", None) == "m" for m in plain.modules()) else 1
    try:
        gm = fx.GraphModule(plain, _Tracer().trace(plain))
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise ValueError(
            f"cannot export to NIR: {type(exc).__name__}: {text[0] if text else ''} "
            "(NIR traces the forward with torch.fx: module calls, '+' and torch.flatten map; "
            "Python control flow on tensor values does not)"
        ) from exc
    functional.reset_net(plain)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    finally:
        functional.reset_net(plain)
    writer = _GraphWriter(gm, lead, dt, if_node)
    try:
        writer.run()
    except ValueError as exc:
        if prefix and "layer '" in str(exc):
            raise ValueError(str(exc).replace("layer '", f"layer '{prefix}.", 1)) from None
        raise
    names = list(writer.nodes)
    order = {name: i for i, name in enumerate(names)}
    # each node's outgoing edges in execution order: a depth-first reader (Norse's) then takes
    # a residual block's branch before its skip connection
    edges = sorted(dict.fromkeys(writer.edges), key=lambda e: (order[e[0]], order[e[1]]))
    return nir.NIRGraph(nodes=writer.nodes, edges=edges, type_check=False)
