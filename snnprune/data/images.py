"""Static image data sets read with torchvision: ImageNet (ImageFolder), CIFAR-10 and CIFAR-100."""

from __future__ import annotations

import os

from torchvision import datasets, transforms

from .errors import DatasetNotFoundError
from .registry import register_dataset
from .splits import canonical_split

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@register_dataset("imagenet", in_channels=3, input_size=224, num_classes=1000,
                  description="ImageNet-1k, ImageFolder trees root/train and root/val")
def imagenet(root: str, split: str, image_size: int = 224, augment: bool = True):
    """ImageNet-1k as a torchvision ``ImageFolder`` on ``root/train`` or ``root/val``.

    Both folders hold one sub-folder per class (the WordNet id, e.g. ``n01440764``) with the
    images in it; the official validation set must be sorted into class folders first
    (data/README.md). Training images get the standard RandomResizedCrop + horizontal flip;
    validation images are resized to ``image_size * 256 / 224`` and center-cropped; both are
    normalised with the ImageNet mean and std.

    Example:
        >>> ds = imagenet("/data/imagenet", "val", image_size=224)  # doctest: +SKIP
        >>> ds[0][0].shape  # doctest: +SKIP
        torch.Size([3, 224, 224])
    """
    folder = os.path.join(root, "train" if canonical_split(split) == "train" else "val")
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if canonical_split(split) == "train" and augment:
        tf = [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    else:
        tf = [transforms.Resize(round(image_size * 256 / 224)), transforms.CenterCrop(image_size)]
    try:
        return datasets.ImageFolder(folder, transforms.Compose([*tf, transforms.ToTensor(), normalize]))
    except FileNotFoundError:
        raise DatasetNotFoundError(
            "imagenet", folder, "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG",
            "https://image-net.org (ILSVRC2012, registration required)",
        ) from None


CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (python version)"


class _LocalCIFAR:
    """Reads the CIFAR python pickles that are on disk; the md5 check is optional.

    torchvision refuses files whose md5 differs from the published archive's; that makes
    regenerated or test files unusable, so by default only their existence is checked
    (``verify_md5=True`` restores torchvision's check). Nothing is downloaded unless
    the ``download`` flag is set to True.
    """

    name = ""

    def __init__(self, root: str, train: bool, verify_md5: bool = False, download: bool = False, **kw):
        if not verify_md5:  # torchvision's check_integrity(path, None) only checks existence
            self.train_list = [[f, None] for f, _ in self.train_list]
            self.test_list = [[f, None] for f, _ in self.test_list]
            self.meta = {**self.meta, "md5": None}
        folder = os.path.join(root, self.base_folder)
        needed = [f for f, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        if not download and not all(os.path.isfile(os.path.join(folder, f)) for f in needed):
            layout = f"<root>/{self.base_folder}/{{{', '.join(needed)}}}"
            raise DatasetNotFoundError(self.name, folder, layout, CIFAR_SOURCE)
        super().__init__(root, train=train, download=download, **kw)


class LocalCIFAR10(_LocalCIFAR, datasets.CIFAR10):
    """torchvision's CIFAR-10 reading local files, md5 check optional; built by :func:`cifar10`."""

    name = "cifar10"


class LocalCIFAR100(_LocalCIFAR, datasets.CIFAR100):
    """torchvision's CIFAR-100 reading local files, md5 check optional; built by :func:`cifar100`."""

    name = "cifar100"


def _cifar(cls, mean, std, root, split, augment, verify_md5, download):
    train = canonical_split(split) == "train"
    tf = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if train and augment else []
    tf = transforms.Compose([*tf, transforms.ToTensor(), transforms.Normalize(mean, std)])
    return cls(root, train=train, transform=tf, verify_md5=verify_md5, download=download)


@register_dataset("cifar10", in_channels=3, input_size=32, num_classes=10,
                  description="CIFAR-10, python pickles in root/cifar-10-batches-py")
def cifar10(root: str, split: str, augment: bool = True, verify_md5: bool = False, download: bool = False):
    """CIFAR-10 (50 000 / 10 000 images, 32x32) from ``root/cifar-10-batches-py``.

    Training images get random crop (padding 4) + flip; all are normalised per channel.

    Example:
        >>> x, y = cifar10("/data", "test")[0]  # doctest: +SKIP
        >>> x.shape  # doctest: +SKIP
        torch.Size([3, 32, 32])
    """
    return _cifar(LocalCIFAR10, CIFAR10_MEAN, CIFAR10_STD, root, split, augment, verify_md5, download)


@register_dataset("cifar100", in_channels=3, input_size=32, num_classes=100,
                  description="CIFAR-100, python pickles in root/cifar-100-python")
def cifar100(root: str, split: str, augment: bool = True, verify_md5: bool = False, download: bool = False):
    """CIFAR-100 (fine labels) from ``root/cifar-100-python``; same transforms as :func:`cifar10`.

    Example:
        >>> x, y = cifar100("/data", "train")[0]  # doctest: +SKIP
    """
    return _cifar(LocalCIFAR100, CIFAR100_MEAN, CIFAR100_STD, root, split, augment, verify_md5, download)
