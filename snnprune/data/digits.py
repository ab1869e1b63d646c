"""scikit-learn's handwritten digits (UCI, 1797 images of 8x8) as a small real image data set."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .registry import register_dataset
from .splits import canonical_split, stratified_split

DIGITS_TEST_FRACTION = 0.2


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digit images as float32 [N, 8, 8] in [0, 1] and their labels int64 [N].

    The data ship inside scikit-learn (``sklearn.datasets.load_digits``): nothing is downloaded.

    Example:
        >>> images, labels = digit_images()
        >>> images.shape, float(images.max()), labels[:3].tolist()
        ((1797, 8, 8), 1.0, [0, 1, 2])
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def digits_split(split: str) -> np.ndarray:
    """Indices of the train (80%) or test (20%) part: stratified, seed 0, same on every machine.

    Example:
        >>> len(digits_split("train")), len(digits_split("test"))
        (1437, 360)
    """
    train, test = stratified_split(digit_images()[1], DIGITS_TEST_FRACTION)
    return train if canonical_split(split) == "train" else test


class Digits(Dataset):
    """Digit images as tensors [1, 8, 8] in [0, 1] with integer labels.

    Example:
        >>> x, y = Digits("test")[0]
        >>> tuple(x.shape), x.dtype, type(y)
        ((1, 8, 8), torch.float32, <class 'int'>)
    """

    classes = [str(d) for d in range(10)]

    def __init__(self, split: str):
        images, labels = digit_images()
        index = digits_split(split)
        self.images = torch.from_numpy(images[index]).unsqueeze(1)
        self.targets = labels[index].tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


@register_dataset("digits", in_channels=1, input_size=8, num_classes=10,
                  description="scikit-learn digits, images [1, 8, 8], shipped with scikit-learn")
def digits(root, split: str) -> Digits:
    """The ``digits`` data set of the registry (``root`` is unused: the data ship with scikit-learn).

    Example:
        >>> len(digits(None, "train"))
        1437
    """
    return Digits(split)
