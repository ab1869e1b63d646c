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
