"""The cached forward: an effective weight computed into one reused buffer, only when it changed.

Allocating a fresh weight tensor in every forward was the dominant cost of soft-threshold pruning
on CPU (SEW-ResNet-18: 1.06x dense with a plain parametrization, 1.02x with this cache; see
bench/results/overhead.md). A method whose effective weight depends only on ``θ`` and a few
numbers (the threshold), and whose gradient with respect to ``θ`` does not depend on ``θ``
(straight-through), opts in with :class:`CachedForward`. Fixed 0/1 masks (frozen masks, the
hard-mask baselines) need no second weight at all: :class:`InPlaceMask` zeroes ``θ`` in place.

What the cache guarantees, so that ordinary training code never sees it:

* it is refilled when ``θ`` changed (its autograd version counter: ``optimizer.step()``,
  ``load_state_dict``), when the method's :meth:`~CachedForward.cache_token` changed (the
  threshold), or when the owner calls :meth:`WeightCache.invalidate` (the Pruner does after
  every step, so optimizers that write ``p.data`` are covered);
* it is never refilled in place while anything else still holds its storage (an autograd graph
  that has not run backward yet, a tensor the user kept): a fresh buffer is allocated instead, so
  two forwards with a threshold change in between still backpropagate correctly, and a weight the
  user kept does not change under them;
* an in-place write into ``module.weight`` (``nn.init.*_``, ``reset_parameters()``,
  ``weight.mul_(mask)``) is written back into ``θ`` through the method's inverse, so it lasts;
* it is allocated outside inference mode, so a validation pass under ``torch.inference_mode()``
  does not poison training;
* under ``torch.compile`` and ``torch.func`` transforms the method's plain ``transform`` runs
  instead (no data pointers there).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "CachedForward", "BufferCache", "GradBuffer", "InPlaceMask", "WeightCache", "is_plain_tensor", "grad_times",
    "owned_gradient",
]


_storage_Use_Count = torch._C._storage_Use_Count


def is_plain_tensor(t: Tensor) -> bool:
    """A real tensor with storage (not a functorch wrapper, a fake tensor or a subclass)."""
    return type(t) in (Tensor, torch.nn.Parameter) and not torch._C._functorch.is_functorch_wrapped_tensor(t)


def _storage_uses(t: Tensor) -> int:
    return _storage_Use_Count(t.untyped_storage()._cdata)


def _refcount(t: Tensor) -> int:
    return sys.getrefcount(t)


def _probe_refs(grad: Tensor) -> int:  # called like owned_gradient(grad, ...): the same depth
    return _refcount(grad)


class _Probe(torch.autograd.Function):
    """Measures the Python references a gradient nobody else holds has one call below a backward."""

    refs: int | None = None

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        _Probe.refs = _probe_refs(grad) if grad._use_count() == 1 and not grad._is_view() else None
        return grad


#: sys.getrefcount of a gradient handed to a backward that nothing else holds, seen one call
#: below the backward (measured once, by :func:`calibrate`; 0 before, so nothing is overwritten)
_HANDED_REFS = 0
_calibrated = False  # the probe ran (or could not): never again in this process


def calibrate() -> None:
    """Measure :data:`_HANDED_REFS` once per process (a two-element backward on the CPU; called
    when a :class:`GradBuffer` is made, outside any backward). Where the probe cannot run (a
    torch without ``Tensor._use_count``, a dispatch mode that intercepts it), it stays 0: no
    gradient is ever written over, the recycled buffer takes them all."""
    global _HANDED_REFS, _calibrated
    if _calibrated:
        return
    _calibrated = True  # a probe that fails or finds no owned gradient is not run again per layer
    if not hasattr(Tensor, "_use_count"):
        return
    _Probe.refs = None
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.zeros(2, device="cpu", requires_grad=True)
            (_Probe.apply(x) * 2.0).sum().backward()
    except Exception:  # noqa: BLE001 - the feature is an optimisation: off, never an error
        return
    _HANDED_REFS = _Probe.refs or 0


def owned_gradient(grad: Tensor, like: Tensor) -> bool:
    """Whether the gradient a backward was handed may be overwritten by ``θ``'s gradient: called
    from the backward itself, it is true when nothing else can see ``grad``: the check autograd's
    ``AccumulateGrad`` makes before it takes a gradient over as ``θ.grad`` without a copy (one
    C++ reference), and besides no Python reference beyond the backward's own (a hook that kept
    it), a storage of its own (not a view: the same gradient handed to two inputs, a slice of
    a larger one), not the ``grad_outputs`` of ``torch.autograd.grad``/``backward`` (two C++
    references), not under a differentiable backward, and laid out like ``θ``. Writing ``θ``'s
    gradient over it is then what the recycled :class:`GradBuffer` would hold, without a second
    weight-sized buffer or the allocator's work of freeing it mid-backward (bench/overhead*.md)."""
    return (
        _HANDED_REFS > 0
        and not torch.is_grad_enabled()
        and type(grad) is Tensor
        and grad._use_count() == 1
        and _refcount(grad) <= _HANDED_REFS
        and not grad._is_view()
        and grad.layout == torch.strided
        and grad.shape == like.shape
        and grad.stride() == like.stride()
        and grad.dtype == like.dtype
        and grad.device == like.device
        and _storage_Use_Count(grad.untyped_storage()._cdata) <= 2  # this tensor and the handle just made
    )


class GradBuffer:
    """The output of a backward that computes ``θ``'s gradient (a masked gradient, a fused
    kernel's), recycled from step to step instead of allocated anew.

    A fresh weight-sized tensor per layer and step costs the page faults of new memory (ResNet-18
    on one CPU core, measured in isolation: LTP's backward loops 25.0 ms a step into new tensors,
    16.3 ms into reused ones; README, Benchmarks).
    The buffer is handed to autograd, which makes it ``θ.grad``
    (``AccumulateGrad`` takes a gradient nobody else holds without copying it); only its storage
    is kept here, so it is written again only when no tensor at all uses that storage any more
    (``optimizer.zero_grad()`` has dropped ``θ.grad``, the user kept no ``torch.autograd.grad``
    result): its storage use count is then 1, this reference. Otherwise (``zero_grad(set_to_none=
    False)``, gradient accumulation, a kept gradient) a new buffer is allocated and becomes the
    one recycled. Under a differentiable backward (``create_graph=True``) callers allocate as
    torch does. Holds one weight-sized buffer per layer."""

    __slots__ = ("meta", "storage")

    def __init__(self) -> None:
        calibrate()
        self.storage = None
        self.meta: tuple | None = None

    def take(self, like: Tensor) -> Tensor:
        """A tensor shaped, strided and typed like ``like`` that nothing else uses (contents undefined)."""
        meta = (like.shape, like.stride(), like.dtype, like.device)
        storage = self.storage
        if storage is not None and self.meta == meta and _storage_Use_Count(storage._cdata) == 1:
            return like.new_empty(0).set_(storage, 0, like.shape, like.stride())
        with torch.inference_mode(False):
            out = torch.empty_strided(like.shape, like.stride(), dtype=like.dtype, device=like.device)
        self.storage, self.meta = out.untyped_storage(), meta
        return out

    def adopt(self, grad: Tensor) -> None:
        """Keep ``grad``, a gradient the backward owns (:func:`owned_gradient`) and has written
        ``θ``'s gradient out of, as the buffer of the next :meth:`take`, in place of the one just
        handed to autograd as ``θ.grad``: memory is then taken and given back as in training
        without a mask (the gradient a layer's backward makes lives on as ``θ.grad``, one step)
        instead of a weight-sized free in the middle of every backward."""
        self.storage = grad.untyped_storage()
        self.meta = (grad.shape, grad.stride(), grad.dtype, grad.device)


def grad_times(grad: Tensor, factor: Tensor, pool: GradBuffer, like: Tensor, owned: bool = False) -> Tensor:
    """``grad ⊙ factor`` as ``θ``'s gradient: over ``grad`` itself when the backward found it
    ``owned`` (:func:`owned_gradient`), else into ``pool``'s recycled buffer (laid out like ``θ``,
    ``like``), or a new tensor under a differentiable backward."""
    if torch.is_grad_enabled():
        return grad * factor
    if owned:
        return grad.mul_(factor)
    return torch.mul(grad, factor, out=pool.take(like))


class _CachedWeight(torch.autograd.Function):
    """Hand out the effective weight held in ``cache``; the gradient goes to the latent weight
    untouched (straight-through)."""

    # classic ctx-first style: the setup_context style binds arguments with inspect on every
    # call, which costs ~50 µs per layer and forward
    @staticmethod
    def forward(ctx, latent: Tensor, cache: Tensor) -> Tensor:
        return cache.view_as(cache)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


class _MaskedGrad(torch.autograd.Function):
    """Hand out ``θ`` itself (already zero where the mask is 0) with the masked gradient, written
    into the recycled :class:`GradBuffer` (a new tensor under ``create_graph``)."""

    @staticmethod
    def forward(ctx, latent: Tensor, mask: Tensor, pool: GradBuffer) -> Tensor:
        ctx.mask, ctx.pool, ctx.like = mask, pool, latent.detach()
        return latent.view_as(latent)

    @staticmethod
    def backward(ctx, grad: Tensor):
        owned = owned_gradient(grad, ctx.like)  # a statement of its own: no reference on the stack
        return grad_times(grad, ctx.mask, ctx.pool, ctx.like, owned), None, None


class InPlaceMask:
    """The forward of a fixed 0/1 mask without a second weight: ``θ`` itself is zeroed in place
    where the mask is 0 (once per change of ``θ`` or of the mask: after an optimizer step, a
    ``load_state_dict``, an in-place write into ``module.weight``, or when the owner calls
    :meth:`invalidate`, as the Pruner does after every step) and handed to the forward with the
    masked gradient. ``θ ⊙ m`` is then ``θ``, so no buffer holds it and no pass writes it: one
    in-place pass per step instead of a copy in the forward (bench/results/overhead*.md)."""

    __slots__ = ("forward_version", "key", "pool", "state_key")

    def __init__(self, pool: GradBuffer | None = None) -> None:
        self.pool = GradBuffer() if pool is None else pool
        self.key: tuple | None = None
        self.forward_version: int | None = None  # θ's version in the last forward (clean then)
        self.state_key: tuple | None = None  # the mask the optimizer's state was last zeroed for

    def invalidate(self) -> None:
        self.key = None

    def get(self, latent: Tensor, mask: Tensor) -> Tensor:
        if self.key != (latent.data_ptr(), latent._version, mask.data_ptr(), mask._version):
            with torch.inference_mode(False), torch.no_grad():
                latent.mul_(mask)
            self.certify(latent, mask)
        self.forward_version = latent._version
        return _MaskedGrad.apply(latent, mask, self.pool)

    def certify(self, latent: Tensor, mask: Tensor) -> None:
        """Record ``θ`` as zero where ``mask`` is 0 as it is now (no pass): the Pruner does so after
        an optimizer step that cannot have moved a masked weight (see ``Pruner.step``)."""
        self.key = (latent.data_ptr(), latent._version, mask.data_ptr(), mask._version)


class BufferCache:
    """``n`` buffers shaped like ``θ`` (the first is the effective weight handed to the forward),
    refilled by ``fill(latent, *buffers)`` when ``θ`` (pointer, version) or ``token`` changed, with
    the guarantees of the module docstring."""

    __slots__ = ("base_uses", "bufs", "filled_version", "key", "warned")

    def __init__(self) -> None:
        self.bufs: tuple[Tensor, ...] | None = None
        self.key: tuple | None = None
        self.filled_version = -1
        self.base_uses: list[int] = []
        self.warned = False

    def invalidate(self) -> None:
        self.key = None

    def current(self, latent: Tensor, token: object) -> tuple[Tensor, ...] | None:
        """The buffers if they hold the values for ``latent`` and ``token`` now, else ``None``."""
        if self.bufs is None or self.bufs[0]._version != self.filled_version:
            return None
        return self.bufs if self.key == (latent.data_ptr(), latent._version, token) else None

    def get(
        self,
        latent: Tensor,
        token: object,
        n: int,
        fill: Callable[..., None],
        inverse: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, ...]:
        bufs = self.bufs
        key = (latent.data_ptr(), latent._version, token)
        if bufs is not None and bufs[0]._version != self.filled_version:
            self._written_from_outside(latent, key, inverse)
            key = (latent.data_ptr(), latent._version, token)
        if key != self.key or bufs is None or len(bufs) != n:
            if (
                bufs is None
                or len(bufs) != n
                or bufs[0].shape != latent.shape
                or bufs[0].stride() != latent.stride()
                or bufs[0].dtype != latent.dtype
                or bufs[0].device != latent.device
                or any(_storage_uses(b) > u for b, u in zip(bufs, self.base_uses))  # held by a graph or the user
            ):
                with torch.inference_mode(False):
                    bufs = self.bufs = tuple(torch.empty_like(latent, requires_grad=False) for _ in range(n))
                self.base_uses = [_storage_uses(b) for b in bufs]
            with torch.no_grad():
                fill(latent, *bufs)
            self.filled_version = bufs[0]._version
            self.key = key
        return bufs

    def _written_from_outside(self, latent: Tensor, key: tuple, inverse) -> None:
        if self.key == key:  # a write into the weight in force: it becomes the new latent weight
            with torch.no_grad():
                latent.copy_(inverse(self.bufs[0]))
        elif not self.warned:
            self.warned = True
            warnings.warn(
                "an in-place write into a pruned module.weight was made on a weight that had gone stale "
                "(the latent weight or the threshold changed since), so it is dropped; read module.weight "
                "again before writing to it, or write to module.parametrizations.weight.original",
                stacklevel=5,
            )
        self.filled_version = self.bufs[0]._version
        self.key = None


class WeightCache(BufferCache):
    """One reused buffer holding an effective weight, handed out with a straight-through
    gradient."""

    __slots__ = ()

    def get(  # type: ignore[override]
        self,
        latent: Tensor,
        token: object,
        fill: Callable[[Tensor], None],
        inverse: Callable[[Tensor], Tensor],
    ) -> Tensor:
        (buf,) = super().get(latent, token, 1, lambda _, out: fill(out), inverse)
        return _CachedWeight.apply(latent, buf)


class CachedForward:
    """Mixin for a :class:`~snnprune.reparam.Reparameterization` whose eager forward writes the
    effective weight into a reused buffer. Implement :meth:`fill` (write the effective weight of
    ``latent`` into ``out``) and :meth:`cache_token` (everything besides ``θ`` that the weight
    depends on); :meth:`right_inverse` maps an effective weight back to a latent one."""

    def fill(self, latent: Tensor, out: Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def cache_token(self) -> object:
        return None

    def effective_weight(self, latent: Tensor) -> Tensor:
        if torch.compiler.is_compiling() or not is_plain_tensor(latent) or not self.cacheable():
            return self.transform(latent)
        return self._cache.get(latent, self.cache_token(), lambda out: self.fill(latent, out), self.right_inverse)

    def cacheable(self) -> bool:
        """Whether the eager forward may use the cache right now (e.g. the threshold is a plain
        tensor, not a functorch wrapper)."""
        return True
