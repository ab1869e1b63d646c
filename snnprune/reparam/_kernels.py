"""One-pass element-wise kernels for the learned soft masks (LTP, smooth threshold).

The effective weight of LTP and of the smooth threshold, and their backward, are a handful of
element-wise operations and one or two sums over every pruned weight. Written as torch operations
they cross the weights 8 (LTP) to 18 (smooth threshold) times a step, each pass about 3 ms over
ResNet-18's 11.7 M weights on a CPU core, in 2 (LTP) to 5 (smooth threshold) weight-sized
buffers; as one generated loop per direction they cross them a few times and the sigmoids are
the real work. :func:`torch.compile` (inductor: a C++/OpenMP loop on CPU, Triton on CUDA) writes
those loops from the plain formulas below, so there is no hand-written kernel to keep in step
with the math. The forward keeps the sigmoids it computed for the backward (LTP's mask; the
smooth threshold's two sigmoids, 3 buffers instead of 5): recomputing them there cost more CPU
time than reading them back (the sigmoids, not the memory passes, are the bottleneck here).

Each kernel is compiled once per process, device type and dtype, with dynamic sizes (one graph
for every layer), on the first use; that costs a few seconds (inductor's cache on disk makes the
next process faster), so by default only layers of at least :data:`MIN_NUMEL` weights take the
kernels (where the passes cost more than the call) and small models never compile anything. A
compiler that fails (no C++ toolchain, an unsupported device) is reported once and the methods
keep their eager path. ``SNNPRUNE_FUSED_KERNELS``: ``auto`` (the default, by layer size), ``1``
(every layer), ``0`` (never). Under ``torch.compile`` of a whole model, ``torch.func`` transforms,
inference mode or for non-contiguous weights the eager path runs anyway.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .._validation import first_line
from ._cache import owned_gradient

__all__ = ["FusedKernel", "KernelWeight", "MIN_NUMEL", "ONE_LOOP", "SIGMOID_CLAMP", "flat", "kernel_mode"]

_ENV = "SNNPRUNE_FUSED_KERNELS"
#: layers with fewer weights keep the eager path under the default ``auto`` mode
MIN_NUMEL = 1 << 16


def kernel_mode() -> str:
    """``"auto"``, ``"always"`` or ``"never"``, from ``SNNPRUNE_FUSED_KERNELS``."""
    value = os.environ.get(_ENV, "auto").strip().lower()
    if value in ("0", "false", "no", "off", "never"):
        return "never"
    if value in ("1", "true", "yes", "on", "always"):
        return "always"
    return "auto"


class _DropMessage(logging.Filter):
    """Drops torch's note that a CUDA build found no CUDA runtime (printed when inductor imports
    its C++ builder on a CPU-only machine; nothing is wrong)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


logging.getLogger("torch.utils.cpp_extension").addFilter(_DropMessage())


def flat(t: Tensor) -> Tensor:
    """``t`` as a 1-D tensor on the same memory that is neither a view nor part of a graph (the
    compiled kernels then see one kind of input for every layer: no recompilation per shape)."""
    return t.detach().view(-1).detach()


#: inductor options for a kernel that writes a per-weight result *and* reduces over the same
#: values (the backward kernels): with a reused intermediate kept in registers instead of
#: recomputed, inductor emits one loop instead of a reduction loop and a second, storing loop
#: (ResNet-18's 14 large layers, 2 threads: LTP's backward 7.6 -> 5.5 ms, the smooth
#: threshold's 11.4 -> 7.1 ms; bench/kernels.py). Passed only where this torch knows them.
ONE_LOOP = {"realize_reads_threshold": 1}


def _known_options(options: dict) -> dict:
    try:
        from torch._inductor import config
    except Exception:  # noqa: BLE001 - no inductor: torch.compile reports it, the formula runs
        return {}
    return {k: v for k, v in options.items() if hasattr(config, k)}


class FusedKernel:
    """A plain tensor function, compiled on first use (with inductor ``options`` this torch
    knows). A compilation that fails is reported once and the function then runs as written
    (eager torch operations: the same values, slower).

    ``over_gradient=True`` (a backward ``fn(w, g, *rest, out)``): :attr:`over_gradient` is the
    same backward writing its per-weight result over ``g`` (``fn(w, g, *rest, g)``, compiled on
    its own), for a gradient the backward owns. Only for a backward whose reduction reads the
    value it stores (LTP's ``g·m``): where the reduction reads ``g`` itself (the smooth
    threshold's), inductor keeps ``g``'s old values in a buffer of their own and the in-place
    form measured 1.4-10x slower than writing into a second buffer."""

    def __init__(self, fn: Callable, options: dict | None = None, over_gradient: bool = False) -> None:
        self.fn = fn
        self.options = dict(options or {})
        self._compiled: Callable | None = None
        self.failed = False
        self.over_gradient: FusedKernel | None = None
        if over_gradient:

            def written_over_gradient(w: Tensor, g: Tensor, *rest: Tensor) -> Tensor:
                return fn(w, g, *rest, g)

            written_over_gradient.__name__ = f"{fn.__name__}_over_gradient"
            self.over_gradient = FusedKernel(written_over_gradient, options)

    def usable(self, *tensors: Tensor) -> bool:
        """Whether to take the kernel for these tensors (mode, size, device, layout)."""
        mode = kernel_mode()
        first = tensors[0]
        if self.failed or mode == "never" or (mode == "auto" and first.numel() < MIN_NUMEL):
            return False
        if torch.compiler.is_compiling() or torch.is_inference_mode_enabled():
            return False
        if first.device.type not in ("cpu", "cuda") or not first.is_floating_point():
            return False
        return all(t.is_contiguous() and t.device == first.device and t.dtype == first.dtype for t in tensors)

    def __call__(self, *args):
        if not self.failed:
            try:
                if self._compiled is None:
                    options = _known_options(self.options)
                    kwargs = {"options": options} if options else {}
                    self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True, **kwargs)
                return self._compiled(*args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run the formula as written
                self.failed = True
                warnings.warn(
                    f"the fused {self.fn.__name__.strip('_')} kernel could not be compiled ({first_line(exc)}); "
                    f"the eager path is used (slower). Set {_ENV}=0 to skip the attempt",
                    stacklevel=4,
                )
        return self.fn(*args)


#: sigmoid arguments are clamped to ``±SIGMOID_CLAMP`` in the smooth threshold's kernel: the
#: exponential of a large argument takes slow paths (under- and overflow; ``σ(β(x − t))`` with
#: ``β·x`` of order 50 for typical weights has many), and ``σ(±80)`` is within ``1.8e-35`` of
#: ``σ`` further out: ResNet-18's 14 large layers, 2 threads: 11.3 -> 9.1 ms (bench/kernels.py)
SIGMOID_CLAMP = 80.0


# -- smooth threshold (Manessi et al.): v = ReLU(x − t) + t·σ(β(x − t)) − ReLU(−x − t) − t·σ(β(−x − t))
def _smooth_forward(x: Tensor, v: Tensor, a_out: Tensor, b_out: Tensor, t: Tensor, beta: Tensor) -> None:
    """Writes ``v`` and the two sigmoids ``a = σ(β(x − t))``, ``b = σ(β(−x − t))`` (the backward's
    only costly part: kept rather than recomputed, which measured 36% less CPU time)."""
    a = torch.sigmoid((beta * (x - t)).clamp(-SIGMOID_CLAMP, SIGMOID_CLAMP))
    b = torch.sigmoid((beta * (-x - t)).clamp(-SIGMOID_CLAMP, SIGMOID_CLAMP))
    v.copy_(torch.relu(x - t) - torch.relu(-x - t) + t * (a - b))
    a_out.copy_(a)
    b_out.copy_(b)


def _smooth_backward(x: Tensor, g: Tensor, a: Tensor, b: Tensor, t: Tensor, beta: Tensor, out: Tensor) -> Tensor:
    """Writes ``g·∂v/∂x`` into ``out``; returns ``Σ g·∂v/∂t``, with ``∂v/∂x = 1[|x| > t] + tβ(A + B)``,
    ``∂v/∂t = (a − b) − tβ(A − B) − sign(x)·1[|x| > t]``, ``A = a(1 − a)``, ``B = b(1 − b)``."""
    big = x.abs() > t
    A, B = a * (1 - a), b * (1 - b)
    tb = t * beta
    dvdx = big.to(x.dtype) + tb * (A + B)
    dvdt = (a - b) - tb * (A - B) - torch.where(big, torch.sign(x), torch.zeros_like(x))
    out.copy_(g * dvdx)
    return (g * dvdt).sum()


# -- LTP: m = σ(k·w² + shift), v = w·m (k = 1/(scale·T), shift = −τ/T)
def _ltp_forward(w: Tensor, v: Tensor, m_out: Tensor, k: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """Writes ``v = w·m`` and ``m``; returns ``Σ m`` and ``Σ m(1 − m)`` (the L0 term and its slope)."""
    m = torch.sigmoid(k * w * w + shift)
    v.copy_(w * m)
    m_out.copy_(m)
    return m.sum(), (m * (1 - m)).sum()


def _ltp_backward(w: Tensor, g: Tensor, m: Tensor, out: Tensor) -> Tensor:
    """Writes ``g·m`` (the mask a constant in ``w``) into ``out`` (which may be ``g``); returns
    ``Σ g·w·m(1 − m)`` (for ``∂/∂τ``)."""
    gm = g * m
    out.copy_(gm)
    return (gm * w * (1 - m)).sum()


smooth_forward = FusedKernel(_smooth_forward)
smooth_backward = FusedKernel(_smooth_backward, ONE_LOOP)  # not over_gradient: see FusedKernel
ltp_forward = FusedKernel(_ltp_forward)
ltp_backward = FusedKernel(_ltp_backward, ONE_LOOP, over_gradient=True)


class KernelWeight(torch.autograd.Function):
    """An effective weight ``v`` written by a fused forward kernel. The backward runs
    ``backward(w, g, *saved, out) -> Σ`` in one pass, writing ``∂L/∂w`` over the incoming gradient
    where the kernel has that form (:attr:`FusedKernel.over_gradient`) and nothing else can see
    the gradient (:func:`~snnprune.reparam._cache.owned_gradient`: a convolution's weight
    gradient, as a rule), or else into the layer's recycled
    :class:`~snnprune.reparam._cache.GradBuffer`, and gives the method's learned threshold
    ``Σ · coef``; ``saved`` are the forward's per-weight buffers and 0-dim constants."""

    @staticmethod
    def forward(ctx, latent: Tensor, threshold: Tensor, v: Tensor, saved: tuple, backward: FusedKernel,
                coef: float, pool) -> Tensor:
        ctx.save_for_backward(latent)
        # detached aliases: a graph that has not run backward yet keeps the buffers from reuse
        ctx.saved, ctx.v = tuple(t.detach() for t in saved), v.detach()
        ctx.backward, ctx.coef, ctx.threshold_dtype, ctx.pool = backward, coef, threshold.dtype, pool
        return v.view_as(v)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (latent,) = ctx.saved_tensors
        owned = owned_gradient(grad, latent)  # a statement of its own: no reference on the stack
        w, g = flat(latent), flat(grad.contiguous())
        saved = [flat(t) if t.dim() else t for t in ctx.saved]
        kernel = ctx.backward
        if torch.is_grad_enabled():  # a differentiable backward: a new tensor, the formula as written
            grad_w = torch.empty_like(latent)
            total = kernel.fn(w, g, *saved, grad_w.view(-1))
        elif owned and kernel.over_gradient is not None:  # θ's gradient written over the incoming one
            grad_w, kernel = grad, kernel.over_gradient
            total = (kernel if kernel.usable(w, g) else kernel.fn)(w, g, *saved)
        else:  # flat(grad_w), not grad_w.view(-1): a view's _base would add guards (a graph per layer shape)
            grad_w = ctx.pool.take(latent)
            total = (kernel if kernel.usable(w, g) else kernel.fn)(w, g, *saved, flat(grad_w))
            if owned:  # the incoming gradient, nobody else's, is the next backward's buffer
                ctx.pool.adopt(grad)
        grad_threshold = (total * ctx.coef).to(ctx.threshold_dtype) if ctx.needs_input_grad[1] else None
        return grad_w, grad_threshold, None, None, None, None, None


class ScalarCache:
    """0-dim tensors for per-layer constants (a Python float would be compiled into the kernel,
    one graph per value), re-made only when the value, device or dtype changes."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: Tensor | None = None

    def get(self, value: float, like: Tensor) -> Tensor:
        key = (value, like.device, like.dtype)
        if key != self.key:
            self.value, self.key = torch.tensor(value, device=like.device, dtype=like.dtype), key
        return self.value
