"""SE-ResNet-IBN-a, key-compatible with the official ``ibnnet/se_resnet_ibn.py``.

The official SE bottleneck is the ResNet-IBN-a bottleneck plus an ``SELayer(4 * planes, 16)`` (keys
``se.fc.0.weight`` / ``se.fc.2.weight``, no biases) applied to the bn3 output BEFORE the residual addition, in every
block of all four stages. The shared :class:`~robustbench_ibn.models.resnet_ibn.ResNetIBN` builds it with
``se_reduction=16``; the ablation arguments work as for ResNet-IBN-a.
"""

from __future__ import annotations

from typing import Any


from ._api import register_model
from .resnet_ibn import NO_WEIGHTS, TABLE2, InGroups, ResNetIBN, build_resnet_ibn, ibn_info

__all__: list[str] = []


def _se_resnet_ibn_a(depth: int, **kwargs: Any) -> ResNetIBN:
    return build_resnet_ibn(depth, "a", **{"se_reduction": 16, **kwargs})


@register_model(info=ibn_info("se_resnet50_ibn_a", 28_071_976, ref_source=NO_WEIGHTS))
def se_resnet50_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """SE-ResNet-50-IBN-a (no published weights)."""
    return _se_resnet_ibn_a(50, in_groups=in_groups, **kwargs)


@register_model(
    info=ibn_info("se_resnet101_ibn_a", 49_292_328, "fabed4e2", TABLE2)
)
def se_resnet101_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """SE-ResNet-101-IBN-a."""
    return _se_resnet_ibn_a(101, in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("se_resnet152_ibn_a", 66_770_984, ref_source=NO_WEIGHTS))
def se_resnet152_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """SE-ResNet-152-IBN-a (no published weights)."""
    return _se_resnet_ibn_a(152, in_groups=in_groups, **kwargs)
