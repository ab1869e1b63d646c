"""The elementwise operators of the threshold methods, each in a reference form and, where it was
measured to pay, one faster form.

The **reference form** of an operator is its paper's formula in plain PyTorch, differentiated by
autograd: it is the method's definition (the formula the docs give and the tests check against).
The **fast form** is a small :class:`torch.autograd.Function` that computes the same values and
the same gradients with a hand-written backward in fewer passes over the weights. It exists only
for an operator whose autograd graph costs a measurable share of a training step (at least 5%
of the step, ``bench/overhead.py --variants smooth_threshold:reference,smooth_threshold:fast``):

* :func:`smooth_threshold` (Manessi et al.): about ten elementwise terms, each with a broadcast
  threshold whose gradient autograd reduces separately; the fast form saves the two sigmoids, and
  reduces the threshold's gradient once.

:func:`soft_threshold_ste` (LATS/STDS) and :func:`str_threshold` (STR) have no fast form: a
``softshrink`` reading the threshold as a number (one pass instead of three, but a device sync)
and a hand-written backward for STR each saved less than 5% of a step.

**One switch** chooses the form for every operator: :func:`use_fast` (``True`` by default), or
the environment variable ``SNNPRUNE_OPS=reference`` (read once, at import). The same code runs on
CPU and CUDA (no device branch, no ``.item()``: no device sync) and under ``torch.func``
transforms. A double backward (``create_graph=True``) through a fast form differentiates the
formula itself.

Example::

    >>> import torch
    >>> from snnprune import _ops
    >>> x = torch.tensor([-2.0, 0.0, 2.0])
    >>> previous = _ops.use_fast(False)          # the reference form: the formula under autograd
    >>> reference = _ops.smooth_threshold(x, torch.tensor(0.5), 100.0)
    >>> _ = _ops.use_fast(True)
    >>> torch.allclose(_ops.smooth_threshold(x, torch.tensor(0.5), 100.0), reference)
    True
    >>> _ = _ops.use_fast(previous)
"""

from __future__ import annotations

from .select import ENV_VAR, fast_enabled, use_fast
from .threshold import smooth_threshold, soft_threshold_ste, str_threshold

__all__ = ["ENV_VAR", "fast_enabled", "smooth_threshold", "soft_threshold_ste", "str_threshold", "use_fast"]
