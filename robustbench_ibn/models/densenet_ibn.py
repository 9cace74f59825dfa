"""DenseNet-IBN-a, key-compatible with the official ``ibnnet/densenet_ibn.py``.

Quirks kept on purpose (ibn_zoo.md sections 3.2, 7 and 9):

- DenseNet's IBN is REVERSED: BN takes the first ``int(c * (1 - 0.4))`` channels and IN the rest, concatenated
  BN first (:class:`~robustbench_ibn.models.resnet_ibn.IBN` with ``in_first=False``).
- Only ``norm1`` of dense layers 1, 4, 7, ... (0-based index divisible by 3) of dense blocks 1-3 is IBN.
- The head is a functional ReLU and a FIXED ``avg_pool2d(7, stride=1)``: only inputs whose final map is 7x7
  (221-252 px) work; others fail in the classifier instead of being silently pooled differently.
- PyTorch's default init (the official class has no init loop; this is not torchvision's DenseNet init).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._api import register_model
from .resnet_ibn import NO_WEIGHTS, TABLE2, IBN, check_in_ratio, ibn_info

__all__ = ["DenseNetIBN"]

_IBN_RATIO = 0.4  # the official DenseNet IN share (its IBN is always built with 0.4)


class _DenseLayer(nn.Sequential):
    def __init__(
        self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float, ibn: bool, in_ratio: float
    ) -> None:
        super().__init__()
        width = bn_size * growth_rate
        norm1 = IBN(num_input_features, in_ratio, in_first=False) if ibn else nn.BatchNorm2d(num_input_features)
        self.add_module("norm1", norm1)
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(num_input_features, width, kernel_size=1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(width))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False))
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        new = super().forward(x)
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return torch.cat([x, new], 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNetIBN(nn.Module):
    """DenseNet-BC with IBN-a layers, official layout and keys.

    Args:
        growth_rate: channels each dense layer adds (k).
        block_config: dense layers per block.
        num_init_features: stem width.
        bn_size: bottleneck width factor (``bn_size * k``).
        drop_rate: dropout after each dense layer (0 official).
        num_classes: size of the classifier.
        in_ratio: IN share of the IBN layers (0.4 official; the IN part is the LAST channels).
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_ratio: float = _IBN_RATIO,
    ) -> None:
        super().__init__()
        check_in_ratio(in_ratio)
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        channels = num_init_features
        for b, num_layers in enumerate(block_config):
            block = nn.Sequential()
            for i in range(num_layers):
                # IBN on dense layers 1, 4, 7, ... of blocks 1-3 only (official rule).
                ibn = b < 3 and i % 3 == 0
                layer = _DenseLayer(channels + i * growth_rate, growth_rate, bn_size, drop_rate, ibn, in_ratio)
                block.add_module(f"denselayer{i + 1}", layer)
            self.features.add_module(f"denseblock{b + 1}", block)
            channels += num_layers * growth_rate
            if b != len(block_config) - 1:
                self.features.add_module(f"transition{b + 1}", _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        # Fixed pool as the official code (not adaptive): see the module docstring.
        out = F.avg_pool2d(out, kernel_size=7, stride=1).view(x.size(0), -1)
        return self.classifier(out)


# name -> (num_init_features, growth_rate, block_config)
_ARCHS = {
    121: (64, 32, (6, 12, 24, 16)),
    169: (64, 32, (6, 12, 32, 32)),
    201: (64, 32, (6, 12, 48, 32)),
    161: (96, 48, (6, 12, 36, 24)),
}


def _densenet_ibn_a(depth: int, **kwargs: Any) -> DenseNetIBN:
    init, growth, blocks = _ARCHS[depth]
    kwargs = {"num_init_features": init, "growth_rate": growth, "block_config": blocks, **kwargs}
    return DenseNetIBN(**kwargs)


# Builders: kwargs go to DenseNetIBN (growth_rate, block_config, num_init_features, bn_size, drop_rate, num_classes,
# in_ratio), as the official constructors' kwargs; the return annotation names that class for create_model's check.


@register_model(
    info=ibn_info("densenet121_ibn_a", 7_978_856, "e4af5cc1", TABLE2)
)
def densenet121_ibn_a(**kwargs: Any) -> DenseNetIBN:
    """DenseNet-121-IBN-a."""
    return _densenet_ibn_a(121, **kwargs)


@register_model(
    info=ibn_info("densenet169_ibn_a", 14_149_480, "9f32c161", TABLE2)
)
def densenet169_ibn_a(**kwargs: Any) -> DenseNetIBN:
    """DenseNet-169-IBN-a."""
    return _densenet_ibn_a(169, **kwargs)


@register_model(info=ibn_info("densenet201_ibn_a", 20_013_928, ref_source=NO_WEIGHTS))
def densenet201_ibn_a(**kwargs: Any) -> DenseNetIBN:
    """DenseNet-201-IBN-a (no published weights)."""
    return _densenet_ibn_a(201, **kwargs)


@register_model(info=ibn_info("densenet161_ibn_a", 28_681_000, ref_source=NO_WEIGHTS))
def densenet161_ibn_a(**kwargs: Any) -> DenseNetIBN:
    """DenseNet-161-IBN-a (no published weights)."""
    return _densenet_ibn_a(161, **kwargs)
