"""The 19 ImageNet-C corruptions as batched torch ops on the 224-px crop, and the JPEG save of the released files.

Each corruption follows ``ImageNet-C/create_c/make_imagenet_c.py`` of hendrycks/robustness (the code that made the
released files: parameters per severity, clipping, order of operations) and, where that code called a tool we do
not have (ImageMagick's motion blur, in ``motion_blur`` and ``snow``), its maintained re-implementation
``imagecorruptions-imaug`` 1.1.5. docs/imagenet-c.md lists, corruption by corruption, which source is followed,
where the two differ, and the measured parity with the reference.

The output holds what the reference's in-memory result holds after ``np.uint8(x)``: the float result truncated
(not rounded) to 8 bits, as ``k / 255`` floats. :func:`save_as_released` adds the JPEG save (quality 85) that
turned those arrays into the released files.

Randomness: every stochastic corruption draws all of an image's random numbers from that image's own CPU
``torch.Generator`` (:data:`STOCHASTIC` names them), before any pixel work, so a result depends neither on the
batch size, nor the batch order, nor the device; the pixel work then runs batched on the images' device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets.facts import imagenet_c_facts
from .degradation import jpeg_reencode

__all__ = ["CORRUPTIONS", "SIZE", "STOCHASTIC", "corrupt", "save_as_released"]

_FACTS = imagenet_c_facts()
CORRUPTIONS: tuple[str, ...] = _FACTS.benchmark + _FACTS.extras
"""The 19 corruptions in ImageNet-C's order: the 15 benchmark ones, then the 4 extras."""

STOCHASTIC: frozenset[str] = frozenset({
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "snow", "frost",
    "fog", "spatter", "elastic_transform",
})
"""The corruptions that draw random numbers (and so need one generator per image)."""

SIZE = 224  # ImageNet-C was made on the 224-px centre crop; several parameters (frost crop, fog map) assume it

# The truncation to 8 bits (np.uint8 of the reference's float result) is floor(v); a value that is an integer in
# exact arithmetic may come out a few float32 ulps below it here, so the floor allows 1/1000 of a level.
_FLOOR_SLACK = 1e-3


# --- shared helpers ------------------------------------------------------------------------------------------------


def _pad_index(n: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source indices of a length-``n`` axis padded by ``before``/``after`` samples, for any pad width.

    ``mode``: ``"nearest"`` (repeat the edge; scipy/skimage ``nearest``, OpenCV ``BORDER_REPLICATE``),
    ``"reflect"`` (``d c b a | a b c d``; scipy ``reflect``), ``"mirror"`` (``d c b | a b c d``; OpenCV's default
    ``BORDER_REFLECT_101``, scipy ``mirror``). Pads wider than the axis repeat the pattern, as scipy's do.
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "nearest":
        return i.clamp_(0, n - 1)
    if mode == "reflect":
        i = i.remainder(2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    if mode == "mirror":
        period = max(2 * n - 2, 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    raise ValueError(f"Expected a padding mode 'nearest', 'reflect' or 'mirror', but got {mode!r}.")


def _pad(x: torch.Tensor, pad_h: int, pad_w: int, mode: str) -> torch.Tensor:
    """Pad the last two axes of ``x`` by ``pad_h`` rows and ``pad_w`` columns on each side."""
    h, w = x.shape[-2:]
    x = x.index_select(-1, _pad_index(w, pad_w, pad_w, mode, x.device))
    return x.index_select(-2, _pad_index(h, pad_h, pad_h, mode, x.device))


@functools.cache
def _gaussian_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1 (float64)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@functools.cache
def _filter_matrix(n: int, sigma: float, truncate: float, mode: str) -> torch.Tensor:
    """The [n, n] matrix of a 1-D Gaussian correlation with its border rule folded in (float64, CPU): a filter of
    any width, even wider than the axis (elastic_transform's), is one matrix product per axis."""
    kernel = _gaussian_kernel(sigma, truncate)
    r = (kernel.numel() - 1) // 2
    source = _pad_index(n, r, r, mode, torch.device("cpu"))  # padded position j reads source[j]
    m = torch.zeros(n, n, dtype=torch.float64)
    for o in range(n):
        m[o].index_add_(0, source[o:o + 2 * r + 1], kernel)
    return m


def _device_matrix(m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return m.to(device=like.device, dtype=like.dtype)


def _gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian (scipy.ndimage.gaussian_filter) over the two image axes of [..., H, W]."""
    mh = _device_matrix(_filter_matrix(x.shape[-2], float(sigma), float(truncate), mode), x)
    mw = mh if x.shape[-1] == x.shape[-2] else _device_matrix(
        _filter_matrix(x.shape[-1], float(sigma), float(truncate), mode), x)
    return mh @ x @ mw.T


def _to_uint8_levels(values_255: torch.Tensor) -> torch.Tensor:
    """``np.uint8`` of a float result on the 0-255 scale already clipped to [0, 255]: truncation."""
    if values_255.dtype == torch.float64:
        return values_255.floor().clamp_(0, 255)
    return values_255.add(_FLOOR_SLACK).floor_().clamp_(0, 255)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv on [N, 3, H, W]; where two channels share the maximum, the later one sets the hue,
    as skimage's successive assignments do."""
    r, g, b = x.unbind(1)
    v = x.amax(1)
    delta = v - x.amin(1)
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    h = torch.where(b == v, 4.0 + (r - g) / safe, torch.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe))
    h = torch.where(delta == 0, torch.zeros_like(h), (h / 6.0).remainder(1.0))
    s = torch.where(delta == 0, torch.zeros_like(delta), delta / torch.where(v == 0, torch.ones_like(v), v))
    return torch.stack((h, s, v), 1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb on [N, 3, H, W]."""
    h, s, v = hsv.unbind(1)
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = hi.remainder(6)

    def pick(*per_sector: torch.Tensor) -> torch.Tensor:  # the channel's value in sectors 0..5
        out = per_sector[5]
        for k in range(4, -1, -1):
            out = torch.where(sector == k, per_sector[k], out)
        return out

    return torch.stack((pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)), 1)


# --- the corruptions: each maps (images in [0, 1], severity, per-image draws) to floats on the 0-255 scale -----------


@dataclass(frozen=True)
class _Op:
    apply: Callable[..., torch.Tensor]
    draw: Callable[[int, torch.Generator], dict[str, torch.Tensor]] | None = None  # one image's random numbers
    # Elementwise ops run in float64, as the reference's numpy does, and then truncate bit for bit like it (an
    # exact-arithmetic integer such as 2 * min - max in saturate lands where numpy's lands); the rest run in float32.
    float64: bool = False


def _brightness(x: torch.Tensor, severity: int) -> torch.Tensor:
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    hsv = _rgb_to_hsv(x)
    hsv[:, 2] = (hsv[:, 2] + c).clamp_(0, 1)
    return _hsv_to_rgb(hsv).clamp_(0, 1) * 255


def _saturate(x: torch.Tensor, severity: int) -> torch.Tensor:
    scale, offset = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))[severity - 1]
    hsv = _rgb_to_hsv(x)
    hsv[:, 1] = (hsv[:, 1] * scale + offset).clamp_(0, 1)
    return _hsv_to_rgb(hsv).clamp_(0, 1) * 255


def _contrast(x: torch.Tensor, severity: int) -> torch.Tensor:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    means = x.mean((2, 3), keepdim=True)
    return ((x - means) * c + means).clamp_(0, 1) * 255


_GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)


def _draw_normal(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"normal": torch.randn(3, SIZE, SIZE, generator=g)}


def _gaussian_noise(x: torch.Tensor, severity: int, normal: torch.Tensor) -> torch.Tensor:
    return (x + normal * _GAUSSIAN_NOISE[severity - 1]).clamp_(0, 1) * 255


def _gaussian_blur_corruption(x: torch.Tensor, severity: int) -> torch.Tensor:
    sigma = (1, 2, 3, 4, 6)[severity - 1]
    return _gaussian_blur(x, sigma).clamp_(0, 1) * 255


@functools.cache
def _disk(radius: int, alias_blur: float) -> torch.Tensor:
    """The reference's defocus kernel: an aliased disk (at least 17 px wide) normalised to sum 1, then smoothed by
    OpenCV's GaussianBlur (3x3, or 5x5 past radius 8; reflect-101 border) with sigma ``alias_blur``."""
    half = max(radius, 8)
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    aliased = ((grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2) <= radius**2).double()
    aliased /= aliased.sum()
    ksize = 3 if radius <= 8 else 5
    taps = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(taps**2) / (2 * alias_blur**2))
    k /= k.sum()
    padded = _pad(aliased.float(), (ksize - 1) // 2, (ksize - 1) // 2, "mirror")
    return F.conv2d(padded.view(1, 1, *padded.shape), (k.view(-1, 1) * k.view(1, -1)).float().view(1, 1, ksize, ksize))[0, 0]


def _defocus_blur(x: torch.Tensor, severity: int) -> torch.Tensor:
    radius, alias_blur = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    kernel = _disk(radius, alias_blur)
    r = (kernel.shape[0] - 1) // 2
    # OpenCV's filter2D (a correlation, reflect-101 border) as one FFT product on the padded image: the kernel is
    # not separable, and at 17-21 px wide the FFT is cheaper than the direct sum.
    padded = _pad(x, r, r, "mirror")
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(kernel.flip(0, 1).to(x), s=size)
    out = torch.fft.irfft2(spectrum, s=size)[..., 2 * r:, 2 * r:]
    return out.clamp_(0, 1) * 255


def _zoom_taps(size: int, factor: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``size`` samples of scipy.ndimage.zoom(order=1) of the centred ``ceil(size / factor)`` crop:
    lower source index, upper source index and the upper one's weight (the reference's ``clipped_zoom``)."""
    crop = math.ceil(size / factor)
    top = (size - crop) // 2
    out = int(round(crop * factor))
    coord = torch.arange(size, dtype=torch.float64, device=device) * ((crop - 1) / (out - 1))
    low = coord.floor().clamp_(max=crop - 1)
    return (low.long() + top, (low.long() + 1).clamp_(max=crop - 1) + top, coord - low)


def _clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The reference's ``clipped_zoom`` on [N, C, H, W]: bilinear zoom of the centre, cut to the top-left H x W."""
    lo_h, hi_h, w_h = _zoom_taps(x.shape[-2], factor, x.device)
    lo_w, hi_w, w_w = _zoom_taps(x.shape[-1], factor, x.device)
    w_h, w_w = w_h.to(x.dtype).view(-1, 1), w_w.to(x.dtype)
    rows = torch.lerp(x.index_select(-2, lo_h), x.index_select(-2, hi_h), w_h)
    return torch.lerp(rows.index_select(-1, lo_w), rows.index_select(-1, hi_w), w_w)


_ZOOM_FACTORS = tuple(tuple(float(z) for z in np.arange(1, stop, step))
                      for stop, step in ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)))


def _zoom_blur(x: torch.Tensor, severity: int) -> torch.Tensor:
    factors = _ZOOM_FACTORS[severity - 1]
    out = torch.zeros_like(x)
    for factor in factors:
        out += _clipped_zoom(x, factor)
    return ((x + out) / (len(factors) + 1)).clamp_(0, 1) * 255


@functools.cache
def _box_taps(size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's BOX resampling taps as its 8-bit path uses them: per output pixel, the source indices [out, K]
    and the weights normalised then in fixed point with 22 fractional bits (Pillow's bounds and support)."""
    scale = size_in / size_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    taps = []
    for o in range(size_out):
        center = (o + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), size_in)
        w = [1.0 if -0.5 < (i - center + 0.5) / filterscale <= 0.5 else 0.0 for i in range(lo, hi)]
        total = sum(w) or 1.0
        taps.append([(i, math.floor(wi / total * (1 << 22) + 0.5)) for i, wi in zip(range(lo, hi), w)])
    k = max(len(t) for t in taps)
    index = torch.tensor([[i for i, _ in t] + [t[0][0]] * (k - len(t)) for t in taps])
    weight = torch.tensor([[wi for _, wi in t] + [0] * (k - len(t)) for t in taps], dtype=torch.float64)
    return index, weight


def _box_pass(levels: torch.Tensor, size_out: int) -> torch.Tensor:
    """One Pillow 8-bit BOX pass along the last axis: ``clip((sum_i k_i x_i + 2**21) >> 22, 0, 255)``, exact in
    float64 (every partial sum is an integer below 2**31)."""
    index, weight = _box_taps(levels.shape[-1], size_out)
    index, weight = index.to(levels.device), weight.to(levels)
    acc = torch.full((*levels.shape[:-1], size_out), float(1 << 21), dtype=levels.dtype, device=levels.device)
    for t in range(index.shape[1]):
        acc += levels.index_select(-1, index[:, t]) * weight[:, t]
    return torch.floor(acc / (1 << 22)).clamp_(0, 255)


def _box_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``Image.resize((width, height), Image.BOX)`` of 8-bit levels [N, C, H, W] (float64 integers), bit for bit:
    horizontal pass, 8-bit intermediate, vertical pass, as Pillow runs it."""
    if width != levels.shape[-1]:
        levels = _box_pass(levels, width)
    if height != levels.shape[-2]:
        levels = _box_pass(levels.transpose(-1, -2), height).transpose(-1, -2)
    return levels


def _pixelate(x: torch.Tensor, severity: int) -> torch.Tensor:
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    small = int(SIZE * c)
    levels = x.mul(255).round_()
    return _box_resize(_box_resize(levels, small, small), SIZE, SIZE)


def _jpeg_compression(x: torch.Tensor, severity: int) -> torch.Tensor:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    return jpeg_reencode(x, quality).mul_(255).round_()


_OPS: dict[str, _Op] = {
    "brightness": _Op(_brightness, float64=True),
    "saturate": _Op(_saturate, float64=True),
    "contrast": _Op(_contrast, float64=True),
    "gaussian_noise": _Op(_gaussian_noise, _draw_normal),
    "gaussian_blur": _Op(_gaussian_blur_corruption, float64=True),
    "defocus_blur": _Op(_defocus_blur),
    "zoom_blur": _Op(_zoom_blur),
    "pixelate": _Op(_pixelate, float64=True),
    "jpeg_compression": _Op(_jpeg_compression),
}


# --- the public entry points ---------------------------------------------------------------------------------------


def _check(images: torch.Tensor, corruption: str, severity: int) -> None:
    if corruption not in CORRUPTIONS:
        raise ValueError(f"Expected an ImageNet-C corruption, one of {', '.join(CORRUPTIONS)}, but got {corruption!r}.")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"Expected the severity of {corruption} to be an int in [1, 5], but got {severity!r}.")
    if (not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, SIZE, SIZE)
            or not images.is_floating_point()):
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"Expected {corruption} input to be a float tensor [B, 3, {SIZE}, {SIZE}] (ImageNet-C's "
                         f"224-px centre crop of the 256-px resize), but got {got}.")


def _draws(corruption: str, severity: int, generators: Sequence[torch.Generator] | None, n: int,
           device: torch.device) -> dict[str, torch.Tensor]:
    """Every image's random numbers, drawn on the CPU from its own generator, stacked and moved to ``device``."""
    if generators is None or len(generators) != n or not all(isinstance(g, torch.Generator) for g in generators):
        got = "none" if generators is None else f"{len(generators)} of types {sorted({type(g).__name__ for g in generators})}"
        raise ValueError(f"Expected one CPU torch.Generator per image ({n}) for the stochastic corruption {corruption}, "
                         f"but got {got}. Pass generators=[torch.Generator().manual_seed(s) for s in seeds].")
    if any(g.device.type != "cpu" for g in generators):
        raise ValueError(f"Expected CPU generators for {corruption} (the draws are made on the CPU so that they do not "
                         f"depend on the device), but got {sorted({str(g.device) for g in generators})}.")
    draw = _OPS[corruption].draw
    assert draw is not None
    per_image = [draw(severity, g) for g in generators]
    return {k: torch.stack([d[k] for d in per_image]).to(device) for k in per_image[0]}


def corrupt(images: torch.Tensor, corruption: str, severity: int,
            generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """Apply an ImageNet-C corruption at a severity (1-5) to a batch of 224-px crops, as the reference does in memory.

    ``images``: float ``[B, 3, 224, 224]`` holding 8-bit values ``k / 255`` on any device. Returns the same shape,
    device and dtype, holding the 8-bit values of the reference's result (its float result truncated, as
    ``np.uint8`` does). A stochastic corruption (:data:`STOCHASTIC`) needs ``generators``, one CPU generator per
    image; image ``i``'s pixels depend only on ``images[i]`` and ``generators[i]``.

    Example:
        >>> x = torch.full((2, 3, 224, 224), 128 / 255)
        >>> corrupt(x, "contrast", 5)[0, :, 0, 0].mul(255).tolist()
        [128.0, 128.0, 128.0]
        >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
        >>> out = corrupt(x, "gaussian_noise", 3, gens)
        >>> torch.equal(out[1:], corrupt(x[1:], "gaussian_noise", 3, [torch.Generator().manual_seed(1)]))
        True
    """
    _check(images, corruption, severity)
    op = _OPS.get(corruption)
    if op is None:
        raise NotImplementedError(f"The ImageNet-C corruption {corruption} is not implemented yet in "
                                  f"robustbench_ibn.transforms.corruptions (implemented: {', '.join(sorted(_OPS))}).")
    # A float64 op starts from k / 255 computed in float64, as the reference's ``np.array(x) / 255.`` does.
    work = images.double().mul(255).round_().div_(255) if op.float64 else images.float()
    if corruption in STOCHASTIC:
        out = op.apply(work, severity, **_draws(corruption, severity, generators, images.shape[0], images.device))
    else:
        out = op.apply(work, severity)
    return _to_uint8_levels(out).div_(255).to(images.dtype)


def save_as_released(images: torch.Tensor) -> torch.Tensor:
    """The JPEG round trip of the released ImageNet-C files: truncate to 8 bits, save as Pillow does in
    make_imagenet_c.py (``quality=85, optimize=True``, Pillow's default 4:2:0 chroma subsampling), decode.

    Same shape, device and dtype out. Pass :func:`corrupt`'s output (already 8-bit); other values are truncated.

    Example:
        >>> x = torch.full((1, 3, 224, 224), 100 / 255)
        >>> save_as_released(x).mul(255).unique().tolist()
        [100.0]
    """
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(f"Expected float images [B, 3, H, W] to save as the released ImageNet-C JPEGs, but got "
                         f"{tuple(images.shape)} {images.dtype}.")
    return jpeg_reencode(images, 85, optimize=True, to_8bit="truncate")
