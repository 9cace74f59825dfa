"""The catalogue of appearance shifts (installed as ``robustbench_ibn.transforms``).

A shift is a :class:`Shift` module on float ``[B, 3, H, W]`` batches in [0, 1], applied on the
device to the preprocessed crop before normalization. Register your own with
:func:`register_transform`.
"""

from ._base import (
    GROUPS,
    TABLE1,
    TRANSFORMS,
    Shift,
    TransformError,
    TransformSpec,
    check_shift_output,
    create_transform,
    list_transforms,
    prepare_transforms,
    register_transform,
    resolve_transform_names,
    shift_context,
    transform_spec,
    transform_takes,
)
from .functional import add_channel_offset, scale_contrast_about
from .photometric import ChannelOffset, Clean, StdScale
from .color import ColorTemperature, Contrast, Gamma, Greyscale, HueRotation, Saturation  # the catalogue  # isort: skip
from .degradation import GaussianNoise, JpegReencode  # isort: skip
from .cyclegan import CycleGANStyle, OfficialCycleGANStyle  # registers monet, monet-official, ...  # isort: skip
from .adain import AdaINStyle  # registers adain{alpha}  # isort: skip
from .imagenet_c import ImageNetCCorruption  # registers imagenet-c.<corruption>.{severity}, its groups  # isort: skip

__all__ = [
    "GROUPS",
    "TABLE1",
    "TRANSFORMS",
    "AdaINStyle",
    "ChannelOffset",
    "Clean",
    "ColorTemperature",
    "Contrast",
    "CycleGANStyle",
    "Gamma",
    "GaussianNoise",
    "Greyscale",
    "HueRotation",
    "ImageNetCCorruption",
    "JpegReencode",
    "OfficialCycleGANStyle",
    "Saturation",
    "Shift",
    "StdScale",
    "TransformError",
    "TransformSpec",
    "add_channel_offset",
    "check_shift_output",
    "create_transform",
    "list_transforms",
    "prepare_transforms",
    "register_transform",
    "resolve_transform_names",
    "scale_contrast_about",
    "shift_context",
    "transform_spec",
    "transform_takes",
]
