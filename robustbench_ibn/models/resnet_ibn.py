"""ResNet-IBN-a / -b: a key-compatible re-implementation of the official IBN-Net ResNet family.

Written from the documented behaviour of XingangPan/IBN-Net (``ibnnet/resnet_ibn.py`` at ``d167338``);
state_dict keys and shapes equal the official ones, so the released checkpoints load with ``strict=True``.
Defaults are exactly official; ``ibn_cfg`` and ``in_ratio`` expose the paper's ablation knobs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._api import ModelInfo, register_model

__all__ = ["IBN", "BasicBlockIBN", "BottleneckIBN", "ResNetIBN"]

_IBN_CHOICES = ("a", "b", None)
_RELEASE = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"
_PAPER = "Pan et al., Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net, ECCV 2018"


class IBN(nn.Module):
    """Instance-Batch Normalization: IN on the first ``int(planes * ratio)`` channels, BN on the rest.

    Args:
        planes: number of input (= output) channels.
        ratio: share of channels that go through IN (0.5 in every official model).
    """

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        # int() truncation as the official code: checkpoint shapes depend on it.
        self.half = int(planes * ratio)
        if not 0 < self.half < planes:
            raise ValueError(
                f"Expected 0 < int(planes * ratio) < planes so both IN and BN get channels, "
                f"but got planes={planes}, ratio={ratio} -> IN width {self.half}."
            )
        # Registration order IN then BN gives the official state_dict order.
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Explicit sizes (not torch.split(x, half)) so that ratios other than 0.5 give exactly two chunks;
        # identical to the official split for every zoo model. The channel slices are non-contiguous
        # views; normalising contiguous copies as the official code does keeps outputs bit-identical.
        x_in, x_bn = torch.split(x, [self.half, x.size(1) - self.half], dim=1)
        return torch.cat((self.IN(x_in.contiguous()), self.BN(x_bn.contiguous())), dim=1)


def _norm1(planes: int, ibn: str | None, in_ratio: float) -> nn.Module:
    """The first norm of a block: IBN for IBN-a blocks, plain BN otherwise."""
    return IBN(planes, in_ratio) if ibn == "a" else nn.BatchNorm2d(planes)


class _BlockIBN(nn.Module):
    """Shared tail of both blocks: residual add, then (IBN-b only) IN, then ReLU."""

    expansion: int = 1
    IN: nn.Module | None

    def _init_tail(self, planes: int, ibn: str | None, downsample: nn.Module | None) -> None:
        # IBN-b: IN on the block output. Left as None otherwise, which registers no keys.
        self.IN = nn.InstanceNorm2d(planes * self.expansion, affine=True) if ibn == "b" else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self._residual(x) + identity
        if self.IN is not None:
            out = self.IN(out)  # after the addition, before the final ReLU (official -b placement)
        return self.relu(out)


class BasicBlockIBN(_BlockIBN):
    """Two 3x3 convs; the stride sits on conv1.

    Args:
        inplanes: input channels.
        planes: output channels.
        ibn: ``"a"`` (bn1 is IBN), ``"b"`` (IN after the residual addition) or ``None`` (plain block).
        stride: stride of conv1.
        downsample: shortcut projection, or ``None`` for identity.
        in_ratio: IN share of the IBN-a layer.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        ibn: str | None = None,
        stride: int = 1,
        downsample: nn.Module | None = None,
        in_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm1(planes, ibn, in_ratio)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self._init_tail(planes, ibn, downsample)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class BottleneckIBN(_BlockIBN):
    """1x1 -> 3x3 -> 1x1 bottleneck; the stride sits on the 3x3 conv2 (the "v1.5" placement).

    Args:
        inplanes: input channels.
        planes: bottleneck width; the output has ``4 * planes`` channels.
        ibn: ``"a"`` (bn1 is IBN), ``"b"`` (IN after the residual addition) or ``None`` (plain block).
        stride: stride of conv2.
        downsample: shortcut projection, or ``None`` for identity.
        in_ratio: IN share of the IBN-a layer.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        ibn: str | None = None,
        stride: int = 1,
        downsample: nn.Module | None = None,
        in_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _norm1(planes, ibn, in_ratio)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self._init_tail(planes, ibn, downsample)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNetIBN(nn.Module):
    """ResNet with IBN blocks, official layout and keys.

    Args:
        block: ``BasicBlockIBN`` or ``BottleneckIBN``.
        layers: number of blocks in each of the 4 stages.
        ibn_cfg: per-stage IBN type. ``"a"``: every block of the stage has an IBN bn1. ``"b"``: only the
            last block of the stage gets an IN after its addition (block 0 never does, as in the
            official ``_make_layer``); ``"b"`` in stage 1 also turns the stem ``bn1`` into an affine IN.
            ``None``: plain blocks. Official: ``("a", "a", "a", None)`` for -a, ``("b", "b", None, None)`` for -b.
        num_classes: size of the classifier.
        in_ratio: IN share of every IBN-a layer (0.5 official).
    """

    def __init__(
        self,
        block: type[BasicBlockIBN] | type[BottleneckIBN],
        layers: Sequence[int],
        ibn_cfg: Sequence[str | None] = ("a", "a", "a", None),
        num_classes: int = 1000,
        in_ratio: float = 0.5,
    ) -> None:
        super().__init__()
        ibn_cfg = tuple(ibn_cfg)
        if len(layers) != 4:
            raise ValueError(f"Expected 4 stage depths in layers, but got {len(layers)}: {tuple(layers)}.")
        if len(ibn_cfg) != 4 or any(c not in _IBN_CHOICES for c in ibn_cfg):
            raise ValueError(f"Expected ibn_cfg to be 4 entries of 'a', 'b' or None, but got {ibn_cfg!r}.")
        self.inplanes = 64
        self.in_ratio = in_ratio
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.InstanceNorm2d(64, affine=True) if ibn_cfg[0] == "b" else nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1, ibn=ibn_cfg[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, ibn=ibn_cfg[1])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, ibn=ibn_cfg[2])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, ibn=ibn_cfg[3])
        # Fixed 7x7 pooling, NOT adaptive, exactly as the official code: at 224 px it equals global
        # average pooling, but at 225-416 px it silently averages only the top-left 7x7 window of the
        # final map. Benchmark numbers on non-224 inputs depend on this, so "fixing" it would change them.
        self.avgpool = nn.AvgPool2d(7)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()

    def _make_layer(
        self, block: type[BasicBlockIBN] | type[BottleneckIBN], planes: int, blocks: int, stride: int, ibn: str | None
    ) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        layers = []
        for i in range(blocks):
            # "b" only on the last block, and never on block 0 (official rule, even for 1-block stages).
            block_ibn = None if ibn == "b" and (i == 0 or i < blocks - 1) else ibn
            layers.append(
                block(self.inplanes, planes, block_ibn, stride if i == 0 else 1, downsample if i == 0 else None,
                      in_ratio=self.in_ratio)
            )
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # Official init: conv ~ N(0, sqrt(2 / (k*k*out_channels))) (fan-out), norms weight 1 bias 0, fc default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(x.view(x.size(0), -1))


# depth -> (block, layers)
_ARCHS: dict[int, tuple[type[BasicBlockIBN] | type[BottleneckIBN], tuple[int, int, int, int]]] = {
    18: (BasicBlockIBN, (2, 2, 2, 2)),
    34: (BasicBlockIBN, (3, 4, 6, 3)),
    50: (BottleneckIBN, (3, 4, 6, 3)),
    101: (BottleneckIBN, (3, 4, 23, 3)),
    152: (BottleneckIBN, (3, 8, 36, 3)),
}
_DEFAULT_CFG = {"a": ("a", "a", "a", None), "b": ("b", "b", None, None)}


def _resnet_ibn(depth: int, variant: str, **kwargs: Any) -> ResNetIBN:
    block, layers = _ARCHS[depth]
    kwargs.setdefault("ibn_cfg", _DEFAULT_CFG[variant])
    return ResNetIBN(block, layers, **kwargs)


def _info(
    name: str,
    num_params: int,
    file_hash: str | None = None,
    err: tuple[float, float] | None = None,
    ref_source: str = "",
) -> ModelInfo:
    return ModelInfo(
        name=name,
        url=f"{_RELEASE}{name}-{file_hash}.pth" if file_hash else None,
        hash_prefix=file_hash,
        ref_top1_err=err[0] if err else None,
        ref_top5_err=err[1] if err else None,
        ref_source=ref_source,
        num_params=num_params,
        paper=_PAPER,
        license="MIT",
    )


_README = "IBN-Net README"
_NOT_REPORTED = "not reported by IBN-Net (weights published in ibnnet/resnet_ibn.py, no README numbers)"
_NO_WEIGHTS = "no published weights"

# Builders: kwargs go to ResNetIBN (num_classes, ibn_cfg, in_ratio), as the official constructors' kwargs.


@register_model(info=_info("resnet18_ibn_a", 11_689_512, "2f571257", (29.17, 10.24), _README))
def resnet18_ibn_a(**kwargs: Any) -> nn.Module:
    """ResNet-18-IBN-a."""
    return _resnet_ibn(18, "a", **kwargs)


@register_model(info=_info("resnet34_ibn_a", 21_797_672, "94bc1577", (25.78, 8.19), _README))
def resnet34_ibn_a(**kwargs: Any) -> nn.Module:
    """ResNet-34-IBN-a."""
    return _resnet_ibn(34, "a", **kwargs)


@register_model(
    info=_info(
        "resnet50_ibn_a", 25_557_032, "d9d0bb7b", (22.54, 6.32),
        "IBN-Net README (paper numbers; released checkpoint measured 22.76/6.41 per older README)",
    )
)
def resnet50_ibn_a(**kwargs: Any) -> nn.Module:
    """ResNet-50-IBN-a."""
    return _resnet_ibn(50, "a", **kwargs)


@register_model(
    info=_info(
        "resnet101_ibn_a", 44_549_160, "59ea0ac6", (21.39, 5.59),
        "IBN-Net README (paper numbers; released checkpoint measured 21.29/5.61 per older README)",
    )
)
def resnet101_ibn_a(**kwargs: Any) -> nn.Module:
    """ResNet-101-IBN-a."""
    return _resnet_ibn(101, "a", **kwargs)


@register_model(info=_info("resnet152_ibn_a", 60_192_808, ref_source=_NO_WEIGHTS))
def resnet152_ibn_a(**kwargs: Any) -> nn.Module:
    """ResNet-152-IBN-a (no published weights)."""
    return _resnet_ibn(152, "a", **kwargs)


@register_model(info=_info("resnet18_ibn_b", 11_689_896, "bc2f3c11", ref_source=_NOT_REPORTED))
def resnet18_ibn_b(**kwargs: Any) -> nn.Module:
    """ResNet-18-IBN-b."""
    return _resnet_ibn(18, "b", **kwargs)


@register_model(info=_info("resnet34_ibn_b", 21_798_056, "04134c37", ref_source=_NOT_REPORTED))
def resnet34_ibn_b(**kwargs: Any) -> nn.Module:
    """ResNet-34-IBN-b."""
    return _resnet_ibn(34, "b", **kwargs)


@register_model(info=_info("resnet50_ibn_b", 25_558_568, "9ca61e85", ref_source=_NOT_REPORTED))
def resnet50_ibn_b(**kwargs: Any) -> nn.Module:
    """ResNet-50-IBN-b."""
    return _resnet_ibn(50, "b", **kwargs)


@register_model(info=_info("resnet101_ibn_b", 44_550_696, "c55f6dba", ref_source=_NOT_REPORTED))
def resnet101_ibn_b(**kwargs: Any) -> nn.Module:
    """ResNet-101-IBN-b."""
    return _resnet_ibn(101, "b", **kwargs)


@register_model(info=_info("resnet152_ibn_b", 60_194_344, ref_source=_NO_WEIGHTS))
def resnet152_ibn_b(**kwargs: Any) -> nn.Module:
    """ResNet-152-IBN-b (no published weights)."""
    return _resnet_ibn(152, "b", **kwargs)
