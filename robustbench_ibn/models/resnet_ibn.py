"""ResNet-IBN: a key-compatible re-implementation of the official IBN-Net ResNet family, plus the paper's variants.

Written from the documented behaviour of XingangPan/IBN-Net (``ibnnet/resnet_ibn.py`` at ``d167338``);
state_dict keys and shapes equal the official ones, so the released checkpoints load with ``strict=True``.
The same blocks serve ResNeXt-IBN-a (grouped 3x3 conv) and SE-ResNet-IBN-a (squeeze-excitation before the
addition), see ``resnext_ibn.py`` and ``se_resnet_ibn.py``.

Defaults are exactly official. Beyond them, every stage can take one of the paper's IBN kinds (Fig. 3 and 4):

====== ============================================================================================
kind   what a stage gets
====== ============================================================================================
``a``  every block: the first norm of the residual path is IBN (IN on ``in_ratio`` of the channels)
``a2`` every block: the first AND second norms are IBN (Table 3 "a x2")
``c``  every block: the first norm is IN and BN on the same features, concatenated; the next conv
       therefore takes twice the channels (Fig. 4(a): "more parameters")
``b``  last block: IN on all channels after the addition; in stage 1 also an IN stem
``d``  last block: IN on the first ``in_ratio`` of the channels after the addition, the rest untouched;
       in stage 1 also an IBN stem (Fig. 4(b): keeping both kinds of features, applied to -b)
``ad`` ``a`` in every block plus ``d`` in the last block (Table 3 "a&d")
====== ============================================================================================

The ablations of Tables 4 and 5 are builder arguments: ``in_groups`` (which residual groups get the
model's IBN kind), ``in_ratio`` (0 = plain BN, 1 = all IN in those layers) and ``all_in`` (every BN an IN).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ._api import ModelInfo, register_model

__all__ = [
    "IBN", "IBNConcat", "PartialIN", "SELayer", "BasicBlockIBN", "BottleneckIBN", "ResNetIBN", "KINDS",
    "InGroups", "build_resnet_ibn", "check_in_ratio", "ibn_cfg_for_groups", "ibn_info", "ibn_norm", "parse_in_groups",
]

# Stage kind -> (residual-path kind of every block, after-addition kind of the stage's last block).
# The residual-path kinds are themselves kinds, which is what non-last blocks of a stage get.
KINDS: dict[str | None, tuple[str | None, str | None]] = {
    None: (None, None), "a": ("a", None), "a2": ("a2", None), "c": ("c", None),
    "b": (None, "b"), "d": (None, "d"), "ad": ("a", "d"),
}
_RELEASE = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"
# Residual groups as the ablation argument in_groups takes them (see parse_in_groups); None: the official stages.
InGroups = str | int | Iterable[int] | None
_PAPER = "Pan et al., Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net, ECCV 2018"


class IBN(nn.Module):
    """Instance-Batch Normalization: IN on part of the channels, BN on the rest, concatenated.

    Args:
        planes: number of input (= output) channels.
        ratio: share of channels that go through IN (0.5 in every official ResNet-family model, 0.4 in DenseNet).
        in_first: ``True`` (ResNet/ResNeXt/SE): IN takes the FIRST ``int(planes * ratio)`` channels.
            ``False`` (DenseNet's own IBN): BN takes the first ``int(planes * (1 - ratio))`` channels and IN the
            rest. The width expressions are the official ones: checkpoint shapes depend on their truncation.

    Attributes:
        half: width of the first chunk (IN width if ``in_first`` else BN width), as the official ``half``.
    """

    def __init__(self, planes: int, ratio: float = 0.5, in_first: bool = True) -> None:
        super().__init__()
        self.in_first = in_first
        self.half = int(planes * ratio) if in_first else int(planes * (1 - ratio))
        in_width = self.half if in_first else planes - self.half
        if not 0 < self.half < planes:
            raise ValueError(
                f"Expected 0 < IN width < planes so both IN and BN get channels, but got planes={planes}, "
                f"ratio={ratio} -> IN width {in_width}. Use ratio 0 (plain BN) or 1 (plain IN) through in_ratio."
            )
        # Registration order follows the official classes (IN then BN; DenseNet: BN then IN), i.e. the
        # official state_dict order.
        if in_first:
            self.IN = nn.InstanceNorm2d(in_width, affine=True)
            self.BN = nn.BatchNorm2d(planes - in_width)
        else:
            self.BN = nn.BatchNorm2d(self.half)
            self.IN = nn.InstanceNorm2d(in_width, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Explicit sizes (not torch.split(x, half)) so that any ratio gives exactly two chunks; identical to the
        # official split for every zoo model. Normalising contiguous copies, as the official code does, keeps
        # outputs bit-identical (a non-contiguous slice differs by ~1e-6).
        first, second = torch.split(x, [self.half, x.size(1) - self.half], dim=1)
        if self.in_first:
            return torch.cat((self.IN(first.contiguous()), self.BN(second.contiguous())), dim=1)
        return torch.cat((self.BN(first.contiguous()), self.IN(second.contiguous())), dim=1)


class IBNConcat(nn.Module):
    """IBN-c layer (paper Fig. 4(a)): the same features through IN and through BN, concatenated (2x channels).

    Args:
        planes: input channels; the output has ``2 * planes``.
    """

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.IN = nn.InstanceNorm2d(planes, affine=True)
        self.BN = nn.BatchNorm2d(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.IN(x), self.BN(x)), dim=1)


class PartialIN(nn.InstanceNorm2d):
    """IBN-d's IN after the addition (paper Fig. 4(b)): affine IN on the first ``int(planes * ratio)`` channels.

    The other channels pass unchanged (they already carry BN-normalized features). A subclass of
    ``nn.InstanceNorm2d`` so the keys are plain ``IN.weight`` / ``IN.bias`` of the IN width.

    Args:
        planes: channels of the block output.
        ratio: share of channels normalized by IN (1 = all, i.e. IBN-b's IN).
    """

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        width = int(planes * ratio)
        if not 0 < width <= planes:
            raise ValueError(f"Expected 0 < int(planes * ratio) <= planes, but got planes={planes}, ratio={ratio}.")
        super().__init__(width, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_features == x.size(1):
            return super().forward(x)
        first, rest = torch.split(x, [self.num_features, x.size(1) - self.num_features], dim=1)
        return torch.cat((super().forward(first.contiguous()), rest), dim=1)


class SELayer(nn.Module):
    """Squeeze-excitation as the official ``SELayer``: keys ``fc.0.weight`` and ``fc.2.weight``, no biases.

    Args:
        channel: input (= output) channels.
        reduction: hidden width is ``int(channel / reduction)``.
    """

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = int(channel / reduction)
        self.fc = nn.Sequential(
            nn.Linear(channel, hidden, bias=False), nn.ReLU(inplace=True), nn.Linear(hidden, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        gate = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * gate.expand_as(x)


def check_in_ratio(value: Any) -> None:
    """Refuse an ``in_ratio`` that is not a finite number in [0, 1] (a string such as ``"nan"`` from the command
    line, NaN itself, a bool) with a message saying what it means."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"Expected in_ratio to be a number in [0, 1] (the share of channels an IBN layer gives to "
                         f"InstanceNorm: 0.5 official, 0 plain BN, 1 plain IN), but got {value!r}.")


def ibn_norm(planes: int, ratio: float) -> nn.Module:
    """An IBN layer of IN share ``ratio``; ratio 0 is a plain BN and ratio 1 a plain affine IN (Table 5's ends)."""
    if ratio == 0:
        return nn.BatchNorm2d(planes)
    if ratio == 1:
        return nn.InstanceNorm2d(planes, affine=True)
    return IBN(planes, ratio)


def _first_norm(planes: int, kind: str | None, in_ratio: float) -> nn.Module:
    if kind == "c":
        return IBNConcat(planes)
    return ibn_norm(planes, in_ratio) if kind in ("a", "a2") else nn.BatchNorm2d(planes)


def _tail_norm(planes: int, kind: str | None, in_ratio: float) -> nn.Module | None:
    if kind == "b":
        return nn.InstanceNorm2d(planes, affine=True)
    if kind == "d" and in_ratio != 0:
        return PartialIN(planes, in_ratio)
    return None  # no attribute content -> no keys


class _BlockIBN(nn.Module):
    """Shared tail of all blocks: optional SE, residual add, optional IN (kinds b/d), then ReLU."""

    expansion: int = 1
    IN: nn.Module | None
    se: nn.Module | None

    def _init_tail(
        self, out_planes: int, kind: str | None, in_ratio: float, downsample: nn.Module | None,
        se_reduction: int | None,
    ) -> None:
        # None attributes register no keys; the official SE block registers se before downsample.
        self.se = SELayer(out_planes, se_reduction) if se_reduction else None
        self.IN = _tail_norm(out_planes, KINDS[kind][1], in_ratio)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self._residual(x)
        if self.se is not None:
            out = self.se(out)  # on the residual branch, before the addition (official SE placement)
        out = out + identity
        if self.IN is not None:
            out = self.IN(out)  # after the addition, before the final ReLU (official -b placement)
        return self.relu(out)


def _check_kind(kind: str | None) -> None:
    if kind not in KINDS:
        raise ValueError(f"Expected a block IBN kind in {list(KINDS)}, but got {kind!r}.")


class BasicBlockIBN(_BlockIBN):
    """Two 3x3 convs; the stride sits on conv1.

    Args:
        inplanes: input channels.
        planes: output channels.
        ibn: block kind (see the module docstring): ``"a"``, ``"a2"``, ``"c"``, ``"b"``, ``"d"``, ``"ad"`` or ``None``.
        stride: stride of conv1.
        downsample: shortcut projection, or ``None`` for identity.
        in_ratio: IN share of the IBN layers.
        groups, base_width: must stay 1 and 64 (grouped convs are for bottlenecks).
        se_reduction: add squeeze-excitation with this reduction (``None``: none).
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
        groups: int = 1,
        base_width: int = 64,
        se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        _check_kind(ibn)
        if groups != 1 or base_width != 64:
            raise ValueError(f"Expected groups=1 and base_width=64 for basic blocks, but got {groups}, {base_width}.")
        residual = KINDS[ibn][0]
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _first_norm(planes, residual, in_ratio)
        self.conv2 = nn.Conv2d(planes * (2 if residual == "c" else 1), planes, 3, padding=1, bias=False)
        self.bn2 = ibn_norm(planes, in_ratio) if residual == "a2" else nn.BatchNorm2d(planes)
        self._init_tail(planes, ibn, in_ratio, downsample, se_reduction)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class BottleneckIBN(_BlockIBN):
    """1x1 -> 3x3 -> 1x1 bottleneck; the stride sits on the 3x3 conv2 (the "v1.5" placement).

    Args:
        inplanes: input channels.
        planes: the output has ``4 * planes`` channels.
        ibn: block kind (see the module docstring): ``"a"``, ``"a2"``, ``"c"``, ``"b"``, ``"d"``, ``"ad"`` or ``None``.
        stride: stride of conv2.
        downsample: shortcut projection, or ``None`` for identity.
        in_ratio: IN share of the IBN layers.
        groups: cardinality of the 3x3 conv (ResNeXt: 32).
        base_width: width per group (ResNeXt: 4); inner width is ``floor(planes * base_width / 64) * groups``
            as the official ResNeXt (``D * C``), which is ``planes`` for a plain ResNet.
        se_reduction: squeeze-excitation with this reduction on the bn3 output (SE-ResNet: 16; ``None``: none).
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
        groups: int = 1,
        base_width: int = 64,
        se_reduction: int | None = None,
    ) -> None:
        super().__init__()
        _check_kind(ibn)
        residual = KINDS[ibn][0]
        width = int(math.floor(planes * (base_width / 64))) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = _first_norm(width, residual, in_ratio)
        conv2_in = width * (2 if residual == "c" else 1)
        self.conv2 = nn.Conv2d(conv2_in, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = ibn_norm(width, in_ratio) if residual == "a2" else nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self._init_tail(planes * self.expansion, ibn, in_ratio, downsample, se_reduction)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def _stem_norm(kind: str | None, in_ratio: float) -> nn.Module:
    tail = KINDS[kind][1]
    if tail == "b":
        return nn.InstanceNorm2d(64, affine=True)
    if tail == "d":
        return ibn_norm(64, in_ratio)
    return nn.BatchNorm2d(64)


class ResNetIBN(nn.Module):
    """ResNet / ResNeXt / SE-ResNet with IBN blocks, official layout and keys.

    Args:
        block: ``BasicBlockIBN`` or ``BottleneckIBN``.
        layers: number of blocks in each of the 4 stages.
        ibn_cfg: per-stage IBN kind (module docstring table). Kinds with an after-addition IN (``b``, ``d``,
            ``ad``) put it on the LAST block of the stage only, never on block 0 (the official ``_make_layer``
            rule, even for 1-block stages), and in stage 1 also change the stem norm (``b``: IN, ``d``: IBN).
            Official: ``("a", "a", "a", None)`` for -a, ``("b", "b", None, None)`` for -b.
        num_classes: size of the classifier.
        in_ratio: IN share of every IBN layer (0.5 official); 0 makes them plain BN, 1 plain IN.
        groups, base_width: ResNeXt cardinality and width per group (bottlenecks only; 1 and 64 = ResNet).
        se_reduction: squeeze-excitation in every block with this reduction (``None``: none).
        all_in: replace every ``BatchNorm2d`` by an affine ``InstanceNorm2d`` of the same width (Table 5 "full").
    """

    def __init__(
        self,
        block: type[BasicBlockIBN] | type[BottleneckIBN],
        layers: Sequence[int],
        ibn_cfg: Sequence[str | None] = ("a", "a", "a", None),
        num_classes: int = 1000,
        in_ratio: float = 0.5,
        groups: int = 1,
        base_width: int = 64,
        se_reduction: int | None = None,
        all_in: bool = False,
    ) -> None:
        super().__init__()
        ibn_cfg = tuple(ibn_cfg)
        if len(layers) != 4:
            raise ValueError(f"Expected 4 stage depths in layers, but got {len(layers)}: {tuple(layers)}.")
        if len(ibn_cfg) != 4 or any(c not in KINDS for c in ibn_cfg):
            raise ValueError(f"Expected ibn_cfg to be 4 entries from {list(KINDS)}, but got {ibn_cfg!r}.")
        check_in_ratio(in_ratio)
        self.inplanes = 64
        self.in_ratio = in_ratio
        self._block_args = {"in_ratio": in_ratio, "groups": groups, "base_width": base_width,
                            "se_reduction": se_reduction}
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _stem_norm(ibn_cfg[0], in_ratio)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1, kind=ibn_cfg[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, kind=ibn_cfg[1])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, kind=ibn_cfg[2])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, kind=ibn_cfg[3])
        # Fixed 7x7 pooling, NOT adaptive, exactly as the official code: at 224 px it equals global
        # average pooling, but at 225-416 px it silently averages only the top-left 7x7 window of the
        # final map. Benchmark numbers on non-224 inputs depend on this, so "fixing" it would change them.
        self.avgpool = nn.AvgPool2d(7)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()
        if all_in:
            _replace_bn_with_in(self)

    def _make_layer(
        self, block: type[BasicBlockIBN] | type[BottleneckIBN], planes: int, blocks: int, stride: int, kind: str | None
    ) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        residual_kind = KINDS[kind][0]
        layers = []
        for i in range(blocks):
            # The after-addition IN only on the last block, and never on block 0 (official -b rule).
            block_kind = kind if 0 < i == blocks - 1 else residual_kind
            layers.append(
                block(self.inplanes, planes, block_kind, stride if i == 0 else 1, downsample if i == 0 else None,
                      **self._block_args)
            )
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # Official init: conv ~ N(0, sqrt(2 / (k*k*out_channels))) (fan-out, groups ignored), norms weight 1 bias 0,
        # Linear (fc, SE) default. Unlike the official ResNeXt/SE classes conv1 is drawn once, so their random init
        # is not RNG-identical to the official one; every checkpoint weight is still loaded exactly.
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


def _replace_bn_with_in(module: nn.Module) -> None:
    """Every ``BatchNorm2d`` becomes an affine ``InstanceNorm2d`` (weight 1, bias 0) under the same name."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(module, name, nn.InstanceNorm2d(child.num_features, eps=child.eps, affine=True))
        else:
            _replace_bn_with_in(child)


# --- ablation arguments ----------------------------------------------------------------------------------------

_GROUPS_HELP = "residual groups 1-4 (conv2_x..conv5_x = layer1..layer4) as 'N-M', 'N', 'none' or a sequence of ints"


def parse_in_groups(in_groups: str | int | Iterable[int]) -> frozenset[int]:
    """Residual groups from ``"1-3"``, ``"2"``, ``"none"``, ``2`` or ``(1, 2)`` (Table 4's column headers)."""
    groups: Iterable[Any]
    if isinstance(in_groups, int) and not isinstance(in_groups, bool):
        groups = (in_groups,)
    elif isinstance(in_groups, str):
        text = in_groups.strip().lower()
        match = re.fullmatch(r"(\d)(?:-(\d))?", text)
        if text in ("", "none"):
            groups = ()
        elif match:
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            groups = range(first, last + 1)
        else:
            raise ValueError(f"Expected in_groups as {_GROUPS_HELP}, but got {in_groups!r}.")
    elif isinstance(in_groups, Iterable):
        groups = tuple(in_groups)
    else:
        raise ValueError(f"Expected in_groups as {_GROUPS_HELP}, but got {in_groups!r}.")
    if any(not isinstance(g, int) or isinstance(g, bool) or not 1 <= g <= 4 for g in groups):
        raise ValueError(f"Expected in_groups as {_GROUPS_HELP}, but got {in_groups!r}.")
    return frozenset(groups)


def ibn_cfg_for_groups(kind: str, in_groups: str | int | Iterable[int]) -> tuple[str | None, ...]:
    """The ``ibn_cfg`` giving ``kind`` to the residual groups ``in_groups`` and plain blocks elsewhere."""
    groups = parse_in_groups(in_groups)
    return tuple(kind if g in groups else None for g in (1, 2, 3, 4))


# Default stage kinds of each registered family kind.
DEFAULT_CFG: dict[str, tuple[str | None, ...]] = {
    "a": ("a", "a", "a", None), "b": ("b", "b", None, None), "c": ("c", "c", "c", None),
    "d": ("d", "d", None, None), "ad": ("ad", "ad", "a", None), "a2": ("a2", "a2", "a2", None),
}
# depth -> (block, layers)
_ARCHS: dict[int, tuple[type[BasicBlockIBN] | type[BottleneckIBN], tuple[int, int, int, int]]] = {
    18: (BasicBlockIBN, (2, 2, 2, 2)),
    34: (BasicBlockIBN, (3, 4, 6, 3)),
    50: (BottleneckIBN, (3, 4, 6, 3)),
    101: (BottleneckIBN, (3, 4, 23, 3)),
    152: (BottleneckIBN, (3, 8, 36, 3)),
}


def build_resnet_ibn(depth: int, kind: str, *, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """Builder shared by the ResNet, ResNeXt and SE families.

    Args:
        depth: 18, 34, 50, 101 or 152.
        kind: the family's IBN kind (``DEFAULT_CFG`` gives its default stages).
        in_groups: residual groups that get ``kind`` (Table 4); default: the official stages.
        **kwargs: :class:`ResNetIBN` arguments (``ibn_cfg``, ``in_ratio``, ``all_in``, ``num_classes``, ...).
    """
    block, layers = _ARCHS[depth]
    if in_groups is not None:
        if "ibn_cfg" in kwargs:
            raise ValueError("Expected either in_groups or ibn_cfg, but got both; ibn_cfg alone says everything.")
        kwargs["ibn_cfg"] = ibn_cfg_for_groups(kind, in_groups)
    kwargs.setdefault("ibn_cfg", DEFAULT_CFG[kind])
    return ResNetIBN(block, layers, **kwargs)


# --- metadata and registrations ----------------------------------------------------------------------------------


def ibn_info(
    name: str,
    num_params: int,
    file_hash: str | None = None,
    reported: str | None = None,
    ref_source: str = "",
    tags: tuple[str, ...] = ("ibn-net",),
) -> ModelInfo:
    """The :class:`ModelInfo` of an IBN-Net model: official release URL when ``file_hash`` is given; its reference
    errors from the reported leaderboard entry of source ``reported`` (``ref_source``: a note after its citation)."""
    return ModelInfo(
        name=name,
        url=f"{_RELEASE}{name}-{file_hash}.pth" if file_hash else None,
        hash_prefix=file_hash,
        reported=reported,
        ref_source=ref_source,
        num_params=num_params,
        paper=_PAPER,
        license="MIT",
        tags=tags,
    )


# Source keys of the reported leaderboard entries that hold the reference errors (robustbench_ibn.reported).
README, TABLE1, TABLE2, TABLE3 = "official-readme", "paper-table1", "paper-table2", "paper-table3"
NOT_REPORTED = "not reported by IBN-Net (weights published in the official code, no README numbers)"
NO_WEIGHTS = "no published weights"
_VARIANT_NOTE = "the authors' model; weights not published"
_VARIANT = ("ibn-net", "paper-variant")

# Builders: in_groups (Table 4), and kwargs that go to ResNetIBN (num_classes, ibn_cfg, in_ratio, all_in, ...); the
# return annotation names that class, which is what create_model checks model kwargs against.


@register_model(info=ibn_info("resnet18_ibn_a", 11_689_512, "2f571257", README))
def resnet18_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-18-IBN-a."""
    return build_resnet_ibn(18, "a", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet34_ibn_a", 21_797_672, "94bc1577", README))
def resnet34_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-34-IBN-a."""
    return build_resnet_ibn(34, "a", in_groups=in_groups, **kwargs)


@register_model(
    info=ibn_info(
        "resnet50_ibn_a", 25_557_032, "d9d0bb7b", TABLE1,
        "the released checkpoint measured 22.76/6.41 per an older official README",
    )
)
def resnet50_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-50-IBN-a."""
    return build_resnet_ibn(50, "a", in_groups=in_groups, **kwargs)


@register_model(
    info=ibn_info(
        "resnet101_ibn_a", 44_549_160, "59ea0ac6", TABLE2,
        "the released checkpoint measured 21.29/5.61 per an older official README",
    )
)
def resnet101_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-101-IBN-a."""
    return build_resnet_ibn(101, "a", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet152_ibn_a", 60_192_808, ref_source=NO_WEIGHTS))
def resnet152_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-152-IBN-a (no published weights)."""
    return build_resnet_ibn(152, "a", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet18_ibn_b", 11_689_896, "bc2f3c11", ref_source=NOT_REPORTED))
def resnet18_ibn_b(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-18-IBN-b."""
    return build_resnet_ibn(18, "b", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet34_ibn_b", 21_798_056, "04134c37", ref_source=NOT_REPORTED))
def resnet34_ibn_b(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-34-IBN-b."""
    return build_resnet_ibn(34, "b", in_groups=in_groups, **kwargs)


@register_model(
    info=ibn_info(
        "resnet50_ibn_b", 25_558_568, "9ca61e85", TABLE1,
        "the paper's model; the official README gives no numbers for the released checkpoint",
    )
)
def resnet50_ibn_b(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-50-IBN-b."""
    return build_resnet_ibn(50, "b", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet101_ibn_b", 44_550_696, "c55f6dba", ref_source=NOT_REPORTED))
def resnet101_ibn_b(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-101-IBN-b."""
    return build_resnet_ibn(101, "b", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet152_ibn_b", 60_194_344, ref_source=NO_WEIGHTS))
def resnet152_ibn_b(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNet-152-IBN-b (no published weights)."""
    return build_resnet_ibn(152, "b", in_groups=in_groups, **kwargs)


# The paper's variants (Fig. 4, Table 3) on ResNet-50. Other depths: e.g. resnet18_ibn_a with ibn_cfg=("c",)*3+(None,).


@register_model(info=ibn_info("resnet50_ibn_c", 29_800_872, reported=TABLE3, ref_source=_VARIANT_NOTE, tags=_VARIANT))
def resnet50_ibn_c(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """IBN-Net50-c: IN and BN on the same features, concatenated, in every block of layer1-3 (Fig. 4(a))."""
    return build_resnet_ibn(50, "c", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet50_ibn_d", 25_557_800, reported=TABLE3, ref_source=_VARIANT_NOTE, tags=_VARIANT))
def resnet50_ibn_d(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """IBN-Net50-d: IN on half the channels after the addition (last block of layer1-2) and an IBN stem."""
    return build_resnet_ibn(50, "d", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet50_ibn_ad", 25_557_800, reported=TABLE3, ref_source=_VARIANT_NOTE, tags=_VARIANT))
def resnet50_ibn_ad(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """IBN-Net50-a&d: IBN-a blocks in layer1-3 plus IBN-d's half IN after the addition in layer1-2 and stem."""
    return build_resnet_ibn(50, "ad", in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnet50_ibn_a2", 25_557_032, reported=TABLE3, ref_source=_VARIANT_NOTE, tags=_VARIANT))
def resnet50_ibn_a2(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """IBN-Net50-a x2: IBN on the first and the second normalization of every block of layer1-3."""
    return build_resnet_ibn(50, "a2", in_groups=in_groups, **kwargs)
