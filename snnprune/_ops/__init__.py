"""The elementwise operators of the threshold methods, each in a reference form and, where it was
measured to pay, one faster form.

The **reference form** of an operator is its paper's formula in plain PyTorch, differentiated by
autograd: it is the method's definition (the formula the docs give and the tests check against).
The **fast form** is a small :class:`torch.autograd.Function` that computes the same values and
the same gradients with a hand-written backward in fewer passes over the weights. It exists only
for an operator whose autograd graph costs a measurable share of a training step
(``bench/overhead.py --variants str:reference,str:fast,...``):

* :func:`str_threshold` (STR): autograd's backward of ``sign(θ)·ReLU(|θ| − d)`` with a
  differentiable ``d`` broadcasts ``d`` and reduces its gradient through several passes; the fast
  backward is one ``where`` for ``θ`` and one reduction for ``d``;
* :func:`smooth_threshold` (Manessi et al.): about ten elementwise terms, each with a broadcast
  threshold whose gradient autograd reduces separately; the fast form saves the two sigmoids and
  reduces once.

:func:`soft_threshold_ste` (LATS/STDS) has no fast form: its reference is already one forward
pass beyond a copy and none backward.

**One switch** chooses the form for every operator: :func:`use_fast` (``True`` by default), or
the environment variable ``SNNPRUNE_OPS=reference`` (read once, at import). The same code runs on
CPU and CUDA (no device branch, no ``.item()``: no device sync) and under ``torch.func``
transforms. The fast forms' backward is once differentiable where the formula's second derivative
is not zero (the smooth threshold): a double backward through it raises, and needs the reference
form.

Example::

    >>> import torch
    >>> from snnprune import _ops
    >>> theta = torch.tensor([-0.3, 0.05, 0.2])
    >>> d = torch.tensor(0.1, requires_grad=True)
    >>> previous = _ops.use_fast(False)          # the reference form
    >>> _ops.str_threshold(theta, d)
    tensor([-0.2000,  0.0000,  0.1000], grad_fn=<MulBackward0>)
    >>> _ops.use_fast(previous)
    False
"""

from __future__ import annotations

from .select import ENV_VAR, fast_enabled, use_fast
from .threshold import smooth_threshold, soft_threshold_ste, str_threshold

__all__ = ["ENV_VAR", "fast_enabled", "smooth_threshold", "soft_threshold_ste", "str_threshold", "use_fast"]
