"""Batching: time-major collation of frame sequences and a DataLoader helper (single or distributed)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def collate_time_major(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(frames [T, C, H, W], label)`` samples into ``frames [T, N, C, H, W]`` and ``labels [N]``.

    Time-major is the layout SpikingJelly's multi-step modules take. Sequences of different length
    (framing by ``time_window``) are zero-padded at the end to the longest one in the batch.

    Args:
        batch: a list of ``(frames, label)`` pairs, frames ``[T_i, C, H, W]``.

    Returns:
        ``frames [T, N, C, H, W]`` (``T`` the longest ``T_i``) and ``labels [N]`` (int64).

    Example:
        >>> x, y = collate_time_major([(torch.ones(4, 2, 8, 8), 1), (torch.ones(3, 2, 8, 8), 0)])
        >>> tuple(x.shape), y.tolist(), x[3, 1].sum().item()
        ((4, 2, 2, 8, 8), [1, 0], 0.0)
    """
    frames, labels = zip(*batch)
    steps = max(f.shape[0] for f in frames)
    out = frames[0].new_zeros((steps, len(frames), *frames[0].shape[1:]))
    for i, f in enumerate(frames):
        out[: f.shape[0], i] = f
    return out, torch.as_tensor(labels, dtype=torch.long)


def first_samples(dataset: Dataset, n: int) -> torch.Tensor:
    """The inputs of the first ``n`` samples of ``dataset`` (all, if it has fewer) as one float
    batch shaped as the model takes it: ``[N, C, H, W]``, or ``[T, N, C, H, W]`` for event frames
    (``dataset.time_major``). The engine's fixed held-out batch and the channel cut's example.

    Args:
        dataset: a map-style data set of ``(input, label)`` pairs.
        n: how many samples, from the first.

    Returns:
        The inputs as one float tensor (labels dropped).

    Example:
        >>> class Frames(list):
        ...     time_major = True
        >>> tuple(first_samples(Frames([(torch.ones(4, 2, 8, 8), 0)] * 3), 2).shape)
        (4, 2, 2, 8, 8)
    """
    samples = [torch.as_tensor(dataset[i][0]) for i in range(min(n, len(dataset)))]
    return torch.stack(samples, 1 if getattr(dataset, "time_major", False) else 0).float()


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    workers: int = 0,
    distributed: bool = False,
    pin_memory: bool | None = None,
    drop_last: bool = False,
    seed: int | None = None,
    sampler=None,
    persistent_workers: bool | None = None,
) -> DataLoader:
    """A DataLoader for a data set made by :func:`snnprune.data.create_dataset`.

    Shuffles when ``train``; event data sets (``dataset.time_major``) are collated into
    ``[T, N, C, H, W]`` by :func:`collate_time_major`, image sets into the usual ``[N, C, H, W]``.
    With ``distributed=True`` a ``DistributedSampler`` shards the data over the process group
    (call ``loader.sampler.set_epoch(epoch)`` each epoch so shuffles differ). ``pin_memory``
    defaults to whether CUDA is available; ``seed`` fixes the shuffle order and the seeds of the
    worker processes (re-seed ``loader.generator`` before an epoch to make that epoch repeatable).
    A ``sampler`` given here replaces the shuffling/sharding above; ``persistent_workers`` defaults
    to ``workers > 0``.

    Args:
        dataset: a data set from :func:`~snnprune.data.create_dataset` (any map-style data set).
        batch_size: samples per batch (per process when ``distributed``).
        train: shuffle (and shard with shuffling) when True.
        workers: DataLoader worker processes.
        distributed: shard over the process group with a ``DistributedSampler``.
        pin_memory: default: whether CUDA is available.
        drop_last: drop the last incomplete batch.
        seed: fixes the shuffle order and the workers' seeds; None draws them from torch.
        sampler: replaces the shuffling and sharding above.
        persistent_workers: default: ``workers > 0``.

    Returns:
        The ``torch.utils.data.DataLoader``.

    Example:
        >>> from snnprune.data import create_dataset
        >>> loader = make_loader(create_dataset("digits", None, "test"), batch_size=32, train=False)
        >>> x, y = next(iter(loader))
        >>> tuple(x.shape), tuple(y.shape)
        ((32, 1, 8, 8), (32,))
    """
    if sampler is None and distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed or 0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_time_major if getattr(dataset, "time_major", False) else None,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0 if persistent_workers is None else persistent_workers and workers > 0,
        generator=None if seed is None else torch.Generator().manual_seed(seed),
    )
