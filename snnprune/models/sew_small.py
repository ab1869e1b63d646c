"""The plain (non-ImageNet) SEW nets of Fang et al., "Deep Residual Learning in Spiking Neural
Networks" (NeurIPS 2021, the DVS Gesture and CIFAR10-DVS experiments), and a tiny one for the
embedded digits data.

The paper writes them in a layer notation that ``SEWNet`` reads nearly verbatim:

* DVS128 Gesture:  ``c32k3s1-BN-PLIF-{SEW Block-MPk2s2}*7-FC11``
* CIFAR10-DVS:     ``c64k3s1-BN-PLIF-{SEW Block(c64)-MPk2s2}*4-c128k3s1-BN-PLIF-{SEW Block(c128)-MPk2s2}*3-FC10``

``cNk3s1-BN-PLIF`` is a 3x3 stride-1 convolution to N channels, batch norm and a PLIF neuron; a
"SEW Block" is two of those with the block's input added back by the connect function (ADD in the
paper); ``MPk2s2`` is 2x2 max pooling; ``FCk`` is the linear classifier on the flattened features.
Both nets take 128x128 two-channel event frames, which seven poolings reduce to 1x1.

``sew_digits`` is the same kind of net made small enough to train in seconds on two CPU cores:
``c16k3s1-BN-IF-{SEW Block-MPk2s2}-c32k3s1-BN-IF-{SEW Block-MPk2s2}-FC10`` on 1x8x8 scikit-learn
digits or 2-channel 16x16 / 34x34 event frames; ``width=w`` makes it ``c16w ... c32w`` (w times the
channels, about w² times the weights).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from spikingjelly.activation_based import layer
from spikingjelly.activation_based.model.sew_resnet import sew_function
from torch import nn

from .._validation import check_positive_int, resolve_name
from .neurons import make_neuron
from .registry import register_model
from .sew_resnet import CONNECT_FUNCTIONS
from .spiking_net import SpikingNet

__all__ = ["ConvBNNeuron", "SEWBlock", "SEWNet", "GESTURE_PLAN", "CIFAR10DVS_PLAN", "DIGITS_PLAN",
           "sew_gesture", "sew_cifar10dvs", "sew_digits", "widen"]

#: the paper's layer strings as token lists: "cN" conv-BN-neuron to N channels ("cNs2": stride 2),
#: "sew" a SEW block at the current width, "mp" 2x2 max pooling.
GESTURE_PLAN = ("c32",) + ("sew", "mp") * 7
CIFAR10DVS_PLAN = ("c64",) + ("sew", "mp") * 4 + ("c128",) + ("sew", "mp") * 3
DIGITS_PLAN = ("c16", "sew", "mp", "c32", "sew", "mp")
_CONV_TOKEN = re.compile(r"c(\d+)(?:s(\d+))?")


class ConvBNNeuron(nn.Sequential):
    """``cNk3s1-BN-<neuron>``: 3x3 conv (no bias, stride 1 unless given), batch norm, spiking neuron.

    Example:
        >>> ConvBNNeuron(2, 8, "plif").sn.__class__.__name__
        'ParametricLIFNode'
    """

    def __init__(self, in_channels: int, out_channels: int, neuron: str, stride: int = 1) -> None:
        super().__init__()
        self.conv = layer.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn = layer.BatchNorm2d(out_channels)
        self.sn = make_neuron(neuron)


class SEWBlock(nn.Module):
    """SEW residual block (paper Fig. 1): ``g(A, S)`` with ``A`` = two ConvBNNeurons of ``S``.

    ``g`` is the connect function: ADD ``A + S``, AND ``A * S``, IAND ``(1 - A) * S``.

    Example:
        >>> from spikingjelly.activation_based import functional
        >>> block = SEWBlock(4, "if", "ADD"); functional.set_step_mode(block, "m")
        >>> block(torch.zeros(3, 2, 4, 5, 5)).shape
        torch.Size([3, 2, 4, 5, 5])
    """

    def __init__(self, channels: int, neuron: str, cnf: str = "ADD") -> None:
        super().__init__()
        cnf = resolve_name("cnf", cnf, CONNECT_FUNCTIONS)
        self.conv = nn.Sequential(ConvBNNeuron(channels, channels, neuron), ConvBNNeuron(channels, channels, neuron))
        self.cnf = cnf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sew_function(x, self.conv(x), self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class SEWNet(nn.Module):
    """A plain SEW net from a layer plan (tokens "cN"/"cNsS", "sew", "mp"), then flatten and one FC layer.

    Args:
        plan: the layer tokens, e.g. ``GESTURE_PLAN``; must start with a "cN" token.
        in_channels: input channels (2 for DVS polarity, 1 for grey images).
        num_classes: outputs of the final FC layer.
        input_size: input height = width; fixes the FC layer's input size.
        neuron: "if", "lif" or "plif".
        cnf: SEW connect function of every block.

    Example:
        >>> net = SEWNet(("c8", "sew", "mp"), in_channels=1, num_classes=3, input_size=8, neuron="if")
        >>> net.fc
        Linear(in_features=128, out_features=3, bias=True)
    """

    def __init__(
        self,
        plan: Sequence[str],
        in_channels: int,
        num_classes: int,
        input_size: int,
        neuron: str,
        cnf: str = "ADD",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for token in plan:
            if token == "sew":
                layers.append(SEWBlock(channels, neuron, cnf))
            elif token == "mp":
                layers.append(layer.MaxPool2d(kernel_size=2, stride=2))
                size //= 2
            elif conv := _CONV_TOKEN.fullmatch(token):
                stride = int(conv[2] or 1)
                layers.append(ConvBNNeuron(channels, int(conv[1]), neuron, stride))
                channels, size = int(conv[1]), (size - 1) // stride + 1
            else:
                raise ValueError(f"unknown layer token {token!r}; use 'cN', 'cNsS', 'sew' or 'mp'")
        if size < 1:
            pools = list(plan).count("mp")
            raise ValueError(f"input_size {input_size} is too small for {pools} 2x2 poolings")
        self.features = nn.Sequential(*layers)
        self.flatten = layer.Flatten(start_dim=1)
        self.fc = layer.Linear(channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


def _plain_sew(plan, num_classes, T, in_channels, input_size, neuron, cnf, encoder) -> SpikingNet:
    return SpikingNet(SEWNet(plan, in_channels, num_classes, input_size, neuron, cnf), T, encoder)


@register_model(spiking=True, input_shape=(2, 128, 128), events=True)
def sew_gesture(num_classes=11, T=16, in_channels=2, input_size=128, neuron="plif", cnf="ADD", encoder="direct"):
    """SEW net for DVS128 Gesture (Fang et al. 2021): c32k3s1-BN-PLIF-{SEW Block-MPk2s2}*7-FC11, T=16.

    Example:
        >>> import torch
        >>> sew_gesture()(torch.rand(1, 1, 2, 128, 128)).shape   # one 128x128 event frame
        torch.Size([1, 11])
    """
    return _plain_sew(GESTURE_PLAN, num_classes, T, in_channels, input_size, neuron, cnf, encoder)


@register_model(spiking=True, input_shape=(2, 128, 128), events=True)
def sew_cifar10dvs(num_classes=10, T=16, in_channels=2, input_size=128, neuron="plif", cnf="ADD", encoder="direct"):
    """SEW net for CIFAR10-DVS (Fang et al. 2021): c64-{SEW-MP}*4-c128-{SEW-MP}*3-FC10 with PLIF, T=16.

    Example:
        >>> net = sew_cifar10dvs()
        >>> [m.conv.out_channels for m in net.body.features if isinstance(m, ConvBNNeuron)], net.body.fc
        ([64, 128], Linear(in_features=128, out_features=10, bias=True))
    """
    return _plain_sew(CIFAR10DVS_PLAN, num_classes, T, in_channels, input_size, neuron, cnf, encoder)


def widen(plan: Sequence[str], width: int) -> tuple[str, ...]:
    """``plan`` with every "cN" / "cNsS" token's N multiplied by ``width``.

    Example:
        >>> widen(DIGITS_PLAN, 4)
        ('c64', 'sew', 'mp', 'c128', 'sew', 'mp')
    """
    def scale(token: str) -> str:
        conv = _CONV_TOKEN.fullmatch(token)
        return token if conv is None else f"c{int(conv[1]) * width}" + (f"s{conv[2]}" if conv[2] else "")

    return tuple(scale(token) for token in plan)


@register_model(spiking=True, input_shape=(1, 8, 8))
def sew_digits(num_classes=10, T=4, in_channels=1, input_size=8, neuron="if", cnf="ADD", encoder="direct", width=1):
    """Tiny SEW net for the embedded digits: c16-{SEW-MP}-c32-{SEW-MP}-FC10, IF neurons, T=4.

    ``in_channels=1, input_size=8`` for the 8x8 scikit-learn digits (static, direct coding);
    ``in_channels=2, input_size=16`` or ``34`` for event frames. Inputs larger than 16x16 get a
    stride-2 stem conv (``c16s2``), so that 34x34 frames cost about what 16x16 ones do and an
    epoch of a few thousand samples stays within seconds on two CPU cores. ``width`` multiplies
    every layer's channels (``width=4``: c64-{SEW-MP}-c128-{SEW-MP}-FC10, 448 064 conv and linear
    weights on 8x8 digits against 29 072), for extreme sparsity that still leaves thousands of weights.

    Example:
        >>> import torch
        >>> sew_digits(in_channels=2, input_size=34)(torch.rand(4, 3, 2, 34, 34)).shape
        torch.Size([3, 10])
        >>> sew_digits(width=2).body.fc
        Linear(in_features=256, out_features=10, bias=True)
    """
    plan = DIGITS_PLAN if input_size <= 16 else ("c16s2",) + DIGITS_PLAN[1:]
    plan = widen(plan, check_positive_int("width", width))
    return _plain_sew(plan, num_classes, T, in_channels, input_size, neuron, cnf, encoder)
