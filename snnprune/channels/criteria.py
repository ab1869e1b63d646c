"""Which channels a batch-norm scale vector says to keep: pure functions of the scales ``gamma``.

Two criteria are implemented, both on the absolute BN scales ``|gamma|`` that sparsity training
(:class:`~snnprune.channels.BNSparsity`) drives towards zero:

* **Optimal Thresholding** (OT; Ye et al., "Channel Pruning via Optimal Thresholding", ICONIP 2020,
  arXiv:2003.04566): one threshold *per layer*. Sort ``|gamma|`` ascending as ``g_(1) <= ... <= g_(n)``,
  take the largest ``k`` with ``sum_{i<=k} g_(i)^2 <= delta * sum_i g_i^2`` and cut halfway between
  ``g_(k)`` and ``g_(k+1)``: the removed channels carry at most a fraction ``delta`` of the layer's
  squared scale mass, so a layer is never over- or under-pruned by a cut made for another layer.
* **Network slimming** (Liu et al., "Learning Efficient Convolutional Networks through Network
  Slimming", ICCV 2017): one *global* threshold, the ``percent`` percentile of all scales pooled.

A channel is kept when ``|gamma| > threshold``. Two rules keep that well defined:

* ties never straddle a cut: if ``g_(k) == g_(k+1)`` the cut moves down to the next gap, so equal
  scales always share one fate (all-equal scales: nothing is removed);
* a layer always keeps a channel: ``k <= n - 1``, and :func:`channels_to_keep` keeps the largest
  channel when a threshold would remove them all (e.g. a layer whose scales are all zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["optimal_threshold", "slimming_threshold", "channels_to_keep"]


def _abs_sorted(gamma: torch.Tensor) -> torch.Tensor:
    g = torch.as_tensor(gamma).detach().flatten().abs().double()
    if g.numel() == 0:
        raise ValueError("gamma is empty")
    if not torch.isfinite(g).all():
        raise ValueError("gamma has non-finite values")
    return g.sort().values


def optimal_threshold(gamma: torch.Tensor, delta: float = 1e-3) -> float:
    """The Optimal Thresholding cut of one layer's BN scales (channels with ``|gamma| > t`` stay).

    Args:
        gamma: the layer's BN scales (any shape; signs ignored).
        delta: the largest fraction of ``sum gamma^2`` the removed channels may carry (the paper: 1e-3).

    Returns:
        ``(g_(k) + g_(k+1)) / 2`` for the largest admissible ``k`` (``g_(0) = 0``; ``k <= n - 1`` and
        moved down past ties), so ``k == 0`` returns ``g_(1) / 2`` and nothing is removed.

    Example:
        >>> optimal_threshold(torch.tensor([1.0, 1.0, 1.0, 1.0]))            # all equal: keep all
        0.5
        >>> round(optimal_threshold(torch.tensor([0.001, -0.002, 1.0, 0.9])), 4)   # the two tiny ones go
        0.451
    """
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    g = _abs_sorted(gamma)
    n = g.numel()
    cum = torch.cumsum(g * g, 0)
    # Largest k (0..n) with cum[k-1] <= delta * total; a relative slack absorbs the rounding of cumsum.
    bound = delta * float(cum[-1]) * (1 + 1e-12)
    k = int((cum <= bound).sum())
    k = min(k, n - 1)
    while k > 0 and g[k - 1] == g[k]:
        k -= 1
    low = float(g[k - 1]) if k > 0 else 0.0
    return (low + float(g[k])) / 2


def slimming_threshold(gammas: Sequence[torch.Tensor] | torch.Tensor, percent: float) -> float:
    """Network slimming's global cut: the ``percent`` quantile (0..1) of all ``|gamma|`` pooled.

    Channels with ``|gamma| > t`` stay, so about ``percent`` of all channels go (ties stay together).

    Example:
        >>> round(slimming_threshold([torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])], 0.5), 4)
        0.25
    """
    if not 0.0 <= percent < 1.0:
        raise ValueError(f"percent must be in [0, 1), got {percent}")
    if isinstance(gammas, torch.Tensor):
        gammas = [gammas]
    g = torch.cat([_abs_sorted(x) for x in gammas]).sort().values
    k = int(round(percent * g.numel()))  # channels to remove
    if k == 0:
        return float(g[0]) / 2
    while k > 0 and k < g.numel() and g[k - 1] == g[k]:
        k -= 1
    if k == 0:
        return float(g[0]) / 2
    high = float(g[k]) if k < g.numel() else float(g[k - 1])
    return (float(g[k - 1]) + high) / 2


def channels_to_keep(
    gammas: Sequence[torch.Tensor] | torch.Tensor,
    thresholds: Sequence[float] | float,
) -> torch.Tensor:
    """Boolean keep mask over the channels of one coupled group (True = kept).

    ``gammas`` holds the scales of every BN of the group, aligned channel by channel (one BN, or the
    BNs that a residual sum or a depthwise conv ties together), ``thresholds`` one cut per BN (or
    one for all). A channel goes only when **every** BN of its group says so (``|gamma| <= t``):
    under a SEW ADD/IAND connection an identity path passes a channel whose branch is dead, and a
    live source still feeds the next block, so one dead BN does not make a channel removable. At
    least one channel stays (the one with the largest summed ``|gamma| / t``).

    Example:
        >>> channels_to_keep([torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.5, 0.0])], [0.1, 0.1])
        tensor([False,  True,  True])
        >>> channels_to_keep(torch.zeros(3), 0.0)                       # dead layer: one stays
        tensor([ True, False, False])
    """
    if isinstance(gammas, torch.Tensor):
        gammas = [gammas]
    if isinstance(thresholds, (int, float)):
        thresholds = [float(thresholds)] * len(gammas)
    if len(gammas) != len(thresholds) or not gammas:
        raise ValueError(f"got {len(gammas)} gamma vectors and {len(thresholds)} thresholds")
    absg = [torch.as_tensor(g).detach().flatten().abs().double() for g in gammas]
    n = absg[0].numel()
    if any(g.numel() != n for g in absg):
        raise ValueError(f"the gamma vectors of one group must have one length, got {[g.numel() for g in absg]}")
    keep = torch.zeros(n, dtype=torch.bool)
    for g, t in zip(absg, thresholds):
        keep |= g > float(t)
    if not keep.any():
        score = sum(g / float(t) if t > 0 else g for g, t in zip(absg, thresholds))
        keep[int(torch.argmax(score))] = True
    return keep
