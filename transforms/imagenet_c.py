"""ImageNet-C on the fly: the 19 corruptions x 5 severities as crop-stage shifts (the ops: :mod:`.corruptions`).

Names follow imagenet-testbed's settings: ``imagenet-c.<corruption>.<severity>`` (``imagenet-c.gaussian_noise.3``)
is one set as the released files were made: the corruption of the resize 256 + centre crop 224 crop, then the JPEG
save of ``make_imagenet_c.py`` (on-disk emulation). The same name with ``.memory`` appended
(``imagenet-c.gaussian_noise.3.memory``) is the pure in-memory image, without that JPEG save. Groups expand in
``--transforms``: ``imagenet-c.<corruption>`` its five severities, ``imagenet-c`` the 75 benchmark sets,
``imagenet-c-extra`` the 20 extra ones (each with ``.memory`` for the in-memory images).

Geometry: ImageNet-C is made on the resize 256 (bilinear) + centre crop 224 crop (:data:`GEOMETRY`), and its 224-px
files are read without a resize, centre-cropped to the model's crop
(:class:`~robustbench_ibn.datasets.ImageNetC`). These shifts declare that geometry (:attr:`Shift.crop_geometry`):
the engine corrupts the ImageNet-C crop and centre-crops it to the model's crop, which is what the released files
give that model; a crop larger than 224 is refused, as the released files' path refuses it.

Random corruptions draw from one generator per image (:meth:`Shift.generator_for`, seeded by the run seed, the set
and the image path); an in-memory set draws what its on-disk twin draws, so the two differ by the JPEG save alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch

from ..datasets.facts import imagenet_c_facts
from ._base import GROUPS, Shift, TransformError, check_images, register_transform
from .corruptions import STOCHASTIC, corrupt, save_as_released

__all__ = ["GEOMETRY", "JPEG_QUALITY", "ImageNetCCorruption", "imagenet_c_name"]

PREFIX = "imagenet-c"
MEMORY = ".memory"  # the suffix of the in-memory sets' names
GEOMETRY = (256, 224, "bilinear")  # (resize, crop, interpolation) of make_imagenet_c.py: Resize(256), CenterCrop(224)
JPEG_QUALITY = 85  # make_imagenet_c.py saves every corrupted image with PIL at quality 85
STORAGE = {False: f"as released: saved as JPEG quality {JPEG_QUALITY} and decoded (on-disk emulation)",
           True: "in memory: the corrupted 8-bit image, without the JPEG save"}


def imagenet_c_name(corruption: str, severity: int, memory: bool = False) -> str:
    """The shift name of one ImageNet-C set.

    Example:
        >>> imagenet_c_name("fog", 3), imagenet_c_name("fog", 3, memory=True)
        ('imagenet-c.fog.3', 'imagenet-c.fog.3.memory')
    """
    return f"{PREFIX}.{corruption}.{severity}" + (MEMORY if memory else "")


def _check_severity(corruption: str, severity: Any, memory: bool) -> int:
    facts = imagenet_c_facts()
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in facts.severities:
        members = ", ".join(imagenet_c_name(corruption, s, memory) for s in facts.severities)
        raise TransformError(
            f"Expected an ImageNet-C severity 1..5 in {imagenet_c_name(corruption, severity, memory)!r}, but got "
            f"{severity!r}. Use one of {members}, or {PREFIX}.{corruption}{MEMORY if memory else ''} for all five.")
    return int(severity)


class ImageNetCCorruption(Shift):
    """One ImageNet-C set on the fly: a corruption at a severity of the 224-px crop, saved as released or not."""

    crop_geometry = GEOMETRY
    value_range = (0.0, 1.0)

    def __init__(self, corruption: str, severity: int, memory: bool = False) -> None:
        super().__init__()
        facts = imagenet_c_facts()
        if corruption not in facts.corruptions:
            close = difflib.get_close_matches(str(corruption), facts.corruptions, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise TransformError(f"Expected an ImageNet-C corruption ({', '.join(facts.corruptions)}), but got "
                                 f"{corruption!r}.{hint}")
        self.corruption, self.memory = corruption, memory
        self.severity_level = _check_severity(corruption, severity, memory)
        self.stochastic = corruption in STOCHASTIC
        self.label = f"ImageNet-C {corruption} {self.severity_level}" + (" (in memory)" if memory else "")

    def params(self) -> dict[str, Any]:
        resize, crop, interpolation = GEOMETRY
        return {"corruption": self.corruption, "severity": self.severity_level,
                "storage": "in-memory" if self.memory else f"jpeg-q{JPEG_QUALITY}",
                "geometry": f"resize {resize} {interpolation} + centre crop {crop}, then centre crop to the model's"}

    def describe(self) -> str:
        kind = "extra" if self.corruption in imagenet_c_facts().extras else "benchmark"
        return (f"ImageNet-C {kind} corruption {self.corruption} at severity {self.severity_level} on the fly "
                f"(hendrycks/robustness make_imagenet_c.py) of the resize 256 bilinear + centre crop 224 crop "
                f"(the model gets its centre crop), {STORAGE[self.memory]}")

    def random_identity(self) -> list[Any]:
        # The on-disk set and its in-memory twin draw the same numbers: they differ by the JPEG save alone.
        return [imagenet_c_name(self.corruption, self.severity_level), {"corruption": self.corruption,
                                                                        "severity": self.severity_level}]

    def apply_batch(self, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        check_images(images, self.label)
        size = GEOMETRY[1]
        if tuple(images.shape[-2:]) != (size, size):
            raise TransformError(f"Expected {self.name or self.label} to get the {size}x{size} ImageNet-C crop, but "
                                 f"got {tuple(images.shape[-2:])}. The engine gives it that crop (crop_geometry).")
        generators = self.generators(keys) if self.stochastic else None
        # The run's autocast (--precision bf16/fp16) is for the model: the corruptions' blurs and warps stay in their
        # own precision, so a set's pixels do not depend on the run's precision.
        with torch.autocast(images.device.type, enabled=False):
            # The ops take 8-bit values k/255: the decoded crop is exactly that (a float copy of uint8 pixels).
            out = corrupt(images.float().mul(255).round_().div_(255), self.corruption, self.severity_level, generators)
            out = out if self.memory else save_as_released(out)
        return out.to(images.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Without image keys, an image's position in the batch identifies it.
        return self.apply_batch(images, [f"#{i}" for i in range(images.shape[0])])


def _register() -> None:
    facts = imagenet_c_facts()
    help_text = "ImageNet-C level 1-5"
    for memory in (False, True):  # the groups --list-transforms names first, then one per corruption
        suffix = MEMORY if memory else ""
        GROUPS[PREFIX + suffix] = tuple(imagenet_c_name(c, s, memory) for c in facts.benchmark
                                        for s in facts.severities)
        GROUPS[f"{PREFIX}-extra" + suffix] = tuple(imagenet_c_name(c, s, memory) for c in facts.extras
                                                   for s in facts.severities)
    for corruption in facts.corruptions:
        for memory in (False, True):
            template = f"{PREFIX}.{corruption}.{{severity}}" + (MEMORY if memory else "")

            def build(severity: float, corruption: str = corruption, memory: bool = memory) -> Shift:
                return ImageNetCCorruption(corruption, _check_severity(corruption, severity, memory), memory)

            build.__module__ = __name__
            register_transform(template, example=3, values=facts.severities,
                               param_help=help_text + (", in memory" if memory else ""))(build)
            GROUPS[f"{PREFIX}.{corruption}" + (MEMORY if memory else "")] = tuple(
                imagenet_c_name(corruption, s, memory) for s in facts.severities)


_register()
