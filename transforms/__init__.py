"""The catalogue of appearance shifts (installed as ``robustbench_ibn.transforms``).

A shift is a :class:`Shift` module on float ``[B, 3, H, W]`` batches in [0, 1], applied on the
device to the preprocessed crop before normalization. Register your own with
:func:`register_transform`.
"""

from ._base import (
    TABLE1,
    TRANSFORMS,
    Shift,
    TransformError,
    check_shift_output,
    create_transform,
    list_transforms,
    register_transform,
    resolve_transform_names,
)
from .functional import add_channel_offset, scale_contrast_about
from .photometric import ChannelOffset, Clean, StdScale

__all__ = [
    "TABLE1",
    "TRANSFORMS",
    "ChannelOffset",
    "Clean",
    "Shift",
    "StdScale",
    "TransformError",
    "add_channel_offset",
    "check_shift_output",
    "create_transform",
    "list_transforms",
    "register_transform",
    "resolve_transform_names",
    "scale_contrast_about",
]
