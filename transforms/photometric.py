"""Table 1's photometric shifts and their parametric families.

Registry names are lowercase and shell-safe; display labels follow the paper. Family members are
parsed from the name: ``rgb+80`` is RGB+80, ``b-30`` is B-30, ``std2`` is std×2.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import IMAGENET_MEAN
from ..text import number
from ._base import Shift, check_images, register_transform
from .functional import add_channel_offset, scale_contrast_about

__all__ = ["Clean", "ChannelOffset", "StdScale"]

_CHANNELS = {"rgb": (1.0, 1.0, 1.0), "r": (1.0, 0.0, 0.0), "g": (0.0, 1.0, 0.0), "b": (0.0, 0.0, 1.0)}



class Clean(Shift):
    """The unshifted images (Table 1's "origin" row)."""

    label = "origin"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images


class ChannelOffset(Shift):
    """Add ``amount``/255 to the chosen channels, then clip to [0, 1]."""

    def __init__(self, channels: str, amount: float) -> None:
        super().__init__()
        if channels not in _CHANNELS:
            raise ValueError(f"Expected channels to be one of {sorted(_CHANNELS)}, but got {channels!r}.")
        self.channels, self.amount = channels, float(amount)
        self.label = f"{channels.upper()}{'+' if amount >= 0 else '-'}{number(abs(amount))}"
        self.offset = tuple(m * self.amount / 255.0 for m in _CHANNELS[channels])

    def params(self) -> dict[str, Any]:
        return {"channels": self.channels, "amount": self.amount, "scale": 255, "clip": True}

    def describe(self) -> str:
        return f"add {number(self.amount)}/255 to {self.channels.upper()} in [0, 1] pixel space, clip to [0, 1]"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.label)
        return add_channel_offset(images, self.offset)


class StdScale(Shift):
    """Scale each pixel's deviation from the ImageNet mean by ``factor``: the same pixels for every model.

    Version 2: the pivot is the fixed ImageNet mean (0.485, 0.456, 0.406) in [0, 1] pixel space, whatever the
    model's own normalization (version 1 pivoted on each model's normalization mean, so a model normalized
    otherwise saw other pixels). For a model normalized with that mean, as all of the paper's, the normalized
    network input is multiplied by ``factor``, exactly Table 1's std×1.5.

    Example:
        >>> x = torch.full((1, 3, 1, 1), 0.5)
        >>> [round(v, 4) for v in StdScale(2)(x).flatten().tolist()]
        [0.515, 0.544, 0.594]
    """

    value_range = None  # no clipping, by definition: the paper scales the network input itself
    version = 2

    def __init__(self, factor: float) -> None:
        super().__init__()
        if factor <= 0:
            raise ValueError(f"Expected the std factor to be > 0, but got {factor}.")
        self.factor = float(factor)
        self.label = f"std×{number(self.factor)}"

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor, "center": list(IMAGENET_MEAN), "clip": False}

    def describe(self) -> str:
        mean = ", ".join(number(m) for m in IMAGENET_MEAN)
        return (
            f"scale each pixel's deviation from the ImageNet mean ({mean}) by {number(self.factor)}, no clipping "
            "(for a model normalized with that mean, the normalized network input times the factor)"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.label)
        return scale_contrast_about(images, self.factor, IMAGENET_MEAN)


@register_transform("clean")
def clean() -> Shift:
    return Clean()


def _register_offsets() -> None:
    # Both signs of every channel group: rgb+{k}, rgb-{k}, r+{k}, ... b-{k}.
    for channels in _CHANNELS:
        for sign in (1, -1):

            def build(k: float, _c: str = channels, _s: int = sign) -> Shift:
                return ChannelOffset(_c, _s * k)

            register_transform(
                f"{channels}{'+' if sign > 0 else '-'}{{k}}", identity=0, example=50,
                param_help=f"K/255 {'added to' if sign > 0 else 'subtracted from'} {channels.upper()}, clipped",
            )(build)


_register_offsets()


@register_transform("std{factor}", identity=1, example=1.5,
                    param_help="factor on the deviation from the ImageNet mean, no clipping")
def std(factor: float) -> Shift:
    return StdScale(factor)
