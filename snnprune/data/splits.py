"""Deterministic stratified train/test splits for data sets that ship without one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._validation import normalise_name

SPLIT_SEED = 0


def canonical_split(split: str) -> str:
    """Map a split name (any case) to ``"train"`` or ``"test"`` (``"val"`` is the held-out split too).

    Example:
        >>> canonical_split("val"), canonical_split("Train")
        ('test', 'train')
    """
    names = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}
    try:
        return names[normalise_name(split)]
    except KeyError:
        raise ValueError(f"unknown split {split!r}: use 'train', 'test' or 'val'") from None


def stratified_split(
    targets: Sequence[int], test_fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified, seeded train/test split (each class split in the same ratio).

    Uses scikit-learn's ``train_test_split(stratify=targets)``; the same targets in the same order
    give the same split on every machine. Both index arrays are sorted.

    Example:
        >>> train, test = stratified_split([0] * 10 + [1] * 10, test_fraction=0.2)
        >>> len(train), len(test)
        (16, 4)
    """
    from sklearn.model_selection import train_test_split

    targets = np.asarray(targets)
    train, test = train_test_split(
        np.arange(len(targets)), test_size=test_fraction, random_state=seed, stratify=targets
    )
    return np.sort(train), np.sort(test)


#: the share of the training data :func:`validation_split` holds out by default
VALIDATION_FRACTION = 0.1


def validation_split(dataset, fraction: float = VALIDATION_FRACTION, seed: int = SPLIT_SEED):
    """Carve a validation split out of a training set: ``(rest, validation)`` as two
    ``torch.utils.data.Subset`` of ``dataset``, disjoint, seeded, stratified by class when the
    data set has ``targets`` (else a seeded random draw). Choices made on it (tuning, sensitivity)
    never look at the test set.

    Args:
        dataset: a map-style training set (its ``time_major`` flag is carried over).
        fraction: the share held out, in (0, 1).
        seed: the draw's seed.

    Returns:
        ``(rest, validation)``.

    Example:
        >>> from snnprune.data import create_dataset
        >>> rest, val = validation_split(create_dataset("digits", None, "train"))
        >>> len(rest), len(val), set(rest.indices) & set(val.indices)
        (1293, 144, set())
    """
    import torch
    from torch.utils.data import Subset

    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    targets = getattr(dataset, "targets", None)
    try:
        rest, val = stratified_split(list(targets), fraction, seed)
    except (TypeError, ValueError):  # no targets, or classes too small to stratify
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).numpy()
        n = max(1, round(fraction * len(dataset)))
        rest, val = np.sort(order[n:]), np.sort(order[:n])
    subsets = Subset(dataset, rest.tolist()), Subset(dataset, val.tolist())
    for s in subsets:
        s.time_major = getattr(dataset, "time_major", False)  # the loader collates by this flag
    return subsets
