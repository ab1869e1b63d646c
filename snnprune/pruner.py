"""The Pruner: attach a pruning method to a model's layers and drive it
(``optimizer.step(); pruner.step(optimizer)`` in the loop, ``pruner.finalize()`` at the end).
What moves the pruning is :mod:`snnprune.control`'s, per method ``control``; which tensors, the
floors and the rankings are :mod:`snnprune.selection`'s.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from snnprune import Pruner
    >>> from snnprune.schedules import LATS
    >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> pruner = Pruner(model, "soft_threshold", LATS(l1=0.5))
    >>> for _ in range(3):
    ...     opt.zero_grad(); model(torch.randn(4, 8)).sum().backward()
    ...     opt.step(); pruner.step(opt)
    >>> round(pruner.threshold, 6)               # λ·Σ η = 0.5 · 0.3
    0.15
    >>> plain = pruner.finalize()
    >>> sorted(plain.state_dict())
    ['0.bias', '0.weight', '2.bias', '2.weight']
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
import weakref
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.optim.optimizer import register_optimizer_step_post_hook

from ._validation import check_fraction, did_you_mean
from .activity import ActivityRegularizer
from .allocation import check_allocation, layer_sparsities
from .control import Control, Layers, make_control
from .metrics.sparsity import SparsityReport, regrowth, sparsity
from .reparam import METHODS, Reparameterization, get_method
from .schedules import SparsitySchedule, ThresholdSchedule
from .selection import (
    DEFAULT_FLOOR_CAP,
    PRUNABLE_TYPES,
    Selector,
    check_attachable,
    default_floor,
    prunable_layers,
    prunable_tensors,
    select_tensors,
)

__all__ = ["Pruner", "SparsityReport", "prune", "bake", "plain_state_dict", "prunable_layers", "sparsity",
           "regrowth", "default_floor", "DEFAULT_FLOOR_CAP", "METHODS", "PRUNABLE_TYPES", "DEFAULT_REACH", "MAX_JUMP"]

_PRUNER_KEYWORDS = ("include", "exclude", "scope", "keep_first", "keep_last", "total_steps", "method_kwargs",
                    "target_sparsity", "min_weights", "reach", "allocation", "activity")

#: the fraction of ``total_steps`` at which a target is reached and the mask frozen by default
DEFAULT_REACH = 0.75
#: the most of the weights surviving before it that the reach step may remove without a warning
MAX_JUMP = 0.1


class Pruner:
    """Attach pruning to ``model`` and drive it.

    Args:
        model: any ``nn.Module``; every ``nn.Conv*``/``nn.Linear`` (SpikingJelly's layers and
            layers inside ``SeqToANNContainer`` included) and ``nn.MultiheadAttention`` input
            projection is a candidate.
        method: a registered name (``"soft_threshold"``, ``"str"``, ``"magnitude"``, ``"gmp"``,
            ``"random"``, ...; see :data:`snnprune.reparam.METHODS`), a
            :class:`~snnprune.reparam.Reparameterization` subclass, or an instance of one (a
            prototype, deep-copied for every layer). Method options go on the instance or in
            ``method_kwargs``.
        schedule: a threshold schedule for ``control = "threshold"`` methods (required), a sparsity
            schedule or ``None`` (then :meth:`prune_to`) for ``"sparsity"`` methods, ``None`` for
            ``"learned"`` ones. The Pruner works on its own copy.
        include / exclude: which candidates to prune: a name glob (``"layer4.*"``), a layer type,
            a predicate ``(name, module) -> bool``, or a list of these. ``include=None`` takes all.
        scope: ``"global"``: one threshold (or magnitude ranking) over all pruned layers;
            ``"layer"``: thresholds in units of each layer's initial weight RMS, masks of equal
            sparsity per layer. Default ``"layer"`` for ``"gmp"`` (Zhu & Gupta), else ``"global"``.
        keep_first / keep_last: keep the first / last candidate dense, in the order the modules
            were registered (``model.named_modules()``).
        total_steps: number of optimizer steps of the run, for schedules normalised to end on D.
        method_kwargs: options of the method's constructor when ``method`` is a name or a class.
        target_sparsity: end the run (``total_steps``) at this sparsity over the pruned layers,
            instead of giving a schedule (:mod:`snnprune.control` says how, per method).
        min_weights: keep at least this many weights in every pruned layer, counted in the
            budget. Default: with a target, :func:`~snnprune.selection.default_floor`; else 0.
        reach: with a target, reach it along a plan at ``round(reach·total_steps)`` and freeze the
            mask there so the kept weights recover (default :data:`DEFAULT_REACH`; ``1.0``: at the
            last step); a reach step removing more than :data:`MAX_JUMP` of the survivors warns.
        allocation: how a target, :meth:`prune_to` or GMP share the sparsity among the layers:
            ``"global"``, ``"uniform"``, ``"erk"``, ``{name glob: sparsity}`` or
            ``"sensitivity:PATH"`` (:mod:`snnprune.allocation`); supersedes ``scope``.
        activity: a firing-rate penalty added to :meth:`regularization`: a coefficient, or
            ``{name glob: coefficient}`` (:class:`~snnprune.activity.ActivityRegularizer`).

    Call :meth:`step` once per optimizer step, right after ``optimizer.step()`` (before
    ``scheduler.step()``). Tied weights (one tensor in two layers) are refused.

    Example::

        >>> from torch import nn
        >>> pruner = Pruner(nn.Sequential(nn.Linear(4, 4)), "magnitude")
        >>> pruner.prune_to(0.5); pruner.sparsity().pruned
        0.5
    """

    def __init__(self, model: nn.Module, method: str | type[Reparameterization] | Reparameterization = "soft_threshold",
                 schedule: ThresholdSchedule | SparsitySchedule | None = None, *, include: Selector = None,
                 exclude: Selector = None, scope: str | None = None, keep_first: bool = False, keep_last: bool = False,
                 total_steps: int | None = None, method_kwargs: dict | None = None,
                 target_sparsity: float | None = None, min_weights: int | None = None, reach: float | None = None,
                 allocation: str | dict | None = None, activity: float | dict | None = None, **unknown) -> None:
        if unknown:
            key = next(iter(unknown))
            raise TypeError(f"Pruner got an unexpected keyword {key!r}{did_you_mean(key, _PRUNER_KEYWORDS)}; "
                            "options of the method go in method_kwargs={...} or on a method instance")
        # Everything is checked and built before the model is touched: a failing Pruner(...)
        # leaves the model as it was.
        prototype, self.method_name = _prototype(method, method_kwargs)
        scope, allocation = _scope(type(prototype), scope, allocation)
        self.allocation = allocation
        self.control = type(prototype).control
        #: the step a target is reached at and the mask frozen from (``reach`` of ``total_steps``)
        self.reach_step = _reach_step(reach, target_sparsity, total_steps)
        self.regime: Control = make_control(self.control, self.method_name, schedule, target_sparsity,
                                            total_steps if self.reach_step is None else self.reach_step, scope)
        selected = select_tensors(model, include, exclude, keep_first, keep_last)
        check_attachable(model, selected, Reparameterization)
        target = self.regime.target if self.regime.target is not None else target_sparsity
        if min_weights is None:  # masks made per layer keep each layer's share: a floor of 1
            per_layer = allocation not in (None, "global") or (scope == "layer" and self.control != "threshold")
            min_weights = default_floor(target, [getattr(m, t).numel() for _, m, t in selected], per_layer=per_layer)
        self.min_weights = int(min_weights)
        if self.min_weights < 0 or self.min_weights != min_weights:
            raise ValueError(f"min_weights must be an integer >= 0, got {min_weights!r}")
        self.model, self.scope = model, scope
        self.layer_names = [name for name, _, _ in selected]
        self._targets = [(module, tensor) for _, module, tensor in selected]
        self._reparams: list[Reparameterization] = [copy.deepcopy(prototype) for _ in selected]
        self._layers = Layers(self.layer_names, self._targets, self._reparams, scope, self.min_weights, allocation)
        if target is not None and allocation is not None:  # a bad allocation fails before the model is touched
            layer_sparsities(allocation, target, [tuple(getattr(m, t).shape) for _, m, t in selected],
                             self.layer_names)
        try:
            for (module, tensor), reparam in zip(self._targets, self._reparams):
                parametrize.register_parametrization(module, tensor, reparam, unsafe=True)
            for i, reparam in enumerate(self._reparams):
                reparam.setup(self._layers.latent(i))
            #: the firing-rate penalty (``activity=``), or None
            self.activity = ActivityRegularizer(model, activity) if activity else None
        except BaseException:
            _detach(self._targets)
            raise
        #: whether :meth:`regularization` contributes anything (skip the call when it does not)
        self.has_regularization = self._layers.has_regularization or self.activity is not None
        self.steps = 0
        self._finalized = False
        self._frozen_threshold: float | None = None
        self._optimizer_steps = _OptimizerSteps(self._layers.latent(0))
        _warn_if_unreachable(target, self.min_weights, [w.numel() for w in self._layers.latents()])
        # reached before the last step: the threshold follows the plan to the reach step
        self.regime.follow_plan = self.reach_step is not None and self.reach_step < int(total_steps)
        self.regime.attach(self._layers)

    @property
    def schedule(self):
        """The threshold or sparsity schedule in force (``None`` for learned methods)."""
        return self.regime.schedule

    @property
    def controller(self):
        """The :class:`~snnprune.schedules.RegularizationFeedback` of a learned method under a target."""
        return self.regime.controller

    def target_metrics(self) -> dict[str, float]:
        """Where the target's controller stands (logged every epoch): ``{"target_lambda",
        "target_lambda_updates"}`` (threshold methods: λ and its updates), ``{"target_gain",
        "target_gain_updates"}`` (learned ones: the regulariser's factor), or ``{}``."""
        return self.regime.metrics()

    def layers(self) -> Iterator[tuple[str, nn.Module, Reparameterization]]:
        """``(name, module, reparameterization)`` of every pruned tensor."""
        return zip(self.layer_names, [m for m, _ in self._targets], self._reparams)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The method's own trainable parameters (e.g. STR's ``s``), for an existing optimizer."""
        for r in self._reparams:
            yield from r.parameters()

    @property
    def threshold(self) -> float | None:
        """The global threshold ``d`` in force (learned per-layer thresholds: their mean; ``None``
        for methods without one). After :meth:`freeze`, the one frozen in. In ``scope="layer"`` it is
        in units of each layer's scale; :meth:`thresholds` gives the absolute value per layer."""
        if self._frozen_threshold is not None:
            return self._frozen_threshold
        d = self.regime.threshold(self.steps)
        if d is not None:
            return d
        values = [v for v in self.thresholds().values() if v is not None]
        return sum(values) / len(values) if values else None

    def thresholds(self) -> dict[str, float | None]:
        """Absolute threshold in force in each pruned layer (``None`` where the method has none)."""
        return {name: r.current_threshold() for name, _, r in self.layers()}

    def sparsity(self) -> SparsityReport:
        """Sparsity of every conv/linear weight of the model (``.total``) and of the pruned layers
        (``.pruned``: what :meth:`prune_to` and a target sparsity refer to)."""
        return sparsity(self.model)

    @torch.no_grad()
    def masks(self) -> dict[str, torch.Tensor]:
        """``{layer name: bool mask of the kept weights}`` (what :meth:`finalize` keeps)."""
        return {name: r.kept(w) for name, r, w in zip(self.layer_names, self._reparams, self._layers.latents())}

    def regularization(self) -> torch.Tensor:
        """The methods' differentiable penalty, to add to the loss.

        Returns:
            A scalar tensor: 0 for methods without one; under a target, times the controller's gain;
            plus the ``activity`` penalty of the forwards since the last call.

        Example::

            >>> loss = task_loss + pruner.regularization()  # doctest: +SKIP
        """
        total = torch.stack([r.regularization(self._layers.latent(i)) for i, r in enumerate(self._reparams)]).sum()
        total = total * self.regime.gain if self.regime.controller is not None else total
        return total + self.activity.penalty() if self.activity is not None else total

    # -- the training loop -----------------------------------------------------------------
    def step(self, optimizer: torch.optim.Optimizer | None = None, *, lr: float | None = None, scaler=None) -> None:
        """Count one optimizer step and move the control (λ-form: ``d += λ·η``; GMP: new masks;
        learned methods under a target: the feedback). Call it right after ``optimizer.step()``
        (``scaler.step(optimizer)`` under AMP), before ``scheduler.step()``. A call with no optimizer
        step since the last is not counted with ``scaler=`` (a skipped step), and warns once without.

        Args:
            optimizer: the optimizer that trains the model.
            lr: the learning rate to use instead of reading it from the optimizer.
            scaler: the ``torch.amp.GradScaler`` under AMP.

        Example::

            >>> scaler.step(opt); pruner.step(opt, scaler=scaler); scaler.update()  # doctest: +SKIP
        """
        self._check_alive()
        _check_optimizer(optimizer, lr)
        if optimizer is not None:
            if self._layers.optimizer is not optimizer:
                self._layers.use_optimizer(optimizer, self.method_name)
            if not self._optimizer_steps.counts(optimizer, scaler, self.steps + 1):
                return
        lrs = _learning_rates(optimizer, lr, self._layers.groups)
        self.steps += 1
        landing = self.steps == self.reach_step and not self.frozen
        before = self._layers.sparsity() if landing else None
        self.regime.on_step(self.steps, lrs)
        if landing:
            self._land(before)
        for r, step_lr in zip(self._reparams, lrs):
            r.on_step(self.steps, step_lr)

    def _land(self, before: float) -> None:
        """At ``reach``: freeze the mask; warn when this step cut more than :data:`MAX_JUMP` of the survivors."""
        self.freeze()
        _warn_if_jumped(self.steps, before, self._layers.sparsity())

    def layer_targets(self) -> dict[str, float] | None:
        """The sparsity each layer is to reach under the target and the allocation.

        Returns:
            ``{layer name: sparsity}``, or ``None`` without a target or where one ranking over all
            layers decides (``allocation="global"``).

        Example::

            >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
            >>> Pruner(net, "gmp", target_sparsity=0.5, total_steps=10, allocation="uniform").layer_targets()
            {'0': 0.5, '1': 0.5}
        """
        target = self.regime.target
        split = None if target is None else self._layers.split(target)
        return None if split is None else dict(zip(self.layer_names, split))

    def layer_sparsity(self) -> dict[str, float]:
        """The pruned fraction of each pruned layer's weight now (what :meth:`masks` cut)."""
        return self._layers.per_layer_sparsity()

    @torch.no_grad()
    def prune_to(self, sparsity: float, *, shift: bool = True) -> float | None:
        """Make the pruned layers ``sparsity`` sparse now (pruning at initialization, one-shot
        magnitude pruning): over all pruned weights together (``scope="global"``) or each layer on its
        own (``"layer"``). Kept weights do not move: bit for bit under a mask; under the soft
        threshold (``shift=True``: the survivors' latent weights are moved out by the threshold,
        which then stays fixed) to one float ulp, as ``(w + d) − d`` rounds.

        Args:
            sparsity: the fraction of the pruned layers' weights to prune, in ``[0, 1)``.
            shift: soft threshold only: keep the survivors' weights (else their latent weights).

        Returns:
            The global threshold for threshold methods; ``None`` for sparsity methods (masks).

        Example::

            >>> pruner.prune_to(0.9)  # doctest: +SKIP
        """
        self._check_alive()
        sparsity = check_fraction("target sparsity", sparsity)
        if self.frozen:
            raise RuntimeError("this Pruner's mask is frozen: prune_to would not change it; attach a new Pruner")
        return self.regime.prune_to(sparsity, shift, self.steps)

    @property
    def frozen(self) -> bool:
        return self._layers.frozen

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the current mask for sparse fine-tuning: from now on ``w = θ ⊙ m`` with ``θ`` set to
        the current final weight; pruned weights get no gradient and the threshold no longer moves
        (:attr:`threshold` keeps the one frozen in). The model's buffers stay the same tensors, so an
        EMA (``AveragedModel(..., use_buffers=True)``) keeps updating."""
        self._check_alive()
        if self.frozen:
            return
        self._frozen_threshold = self.threshold if self.control == "threshold" else None
        for i, r in enumerate(self._reparams):
            r.freeze(self._layers.latent(i))
        self._layers.rest_optimizer_state(list(self.masks().values()))

    def apply_masks(self, model: nn.Module) -> nn.Module:
        """Make ``model``, a copy of the pruned model (``ema.module``, a deep copy, a plain model of
        the same architecture, with every pruned layer by name and shape), exactly as sparse as the
        live one (:func:`apply_masks` with :meth:`masks`); returns it.

        Example::

            >>> plain = snnprune.bake(pruner.apply_masks(ema.module))  # doctest: +SKIP
        """
        return apply_masks(model, self.masks())

    def state_dict(self) -> dict:
        """Plain-data state (loads with ``torch.load(weights_only=True)``); the thresholds, masks and
        learned parameters themselves live in the model's ``state_dict``.

        Example::

            >>> torch.save({"model": model.state_dict(), "pruner": pruner.state_dict()}, path)  # doctest: +SKIP
        """
        return {"method": self.method_name, "layers": list(self.layer_names), "scope": self.scope,
                "reach_step": self.reach_step, "steps": self.steps, "groups": list(self._layers.groups),
                "frozen_threshold": self._frozen_threshold,
                "controller": None, "schedule": None, **self.regime.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (also one written by earlier snnprune versions). The
        checkpoint's values win over the constructor's (the schedule's too), with a warning when
        they differ.

        Args:
            state: what :meth:`state_dict` returned.
        """
        if state["method"] != self.method_name:
            raise ValueError(f"pruner state is of method {state['method']!r}, this Pruner runs {self.method_name!r}")
        if state["layers"] != self.layer_names:
            raise ValueError(_layers_differ(state["layers"], self.layer_names))
        if state.get("scope", self.scope) != self.scope:  # e.g. a GMP run from before GMP's default was "layer"
            warnings.warn(f"the checkpoint's scope={state['scope']!r} is used where this Pruner was built with "
                          f"scope={self.scope!r}", stacklevel=2)
            self.scope = self._layers.scope = self.regime.scope = state["scope"]
        if "reach_step" in state:
            self.reach_step = state["reach_step"]
        elif self.reach_step is not None:  # a run from before reach=: its plan ends at its last step, no freeze
            self.reach_step = None
            _plan_to_the_end(self.regime, state.get("schedule") or {})
        self.steps = int(state["steps"])
        self._layers.groups = [int(v) for v in state.get("groups", self._layers.groups)]
        self._frozen_threshold = state.get("frozen_threshold")
        self.regime.load_state_dict(state)
        self.regime.apply(self.steps, retarget=False)

    def finalize(self) -> nn.Module:
        """Remove the parametrizations, baking the final weights (zeros where the method prunes)
        into plain ``weight`` parameters.

        Returns:
            The model (the same object), with exactly the state_dict keys of the original
            architecture; deep copies taken before (a best model, an EMA) keep working.
        """
        self._check_alive()
        self._finalized = True
        self._optimizer_steps.remove()
        if self.activity is not None:
            self.activity.remove()
        return bake(self.model)

    def _check_alive(self) -> None:
        if self._finalized or not parametrize.is_parametrized(*self._targets[0]):
            self._finalized = True
            raise RuntimeError("this Pruner or its model was finalized (finalize or snnprune.bake): attach a new "
                               "Pruner to prune again")

    def __repr__(self) -> str:
        return (f"Pruner(method={self.method_name!r}, schedule={self.schedule!r}, "
                f"layers={len(self.layer_names)}, scope={self.scope!r}, steps={self.steps})")


def _detach(targets: list[tuple[nn.Module, str]]) -> None:
    """Undo a partial attach (a Pruner whose construction failed)."""
    for module, tensor in targets:
        if parametrize.is_parametrized(module, tensor):
            _own_class(module)
            parametrize.remove_parametrizations(module, tensor, leave_parametrized=False)


def _scope(cls: type, scope: str | None, allocation) -> tuple[str, str | dict | None]:
    """``(scope, allocation)`` checked: an allocation supersedes the scope (both given: an error)."""
    if allocation is not None:
        if scope is not None:
            raise ValueError("give allocation= or scope=, not both: allocation supersedes scope for how the "
                             "sparsity is shared among the layers")
        allocation = check_allocation(allocation)
        scope = "layer" if allocation == "uniform" else "global"
    scope = getattr(cls, "default_scope", "global") if scope is None else scope
    if scope not in ("global", "layer"):
        raise ValueError(f"unknown scope {scope!r}: use 'global' or 'layer'")
    return scope, allocation


def _reach_step(reach: float | None, target: float | None, total_steps: int | None) -> int | None:
    """The step a target is reached at: ``reach`` (default :data:`DEFAULT_REACH` with a target and
    ``total_steps``) of ``total_steps``; ``None`` without a target."""
    if reach is None:
        if target is None or total_steps is None:
            return None
        reach = DEFAULT_REACH
    if target is None or total_steps is None:
        raise ValueError("reach= goes with target_sparsity= and total_steps= (the target is reached at "
                         "reach·total_steps)")
    reach = float(reach)
    if not 0.0 < reach <= 1.0:
        raise ValueError(f"reach must be in (0, 1] (a fraction of total_steps), got {reach}")
    return max(1, round(reach * int(total_steps)))


def _check_optimizer(optimizer, lr: float | None) -> None:
    if optimizer is None and lr is None:
        raise ValueError("Pruner.step needs the optimizer (or lr=) to read the learning rate")
    if optimizer is not None and not hasattr(optimizer, "param_groups"):
        kind = "an LR scheduler" if hasattr(optimizer, "get_last_lr") else "not an optimizer"
        raise TypeError(f"Pruner.step expects the optimizer, got a {type(optimizer).__name__} ({kind}): call "
                        "pruner.step(optimizer) after optimizer.step() and before scheduler.step()")


def _learning_rates(optimizer, lr: float | None, groups: list[int]) -> list[float]:
    """The learning rate each pruned layer's step used: ``lr`` for all, or its parameter group's."""
    if lr is not None:
        lrs = [float(lr)] * len(groups)
    else:
        group_lr = [float(g["lr"]) for g in optimizer.param_groups]
        lrs = [group_lr[g] for g in groups]
    bad = next((v for v in lrs if not (math.isfinite(v) and v >= 0)), None)
    if bad is not None:
        raise ValueError(f"learning rate must be a finite number >= 0, got {bad}")
    return lrs


def _warn_if_jumped(step: int, before: float, after: float) -> None:
    jump = (after - before) / max(1.0 - before, 1e-12)
    if jump > MAX_JUMP:
        warnings.warn(f"step {step} removed {jump:.0%} of the surviving weights at once to reach the target "
                      f"(sparsity {before:.2%} -> {after:.2%}, more than MAX_JUMP={MAX_JUMP:g}): the controller "
                      "was behind its plan; the mask is frozen for the remaining steps to recover", stacklevel=4)


def _warn_if_unreachable(target: float | None, min_weights: int, sizes: list[int]) -> None:
    """Say at once when the floors alone keep more weights than the target leaves."""
    if target is None or not min_weights:
        return
    kept, total = sum(min(min_weights, n) for n in sizes), sum(sizes)
    if 1.0 - kept / total < float(target) - 0.005:
        warnings.warn(f"target sparsity {float(target):.2%} cannot be reached: min_weights={min_weights} keeps at "
                      f"least {kept} of the {total} pruned weights, so at most {1 - kept / total:.2%}; lower "
                      "min_weights or the target", stacklevel=3)


def _plan_to_the_end(regime: Control, saved_schedule: dict) -> None:
    """Give a state written before ``reach`` its plan back: it ends at the run's last step."""
    regime.follow_plan = False
    for key in ("total_steps", "end"):
        if saved_schedule.get(key) is not None and hasattr(regime.schedule, key):
            setattr(regime.schedule, key, saved_schedule[key])


def _layers_differ(saved: list[str], here: list[str]) -> str:
    only_saved, only_here = sorted(set(saved) - set(here))[:3], sorted(set(here) - set(saved))[:3]
    compiled = any("_orig_mod" in n for n in set(saved) ^ set(here))
    return ("pruner state does not match this pruner's layers: only in the checkpoint "
            f"{only_saved or '(same names, other order)'}, only here {only_here or '-'}"
            + (" (a torch.compile'd model prefixes names with '_orig_mod.')" if compiled else ""))


class _OptimizerSteps:
    """Counts the steps of the optimizers that train ``latent``, through torch's public global
    step hook (``torch.optim.optimizer.register_optimizer_step_post_hook``): unlike a hook on one
    optimizer it sees the very first step, and optimizers wrapped by Lightning or Accelerate. An
    optimizer step a GradScaler skips never runs, so it is never counted."""

    def __init__(self, latent: nn.Parameter) -> None:
        self._latent = weakref.ref(latent)
        self._trains: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.count = self._seen = 0
        self._warned = False
        me = weakref.ref(self)

        def hook(optimizer, args, kwargs) -> None:
            counter = me()
            if counter is not None:
                counter._add(optimizer)

        self.remove = weakref.finalize(self, register_optimizer_step_post_hook(hook).remove)

    def _add(self, optimizer) -> None:
        trains = self._trains.get(optimizer)
        if trains is None:
            latent = self._latent()
            trains = any(p is latent for g in optimizer.param_groups for p in g["params"])
            self._trains[optimizer] = trains
        self.count += trains

    def counts(self, optimizer, scaler, step: int) -> bool:
        """Whether ``pruner.step`` counts this call: not for a step a GradScaler skipped (``scaler``
        given, no optimizer step since the last call); a call without an optimizer step since the
        last one and without ``scaler`` warns once and counts (the behaviour of a plain loop)."""
        stepped, self._seen = self.count - self._seen, self.count
        if stepped or not (isinstance(optimizer, torch.optim.Optimizer) or self.count):
            return True  # stepped, or an optimizer this hook cannot see
        if scaler is not None:
            return False
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"pruner.step was called at step {step} with no optimizer step since its last call (or the attach): "
                "call it once per optimizer step, right after optimizer.step() (scaler.step(optimizer) under AMP; "
                "pass scaler= so that a step the scaler skips is not counted). With gradient accumulation call it only "
                "where the optimizer steps (in Lightning: in LightningModule.optimizer_step after "
                "super().optimizer_step(...), not in on_train_batch_end)",
                stacklevel=3)
        return True


# -- construction helpers --------------------------------------------------------------------
def _prototype(method, method_kwargs) -> tuple[Reparameterization, str]:
    kwargs = dict(method_kwargs or {})
    if isinstance(method, (ThresholdSchedule, SparsitySchedule)):
        raise TypeError(
            f"got the schedule {method!r} where the method goes: write Pruner(model, 'soft_threshold', {method!r})"
        )
    if isinstance(method, Reparameterization):
        if kwargs:
            raise TypeError("method_kwargs go with a method name or class; set the options on the instance instead")
        return method, type(method).name or type(method).__name__
    if isinstance(method, str):
        cls = get_method(method)
    elif isinstance(method, type) and issubclass(method, Reparameterization):
        cls = method
    else:
        raise TypeError(
            f"method must be a registered name ({', '.join(sorted(METHODS))}), a Reparameterization subclass "
            f"or an instance of one, got {method!r}"
        )
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        params = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        bad = next((k for k in kwargs if k not in params), None)
        if bad is None:
            raise
        raise TypeError(
            f"{cls.__name__} has no option {bad!r}{did_you_mean(bad, params)}; "
            f"its options: {', '.join(params) or 'none'}"
        ) from None
    return cls(**kwargs), cls.name or cls.__name__


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Zero the weights of ``model`` outside ``masks`` (``{layer name: bool keep-mask}``, as
    :meth:`Pruner.masks` gives): each named layer keeps its weights where its mask is ``True`` and is
    0 elsewhere, so ``model`` is exactly as sparse as the masks say. A kept weight that is 0 becomes
    the smallest normal float of its sign. A layer pruned by snnprune (a copy of a pruned model) is
    frozen at that weight (:meth:`~snnprune.reparam.Reparameterization.freeze`); a plain layer's
    weight is written.

    Args:
        model: a model with every layer named in ``masks``, of the masks' shapes.
        masks: the keep-masks by layer name.

    Returns:
        ``model``.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 2))
        >>> _ = apply_masks(model, {"0": torch.tensor([[True, False], [False, True]])})
        >>> (model[0].weight != 0).tolist()
        [[True, False], [False, True]]
    """
    theirs = {name: (m, t) for name, m, t in prunable_tensors(model)}
    for name, keep in masks.items():
        module, tensor = theirs.get(name, (None, None))
        if module is None or getattr(module, tensor).shape != keep.shape:
            raise ValueError(f"apply_masks: the model has no layer {name!r} of shape {tuple(keep.shape)}: give it "
                             "a copy of the pruned model (e.g. ema.module)")
    for name, keep in masks.items():
        module, tensor = theirs[name]
        reparam = None
        if parametrize.is_parametrized(module, tensor):
            reparam = next((p for p in module.parametrizations[tensor] if isinstance(p, Reparameterization)), None)
        latent = getattr(module, tensor) if reparam is None else module.parametrizations[tensor].original
        weight = latent if reparam is None else reparam.finished_weight(latent)
        tiny = torch.full_like(weight, torch.finfo(weight.dtype).tiny).copysign(latent)
        keep = keep.to(weight.device)
        weight = torch.where(keep, torch.where(weight == 0, tiny, weight), torch.zeros_like(weight))
        if reparam is None:
            latent.copy_(weight)
        else:
            reparam.freeze(latent, keep, weight)
    return model


# -- finalize ---------------------------------------------------------------------------------
def _own_class(module: nn.Module) -> None:
    """Give ``module`` its own parametrized class before removing a parametrization: torch's
    ``remove_parametrizations`` deletes the property from the class, which ``copy.deepcopy``
    shares between the original and its copies."""
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


@torch.no_grad()
def bake(model: nn.Module) -> nn.Module:
    """Remove every pruning parametrization of ``model`` in place, leaving plain parameters that
    hold the final weights (what the method's :meth:`~snnprune.reparam.Reparameterization.
    final_weight` says: zeros where it prunes). Used by :meth:`Pruner.finalize`. Safe on a
    ``copy.deepcopy`` of a model under training (the live model and other copies keep working),
    which is how to export without stopping a run (:func:`plain_state_dict`).

    Example::

        >>> import copy
        >>> from torch import nn
        >>> from snnprune import Pruner
        >>> from snnprune.schedules import Constant
        >>> model = nn.Sequential(nn.Linear(4, 4))
        >>> _ = Pruner(model, "soft_threshold", Constant(0.3))
        >>> sorted(bake(copy.deepcopy(model)).state_dict())
        ['0.bias', '0.weight']
        >>> model[0].weight.shape                 # the live model still works
        torch.Size([4, 4])
    """
    for _, module, tensor in prunable_tensors(model):
        if not parametrize.is_parametrized(module, tensor):
            continue
        plist = module.parametrizations[tensor]
        reparam = next((p for p in plist if isinstance(p, Reparameterization)), None)
        if reparam is None:
            continue
        final = reparam.finished_weight(plist.original)
        _own_class(module)
        parametrize.remove_parametrizations(module, tensor, leave_parametrized=False)
        getattr(module, tensor).copy_(final)
    return model


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict of the plain (finalized) model, without touching ``model``: it loads
    strictly into the original architecture."""
    return bake(copy.deepcopy(model)).state_dict()


def prune(model: nn.Module, method="soft_threshold", schedule=None, **kwargs) -> Pruner:
    """Functional front: ``prune(model, "soft_threshold", LATS(l1=λ))`` is ``Pruner(model, ...)``."""
    return Pruner(model, method, schedule, **kwargs)
