"""The Pruner: attach a pruning reparameterization to a model's layers and drive its threshold.

Three lines take any PyTorch or SpikingJelly model from dense to soft-threshold pruned::

    pruner = Pruner(model, "soft_threshold", LATS(l1=1e-4))
    ...                                       # in the training loop:
    optimizer.step(); pruner.step(optimizer)  # then scheduler.step() as usual

and ``pruner.finalize()`` hands back the plain model with the zeros baked in.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from snnprune import Pruner, LATS
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

import fnmatch
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from .reparam import STR, Reparameterization, SoftThreshold
from .schedules import Constant, ThresholdSchedule

__all__ = ["Pruner", "SparsityReport", "prune", "bake", "prunable_layers", "sparsity", "METHODS"]

#: Layer types whose ``weight`` can be pruned (SpikingJelly's layer.Conv2d/Linear subclass these).
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)

#: Pruning methods known by name.
METHODS: dict[str, type[Reparameterization]] = {
    "soft_threshold": SoftThreshold,
    "str": STR,
}

Selector = None | str | type | tuple | Callable[[str, nn.Module], bool] | Iterable


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every ``nn.Conv*``/``nn.Linear`` (and subclass) with a weight, in registration order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES) and getattr(m, "weight", None) is not None
    ]


def _matches(selector: Selector, name: str, module: nn.Module) -> bool:
    """A selector is a glob on the module name, a layer type, a predicate, or a list of these."""
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(name, selector)
    if isinstance(selector, type):
        return isinstance(module, selector)
    if callable(selector):
        return bool(selector(name, module))
    if isinstance(selector, Iterable):
        return any(_matches(s, name, module) for s in selector)
    raise TypeError(f"cannot select layers with {selector!r}: use a name glob, a layer type or a predicate")


@dataclass
class SparsityReport:
    """Sparsity of the effective weights.

    ``total`` is the fraction of zero weights over *every* conv and linear weight of the model,
    layers kept dense included (the convention of the LATS code); ``layers`` maps each such layer
    name to its own zero fraction; ``zeros``/``numel`` are the raw counts.
    """

    total: float
    layers: dict[str, float] = field(default_factory=dict)
    zeros: int = 0
    numel: int = 0

    def __str__(self) -> str:
        return f"sparsity {100 * self.total:.2f}% ({self.zeros}/{self.numel} weights are zero)"


@torch.no_grad()
def sparsity(model: nn.Module) -> SparsityReport:
    """Zero fraction of the effective weights of every conv/linear layer of ``model`` (pruned or
    not, parametrized or plain), as a :class:`SparsityReport`.

    Example::

        >>> from torch import nn
        >>> layer = nn.Linear(4, 4)
        >>> _ = nn.init.zeros_(layer.weight[:2])
        >>> sparsity(layer).total
        0.5
    """
    layers, zeros, numel = {}, 0, 0
    for name, module in prunable_layers(model):
        w = module.weight
        z = int((w == 0).sum())
        layers[name or type(module).__name__] = z / w.numel()
        zeros += z
        numel += w.numel()
    return SparsityReport(total=zeros / max(numel, 1), layers=layers, zeros=zeros, numel=numel)


class Pruner:
    """Attach pruning to ``model`` and schedule its threshold.

    Args:
        model: any ``nn.Module``; every ``nn.Conv*``/``nn.Linear`` (SpikingJelly's layers and
            layers inside ``SeqToANNContainer`` included) is a candidate.
        method: ``"soft_threshold"`` (LATS/STDS, straight-through), ``"str"``, a
            :class:`~snnprune.reparam.Reparameterization` subclass, or a callable
            ``(name, module) -> Reparameterization``. ``method_kwargs`` go to its constructor.
        schedule: a :mod:`snnprune.schedules` schedule for schedule-driven methods (required for
            ``"soft_threshold"``); ``None`` for methods that learn their threshold.
        include / exclude: which candidates to prune: a name glob (``"layer4.*"``), a layer type,
            a predicate ``(name, module) -> bool``, or a list of these. ``include=None`` takes all.
        scope: ``"global"``: one threshold ``d`` for every pruned layer (LATS). ``"layer"``: layer
            ``l`` uses ``d·s_l`` with ``s_l`` the RMS of its initial weights, so ``d`` is relative
            to each layer's scale (under the λ-form this is ISTA on the weighted norm
            ``Σ_l s_l‖w_l‖₁``); :meth:`prune_to` then sets each layer to the target on its own.
        keep_first / keep_last: keep the first / last candidate layer dense (stem conv, classifier).
        total_steps: number of optimizer steps of the run, for schedules normalised to end on D.

    Call :meth:`step` right after every ``optimizer.step()`` (and before ``scheduler.step()``, so
    that the learning rate read is the one the step used).
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | type[Reparameterization] | Callable[..., Reparameterization] = "soft_threshold",
        schedule: ThresholdSchedule | None = None,
        *,
        include: Selector = None,
        exclude: Selector = None,
        scope: str = "global",
        keep_first: bool = False,
        keep_last: bool = False,
        total_steps: int | None = None,
        **method_kwargs,
    ) -> None:
        if scope not in ("global", "layer"):
            raise ValueError(f"unknown scope {scope!r}: use 'global' or 'layer'")
        self.model = model
        self.scope = scope
        self._factory, self.method_name = _method_factory(method, method_kwargs)

        candidates = prunable_layers(model)
        if not candidates:
            raise ValueError(
                f"{type(model).__name__} has no prunable layer (nn.Conv*/nn.Linear with a weight)"
            )
        if any(parametrize.is_parametrized(m, "weight") for _, m in candidates):
            raise ValueError("the model already has a parametrized weight: attach one Pruner per model")
        dense = set()
        if keep_first:
            dense.add(candidates[0][0])
        if keep_last:
            dense.add(candidates[-1][0])
        selected = [
            (name, m)
            for name, m in candidates
            if name not in dense
            and (include is None or _matches(include, name, m))
            and not (exclude is not None and _matches(exclude, name, m))
        ]
        if not selected:
            raise ValueError(
                "no layer selected for pruning: include/exclude/keep_first/keep_last leave none of "
                f"the {len(candidates)} conv/linear layers"
            )

        self.layer_names = [name for name, _ in selected]
        self._modules = [m for _, m in selected]
        self._reparams: list[Reparameterization] = []
        for name, module in selected:
            reparam = self._factory(name, module)
            if not isinstance(reparam, Reparameterization):
                raise TypeError(f"method must build a Reparameterization, got {type(reparam).__name__}")
            parametrize.register_parametrization(module, "weight", reparam)
            self._reparams.append(reparam)
        self.learnable = all(r.learnable for r in self._reparams)
        #: whether :meth:`regularization` contributes anything (skip the call when it does not)
        self.has_regularization = any(
            type(r).regularization is not Reparameterization.regularization for r in self._reparams
        )

        if self.learnable:
            if schedule is not None:
                raise ValueError(f"method {self.method_name!r} learns its threshold; do not pass a schedule")
        elif schedule is None:
            raise ValueError(f"method {self.method_name!r} needs a threshold schedule (e.g. LATS(l1=...))")
        elif not isinstance(schedule, ThresholdSchedule):
            raise TypeError(f"schedule must be a ThresholdSchedule, got {type(schedule).__name__}")
        else:
            schedule.bind(total_steps)
        self.schedule = schedule

        if scope == "layer":
            self._scales = [float(self._latent(i).detach().pow(2).mean().sqrt()) or 1.0 for i in range(len(selected))]
        else:
            self._scales = [1.0] * len(selected)
        self.steps = 0
        self._lr_sums = [0.0] * len(selected)
        self._checked_optimizer: int | None = None
        self._finalized = False
        self._apply_thresholds()

    # -- introspection ---------------------------------------------------------------------
    def _latent(self, i: int) -> nn.Parameter:
        return self._modules[i].parametrizations.weight.original

    def layers(self) -> Iterator[tuple[str, nn.Module, Reparameterization]]:
        """``(name, module, reparameterization)`` of every pruned layer."""
        return zip(self.layer_names, self._modules, self._reparams)

    def parameters(self) -> Iterator[nn.Parameter]:
        """The method's own trainable parameters (e.g. STR's ``s``), for an existing optimizer."""
        for r in self._reparams:
            yield from r.parameters()

    @property
    def threshold(self) -> float:
        """The global threshold ``d`` (for learned per-layer thresholds, their mean).

        In ``scope="layer"`` it is in units of each layer's scale; :meth:`thresholds` gives the
        absolute value per layer."""
        if self.learnable:
            values = list(self.thresholds().values())
            return sum(values) / len(values)
        return self._global_threshold()

    def thresholds(self) -> dict[str, float]:
        """Absolute threshold in force in each pruned layer."""
        return {name: r.current_threshold() for name, _, r in self.layers()}

    def sparsity(self) -> SparsityReport:
        """Zero fraction of the effective weights of every conv/linear layer of the model."""
        return sparsity(self.model)

    @torch.no_grad()
    def masks(self) -> dict[str, torch.Tensor]:
        """Boolean mask of the non-zero effective weights of each pruned layer."""
        return {name: module.weight != 0 for name, module, _ in self.layers()}

    def regularization(self) -> torch.Tensor:
        """Sum of the methods' differentiable penalties (add it to the loss; 0 for soft threshold)."""
        terms = [r.regularization(self._latent(i)) for i, r in enumerate(self._reparams)]
        return torch.stack(terms).sum()

    # -- the training loop -----------------------------------------------------------------
    def step(self, optimizer: torch.optim.Optimizer | None = None, *, lr: float | None = None) -> None:
        """Advance one optimizer step: read the learning rate each pruned layer's parameter group
        used and move the thresholds (λ-form: ``d += λ·η``). Call right after ``optimizer.step()``.
        ``lr=`` overrides the learning rate read from the optimizer."""
        self._check_alive()
        if optimizer is None and lr is None:
            raise ValueError("Pruner.step needs the optimizer (or lr=) to read the learning rate")
        if optimizer is not None and self._checked_optimizer != id(optimizer):
            self._check_optimizer(optimizer)
        if lr is not None:
            step_lrs = [float(lr)] * len(self._modules)
        else:
            group_lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
            step_lrs = [float(group_lr[id(self._latent(i))]) for i in range(len(self._modules))]
        self.steps += 1
        for i, step_lr in enumerate(step_lrs):
            self._lr_sums[i] += step_lr
        self._apply_thresholds()

    def _check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing_latent = [n for i, n in enumerate(self.layer_names) if id(self._latent(i)) not in in_optimizer]
        if missing_latent:
            raise ValueError(
                f"the optimizer does not update the pruned weight of {missing_latent[0]!r}: "
                "build it from model.parameters()"
            )
        if any(id(p) not in in_optimizer for p in self.parameters()):
            raise ValueError(
                f"the optimizer does not train the thresholds of {self.method_name!r}: build it after "
                "the Pruner from model.parameters(), or add pruner.parameters() to it"
            )
        self._checked_optimizer = id(optimizer)

    def _global_threshold(self) -> float:
        return self.schedule(self.steps, self._lr_sums[0])

    def _apply_thresholds(self) -> None:
        if self.learnable or self.frozen:
            return
        # Per layer, because the λ-forms integrate the learning rate of each layer's own group.
        for r, lr_sum, scale in zip(self._reparams, self._lr_sums, self._scales):
            r.set_threshold(self.schedule(self.steps, lr_sum) * scale)

    # -- families: pruning at initialization, early pruning ---------------------------------
    @torch.no_grad()
    def prune_to(self, sparsity: float, *, shift: bool = True) -> float:
        """Set the threshold that makes the pruned layers ``sparsity`` sparse, then keep it fixed
        (pruning at initialization). ``scope="global"``: one threshold over all pruned weights;
        ``scope="layer"``: each layer reaches ``sparsity`` on its own. With ``shift=True`` the
        surviving latent weights are moved out by ``d`` so that their effective weights equal the
        current weights (up to float rounding of ``(θ + d) − d``); only the pruned ones change, to
        0. Returns the global threshold.
        """
        self._check_alive()
        if self.learnable:
            raise TypeError(f"{self.method_name!r} learns its threshold; prune_to needs a schedule-driven method")
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"target sparsity must be in [0, 1), got {sparsity}")
        latents = [self._latent(i).detach() for i in range(len(self._modules))]
        if self.scope == "global":
            magnitudes = torch.cat([t.abs().flatten().float() for t in latents])
            d = _kth_magnitude(magnitudes, sparsity)
            self._scales = [1.0] * len(latents)
        else:
            self._scales = [_kth_magnitude(t.abs().flatten().float(), sparsity) for t in latents]
            d = 1.0
        self.schedule = Constant(d)
        self._apply_thresholds()
        if shift:
            for i, latent in enumerate(latents):
                layer_d = d * self._scales[i]
                keep = latent.abs() > layer_d
                self._latent(i).add_(torch.sign(latent) * keep * layer_d)
        return d

    @property
    def frozen(self) -> bool:
        return bool(self._reparams) and self._reparams[0].frozen

    @torch.no_grad()
    def freeze(self) -> None:
        """Fix the current mask for sparse fine-tuning (early pruning): from now on ``w = θ ⊙ m``
        with ``θ`` set to the current effective weight; pruned weights get no gradient and the
        threshold no longer moves."""
        self._check_alive()
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
            "schedule": None if self.schedule is None else _schedule_state(self.schedule),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["layers"] != self.layer_names or state["method"] != self.method_name:
            raise ValueError(
                "pruner state does not match this pruner (different method or pruned layers): "
                f"saved {state['method']!r} on {len(state['layers'])} layers, "
                f"this one {self.method_name!r} on {len(self.layer_names)}"
            )
        self.steps = int(state["steps"])
        self._lr_sums = [float(v) for v in state["lr_sums"]]
        self._scales = [float(v) for v in state["scales"]]
        if state["schedule"] is not None:
            self.schedule = _schedule_from_state(state["schedule"], self.schedule)
        self._apply_thresholds()

    # -- the end ---------------------------------------------------------------------------
    def finalize(self) -> nn.Module:
        """Remove the parametrizations, baking the zeros into plain ``weight`` parameters.

        The returned model (the same object) has exactly the state_dict keys of the original
        architecture and computes exactly what the pruned model computed."""
        self._check_alive()
        self._finalized = True
        return bake(self.model)

    def _check_alive(self) -> None:
        if self._finalized:
            raise RuntimeError("this Pruner was finalized; attach a new one to prune again")

    def __repr__(self) -> str:
        return (
            f"Pruner(method={self.method_name!r}, schedule={self.schedule!r}, "
            f"layers={len(self.layer_names)}, scope={self.scope!r}, steps={self.steps})"
        )


def _kth_magnitude(magnitudes: torch.Tensor, sparsity: float) -> float:
    """Threshold ``d`` such that a ``sparsity`` fraction of ``magnitudes`` is ``<= d``."""
    k = int(round(sparsity * magnitudes.numel()))
    if k == 0:
        return 0.0
    return float(torch.kthvalue(magnitudes, k).values)


def _schedule_state(schedule: ThresholdSchedule) -> dict:
    return {"type": type(schedule).__name__, "final": schedule.final, **schedule.state_dict()}


def _schedule_from_state(state: dict, current: ThresholdSchedule | None) -> ThresholdSchedule:
    if state["type"] == "Constant":  # also what prune_to leaves behind, whatever the pruner began with
        return Constant(state["final"])
    if current is None or type(current).__name__ != state["type"]:
        raise ValueError(f"saved schedule is {state['type']}, this pruner has {type(current).__name__}")
    current.load_state_dict({k: v for k, v in state.items() if k not in ("type", "final")})
    return current


def _method_factory(method, kwargs) -> tuple[Callable[[str, nn.Module], Reparameterization], str]:
    if isinstance(method, str):
        key = method.lower().replace("-", "_")
        if key not in METHODS:
            raise ValueError(f"unknown pruning method {method!r}; known: {', '.join(sorted(METHODS))}")
        cls = METHODS[key]
        return (lambda name, module: cls(**kwargs)), key
    if isinstance(method, type) and issubclass(method, Reparameterization):
        return (lambda name, module: method(**kwargs)), method.__name__
    if callable(method):
        return method, getattr(method, "__name__", "custom")
    raise TypeError(f"method must be a name, a Reparameterization subclass or a factory, got {method!r}")


def bake(model: nn.Module) -> nn.Module:
    """Remove every pruning parametrization of ``model`` in place, leaving plain ``weight``
    parameters that hold the effective (pruned) weights. Used by :meth:`Pruner.finalize`; call it
    on a ``copy.deepcopy`` of a model under training to export without stopping the run.

    Example::

        >>> import copy
        >>> from torch import nn
        >>> from snnprune import Pruner, Constant
        >>> model = nn.Sequential(nn.Linear(4, 4))
        >>> _ = Pruner(model, "soft_threshold", Constant(0.3))
        >>> sorted(bake(copy.deepcopy(model)).state_dict())
        ['0.bias', '0.weight']
    """
    for _, module in prunable_layers(model):
        if parametrize.is_parametrized(module, "weight") and any(
            isinstance(p, Reparameterization) for p in module.parametrizations.weight
        ):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def prune(model: nn.Module, method="soft_threshold", schedule: ThresholdSchedule | None = None, **kwargs) -> Pruner:
    """Functional front: ``prune(model, "soft_threshold", LATS(l1=λ))`` is ``Pruner(model, ...)``."""
    return Pruner(model, method, schedule, **kwargs)
