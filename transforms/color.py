"""Colour shifts beyond Table 1: hue, saturation, gamma, greyscale, colour temperature, contrast.

Each shift is a pure function on float ``[B, 3, H, W]`` batches in [0, 1] (built on kornia where it has
the operation) plus a :class:`~robustbench_ibn.transforms.Shift` wrapper registered as a family whose
parameter is the severity. Every family has an identity point at which the output equals the input
exactly: ``hue0``, ``sat1``, ``gamma1``, ``grey0``, ``temp6500``, ``contrast1``. Where the kornia op
goes through a colour-space round trip (HSV for hue and saturation, linear sRGB for temperature), that
round trip is not exact in floating point (about 5e-7), so the identity point returns the input
unchanged instead of round-trip noise. Outputs are clipped to [0, 1].

All operations are per pixel or per image, so an image's output does not depend on the other images in
its batch (the catalogue tests check this bit for bit). Powers (gamma, the sRGB transfer curve) are
computed in float64: torch's vectorized and scalar ``pow`` differ in the last bit, and which one a
pixel gets depends on the tensor's size; rounded back to float32 the results agree.
"""

from __future__ import annotations

import math
from typing import Any

import kornia
import torch

from ..text import number
from ._base import Shift, check_images, register_transform

__all__ = [
    "ColorTemperature",
    "Contrast",
    "Gamma",
    "Greyscale",
    "HueRotation",
    "Saturation",
    "apply_gamma",
    "blend_grey",
    "reduce_contrast",
    "rotate_hue",
    "scale_saturation",
    "temperature_gains",
    "white_balance_shift",
]

REFERENCE_KELVIN = 6500.0  # sRGB's white point (D65) is a daylight of about 6500 K
KELVIN_RANGE = (2000.0, 25000.0)  # Kim et al.'s locus fit holds from 1667 K; below ~1900 K blue goes negative
# ITU-R BT.709 luminance of linear sRGB (the Y row of the sRGB -> XYZ matrix).
_LUMA_709 = (0.2126, 0.7152, 0.0722)
# CIE XYZ -> linear sRGB (IEC 61966-2-1).
_XYZ_TO_SRGB = ((3.2404542, -1.5371385, -0.4985314), (-0.9692660, 1.8760108, 0.0415560), (0.0556434, -0.2040259, 1.0572252))



def _per_image_mean(images: torch.Tensor) -> torch.Tensor:
    # One reduction per image (in float64), so the mean of an image is the same bits whatever its batch:
    # torch reduces a [1, ...] tensor along a different path than a slice of a [B, ...] one.
    return torch.stack([image.double().mean() for image in images]).to(images.dtype).view(-1, 1, 1, 1)


# -- pure functions -----------------------------------------------------------------------------------
def rotate_hue(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every pixel's hue by ``degrees`` in HSV (``kornia.enhance.adjust_hue``); 0 (mod 360) is the identity.

    Example:
        >>> red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        >>> rotate_hue(red, 120).flatten().round(decimals=4).tolist()
        [0.0, 1.0, 0.0]
    """
    turn = float(degrees) % 360.0
    if turn == 0.0:
        return images
    radians = math.radians(turn - 360.0 if turn > 180.0 else turn)  # adjust_hue takes [-pi, pi]
    return kornia.enhance.adjust_hue(images, radians).clamp_(0.0, 1.0)


def scale_saturation(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply HSV saturation by ``factor`` and clip it to [0, 1] (``kornia.enhance.adjust_saturation``).

    0 gives grey (each pixel's HSV value, its largest channel), 1 is the identity, > 1 saturates.

    Example:
        >>> x = torch.tensor([0.8, 0.4, 0.4]).view(1, 3, 1, 1)
        >>> scale_saturation(x, 0.0).flatten().tolist()
        [0.800000011920929, 0.800000011920929, 0.800000011920929]
    """
    if factor < 0:
        raise ValueError(f"Expected the saturation factor to be >= 0, but got {factor}.")
    if factor == 1:
        return images
    return kornia.enhance.adjust_saturation(images, float(factor)).clamp_(0.0, 1.0)


def apply_gamma(images: torch.Tensor, gamma: float) -> torch.Tensor:
    """``images ** gamma`` (``kornia.enhance.adjust_gamma``): > 1 darkens mid-tones, < 1 brightens; 1 is the identity.

    Example:
        >>> apply_gamma(torch.full((1, 3, 1, 1), 0.25), 0.5).flatten().tolist()
        [0.5, 0.5, 0.5]
    """
    if not gamma > 0:
        raise ValueError(f"Expected gamma to be > 0, but got {gamma}.")
    return kornia.enhance.adjust_gamma(images.double(), float(gamma)).to(images.dtype)


def blend_grey(images: torch.Tensor, amount: float) -> torch.Tensor:
    """Blend towards the greyscale image: ``torch.lerp(x, grey(x), amount)``; 0 is the identity, 1 is greyscale.

    ``grey`` is ``kornia.color.rgb_to_grayscale`` (ITU-R BT.601 weights 0.299, 0.587, 0.114 on the
    encoded values, as PIL's ``convert("L")``).

    Example:
        >>> x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
        >>> [round(v, 4) for v in blend_grey(x, 1.0).flatten().tolist()]
        [0.299, 0.299, 0.299]
    """
    if not 0 <= amount <= 1:
        raise ValueError(f"Expected the greyscale amount to be in [0, 1], but got {amount}.")
    grey = kornia.color.rgb_to_grayscale(images).expand_as(images)
    # lerp is exact at both ends: amount 0 returns x, amount 1 the grey image.
    return torch.lerp(images, grey, float(amount)).clamp_(0.0, 1.0)


def reduce_contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Scale each image's contrast about its mean grey level: ``x * f + mean * (1 - f)``, clipped.

    The definition of ``kornia.enhance.adjust_contrast_with_mean_subtraction`` (and of PIL's and
    torchvision's contrast): ``f < 1`` reduces contrast (0 gives a flat grey image), 1 is the identity,
    ``f > 1`` increases it. The mean is computed per image, so the result does not depend on the batch.

    Example:
        >>> x = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
        >>> reduce_contrast(x, 0.5)[0, 0, 0].tolist()
        [0.25, 0.75]
    """
    if factor < 0:
        raise ValueError(f"Expected the contrast factor to be >= 0, but got {factor}.")
    mean = _per_image_mean(kornia.color.rgb_to_grayscale(images))
    return (images * float(factor) + mean * (1.0 - float(factor))).clamp_(0.0, 1.0)


def _planckian_xy(kelvin: float) -> tuple[float, float]:
    # Kim et al. (2002), cubic spline fit of the Planckian locus in CIE 1931 xy, 1667-25000 K.
    t = float(kelvin)
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def _planckian_linear_rgb(kelvin: float) -> tuple[float, float, float]:
    x, y = _planckian_xy(kelvin)
    xyz = (x / y, 1.0, (1.0 - x - y) / y)
    return tuple(sum(m * v for m, v in zip(row, xyz)) for row in _XYZ_TO_SRGB)  # type: ignore[return-value]


def temperature_gains(kelvin: float) -> tuple[float, float, float]:
    """Linear-RGB channel gains that re-light a 6500 K-balanced image as if shot under ``kelvin``.

    Gains are the ratio of the blackbody's linear sRGB colour at ``kelvin`` to the one at 6500 K (Planckian
    locus of Kim et al. 2002, CIE XYZ -> sRGB), scaled so that grey keeps its luminance (BT.709 weights):
    what a camera with white balance fixed at daylight and auto exposure records. 6500 K gives exactly
    (1, 1, 1).

    Example:
        >>> [round(g, 3) for g in temperature_gains(3000)]
        [1.705, 0.865, 0.265]
    """
    if not KELVIN_RANGE[0] <= kelvin <= KELVIN_RANGE[1]:
        raise ValueError(
            f"Expected a colour temperature in [{KELVIN_RANGE[0]:g}, {KELVIN_RANGE[1]:g}] K, but got {kelvin:g} K."
        )
    if kelvin == REFERENCE_KELVIN:
        return (1.0, 1.0, 1.0)
    target, reference = _planckian_linear_rgb(kelvin), _planckian_linear_rgb(REFERENCE_KELVIN)
    ratio = [t / r for t, r in zip(target, reference)]
    luminance = sum(w * g for w, g in zip(_LUMA_709, ratio))
    return tuple(g / luminance for g in ratio)  # type: ignore[return-value]


def white_balance_shift(images: torch.Tensor, kelvin: float) -> torch.Tensor:
    """Re-light the images at colour temperature ``kelvin`` (6500 K, the identity, is the sRGB white).

    sRGB is decoded to linear light (``kornia.color.rgb_to_linear_rgb``), each channel multiplied by its
    :func:`temperature_gains` gain, clipped to [0, 1] and encoded back (``kornia.color.linear_rgb_to_rgb``).
    Below 6500 K the image turns warm (orange, tungsten light left uncorrected), above it cool (blue).

    Example:
        >>> grey = torch.full((1, 3, 1, 1), 0.5)
        >>> r, g, b = white_balance_shift(grey, 3000).flatten().tolist()
        >>> r > g > b
        True
    """
    gains = temperature_gains(kelvin)
    if gains == (1.0, 1.0, 1.0):
        return images
    g = torch.tensor(gains, dtype=torch.float64, device=images.device).view(1, 3, 1, 1)
    linear = kornia.color.rgb_to_linear_rgb(images.double()) * g
    return kornia.color.linear_rgb_to_rgb(linear.clamp_(0.0, 1.0)).clamp_(0.0, 1.0).to(images.dtype)


# -- modules ------------------------------------------------------------------------------------------
class _FactorShift(Shift):
    """Shared plumbing: one numeric parameter, one pure function."""

    param_name = "value"

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def params(self) -> dict[str, Any]:
        return {self.param_name: self.value}

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.label)
        return self.apply(images)


class HueRotation(_FactorShift):
    """Rotate the hue of every pixel by a number of degrees (HSV, kornia)."""

    param_name = "degrees"

    def __init__(self, degrees: float) -> None:
        super().__init__(degrees)
        self.label = f"hue+{number(self.value)}"

    def describe(self) -> str:
        return f"rotate every pixel's HSV hue by {number(self.value)} degrees (kornia.enhance.adjust_hue), clip to [0, 1]"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return rotate_hue(images, self.value)


class Saturation(_FactorShift):
    """Scale the HSV saturation of every pixel by a factor (kornia)."""

    param_name = "factor"

    def __init__(self, factor: float) -> None:
        if factor < 0:
            raise ValueError(f"Expected the saturation factor to be >= 0, but got {factor}.")
        super().__init__(factor)
        self.label = f"sat×{number(self.value)}"

    def describe(self) -> str:
        return f"multiply HSV saturation by {number(self.value)}, clip to [0, 1] (kornia.enhance.adjust_saturation)"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return scale_saturation(images, self.value)


class Gamma(_FactorShift):
    """Raise the encoded pixel values to a power (kornia)."""

    param_name = "gamma"

    def __init__(self, gamma: float) -> None:
        if not gamma > 0:
            raise ValueError(f"Expected gamma to be > 0, but got {gamma}.")
        super().__init__(gamma)
        self.label = f"gamma{number(self.value)}"

    def describe(self) -> str:
        return f"x ** {number(self.value)} on the [0, 1] encoded values (kornia.enhance.adjust_gamma)"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return apply_gamma(images, self.value)


class Greyscale(_FactorShift):
    """Blend towards the greyscale image by an amount in [0, 1] (kornia)."""

    param_name = "amount"

    def __init__(self, amount: float) -> None:
        if not 0 <= amount <= 1:
            raise ValueError(f"Expected the greyscale amount to be in [0, 1], but got {amount}.")
        super().__init__(amount)
        self.label = f"grey{number(self.value)}"

    def describe(self) -> str:
        return (f"(1 - {number(self.value)}) x + {number(self.value)} grey(x), grey = 0.299 R + 0.587 G + 0.114 B "
                "(kornia.color.rgb_to_grayscale)")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return blend_grey(images, self.value)


class ColorTemperature(_FactorShift):
    """Re-light the image at a colour temperature in kelvin (6500 K is the sRGB white, the identity)."""

    param_name = "kelvin"

    def __init__(self, kelvin: float) -> None:
        self.gains = temperature_gains(kelvin)  # validates the range
        super().__init__(kelvin)
        self.label = f"{number(self.value)}K"

    def params(self) -> dict[str, Any]:
        return {"kelvin": self.value, "reference_kelvin": REFERENCE_KELVIN,
                "linear_gains": [round(g, 6) for g in self.gains]}

    def describe(self) -> str:
        r, g, b = self.gains
        return (f"white-balance shift from 6500 K to {number(self.value)} K: linear sRGB times "
                f"({r:.3f}, {g:.3f}, {b:.3f}) (Planckian locus, grey luminance kept), clip to [0, 1]")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return white_balance_shift(images, self.value)


class Contrast(_FactorShift):
    """Scale each image's contrast about its mean grey level (f < 1 decreases it)."""

    param_name = "factor"

    def __init__(self, factor: float) -> None:
        if factor < 0:
            raise ValueError(f"Expected the contrast factor to be >= 0, but got {factor}.")
        super().__init__(factor)
        self.label = f"contrast×{number(self.value)}"

    def describe(self) -> str:
        return (f"x * {number(self.value)} + m * (1 - {number(self.value)}), m = the image's mean grey level, clip to "
                "[0, 1] (kornia.enhance.adjust_contrast_with_mean_subtraction)")

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return reduce_contrast(images, self.value)


# -- registration -------------------------------------------------------------------------------------
@register_transform("hue{deg}", identity=0, example=30, param_help="hue rotation in degrees (mod 360)")
def hue(deg: float) -> Shift:
    return HueRotation(deg)


@register_transform("sat{f}", identity=1, example=0.5, param_help="HSV saturation factor (0 grey, > 1 more)")
def sat(f: float) -> Shift:
    return Saturation(f)


@register_transform("gamma{g}", identity=1, example=2, param_help="exponent on the [0, 1] values (> 1 darker)")
def gamma(g: float) -> Shift:
    return Gamma(g)


@register_transform("grey{a}", identity=0, example=0.5, param_help="blend amount towards greyscale, in [0, 1]")
def grey(a: float) -> Shift:
    return Greyscale(a)


@register_transform("temp{kelvin}", identity=6500, example=3000,
                    param_help="colour temperature in K, 2000-25000 (< 6500 warm, > 6500 cool)")
def temp(kelvin: float) -> Shift:
    return ColorTemperature(kelvin)


@register_transform("contrast{f}", identity=1, example=0.5, param_help="contrast factor about the mean (< 1 less)")
def contrast(f: float) -> Shift:
    return Contrast(f)
