"""Private helper: give a network's input convolution a different number of input channels."""

from __future__ import annotations

from torch import nn


def with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A freshly initialised copy of ``conv`` (same class and settings) taking ``in_channels``.

    SpikingJelly's ImageNet models hard-code 3 input channels; DVS frames have 2 (ON/OFF polarity)
    and grey images 1. The new layer is Kaiming-initialised (fan-out, as SpikingJelly and
    torchvision initialise their convolutions).
    """
    if conv.in_channels == in_channels:
        return conv
    new = type(conv)(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    if hasattr(conv, "step_mode"):
        new.step_mode = conv.step_mode
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new
