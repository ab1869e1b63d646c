"""CIFAR ResNet-20/32/56 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2).

The CIFAR-10 nets of the paper: a 3x3 conv to 16 channels, three stages of ``n`` basic blocks at
16, 32 and 64 channels on 32x32, 16x16 and 8x8 maps (the first block of stages 2 and 3 strides by 2),
global average pooling and a 10-way FC layer: ``6n + 2`` weighted layers (n = 3, 5, 9 give 20, 32, 56).

Shortcuts follow the paper's **option A** by default ("we use identity shortcuts in all cases",
§4.2): where the shape changes, the input is subsampled by 2 and zero-padded with the missing
channels, so shortcuts have no parameters and ResNet-20 has 0.27 M parameters (paper Table 6).
``shortcut="B"`` uses 1x1-conv + BN projections there instead (paper §3.3 option B).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import resolve_name
from .registry import register_model

__all__ = ["CifarResNet", "cifar_resnet20", "cifar_resnet32", "cifar_resnet56"]


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-``stride`` subsampling, then zero channels up to ``out_channels``.

    ``sources[j]`` is the input channel that output channel ``j`` carries, or None for a zero
    channel; built, the input sits in the middle with the zeros split around it. Channel pruning
    edits the map (:meth:`prune_inputs`, :meth:`prune_outputs`), so a cut stream on either side of
    the shortcut keeps every remaining channel where it was.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        before = (out_channels - in_channels) // 2
        self.stride, self.in_channels = stride, in_channels
        self.sources: list[int | None] = (
            [None] * before + list(range(in_channels)) + [None] * (out_channels - in_channels - before)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        out = x.new_zeros(x.shape[0], len(self.sources), *x.shape[2:])
        carried = [j for j, s in enumerate(self.sources) if s is not None]
        out[:, carried] = x[:, [self.sources[j] for j in carried]]
        return out

    def prune_inputs(self, idxs) -> None:
        """Remove input channels ``idxs``; the output channels they fed become zero channels."""
        gone = {int(i) for i in idxs}
        renumber = {old: new for new, old in enumerate(i for i in range(self.in_channels) if i not in gone)}
        self.sources = [None if s is None else renumber.get(s) for s in self.sources]
        self.in_channels = len(renumber)

    def prune_outputs(self, idxs) -> None:
        """Remove output channels ``idxs`` (zero or carrying an input)."""
        gone = {int(i) for i in idxs}
        self.sources = [s for j, s in enumerate(self.sources) if j not in gone]


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (paper Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = PadShortcut(in_channels, out_channels, stride)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The ``6n + 2``-layer CIFAR ResNet with ``blocks_per_stage = n``.

    Example:
        >>> net = CifarResNet(blocks_per_stage=3)                 # ResNet-20, option A
        >>> sum(p.numel() for p in net.parameters())
        269722
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, shortcut: str = "A", in_channels: int = 3) -> None:
        super().__init__()
        shortcut = resolve_name("shortcut", shortcut, ("A", "B"))
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, channels = [], 16
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(channels, width, stride if i == 0 else 1, shortcut))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@register_model(spiking=False, input_shape=(3, 32, 32))
def cifar_resnet20(num_classes: int = 10, shortcut: str = "A", in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-20 (He et al. 2016), option-A shortcuts by default; 0.27 M parameters."""
    return CifarResNet(3, num_classes, shortcut, in_channels)


@register_model(spiking=False, input_shape=(3, 32, 32))
def cifar_resnet32(num_classes: int = 10, shortcut: str = "A", in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-32 (He et al. 2016), option-A shortcuts by default; 0.46 M parameters."""
    return CifarResNet(5, num_classes, shortcut, in_channels)


@register_model(spiking=False, input_shape=(3, 32, 32))
def cifar_resnet56(num_classes: int = 10, shortcut: str = "A", in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-56 (He et al. 2016), option-A shortcuts by default; 0.85 M parameters."""
    return CifarResNet(9, num_classes, shortcut, in_channels)
