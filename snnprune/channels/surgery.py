"""Channel surgery: remove whole channels so that convs, batch norms and linears physically shrink.

Torch-Pruning's ``DependencyGraph`` (Fang et al., "DepGraph: Towards Any Structural Pruning",
CVPR 2023) finds the layers a channel couples (a residual sum or SEW connect function, a depthwise
conv, a flatten into the classifier) and cuts them together. This module adds what it does not do:

1. **Tracing SpikingJelly networks.** TP mistakes a multi-step neuron's loop over time
   (``unbind(0)``) for a channel split, loses the flatten -> FC mapping when a linear layer returns
   ``[T, N, K]``, and cannot infer shapes through PLIF's ``sigmoid(w)``. The graph is therefore
   built with every spiking neuron swapped for ``nn.Identity`` and every layer in single-step mode on
   a 4-D input; neurons, step modes and train/eval flags are restored and the neurons reset after.
   The coupling of the prunable layers does not depend on the neuron, so the groups are the same.
   A ``SpikingNet`` (or ``ANNTwin``) is traced through its ``.body``; names stay the model's own.
2. **Which channel may go.** The groups are rooted at batch norms. A channel leaves only if
   *every* BN of its coupled group marks it removable (under SEW ADD/IAND the identity path passes a
   channel whose branch is dead; under AND a live source still feeds the next block), and each
   group keeps at least one channel. Per-BN masks are aligned on the group's root channels through
   Torch-Pruning's ``root_idxs``, never position by position. An option-A shortcut (a CIFAR ResNet's zero
   padding to more channels) joins two groups, the stream before it and the stream after it; a
   channel it carries leaves the stream after it only if it has left the stream before it.
3. **A record of the cut** (:class:`~snnprune.channels.spec.ChannelSpec`) so that a checkpoint of the
   smaller model can be loaded into a freshly built one.

The model is changed **in place** and returned (with its spec). Pruned layers get new
``nn.Parameter`` objects: build the optimizer after pruning. The change is all or nothing: a model
under a weight Pruner (parametrized weights) is refused before anything happens, and if the trace,
the cut or the check that the cut model still runs fails, every module gets back its parameters,
buffers and attributes as they were before the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from spikingjelly.activation_based import base, neuron
from torch import nn
from torch.nn.utils import parametrize

from ..selection import BATCH_NORMS
from .criteria import channels_to_keep, optimal_threshold, slimming_threshold
from .spec import CUSTOM_PRUNERS, DIMS, ChannelSpec, layer_pruner

__all__ = ["ChannelGroup", "channel_groups", "batchnorm_gammas", "prune_channels", "prune_channels_by_mask"]

CRITERIA = ("optimal", "slimming")


@dataclass
class ChannelGroup:
    """Channels coupled across layers, indexed by the channels of the root batch norm.

    Attributes:
        root: name of the root BN (as in the model's ``named_modules()``).
        size: number of root channels (all of the root BN's channels not covered by an earlier group).
        root_idxs: the root BN's channel indices this group covers.
        bns: ``bn name -> (local channel idxs, matching positions in root_idxs)`` for every BN of the group.
        layers: names of every layer the group cuts.
        shortcuts_in: ``name -> (local input idxs, positions)`` of every option-A shortcut the group
            feeds (the stream before the shortcut).
        shortcuts_out: the same for the shortcut outputs in the group (the stream after it).
    """

    root: str
    root_idxs: list[int]
    bns: dict[str, tuple[list[int], list[int]]]
    layers: list[str]
    shortcuts_in: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    shortcuts_out: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.root_idxs)


# -- tracing ---------------------------------------------------------------------------------------
def _trace_target(model: nn.Module) -> tuple[nn.Module, str]:
    """The module to trace and the prefix of its names inside ``model`` (a wrapper's ``.body``)."""
    from ..models.spiking_net import SpikingNet
    from ..models.twin import ANNTwin

    if isinstance(model, (SpikingNet, ANNTwin)):
        return model.body, "body."
    return model, ""


def _single_step_input(target: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A ``[N, C, H, W]`` example for the single-step trace of a SpikingJelly body."""
    spiking = any(hasattr(m, "step_mode") for m in target.modules())
    if spiking and x.dim() == 5:
        return x[0]
    return x


@contextlib.contextmanager
def _traceable(target: nn.Module, single_step: bool = True) -> Iterator[None]:
    """Neurons -> Identity and (``single_step``) every layer single-step; restore everything (and
    reset states) on exit."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(target.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, neuron.BaseNode):
                swapped.append((parent, name, child))
                setattr(parent, name, nn.Identity())
    step_modes = {m: m.step_mode for m in target.modules() if hasattr(m, "step_mode")}
    training = {m: m.training for m in target.modules()}
    try:
        if single_step:
            for m in step_modes:
                m.step_mode = "s"
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for m, mode in step_modes.items():
            m.step_mode = mode
        for m in target.modules():
            if m in training:
                m.training = training[m]
            if isinstance(m, base.MemoryModule):
                m.reset()


@contextlib.contextmanager
def _traced(target: nn.Module, example_input: torch.Tensor) -> Iterator[tuple[tp.DependencyGraph, bool]]:
    """``(dependency graph of target, traced single-step?)``, built and used inside :func:`_traceable`.

    A SpikingJelly net is traced in single-step mode on a 4-D input (Torch-Pruning takes a
    multi-step neuron's loop over time for a channel split, and loses the flatten -> linear
    mapping of a multi-step linear layer). A net whose own forward makes the time axis
    (``x.unsqueeze(0).repeat(T, ...)``) cannot run single-step; it is traced as it is, multi-step,
    with its neurons swapped out, and the cut is then checked by running the model.
    """
    multi_step = any(getattr(m, "step_mode", None) == "m" for m in target.modules())
    failures = []
    for single_step in (True, False) if multi_step else (True,):
        x = _single_step_input(target, example_input) if single_step else example_input
        with _traceable(target, single_step):
            try:
                dg = _build_graph(target, x)
            except _TraceError as exc:
                failures.append(_first_line(exc.__cause__))
                continue
            yield dg, single_step
            return
    if len(failures) == 1:
        raise ValueError(f"prune_channels cannot trace {type(target).__name__} on the example input: {failures[0]}")
    raise ValueError(
        f"prune_channels cannot trace {type(target).__name__}: single-step, {failures[0]}; multi-step, "
        f"{failures[1]}. Pass the part of the net that takes [T, N, C, H, W] (its body, after the time "
        "axis is made) with an example of that shape"
    )


class _TraceError(RuntimeError):
    """Building the dependency graph failed (the model's own forward raised)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _build_graph(target: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(target, example_inputs=example_input,
                                                         customized_pruners=CUSTOM_PRUNERS)
    except Exception as exc:  # the model's forward on the example: any error it raises
        raise _TraceError(str(exc)) from exc


def _groups(dg: tp.DependencyGraph, target: nn.Module, prefix: str, ignored: set[nn.Module]):
    """Yield the ``ChannelGroup`` of every BN-rooted group that touches no ignored layer."""
    names = {m: n for n, m in target.named_modules()}
    covered: dict[nn.Module, set[int]] = {}
    for root_name, root in target.named_modules():
        if not isinstance(root, BATCH_NORMS) or root not in dg.module2node:
            continue
        idxs = [i for i in range(root.num_features) if i not in covered.get(root, set())]
        if not idxs:
            continue
        group = dg.get_pruning_group(root, tp.prune_batchnorm_out_channels, idxs)
        position = {r: p for p, r in enumerate(idxs)}
        bns: dict[str, tuple[list[int], list[int]]] = {}
        shortcuts: dict[bool, dict[str, tuple[list[int], list[int]]]] = {True: {}, False: {}}
        layers: list[str] = []
        touches_ignored = False
        for item in group:
            module = item.dep.target.module
            if module in ignored:
                touches_ignored = True
            if module not in names:  # Torch-Pruning's own ops (add, cat, flatten): nothing to cut
                continue
            layers.append(prefix + names[module])
            if isinstance(module, BATCH_NORMS):
                bns[prefix + names[module]] = (list(item.idxs), [position[int(r)] for r in item.root_idxs])
                covered.setdefault(module, set()).update(int(i) for i in item.idxs)
            elif type(module) in CUSTOM_PRUNERS:
                out = dg.is_out_channel_pruning_fn(item.dep.handler)
                shortcuts[out][prefix + names[module]] = (
                    [int(i) for i in item.idxs], [position[int(r)] for r in item.root_idxs])
        if touches_ignored:
            continue
        yield ChannelGroup(prefix + root_name, idxs, bns, list(dict.fromkeys(layers)),
                           shortcuts[False], shortcuts[True])


def channel_groups(
    model: nn.Module, example_input: torch.Tensor, *, ignored_layers: Iterable[nn.Module | str] = ()
) -> list[ChannelGroup]:
    """The BN-rooted coupled channel groups of ``model`` (read-only; the model is left as it was).

    Example:
        >>> import torchvision
        >>> groups = channel_groups(torchvision.models.resnet18(), torch.rand(1, 3, 32, 32))
        >>> len(groups), groups[0].root, sorted(groups[1].bns)
        (12, 'bn1', ['layer1.0.bn1'])
    """
    target, prefix = _trace_target(model)
    with _traced(target, example_input) as (dg, _):
        return list(_groups(dg, target, prefix, _resolve(model, ignored_layers)))


def _resolve(model: nn.Module, layers: Iterable[nn.Module | str]) -> set[nn.Module]:
    modules = dict(model.named_modules())
    return {modules[m] if isinstance(m, str) else m for m in layers}


# -- all or nothing --------------------------------------------------------------------------------
def _refuse_parametrized(model: nn.Module) -> None:
    """A model under a weight Pruner cannot be cut: its parametrized weights are not plain tensors."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise ValueError(
                f"prune_channels: layer {name!r} is parametrized (a Pruner is attached); call "
                "pruner.finalize() first, then prune channels of the plain model"
            )


def _module_state(module: nn.Module) -> dict:
    """A shallow copy of everything a module holds: its attributes, and copies of its dicts
    (parameters, buffers, children, hooks), so that later assignments do not reach the copy."""
    return {k: (v.copy() if isinstance(v, dict) else v) for k, v in vars(module).items()}


@contextlib.contextmanager
def _all_or_nothing(model: nn.Module) -> Iterator[None]:
    """On any error inside, give every module of ``model`` back the attributes, parameters,
    buffers and children it had (the same objects: the cut builds new tensors, it never writes
    into the old ones), then re-raise."""
    saved = [(m, _module_state(m)) for m in model.modules()]
    try:
        yield
    except BaseException:
        for module, state in saved:
            vars(module).clear()
            vars(module).update(state)
        raise


def _check_runs(model: nn.Module, example_input: torch.Tensor, single_step: bool) -> None:
    """Run the cut model once on the example (states reset before and after); a shape that no
    longer fits raises here, inside the transaction."""
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            _reset(model)
            model(example_input)
    except Exception as exc:
        why = f"prune_channels: the cut model does not run on the example input ({_first_line(exc)})"
        if not single_step:
            why += (
                "; its forward makes the time axis itself, so it was traced multi-step, where a flatten "
                "into a linear layer is not followed. Pass the part of the net that takes [T, N, C, H, W] "
                "(its body, after the time axis is made) with an example of that shape"
            )
        raise RuntimeError(why) from exc
    finally:
        _reset(model)
        for m, flag in training.items():
            m.training = flag


def _reset(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, base.MemoryModule):
            m.reset()


# -- the cut ---------------------------------------------------------------------------------------
def batchnorm_gammas(model: nn.Module) -> dict[str, torch.Tensor]:
    """``name -> |gamma|`` (a detached copy) of every affine batch norm in ``model``.

    Example:
        >>> list(batchnorm_gammas(nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))).items())
        [('1', tensor([1., 1.]))]
    """
    return {n: m.weight.detach().abs().clone() for n, m in model.named_modules()
            if isinstance(m, BATCH_NORMS) and m.weight is not None}


def _group_keep(group: ChannelGroup, keep: Mapping[str, torch.Tensor], gammas: Mapping[str, torch.Tensor],
                round_to: int | None) -> torch.Tensor:
    """Keep mask over ``group.root_idxs``: removable only if every BN of the group says so."""
    n = group.size
    keep_root = torch.zeros(n, dtype=torch.bool)
    score = torch.zeros(n, dtype=torch.float64)
    for bn, (local, pos) in group.bns.items():
        mask = keep.get(bn)
        says_keep = torch.ones(len(local), dtype=torch.bool) if mask is None else mask.bool().cpu()[local]
        keep_root[pos] |= says_keep
        if bn in gammas:
            score[pos] += gammas[bn].double().cpu()[local]
    if round_to and round_to > 1:
        want = min(n, -(-int(keep_root.sum()) // round_to) * round_to)
        extra = want - int(keep_root.sum())
        if extra > 0:
            candidates = torch.where(~keep_root)[0]
            keep_root[candidates[score[candidates].argsort(descending=True)[:extra]]] = True
    if not keep_root.any():
        keep_root[int(score.argmax())] = True
    return keep_root


def _keep_carried(group: ChannelGroup, keep_root: torch.Tensor, modules: Mapping[str, nn.Module],
                  inputs_gone: dict[str, set[int]]) -> None:
    """Veto the removal of a shortcut output that carries a channel the stream before the shortcut
    keeps: the group's BNs do not see that channel. Groups come in forward order, so the group
    before a shortcut has decided (``inputs_gone``) when the group after it is decided; an input not
    decided yet counts as kept. Records the inputs this group removes."""
    for name, (local, pos) in group.shortcuts_out.items():
        sources, gone = modules[name].sources, inputs_gone.get(name, set())
        for j, p in zip(local, pos):
            if sources[j] is not None and sources[j] not in gone:
                keep_root[p] = True
    for name, (local, pos) in group.shortcuts_in.items():
        inputs_gone.setdefault(name, set()).update(i for i, p in zip(local, pos) if not keep_root[p])


def prune_channels_by_mask(
    model: nn.Module,
    example_input: torch.Tensor,
    keep: Mapping[str, torch.Tensor],
    *,
    ignored_layers: Iterable[nn.Module | str] = (),
    round_to: int | None = None,
) -> tuple[nn.Module, ChannelSpec]:
    """Remove the channels that ``keep`` marks False in every BN of their coupled group, in place.

    Args:
        model: any network with batch norms: a ``SpikingNet`` / ``ANNTwin`` (traced through
            ``.body``), a SpikingJelly network in single- or multi-step mode, or a plain ANN.
        example_input: one batch the model accepts: ``[N, C, H, W]``, or ``[T, N, C, H, W]`` for a
            multi-step SpikingJelly network (only its shape matters; ``x[0]`` is traced).
        keep: ``bn name -> bool tensor`` over that BN's channels (True = keep). BNs not listed
            keep every channel, so they veto removal in their group.
        ignored_layers: modules (or names) whose shapes must not change; groups touching them stay.
        round_to: keep each group's width a multiple of this (adding back the channels with the
            largest summed ``|gamma|``), for kernels that prefer such widths.

    Returns:
        ``(model, spec)``: the same, now smaller, model and the :class:`ChannelSpec` of the cut.

    Example:
        >>> import torchvision
        >>> net = torchvision.models.resnet18(num_classes=10)
        >>> keep = {"layer1.0.bn1": torch.arange(64) < 16}
        >>> net, spec = prune_channels_by_mask(net, torch.rand(1, 3, 32, 32), keep)
        >>> net.layer1[0].conv1.out_channels, net.layer1[0].conv2.in_channels, spec.kept("layer1.0.bn1")[-1]
        (16, 16, 15)
    """
    _refuse_parametrized(model)
    target, prefix = _trace_target(model)
    gammas = batchnorm_gammas(model)
    unknown = set(keep) - set(gammas)
    if unknown:
        raise KeyError(f"not affine batch norms of the model: {sorted(unknown)}")
    ignored = _resolve(model, ignored_layers)
    names = {m: prefix + n for n, m in target.named_modules()}
    modules_by_name = dict(model.named_modules())
    kept: dict[tuple[str, str], list[int]] = {}
    sizes: dict[tuple[str, str], int] = {}
    with _all_or_nothing(model):
        with _traced(target, example_input) as (dg, single_step):
            plans = []
            shortcut_inputs_gone: dict[str, set[int]] = {}
            for group in _groups(dg, target, prefix, ignored):
                keep_root = _group_keep(group, keep, gammas, round_to)
                _keep_carried(group, keep_root, modules_by_name, shortcut_inputs_gone)
                if not keep_root.all():
                    plans.append((dict(target.named_modules())[group.root[len(prefix):]],
                                  [group.root_idxs[int(p)] for p in torch.where(~keep_root)[0]]))
            # Decide every group first, then cut: the groups are disjoint, so one cut does not move
            # another root's indices; each group is re-derived from the current shapes before its cut.
            for root, removed in plans:
                for item in dg.get_pruning_group(root, tp.prune_batchnorm_out_channels, removed):
                    module, idxs = item.dep.target.module, [int(i) for i in item.idxs]
                    if module in names and isinstance(module, nn.Module):
                        dim = "out" if dg.is_out_channel_pruning_fn(item.dep.handler) else "in"
                        key = (names[module], dim)
                        if key not in kept:
                            pruner = layer_pruner(module)
                            count = pruner.get_out_channels if dim == "out" else pruner.get_in_channels
                            sizes[key] = count(module)
                            kept[key] = list(range(sizes[key]))
                        gone = set(idxs)
                        kept[key] = [o for j, o in enumerate(kept[key]) if j not in gone]
                    item.dep(idxs)
        if plans:
            _check_runs(model, example_input, single_step)
    spec = ChannelSpec()
    for (name, dim), idxs in kept.items():
        spec.layers.setdefault(name, {})[dim] = idxs
        spec.sizes.setdefault(name, {})[dim] = sizes[(name, dim)]
    spec.layers = {n: {d: spec.layers[n][d] for d in DIMS if d in spec.layers[n]} for n in spec.layers}
    spec.shapes = ChannelSpec._shapes_of(model, spec.layers)
    return model, spec


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    criterion: str = "optimal",
    delta: float = 1e-3,
    percent: float | None = None,
    *,
    ignored_layers: Iterable[nn.Module | str] = (),
    round_to: int | None = None,
) -> tuple[nn.Module, ChannelSpec]:
    """Prune channels by their batch-norm scales and physically shrink ``model`` (in place).

    ``criterion="optimal"`` cuts each BN at its own Optimal-Thresholding threshold
    (:func:`~snnprune.channels.criteria.optimal_threshold` with ``delta``); ``"slimming"`` cuts all
    BNs at one global percentile ``percent`` of ``|gamma|`` (network slimming). A channel then goes
    only if every BN of its coupled group is below its threshold (see
    :func:`prune_channels_by_mask` for the other arguments).

    Returns:
        ``(model, spec)``; store ``spec.to_state()`` next to the ``state_dict`` and rebuild with
        ``ChannelSpec.from_state(state).apply(create_model(...))``.

    Example:
        >>> from snnprune.models import create_model
        >>> net = create_model("sew_digits", T=2)
        >>> with torch.no_grad():
        ...     net.body.features[0].bn.weight[8:] = 0          # half the stem's channels are dead ...
        ...     net.body.features[1].conv[1].bn.weight[8:] = 0  # ... in every BN of their SEW group
        >>> net, spec = prune_channels(net, torch.rand(1, 1, 8, 8))
        >>> net.body.features[0].conv.out_channels, net(torch.rand(3, 1, 8, 8)).shape
        (8, torch.Size([3, 10]))
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    _refuse_parametrized(model)
    gammas = batchnorm_gammas(model)
    if not gammas:
        raise ValueError("the model has no affine batch norm: nothing to read channel importance from")
    if criterion == "optimal":
        thresholds = {n: optimal_threshold(g, delta) for n, g in gammas.items()}
    else:
        if percent is None:
            raise ValueError('criterion="slimming" needs percent= (the fraction of channels to remove, 0..1)')
        t = slimming_threshold(list(gammas.values()), percent)
        thresholds = {n: t for n in gammas}
    keep = {n: channels_to_keep(g, thresholds[n]) for n, g in gammas.items()}
    return prune_channels_by_mask(model, example_input, keep, ignored_layers=ignored_layers, round_to=round_to)

