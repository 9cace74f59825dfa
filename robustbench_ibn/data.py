"""ImageNet validation data: discovery, canonical labels, decode + eval geometry to uint8 crops."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DataConfig", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataConfig:
    """A model's eval data config: geometry (done by the loader) and normalization (done on the device).

    The default is the official IBN-Net evaluation: shorter side to 256 (PIL bilinear, antialiased),
    centre crop 224, ImageNet mean/std.
    """

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
