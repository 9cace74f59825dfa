"""Image-quality shifts: JPEG re-encoding at a quality, and seeded Gaussian noise.

``jpeg{q}`` runs the real codec (libjpeg through Pillow) rather than ``kornia.enhance.jpeg_codec_differentiable``:
kornia's op is a differentiable approximation (soft rounding, its own colour conversion) made for
training and attacks, while a benchmark should measure the artefacts that real re-encoded images carry.
JPEG has no identity point: it is lossy at every quality (DCT rounding, 4:2:0 chroma subsampling), so
``jpeg100`` is the mildest member, not the identity; the catalogue tests bound its error instead.

``noise{sigma}`` is the catalogue's stochastic shift: every image's noise comes from its own generator,
seeded from (run seed, shift name and parameters, image path) by
:meth:`~robustbench_ibn.transforms.Shift.generator_for`, so the pixels do not depend on batch size,
workers or ranks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image

from ..text import number
from ._base import Shift, check_images, register_transform

__all__ = ["GaussianNoise", "JpegReencode", "add_gaussian_noise", "jpeg_reencode"]

JPEG_SUBSAMPLING = "4:2:0"  # Pillow's default and that of most camera and ImageNet JPEGs
_PIL_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}



def jpeg_reencode(images: torch.Tensor, quality: int, subsampling: str = JPEG_SUBSAMPLING, *, optimize: bool = False,
                  to_8bit: str = "round") -> torch.Tensor:
    """Encode every image as a baseline JPEG at ``quality`` (1-100) with Pillow/libjpeg, decode it back.

    Pixels are rounded to 8 bits first (exact for the runner's decoded crops), or truncated with
    ``to_8bit="truncate"`` (``np.uint8`` of a float array, as ImageNet-C's files were saved; a value within 1/1000 of
    a level below an integer counts as that integer, so ``k / 255`` floats keep ``k``); ``optimize`` asks libjpeg for
    optimal Huffman tables (smaller files, the same pixels). The codec runs on the CPU and the result returns to the
    input's device and dtype.

    Example:
        >>> x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> out = jpeg_reencode(x, 10)
        >>> out.shape == x.shape and out.dtype == x.dtype and bool((out * 255 - (out * 255).round()).abs().max() < 1e-4)
        True
    """
    if isinstance(quality, bool) or float(quality) != int(quality) or not 1 <= int(quality) <= 100:
        raise ValueError(f"Expected a JPEG quality that is an integer in [1, 100], but got {quality}.")
    if subsampling not in _PIL_SUBSAMPLING:
        raise ValueError(f"Expected subsampling to be one of {sorted(_PIL_SUBSAMPLING)}, but got {subsampling!r}.")
    if to_8bit not in ("round", "truncate"):
        raise ValueError(f"Expected to_8bit to be 'round' or 'truncate', but got {to_8bit!r}.")
    levels = images.detach().mul(255)
    levels = levels.round_() if to_8bit == "round" else levels.add_(1e-3).floor_()
    pixels = levels.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for array in pixels:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array), "RGB").save(
            buffer, format="JPEG", quality=int(quality), subsampling=_PIL_SUBSAMPLING[subsampling],
            optimize=bool(optimize),
        )
        buffer.seek(0)
        with Image.open(buffer) as image:
            decoded.append(np.asarray(image.convert("RGB")))
    out = torch.from_numpy(np.stack(decoded)).to(images.device).permute(0, 3, 1, 2)
    return out.to(images.dtype).div_(255).contiguous()


def add_gaussian_noise(images: torch.Tensor, sigma: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Add N(0, sigma^2) noise (``sigma`` on the [0, 1] scale), image ``i``'s from ``generators[i]``; clip.

    Example:
        >>> x = torch.full((2, 3, 4, 4), 0.5)
        >>> gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
        >>> out = add_gaussian_noise(x, 0.1, gens)
        >>> torch.equal(out[1], add_gaussian_noise(x[1:], 0.1, [torch.Generator().manual_seed(2)])[0])
        True
    """
    if len(generators) != images.shape[0]:
        raise ValueError(f"Expected one generator per image ({images.shape[0]}), but got {len(generators)}.")
    noise = torch.stack([
        torch.randn(images.shape[1:], generator=g, device=images.device, dtype=images.dtype) for g in generators
    ])
    return (images + noise.mul_(float(sigma))).clamp_(0.0, 1.0)


class JpegReencode(Shift):
    """Re-encode as JPEG at a quality (Pillow/libjpeg, 4:2:0) and decode."""

    def __init__(self, quality: float) -> None:
        super().__init__()
        if isinstance(quality, bool) or float(quality) != int(quality) or not 1 <= int(quality) <= 100:
            raise ValueError(f"Expected a JPEG quality that is an integer in [1, 100], but got {quality}.")
        self.quality = int(quality)
        self.label = f"JPEG q{self.quality}"

    def params(self) -> dict[str, Any]:
        return {"quality": self.quality, "subsampling": JPEG_SUBSAMPLING, "codec": "libjpeg via Pillow"}

    def describe(self) -> str:
        return (f"round to 8 bits, encode as baseline JPEG at quality {self.quality} with {JPEG_SUBSAMPLING} chroma "
                f"subsampling (Pillow {PIL.__version__}), decode")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.label)
        return jpeg_reencode(images, self.quality)


class GaussianNoise(Shift):
    """Add Gaussian noise, seeded per image (a stochastic shift that replays bit for bit)."""

    stochastic = True

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"Expected the noise sigma to be >= 0, but got {sigma}.")
        self.sigma = float(sigma)
        self.label = f"noise{number(self.sigma)}"

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "scale": 255, "clip": True}

    def describe(self) -> str:
        return (f"add Gaussian noise of standard deviation {number(self.sigma)}/255 to every pixel and channel, clip to "
                "[0, 1]; each image's noise is seeded from (run seed, shift, image path)")

    def apply_batch(self, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        check_images(images, self.label)
        if self.sigma == 0:
            return images
        return add_gaussian_noise(images, self.sigma / 255.0, self.generators(keys, images.device))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Without image keys, an image's position in the batch identifies it.
        return self.apply_batch(images, [f"#{i}" for i in range(images.shape[0])])


@register_transform("jpeg{q}", example=20, param_help="JPEG quality, an integer 1-100 (lower is worse; lossy at every quality)")
def jpeg(q: float) -> Shift:
    return JpegReencode(q)


@register_transform("noise{sigma}", identity=0, example=20,
                    param_help="Gaussian noise std on the 0-255 scale, clipped; seeded per image")
def noise(sigma: float) -> Shift:
    return GaussianNoise(sigma)
