"""The Pruner: attach a pruning method to a model's layers and drive it.

Three lines take any PyTorch or SpikingJelly model from dense to soft-threshold pruned::

    pruner = Pruner(model, "soft_threshold", LATS(l1=1e-4))
    ...                                       # in the training loop:
    optimizer.step(); pruner.step(optimizer)  # then scheduler.step() as usual

and ``pruner.finalize()`` hands back the plain model with the zeros baked in.

The Pruner dispatches on the method's ``control``: a ``"threshold"`` method gets its threshold
from a :mod:`snnprune.schedules` threshold schedule after every step; a ``"sparsity"`` method
gets masks from a target sparsity (``prune_to(s)`` once, or a sparsity schedule such as GMP's
:class:`~snnprune.schedules.Cubic`) through :func:`snnprune.selection.magnitude_masks`; a
``"learned"`` method is moved by the optimizer alone.

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
from .metrics.sparsity import SparsityReport, regrowth, sparsity
from .reparam import METHODS, Reparameterization, get_method
from .schedules import (
    Constant,
    Cubic,
    OneShot,
    RegularizationFeedback,
    SparsitySchedule,
    TargetSparsity,
    ThresholdSchedule,
)
from .selection import (
    PRUNABLE_TYPES,
    Selector,
    floored_threshold,
    magnitude_masks,
    magnitude_threshold,
    matches,
    prunable_layers,
    prunable_tensors,
    with_floor,
)

__all__ = [
    "Pruner",
    "SparsityReport",
    "prune",
    "bake",
    "plain_state_dict",
    "prunable_layers",
    "sparsity",
    "regrowth",
    "METHODS",
    "PRUNABLE_TYPES",
]

_PRUNER_KEYWORDS = (
    "include", "exclude", "scope", "keep_first", "keep_last", "total_steps", "method_kwargs", "target_sparsity",
    "min_weights",
)


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
        scope: ``"global"``: one threshold (or one magnitude ranking) over every pruned layer
            (LATS). ``"layer"``: thresholds are relative to each layer's initial weight RMS (under
            the λ-form this is ISTA on ``Σ_l s_l‖w_l‖₁``), and :meth:`prune_to` sets each layer to
            the target on its own.
        keep_first / keep_last: keep the first / last candidate dense, in the order the modules
            were *registered* (``model.named_modules()``), which is the stem and the classifier in
            every common architecture but not in a model that defines its head first.
        total_steps: number of optimizer steps of the run, for schedules normalised to end on D.
        method_kwargs: options of the method's constructor when ``method`` is a name or a class.
        target_sparsity: end the run (``total_steps``) at this sparsity over the pruned layers,
            instead of giving a schedule. Threshold methods: LATS with λ found by a feedback
            controller (:class:`~snnprune.schedules.TargetSparsity`; pass one as the schedule to
            give it the LR scheduler); ``"gmp"``: the cubic schedule up to ``total_steps``; other
            sparsity methods: one-shot now; learned methods: a feedback on their regulariser's
            strength (:class:`~snnprune.schedules.RegularizationFeedback`) and a projection onto
            the target at the last step.
        min_weights: keep at least this many weights in every pruned layer, whatever the
            threshold or the target (counted in the budget: the other layers prune a little more).
            A spiking net's stem and readout starve first under one global threshold at extreme
            sparsity; a floor of a few dozen weights keeps them alive (see the README). Default
            (``None``): with a target (``target_sparsity``, or the ``final`` sparsity of a sparsity
            schedule such as GMP's :class:`~snnprune.schedules.Cubic`), ``min(32, budget //
            (2 * layers))`` (:func:`default_floor`: no layer is cut off entirely, at most half the
            budget goes to floors); else 0.

    Call :meth:`step` right after every ``optimizer.step()`` (and before ``scheduler.step()``, so
    that the learning rate read is the one the step used). Tied weights (one tensor in two
    layers) are refused: exclude all but one of the layers sharing it.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | type[Reparameterization] | Reparameterization = "soft_threshold",
        schedule: ThresholdSchedule | SparsitySchedule | None = None,
        *,
        include: Selector = None,
        exclude: Selector = None,
        scope: str = "global",
        keep_first: bool = False,
        keep_last: bool = False,
        total_steps: int | None = None,
        method_kwargs: dict | None = None,
        target_sparsity: float | None = None,
        min_weights: int | None = None,
        **unknown,
    ) -> None:
        if unknown:
            key = next(iter(unknown))
            raise TypeError(
                f"Pruner got an unexpected keyword {key!r}{did_you_mean(key, _PRUNER_KEYWORDS)}; "
                "options of the method go in method_kwargs={...} or on a method instance"
            )
        if scope not in ("global", "layer"):
            raise ValueError(f"unknown scope {scope!r}: use 'global' or 'layer'")
        # Everything is validated and built before the model is touched: a failing Pruner(...)
        # leaves the model as it was.
        prototype, self.method_name = _prototype(method, method_kwargs)
        self.control = type(prototype).control
        schedule, self.controller = _target_schedule(
            self.control, self.method_name, schedule, target_sparsity, total_steps
        )
        self.schedule = _check_schedule(self.control, schedule, total_steps, self.method_name)
        selected = _select(model, include, exclude, keep_first, keep_last)
        _check_attachable(model, selected)
        reparams = [copy.deepcopy(prototype) for _ in selected]

        # the sparsity asked for, whichever way (target_sparsity=, a TargetSparsity schedule, the
        # end of a sparsity schedule such as GMP's Cubic(final=...))
        target = self.controller.target if self.controller is not None else getattr(self.schedule, "target", None)
        if target is None and isinstance(self.schedule, SparsitySchedule):
            target = self.schedule.final
        target = target_sparsity if target is None else target
        if min_weights is None:
            min_weights = default_floor(target, [getattr(m, t).numel() for _, m, t in selected])
        self.min_weights = int(min_weights)
        if self.min_weights < 0 or self.min_weights != min_weights:
            raise ValueError(f"min_weights must be an integer >= 0, got {min_weights!r}")
        self.model = model
        self.scope = scope
        self.layer_names = [name for name, _, _ in selected]
        self._targets = [(module, tensor) for _, module, tensor in selected]
        self._reparams: list[Reparameterization] = []
        try:
            for (module, tensor), reparam in zip(self._targets, reparams):
                parametrize.register_parametrization(module, tensor, reparam, unsafe=True)
                self._reparams.append(reparam)
            for i, reparam in enumerate(self._reparams):
                reparam.setup(self._latent(i))
        except BaseException:
            self._detach()
            raise

        #: whether :meth:`regularization` contributes anything (skip the call when it does not)
        self.has_regularization = any(
            type(r).regularization is not Reparameterization.regularization for r in self._reparams
        )
        if scope == "layer" and self.control == "threshold":
            self._scales = [float(self._latent(i).detach().pow(2).mean().sqrt()) or 1.0 for i in range(len(selected))]
        else:
            self._scales = [1.0] * len(selected)
        self.steps = 0
        self._lr_sums = [0.0] * len(selected)
        self._groups = [0] * len(selected)
        self._checked_optimizer: int | None = None
        self._optimizer_steps = _optimizer_steps_now()  # optimizer -> steps seen at the last pruner.step
        self._finalized = False
        self._frozen_threshold: float | None = None
        self._warned: set[str] = set()
        self._last_lr: float | None = None
        self._held: list[float] = []  #: the thresholds set last (threshold methods)
        self._warn_if_unreachable(target)
        self._apply_control()

    def _warn_if_unreachable(self, target: float | None) -> None:
        """Say at once when the floors alone keep more weights than the target leaves."""
        if target is None or not self.min_weights:
            return
        sizes = [self._latent(i).numel() for i in range(len(self._reparams))]
        kept, total = sum(min(self.min_weights, n) for n in sizes), sum(sizes)
        if 1.0 - kept / total < float(target) - 0.005:
            warnings.warn(
                f"target sparsity {float(target):.2%} cannot be reached: min_weights={self.min_weights} keeps at least "
                f"{kept} of the {total} pruned weights, so at most {1 - kept / total:.2%}; lower min_weights "
                "or the target",
                stacklevel=3,
            )

    def target_metrics(self) -> dict[str, float]:
        """Where the target's controller stands (the engine logs it every epoch): for soft
        thresholding ``target_lambda`` (the λ in force) and ``target_lambda_updates`` (the length
        of :attr:`TargetSparsity.history`); for the learned methods ``target_gain`` (the
        regulariser's multiplier) and ``target_gain_updates``. Empty without a target."""
        if isinstance(self.schedule, TargetSparsity):
            return {"target_lambda": self.schedule.l1, "target_lambda_updates": len(self.schedule.history)}
        if self.controller is not None:
            return {"target_gain": self.controller.gain, "target_gain_updates": len(self.controller.history)}
        return {}

    # -- introspection ---------------------------------------------------------------------
    def _latent(self, i: int) -> nn.Parameter:
        module, tensor = self._targets[i]
        return module.parametrizations[tensor].original

    @property
    def _modules(self) -> list[nn.Module]:
        return [module for module, _ in self._targets]

    def layers(self) -> Iterator[tuple[str, nn.Module, Reparameterization]]:
        """``(name, module, reparameterization)`` of every pruned tensor."""
        return zip(self.layer_names, self._modules, self._reparams)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The method's own trainable parameters (e.g. STR's ``s``), for an existing optimizer."""
        for r in self._reparams:
            yield from r.parameters()

    @property
    def learnable(self) -> bool:
        return self.control == "learned"

    @property
    def threshold(self) -> float | None:
        """The global threshold ``d`` in force (for learned per-layer thresholds, their mean;
        ``None`` for methods without a threshold). After :meth:`freeze` it is the threshold
        the mask was frozen at. In ``scope="layer"`` it is in units of each layer's scale;
        :meth:`thresholds` gives the absolute value per layer."""
        if self._frozen_threshold is not None:
            return self._frozen_threshold
        if self.control == "threshold":
            return self._global_threshold()
        values = [v for v in self.thresholds().values() if v is not None]
        return sum(values) / len(values) if values else None

    def thresholds(self) -> dict[str, float | None]:
        """Absolute threshold in force in each pruned layer."""
        return {name: r.current_threshold() for name, _, r in self.layers()}

    def sparsity(self) -> SparsityReport:
        """Sparsity of every conv/linear weight of the model (``.total``) and of the pruned layers
        (``.pruned``: what :meth:`prune_to` and a target sparsity refer to)."""
        return sparsity(self.model)

    @torch.no_grad()
    def masks(self) -> dict[str, torch.Tensor]:
        """Boolean mask of the kept weights of each pruned layer (what finalize keeps)."""
        return {name: r.kept(self._latent(i)) for i, (name, r) in enumerate(zip(self.layer_names, self._reparams))}

    def regularization(self) -> torch.Tensor:
        """Sum of the methods' differentiable penalties (add it to the loss; 0 for soft threshold),
        times the gain of the target controller when there is one."""
        terms = [r.regularization(self._latent(i)) for i, r in enumerate(self._reparams)]
        total = torch.stack(terms).sum()
        return total * self.controller.gain if self.controller is not None else total

    # -- the training loop -----------------------------------------------------------------
    def step(self, optimizer: torch.optim.Optimizer | None = None, *, lr: float | None = None, scaler=None) -> None:
        """Advance one optimizer step: read the learning rate each pruned layer's parameter group
        used and move the control (λ-form: ``d += λ·η``; GMP: new masks at update steps). Call
        right after ``optimizer.step()``. ``lr=`` overrides the learning rate read from the
        optimizer. With AMP, pass the ``GradScaler`` (``scaler.step(opt); pruner.step(opt,
        scaler=scaler); scaler.update()``): a step the scaler skipped does not count."""
        self._check_alive()
        if optimizer is None and lr is None:
            raise ValueError("Pruner.step needs the optimizer (or lr=) to read the learning rate")
        if optimizer is not None and not hasattr(optimizer, "param_groups"):
            kind = "an LR scheduler" if hasattr(optimizer, "get_last_lr") else "not an optimizer"
            raise TypeError(
                f"Pruner.step expects the optimizer, got a {type(optimizer).__name__} ({kind}): call "
                "pruner.step(optimizer) after optimizer.step() and before scheduler.step()"
            )
        if optimizer is not None and self._scaler_skipped(scaler, optimizer):
            return
        if optimizer is not None and self._checked_optimizer != id(optimizer):
            self._check_optimizer(optimizer)
        if lr is not None:
            step_lrs = [lr] * len(self._reparams)
        else:
            group_lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
            step_lrs = [group_lr[id(self._latent(i))] for i in range(len(self._reparams))]
        step_lrs = [float(v) for v in step_lrs]
        if not all(math.isfinite(v) and v >= 0 for v in step_lrs):
            bad = next(v for v in step_lrs if not (math.isfinite(v) and v >= 0))
            raise ValueError(f"learning rate must be a finite number >= 0, got {bad}")
        self._check_thresholds_in_model()
        self._check_expected_lr(step_lrs)
        self.steps += 1
        for i, step_lr in enumerate(step_lrs):
            self._lr_sums[i] += step_lr
        self._last_lr = step_lrs[0]
        self._apply_control()
        if self.controller is not None and not self.frozen and self.controller.updates_at(self.steps):
            self._feedback()
        for r, step_lr in zip(self._reparams, step_lrs):
            r.on_step(self.steps, step_lr)

    def _scaler_skipped(self, scaler, optimizer: torch.optim.Optimizer) -> bool:
        """Whether ``scaler`` skipped this step: ``optimizer.step()`` has not run since the last
        ``pruner.step`` (counted by :func:`_count_optimizer_steps`, a public step hook)."""
        stepped = _OPTIMIZER_STEPS.get(optimizer, 0)
        last = self._optimizer_steps.get(id(optimizer), 0)
        self._optimizer_steps[id(optimizer)] = stepped
        return scaler is not None and scaler.is_enabled() and stepped == last

    def _check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        group_of = {id(p): g for g, group in enumerate(optimizer.param_groups) for p in group["params"]}
        missing_latent = [n for i, n in enumerate(self.layer_names) if id(self._latent(i)) not in group_of]
        if missing_latent:
            raise ValueError(
                f"the optimizer does not update the pruned weight of {missing_latent[0]!r}: "
                "build it from model.parameters()"
            )
        if any(id(p) not in group_of for p in self.parameters()):
            raise ValueError(
                f"the optimizer does not train the parameters of {self.method_name!r}: build it after "
                "the Pruner from model.parameters(), or add pruner.parameters() to it"
            )
        self._groups = [group_of[id(self._latent(i))] for i in range(len(self._reparams))]
        self._checked_optimizer = id(optimizer)

    def _check_thresholds_in_model(self) -> None:
        """Warn once when the thresholds held by the model are not the ones this Pruner set: the
        model's state was loaded without ``pruner.load_state_dict`` (the Pruner's values win)."""
        if self.control != "threshold" or self.frozen or "stale" in self._warned:
            return
        # the values set last (recomputing them would move the floors' caps with the weights)
        for name, r, want in zip(self.layer_names, self._reparams, self._held):
            have = r.current_threshold()
            if not math.isclose(have, want, rel_tol=1e-5, abs_tol=1e-12):
                self._warned.add("stale")
                warnings.warn(
                    f"layer {name!r} holds threshold {have:.6g} but this Pruner is at {want:.6g}: was the model "
                    "loaded without pruner.load_state_dict(...)? The Pruner's schedule wins from this step on",
                    stacklevel=3,
                )
                return

    def _check_expected_lr(self, step_lrs: list[float]) -> None:
        expected = getattr(self.schedule, "expected_lr", None)
        if expected is None or "lr" in self._warned:
            return
        for i, lr in enumerate(step_lrs):
            want = expected(self.steps, self._groups[i])
            if want is not None and not math.isclose(lr, want, rel_tol=1e-6, abs_tol=1e-12):
                self._warned.add("lr")
                warnings.warn(
                    f"step {self.steps} used learning rate {lr:.6g} but LATS(final=D) was given {want:.6g} for it: "
                    "the threshold will not land on D. A per-epoch LR scheduler needs steps_per_lr_step= "
                    "(iterations per epoch); or use the λ-form LATS(l1=λ)",
                    stacklevel=3,
                )
                return

    def _global_threshold(self) -> float:
        return self.schedule(self.steps, self._lr_sums[0], self._groups[0])

    def _expected_thresholds(self) -> list[float]:
        values = [
            self.schedule(self.steps, lr_sum, group) * scale
            for lr_sum, group, scale in zip(self._lr_sums, self._groups, self._scales)
        ]
        if self.min_weights:
            values = [min(d, cap) for d, cap in zip(values, self._threshold_caps())]
        return values

    @torch.no_grad()
    def _threshold_caps(self) -> list[float]:
        """Per layer, the largest threshold that keeps ``min_weights`` latent weights."""
        return self._weight_caps([self._latent(i).detach() for i in range(len(self._reparams))])

    @torch.no_grad()
    def _weight_caps(self, weights: list[torch.Tensor]) -> list[float]:
        """Per tensor, the largest threshold below which ``min_weights`` magnitudes stay."""
        caps = []
        for w in weights:
            kth = torch.topk(w.abs().flatten(), min(self.min_weights, w.numel())).values[-1]
            caps.append(max(float(torch.nextafter(kth, torch.zeros_like(kth))), 0.0))
        return caps

    @torch.no_grad()
    def _floored_masks(self, scores: list[torch.Tensor], target: float) -> list[torch.Tensor]:
        """:func:`magnitude_masks` at ``target`` with every layer keeping ``min_weights``, the floors
        counted in the budget (in global scope each layer's best scores are ranked first)."""
        if not self.min_weights:
            return magnitude_masks(scores, target, self.scope)
        ranked = scores
        if self.scope == "global":
            ranked = []
            for score in scores:
                score = score.detach().float().clone()
                score.view(-1)[torch.topk(score.flatten(), min(self.min_weights, score.numel())).indices] = math.inf
                ranked.append(score)
        return with_floor(magnitude_masks(ranked, target, self.scope), scores, self.min_weights)

    def _apply_control(self, retarget: bool = True) -> None:
        if self.frozen:
            return
        if retarget and isinstance(self.schedule, TargetSparsity) and self.schedule.updates_at(self.steps):
            self._retarget()
        if self.control == "threshold":
            # per layer: the λ-forms integrate the learning rate of each layer's own group
            self._held = self._expected_thresholds()
            for r, d in zip(self._reparams, self._held):
                r.set_threshold(d)
        elif self.control == "sparsity" and self.schedule is not None and self.schedule.updates_at(self.steps):
            self._set_masks(self.schedule(self.steps))

    @torch.no_grad()
    def _feedback(self) -> None:
        """Learned methods under a target: steer the regulariser; at the last step, project."""
        measured = self.sparsity().pruned
        if self.steps < self.controller.total_steps:
            self.controller.update(self.steps, measured)
            if self.has_regularization and "gain" not in self._warned and self.controller.stuck():
                self._warned.add("gain")
                planned = self.controller.history[-1][1]
                warnings.warn(
                    f"{self.method_name!r} is at {measured:.2%} sparsity at step {self.steps}, {planned:.2%} planned, "
                    f"with its regulariser at the largest gain ({self.controller.gain:g}): its thresholds do not rise "
                    "fast enough, and the last projection will prune the rest at once. Under Adam-type optimizers the "
                    "penalty's size does not change the thresholds' step: give pruner.parameters() a parameter group "
                    "with a larger learning rate (or train them with SGD)",
                    stacklevel=4,
                )
            return
        target = self.controller.target
        self.controller.history.append((self.steps, target, measured, self.controller.gain))
        # each method ranks its weights and says what a kept one is (Reparameterization.projection:
        # the learned thresholds can bring pruned weights back when they overshot the target)
        scores, weights = zip(*(r.projection(self._latent(i)) for i, r in enumerate(self._reparams)))
        keeps = self._floored_masks(list(scores), target)
        kept = sum(int((k & (w != 0)).sum()) for k, w in zip(keeps, weights))
        reached = 1.0 - kept / max(sum(k.numel() for k in keeps), 1)
        if reached > target + 0.005:
            warnings.warn(
                f"target sparsity {target:.2%} not reached: {self.method_name!r} had pruned {measured:.2%} by the last "
                f"step and {reached:.2%} after the projection ({self.method_name!r} cannot bring pruned weights back); "
                "lower its regulariser (or its initial threshold)",
                stacklevel=4,
            )
        for i, (r, keep, weight) in enumerate(zip(self._reparams, keeps, weights)):
            r.freeze(self._latent(i), keep, weight)

    @torch.no_grad()
    def _retarget(self) -> None:
        """Feedback for :class:`~snnprune.schedules.TargetSparsity`: ``D̂`` is the (scale-relative)
        magnitude below which the target fraction of the latent weights lies now."""
        ratios = [self._latent(i).detach().abs().flatten() / (scale or 1.0) for i, scale in enumerate(self._scales)]
        estimate = max(floored_threshold(ratios, self.schedule.target, self.min_weights), 0.0)
        self.schedule.retarget(self.steps, self._lr_sums[0], estimate, self._last_lr)
        if self.steps >= self.schedule.total_steps:
            reached = self.sparsity_after_retarget(estimate)
            if abs(reached - self.schedule.target) > 0.005:
                floor = f"min_weights={self.min_weights} per layer keeps more than the budget, or "
                floor = floor if self.min_weights else ""
                warnings.warn(
                    f"target sparsity {self.schedule.target:.2%} not reached: {reached:.2%} of the pruned weights are "
                    f"at or below the final threshold ({floor}many latent weights tie at one magnitude, "
                    "e.g. exact zeros)",
                    stacklevel=4,
                )

    def sparsity_after_retarget(self, estimate: float) -> float:
        caps = self._threshold_caps() if self.min_weights else [float("inf")] * len(self._scales)
        zeros = sum(
            int((self._latent(i).detach().abs() <= min(estimate * s, cap)).sum())
            for i, (s, cap) in enumerate(zip(self._scales, caps))
        )
        return zeros / max(sum(self._latent(i).numel() for i in range(len(self._scales))), 1)

    @torch.no_grad()
    def _set_masks(self, target: float) -> None:
        scores = [r.score(self._latent(i)) for i, r in enumerate(self._reparams)]
        for r, keep in zip(self._reparams, self._floored_masks(scores, target)):
            r.set_mask(keep)

    # -- families: pruning at initialization, early pruning ---------------------------------
    @torch.no_grad()
    def prune_to(self, sparsity: float, *, shift: bool = True) -> float | None:
        """Make the pruned layers ``sparsity`` sparse now (pruning at initialization, one-shot
        magnitude pruning). ``scope="global"``: over all pruned weights together;
        ``scope="layer"``: each layer on its own. The target counts the pruned layers only
        (``pruner.sparsity().pruned``); ``.total`` also counts layers kept dense.

        Soft threshold: the smallest current weights are pruned by the threshold that gives the
        target, which then stays fixed; with ``shift=True`` the surviving latent weights are moved
        out by it, so their effective weights stay exactly what they were (any number of calls,
        at any point of training). Returns the global threshold. Sparsity-controlled methods: the
        masks are set (returns ``None``). A frozen pruner refuses.
        """
        self._check_alive()
        sparsity = check_fraction("target sparsity", sparsity)
        if self.frozen:
            raise RuntimeError("this Pruner's mask is frozen: prune_to would not change it; attach a new Pruner")
        if self.control == "sparsity":
            self._set_masks(sparsity)
            return None
        if self.control != "threshold":
            raise TypeError(
                f"{self.method_name!r} learns its threshold; prune_to needs a threshold- or sparsity-driven method"
            )
        weights = [self._reparams[i].finished_weight(self._latent(i)) for i in range(len(self._reparams))]
        if self.scope == "global" and self.min_weights:
            cuts = [max(floored_threshold([w.abs() for w in weights], sparsity, self.min_weights), 0.0)]
        else:
            cuts = [max(t, 0.0) for t in magnitude_threshold([w.abs() for w in weights], sparsity, self.scope)]
        if self.scope == "global":
            d, self._scales = cuts[0], [1.0] * len(weights)
        else:
            d, self._scales = 1.0, [c if c > 0 else 0.0 for c in cuts]
        self.schedule = Constant(d)
        caps = self._weight_caps(weights) if self.min_weights else [float("inf")] * len(weights)
        for i, w in enumerate(weights):
            layer_d = min(d * self._scales[i], caps[i])
            latent = self._latent(i)
            if shift:  # θ' = w + sign(w)·d on the survivors: S_d(θ') = w exactly there
                keep = w.abs() > layer_d
                latent.copy_(torch.where(keep, w + torch.sign(w) * layer_d, w))
            self._reparams[i].set_threshold(layer_d)
        self._apply_control()
        return d

    @property
    def frozen(self) -> bool:
        return bool(self._reparams) and self._reparams[0].frozen

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the current mask for sparse fine-tuning (early pruning): from now on ``w = θ ⊙ m``
        with ``θ`` set to the current final weight; pruned weights get no gradient and the
        threshold no longer moves (:attr:`threshold` keeps reporting the one frozen in)."""
        self._check_alive()
        if self.frozen:
            return
        self._frozen_threshold = self.threshold if self.control == "threshold" else None
        for i, r in enumerate(self._reparams):
            r.freeze(self._latent(i))

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain-data state (loads with ``torch.load(weights_only=True)``); the thresholds,
        masks and learned parameters themselves live in the model's ``state_dict``."""
        return {
            "method": self.method_name,
            "layers": list(self.layer_names),
            "scope": self.scope,
            "steps": self.steps,
            "lr_sums": list(self._lr_sums),
            "scales": list(self._scales),
            "groups": list(self._groups),
            "frozen_threshold": self._frozen_threshold,
            "controller": None if self.controller is None else self.controller.state_dict(),
            "schedule": None if self.schedule is None
            else {"type": type(self.schedule).__name__, **self.schedule.state_dict()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`. The checkpoint's values win over the constructor's (the
        schedule's too), with a warning when they differ."""
        if state["method"] != self.method_name:
            raise ValueError(f"pruner state is of method {state['method']!r}, this Pruner runs {self.method_name!r}")
        if state["layers"] != self.layer_names:
            saved, here = set(state["layers"]), set(self.layer_names)
            only_saved, only_here = sorted(saved - here)[:3], sorted(here - saved)[:3]
            raise ValueError(
                "pruner state does not match this pruner's layers: "
                f"only in the checkpoint {only_saved or '(same names, other order)'}, only here {only_here or '-'}"
                + (" (a torch.compile'd model prefixes names with '_orig_mod.')"
                   if any("_orig_mod" in n for n in saved ^ here) else "")
            )
        self.steps = int(state["steps"])
        self._lr_sums = [float(v) for v in state["lr_sums"]]
        self._scales = [float(v) for v in state["scales"]]
        self._groups = [int(v) for v in state.get("groups", self._groups)]
        self._frozen_threshold = state.get("frozen_threshold")
        if self.controller is not None and state.get("controller"):
            self.controller.load_state_dict(state["controller"])
        if state["schedule"] is not None:
            self.schedule = _schedule_from_state(state["schedule"], self.schedule)
        self._apply_control(retarget=False)

    # -- the end ---------------------------------------------------------------------------
    def finalize(self) -> nn.Module:
        """Remove the parametrizations, baking the final weights (zeros where the method prunes)
        into plain ``weight`` parameters.

        The returned model (the same object) has exactly the state_dict keys of the original
        architecture; deep copies taken before (a best model, an EMA copy) keep working."""
        self._check_alive()
        self._finalized = True
        return bake(self.model)

    def _check_alive(self) -> None:
        if self._finalized:
            raise RuntimeError("this Pruner was finalized; attach a new one to prune again")
        module, tensor = self._targets[0]
        if not parametrize.is_parametrized(module, tensor):
            self._finalized = True
            raise RuntimeError(
                "the model was finalized (snnprune.bake or finalize): attach a new Pruner to prune again"
            )

    def _detach(self) -> None:
        """Undo a partial attach (a Pruner whose construction failed)."""
        for (module, tensor), _reparam in zip(self._targets, self._reparams):
            if parametrize.is_parametrized(module, tensor):
                _own_class(module)
                parametrize.remove_parametrizations(module, tensor, leave_parametrized=False)
        self._reparams = []

    def __repr__(self) -> str:
        return (
            f"Pruner(method={self.method_name!r}, schedule={self.schedule!r}, "
            f"layers={len(self.layer_names)}, scope={self.scope!r}, steps={self.steps})"
        )


# -- construction helpers --------------------------------------------------------------------
#: the most weights :func:`default_floor` keeps per layer
DEFAULT_FLOOR_CAP = 32


def default_floor(target: float | None, sizes: list[int]) -> int:
    """The ``min_weights`` a Pruner takes when none is given: 0 without a target; with one, the
    weights the target leaves (the budget) shared so that floors take at most half of it, at most
    :data:`DEFAULT_FLOOR_CAP` per layer, and at least 1 where the budget allows (a layer with no
    weight left disconnects the network: the digits SNN at 99% loses its readout this way).

    Example::

        >>> default_floor(0.99, [144, 2304, 2304, 4608, 9216, 9216, 1280])   # 290 weights for 7 layers
        20
        >>> default_floor(0.9, [10_000] * 4), default_floor(None, [100])
        (32, 0)
    """
    if target is None or not sizes:
        return 0
    budget = int((1.0 - float(target)) * sum(sizes))
    floor = min(DEFAULT_FLOOR_CAP, budget // (2 * len(sizes)))
    return floor if floor > 0 else int(budget >= len(sizes))


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


def _target_schedule(control: str, method_name: str, schedule, target, total_steps):
    """``(schedule, controller)`` that ``target_sparsity=`` stands for (or the schedule given,
    checked against it)."""
    if target is None:
        return schedule, None
    if control == "learned":
        if schedule is not None:
            raise ValueError(f"method {method_name!r} learns its thresholds; give target_sparsity= without a schedule")
        if total_steps is None:
            raise ValueError("target_sparsity needs total_steps= (the step at which the target is reached)")
        return None, RegularizationFeedback(check_fraction("target_sparsity", target), total_steps=total_steps)
    return _target_threshold_or_sparsity(control, method_name, schedule, target, total_steps), None


def _target_threshold_or_sparsity(control, method_name, schedule, target, total_steps):
    target = check_fraction("target_sparsity", target)
    if isinstance(schedule, TargetSparsity):
        if not math.isclose(schedule.target, target):
            raise ValueError(f"target_sparsity={target} but the schedule aims at {schedule.target}")
        return schedule
    if schedule is not None:
        raise ValueError(
            "give either a schedule or target_sparsity= (the target picks the schedule: LATS with a λ controller, "
            "or GMP's cubic); to give the controller the LR scheduler pass schedule=TargetSparsity(S, lr=scheduler)"
        )
    if control == "threshold":
        if total_steps is None:
            raise ValueError("target_sparsity needs total_steps= (the step at which the target is reached)")
        return TargetSparsity(target)
    if control == "sparsity":
        if method_name == "gmp":
            if total_steps is None:
                raise ValueError("target_sparsity with 'gmp' needs total_steps= (where the cubic ends)")
            return Cubic(final=target, end=total_steps, every=max(1, total_steps // 100))
    return OneShot(target, at=0)


def _check_schedule(control: str, schedule, total_steps, method_name: str):
    if control == "learned":
        if schedule is not None:
            raise ValueError(f"method {method_name!r} learns its threshold; do not pass a schedule")
        return None
    if control == "sparsity":
        if schedule is None:
            return None
        if not isinstance(schedule, SparsitySchedule):
            raise TypeError(
                f"method {method_name!r} is driven by a sparsity schedule (e.g. Cubic(final=0.9, ...)) or "
                f"prune_to(s), got {type(schedule).__name__}"
            )
        schedule = copy.copy(schedule)
        schedule.bind(total_steps)
        return schedule
    if schedule is None:
        raise ValueError(f"method {method_name!r} needs a threshold schedule (e.g. LATS(l1=...))")
    if isinstance(schedule, type):
        raise TypeError(f"schedule must be an instance, e.g. {schedule.__name__}(...), not the class")
    if not isinstance(schedule, ThresholdSchedule):
        raise TypeError(f"schedule must be a ThresholdSchedule, got {type(schedule).__name__}")
    schedule = copy.copy(schedule)  # the caller's object stays as it was (one schedule, many pruners)
    schedule.bind(total_steps)
    return schedule


def _select(model, include, exclude, keep_first, keep_last) -> list[tuple[str, nn.Module, str]]:
    candidates = prunable_tensors(model)
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no prunable layer (nn.Conv*/nn.Linear with a weight)")
    dense = set()
    if keep_first:
        dense.add(candidates[0][0])
    if keep_last:
        dense.add(candidates[-1][0])
    selected = [
        (name, m, t)
        for name, m, t in candidates
        if name not in dense
        and (include is None or matches(include, name, m))
        and not (exclude is not None and matches(exclude, name, m))
    ]
    if not selected:
        raise ValueError(
            "no layer selected for pruning: include/exclude/keep_first/keep_last leave none of "
            f"the {len(candidates)} conv/linear layers"
        )
    return selected


def _check_attachable(model: nn.Module, selected) -> None:
    """Refuse, naming the layer, what snnprune cannot prune correctly."""
    owners: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False, remove_duplicate=False):
            owners.setdefault(id(p), []).append(f"{path}.{pname}".lstrip("."))
    for name, module, tensor in selected:
        label = name or type(module).__name__
        if parametrize.is_parametrized(module, tensor):
            if any(isinstance(p, Reparameterization) for p in module.parametrizations[tensor]):
                raise ValueError(f"layer {label!r} is already pruned: attach one Pruner per model (or bake it first)")
            raise ValueError(
                f"layer {label!r} already has a parametrization on {tensor} "
                f"({type(module.parametrizations[tensor][0]).__name__}, e.g. weight_norm): "
                "snnprune cannot stack on it; "
                "remove it or exclude the layer"
            )
        param = module._parameters.get(tensor)
        if param is None:
            raise ValueError(
                f"layer {label!r} computes its {tensor} from other parameters (legacy weight_norm/spectral_norm "
                "hooks): remove the hook or exclude the layer"
            )
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"layer {label!r} is lazy and not initialised yet: run one forward before attaching the Pruner"
            )
        shared = owners.get(id(param), [])
        if len(shared) > 1:
            raise ValueError(
                f"the {tensor} of {label!r} is shared by {', '.join(shared)} (tied weights): "
                "snnprune prunes one tensor "
                f"per layer; exclude those layers (exclude=[...]) to keep the tied tensor dense"
            )


#: how many times each optimizer's ``step()`` has run, counted from the first Pruner on
_OPTIMIZER_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_step_counter = None


def _count_optimizer_steps() -> None:
    """Count every optimizer's steps from now on, with torch's public global step post hook
    (:func:`torch.optim.optimizer.register_optimizer_step_post_hook`). A ``GradScaler`` that skips
    a step does not call ``optimizer.step()``, so the count tells a skipped step from a taken one
    without reading the scaler's internals."""
    global _step_counter
    if _step_counter is None:

        def count(optimizer, args, kwargs) -> None:
            _OPTIMIZER_STEPS[optimizer] = _OPTIMIZER_STEPS.get(optimizer, 0) + 1

        _step_counter = register_optimizer_step_post_hook(count)


def _optimizer_steps_now() -> dict[int, int]:
    """The step counts of the optimizers alive now (by id), starting the count if needed."""
    _count_optimizer_steps()
    return {id(opt): n for opt, n in _OPTIMIZER_STEPS.items()}


def _schedule_from_state(state: dict, current):
    kind = state["type"]
    if kind == "Constant":  # also what prune_to leaves behind, whatever the pruner began with
        return Constant(state["final"])
    if current is None or type(current).__name__ != kind:
        raise ValueError(f"saved schedule is {kind}, this pruner has {type(current).__name__}")
    new = {k: v for k, v in state.items() if k != "type"}
    old = current.state_dict()
    settings = ("final", "beta", "total_steps", "target", "every", "initial", "start", "end")  # what a user chose
    differs = [k for k in settings if k in new and old.get(k) is not None and new[k] != old[k]]
    if differs:
        warnings.warn(
            f"the checkpoint's {kind} has {', '.join(f'{k}={new[k]!r}' for k in differs)} where this Pruner was built "
            f"with {', '.join(f'{k}={old[k]!r}' for k in differs)}: the checkpoint's values are used",
            stacklevel=3,
        )
    current.load_state_dict(new)
    return current


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
