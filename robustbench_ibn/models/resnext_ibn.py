"""ResNeXt-IBN-a (32x4d), key-compatible with the official ``ibnnet/resnext_ibn.py``.

The official ResNeXt bottleneck is the ResNet one with a grouped 3x3 conv of width ``floor(planes * 4 / 64) * 32``
(128/256/512/1024 in layer1-4), IBN on its first norm in layer1-3, no IN after the addition and no SE. So the
shared :class:`~robustbench_ibn.models.resnet_ibn.ResNetIBN` builds it with ``groups=32, base_width=4``; the
ablation arguments (``in_groups``, ``in_ratio``, ``all_in``, ``ibn_cfg``) work as for ResNet-IBN-a.
"""

from __future__ import annotations

from typing import Any


from ._api import register_model
from .resnet_ibn import NO_WEIGHTS, TABLE2, InGroups, ResNetIBN, build_resnet_ibn, ibn_info

__all__: list[str] = []

# The official constructors' baseWidth=4, cardinality=32 ("32x4d", confirmed by the author in issue #23).
_RESNEXT = {"groups": 32, "base_width": 4}


def _resnext_ibn_a(depth: int, **kwargs: Any) -> ResNetIBN:
    return build_resnet_ibn(depth, "a", **{**_RESNEXT, **kwargs})


@register_model(info=ibn_info("resnext50_ibn_a", 25_028_904, ref_source=NO_WEIGHTS))
def resnext50_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNeXt-50-IBN-a 32x4d (no published weights)."""
    return _resnext_ibn_a(50, in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnext101_ibn_a", 44_177_704, "6ace051d", TABLE2))
def resnext101_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNeXt-101-IBN-a 32x4d."""
    return _resnext_ibn_a(101, in_groups=in_groups, **kwargs)


@register_model(info=ibn_info("resnext152_ibn_a", 59_951_400, ref_source=NO_WEIGHTS))
def resnext152_ibn_a(*, in_groups: InGroups = None, **kwargs: Any) -> ResNetIBN:
    """ResNeXt-152-IBN-a 32x4d (no published weights)."""
    return _resnext_ibn_a(152, in_groups=in_groups, **kwargs)
