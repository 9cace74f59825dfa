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
    smoothing = (k.view(-1, 1) * k.view(1, -1)).float().view(1, 1, ksize, ksize)
    return F.conv2d(padded.view(1, 1, *padded.shape), smoothing)[0, 0]


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
    """One Pillow 8-bit BOX pass along the last axis of int32 levels: ``clip((sum_i k_i x_i + 2**21) >> 22, 0,
    255)``, in int32 as Pillow computes it (every partial sum is below 2**31)."""
    index, weight = _box_taps(levels.shape[-1], size_out)
    index, weight = index.to(levels.device), weight.to(device=levels.device, dtype=torch.int32)
    acc = torch.full((*levels.shape[:-1], size_out), 1 << 21, dtype=torch.int32, device=levels.device)
    for t in range(index.shape[1]):
        acc += levels.index_select(-1, index[:, t]) * weight[:, t]
    return acc.bitwise_right_shift_(22).clamp_(0, 255)


def _box_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``Image.resize((width, height), Image.BOX)`` of 8-bit levels [N, C, H, W] (int32), bit for bit: horizontal
    pass, 8-bit intermediate, vertical pass, as Pillow runs it."""
    if width != levels.shape[-1]:
        levels = _box_pass(levels, width)
    if height != levels.shape[-2]:
        levels = _box_pass(levels.transpose(-1, -2), height).transpose(-1, -2)
    return levels


def _pixelate(x: torch.Tensor, severity: int) -> torch.Tensor:
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    small = int(SIZE * c)
    levels = x.mul(255).round_().to(torch.int32)
    return _box_resize(_box_resize(levels, small, small), SIZE, SIZE).to(x.dtype)


def _jpeg_compression(x: torch.Tensor, severity: int) -> torch.Tensor:
    quality = (25, 18, 15, 10, 7)[severity - 1]
    return jpeg_reencode(x, quality).mul_(255).round_()


_SHOT_NOISE = (60, 25, 12, 5, 3)
_SPECKLE_NOISE = (0.15, 0.2, 0.35, 0.45, 0.6)
_IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)


def _draw_uniform(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"uniform": torch.rand(3, SIZE, SIZE, generator=g, dtype=torch.float64)}


@functools.cache
def _poisson_table(rate_per_level: float) -> torch.Tensor:
    """The Poisson CDFs of the 256 rates ``k / 255 * rate_per_level``, laid end to end as one increasing sequence
    (row k offset by k) so that one searchsorted inverts all of them: [256 * K] float64."""
    n = int(rate_per_level + 12 * math.sqrt(rate_per_level) + 20)  # the CDF is 1 to float64 precision by then
    rates = torch.arange(256, dtype=torch.float64).div_(255).mul_(rate_per_level).view(-1, 1)
    k = torch.arange(n, dtype=torch.float64)
    log_pmf = k * torch.log(rates.clamp(min=1e-300)) - rates - torch.lgamma(k + 1)
    pmf = torch.where(rates == 0, (k == 0).double(), torch.exp(log_pmf))
    return (pmf.cumsum(1).clamp_(max=1.0) + torch.arange(256, dtype=torch.float64).view(-1, 1)).flatten()


def _shot_noise(x: torch.Tensor, severity: int, uniform: torch.Tensor) -> torch.Tensor:
    # Poisson(x * c) by inversion of its CDF at a uniform draw: the same distribution as numpy's sampler, with the
    # uniforms drawn per image on the CPU and the inversion batched on the device.
    c = _SHOT_NOISE[severity - 1]
    table = _poisson_table(float(c)).to(x.device)
    width = table.numel() // 256
    level = x.mul(255).round_().double()
    index = torch.searchsorted(table, (level + uniform).flatten()).view(x.shape).double()
    counts = (index - level * width).clamp_(max=width)
    return (counts / c).clamp_(0, 1).to(x.dtype) * 255


def _speckle_noise(x: torch.Tensor, severity: int, normal: torch.Tensor) -> torch.Tensor:
    return (x + x * normal * _SPECKLE_NOISE[severity - 1]).clamp_(0, 1) * 255


def _draw_impulse(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    # skimage.util.random_noise(mode="s&p", amount=c): each value (pixel and channel) is replaced with probability
    # c, by 1 or 0 with even odds.
    flipped = torch.rand(3, SIZE, SIZE, generator=g) <= _IMPULSE_NOISE[severity - 1]
    salted = torch.rand(3, SIZE, SIZE, generator=g) <= 0.5
    return {"flipped": flipped, "salted": salted}


def _impulse_noise(x: torch.Tensor, severity: int, flipped: torch.Tensor, salted: torch.Tensor) -> torch.Tensor:
    return torch.where(flipped, salted.to(x.dtype), x) * 255


# glass_blur ---------------------------------------------------------------------------------------------------------

_GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max_delta, iterations


def _draw_glass(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    _, d, iterations = _GLASS[severity - 1]
    steps = SIZE - 2 * d  # rows (and columns) SIZE - d down to d + 1
    return {"offsets": torch.randint(-d, d, (iterations, steps, steps, 2), generator=g)}  # (dx, dy) per step


@functools.cache
def _glass_wavefronts(d: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The reference's sequential pixel steps regrouped into wavefronts that give the same result (see _glass_blur):
    the step order (indices into the row-major step grid), each step's pixel (flat index), and the wavefront sizes."""
    steps = SIZE - 2 * d
    j_h, j_w = torch.meshgrid(torch.arange(steps), torch.arange(steps), indexing="ij")
    time = ((d + 1) * j_h + j_w).flatten()
    order = torch.argsort(time, stable=True)
    pixel = ((SIZE - d - j_h) * SIZE + (SIZE - d - j_w)).flatten()[order]
    return order, pixel, torch.bincount(time).tolist()


def _glass_sources(offsets: torch.Tensor) -> torch.Tensor:
    """For each image, the source pixel (flat index) of every output pixel after the reference's local shuffle.

    The reference walks rows ``SIZE - d .. d + 1`` and, within a row, columns ``SIZE - d .. d + 1`` (both downwards)
    and at each pixel p runs ``x[p], x[q] = x[q], x[p]`` with q = p + (dy, dx), dx, dy in [-d, d - 1]. On numpy
    views that line copies x[q] into x[p] and leaves x[q] as it was (the right-hand side is two views, and x[p]
    already holds x[q] when the second assignment reads it): the released files hold that copy, so it is what we
    compute. A step touches p and q only, both within d of p; two steps whose pixels are more than d apart (in rows
    or in columns) commute. Step (row i, column j) of the walk goes in wavefront (d + 1) * i + j: every earlier
    step that shares a pixel with it lands in an earlier wavefront and steps of one wavefront share none, so
    running the wavefronts one after the other, each as one batched gather, gives exactly the sequential result
    for the same draws (the same distribution, and the same pixels), in about (d + 2) * SIZE batched steps instead
    of SIZE**2 scalar ones.
    """
    n, iterations = offsets.shape[:2]
    d = int(SIZE - offsets.shape[2]) // 2
    order, pixel, sizes = _glass_wavefronts(d)
    order, pixel = order.to(offsets.device), pixel.to(offsets.device)
    source = torch.arange(SIZE * SIZE, device=offsets.device).repeat(n, 1)
    for it in range(iterations):
        off = offsets[:, it].reshape(n, -1, 2)[:, order]
        read = pixel + off[..., 1] * SIZE + off[..., 0]  # [n, steps]: q = p + dy * SIZE + dx
        start = 0
        for size in sizes:
            p, q = pixel[start:start + size], read[:, start:start + size]
            source[:, p] = source.gather(1, q)
            start += size
    return source


def _glass_blur(x: torch.Tensor, severity: int, offsets: torch.Tensor) -> torch.Tensor:
    sigma = _GLASS[severity - 1][0]
    blurred = _to_uint8_levels(_gaussian_blur(x, sigma).clamp_(0, 1) * 255)  # np.uint8(gaussian(x) * 255)
    n = x.shape[0]
    source = _glass_sources(offsets).unsqueeze(1).expand(n, 3, -1)
    shuffled = blurred.reshape(n, 3, -1).gather(2, source).view_as(x)
    return _gaussian_blur(shuffled / 255, sigma).clamp_(0, 1) * 255


# motion_blur, snow (imagecorruptions' shift-and-add form of ImageMagick's motion blur) ------------------------------

_MOTION = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma


def _draw_angle(low: float, high: float) -> Callable[[int, torch.Generator], dict[str, torch.Tensor]]:
    def draw(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        return {"angle": torch.rand((), generator=g, dtype=torch.float64) * (high - low) + low}

    return draw


def _motion_kernel_blur(x: torch.Tensor, radius: int, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """imagecorruptions' ``_motion_blur`` on [N, C, H, W] with one angle (degrees) per image: the sum over
    ``i < 2 * radius + 1`` of a one-sided Gaussian weight times the image shifted by ``i`` pixels along the angle,
    the edge repeated."""
    n, c, h, w = x.shape
    width = 2 * radius + 1
    i = torch.arange(width, dtype=torch.float64, device=x.device)
    kernel = torch.exp(-(i**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    kernel = (kernel / kernel.sum()).tolist()
    rad = torch.deg2rad(angle.to(torch.float64)).view(-1, 1).cpu()
    dy = (-torch.ceil(i.cpu() * torch.sin(rad) - 0.5)).long().tolist()  # [n][width] shifts, known on the CPU
    dx = (-torch.ceil(i.cpu() * torch.cos(rad) - 0.5)).long().tolist()
    # shifted[y, x] = image[clamp(y - dy), clamp(x - dx)]: a window of the edge-padded image
    padded = _pad(x, width, width, "nearest")
    out = torch.zeros_like(x)
    for b in range(n):
        for t in range(width):
            top, left = width - dy[b][t], width - dx[b][t]
            out[b].add_(padded[b, :, top:top + h, left:left + w], alpha=float(kernel[t]))
    return out


def _motion_blur(x: torch.Tensor, severity: int, angle: torch.Tensor) -> torch.Tensor:
    radius, sigma = _MOTION[severity - 1]
    return _motion_kernel_blur(x * 255, radius, sigma, angle).clamp_(0, 255)


_SNOW = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
         (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))
# loc, scale, zoom, threshold, blur radius, blur sigma, image weight


def _draw_snow(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    loc, scale = _SNOW[severity - 1][:2]
    return {"flakes": torch.randn(1, SIZE, SIZE, generator=g) * scale + loc, **_draw_angle(-135, -45)(severity, g)}


def _snow(x: torch.Tensor, severity: int, flakes: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    _, _, zoom, threshold, radius, sigma, weight = _SNOW[severity - 1]
    layer = _clipped_zoom(flakes, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp_(0, 1)
    layer = _motion_kernel_blur(layer, radius, sigma, angle)
    layer = layer.mul(255).round_().div_(255)  # the reference rounds the blurred layer to 8 bits
    gray = (x * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, True)
    x = weight * x + (1 - weight) * torch.maximum(x, gray * 1.5 + 0.5)
    return (x + layer + layer.flip(-2, -1)).clamp_(0, 1) * 255


# frost --------------------------------------------------------------------------------------------------------------

_FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # image weight, frost weight
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")


@functools.cache
def _frost_picture(index: int) -> torch.Tensor:
    """One of the frost pictures shipped with the package (robustbench_ibn/frost), RGB uint8 [3, H, W]."""
    from importlib import resources

    from PIL import Image

    ref = resources.files("robustbench_ibn").joinpath("frost", FROST_FILES[index])
    with resources.as_file(ref) as path, Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


def _draw_frost(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    # make_imagenet_c.py draws the picture with randint(5): frost6 is never used; then a crop of the picture as it
    # is (imagecorruptions instead draws among all six and enlarges each by 1.1 first).
    picture = _frost_picture(int(torch.randint(5, (), generator=g)))
    top = int(torch.randint(picture.shape[1] - SIZE, (), generator=g))
    left = int(torch.randint(picture.shape[2] - SIZE, (), generator=g))
    return {"frost": picture[:, top:top + SIZE, left:left + SIZE]}


def _frost(x: torch.Tensor, severity: int, frost: torch.Tensor) -> torch.Tensor:
    a, b = _FROST[severity - 1]
    return (a * x.mul(255).round_() + b * frost.to(x.dtype)).clamp_(0, 255)


# fog ----------------------------------------------------------------------------------------------------------------

_FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, wibble decay
_PLASMA = 256  # the reference's fractal map size (the next power of two above 224)


def _draw_plasma(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    # One uniform in [0, 1) per fractal sample: 3 n**2 per level, n = 1, 2, ..., 128.
    return {"plasma": torch.rand(3 * sum(4**k for k in range(8)), generator=g, dtype=torch.float64)}


def _plasma_fractal(uniform: torch.Tensor, decay: float) -> torch.Tensor:
    """The reference's diamond-square height map [N, 256, 256] in [0, 1] from [N, 65535] uniforms; as in the
    reference, a level's perturbation is ``wibble * U(-wibble, wibble)``."""
    n = uniform.shape[0]
    m = torch.zeros(n, _PLASMA, _PLASMA, dtype=torch.float64, device=uniform.device)
    step, wibble, used = _PLASMA, 100.0, 0

    def noise(shape: tuple[int, int]) -> torch.Tensor:
        nonlocal used
        count = shape[0] * shape[1]
        u = uniform[:, used:used + count].reshape(n, *shape)
        used += count
        return wibble * (u * (2 * wibble) - wibble)

    while step >= 2:
        half = step // 2
        corner = m[:, ::step, ::step]
        square = corner + corner.roll(-1, 1)
        square = square + square.roll(-1, 2)
        m[:, half::step, half::step] = square / 4 + noise(square.shape[1:])
        centre, corner = m[:, half::step, half::step], m[:, ::step, ::step]
        left = centre + centre.roll(1, 1) + corner + corner.roll(-1, 2)
        m[:, ::step, half::step] = left / 4 + noise(left.shape[1:])
        top = centre + centre.roll(1, 2) + corner + corner.roll(-1, 1)
        m[:, half::step, ::step] = top / 4 + noise(top.shape[1:])
        step, wibble = half, wibble / decay
    m -= m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def _fog(x: torch.Tensor, severity: int, plasma: torch.Tensor) -> torch.Tensor:
    strength, decay = _FOG[severity - 1]
    peak = x.amax((1, 2, 3), keepdim=True)
    fog = _plasma_fractal(plasma, decay)[:, :SIZE, :SIZE].unsqueeze(1).to(x.dtype)
    return ((x + strength * fog) * peak / (peak + strength)).clamp_(0, 1) * 255


# elastic_transform (make_imagenet_c.py's: a random affine, then a smooth random displacement) ------------------------

_ELASTIC = tuple((244 * a, 244 * s, 244 * f) for a, s, f in
                 ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)))
# displacement scale, its smoothing sigma, affine corner jitter (the reference's 244 stands for 224; kept)


def _draw_elastic(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    jitter = _ELASTIC[severity - 1][2]
    return {"corners": (torch.rand(3, 2, generator=g, dtype=torch.float64) * 2 - 1) * jitter,
            "field": torch.rand(2, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1}


def _wrap(i: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Integer sample indices outside [0, n) mapped inside by a border rule (see :func:`_pad_index`)."""
    if mode == "reflect":
        i = i.remainder(2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    period = 2 * n - 2
    i = i.remainder(period)
    return torch.where(i >= n, period - i, i)


def _bilinear(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample [N, C, H, W] at float coordinates [N, H, W] (row, column), bilinear, with a border rule."""
    n, c, h, w = x.shape
    r0, c0 = rows.floor(), cols.floor()
    fr, fc = (rows - r0).to(x.dtype).unsqueeze(1), (cols - c0).to(x.dtype).unsqueeze(1)
    r0, c0 = r0.long(), c0.long()
    flat = x.reshape(n, c, h * w)

    def at(r: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        index = (_wrap(r, h, mode) * w + _wrap(q, w, mode)).view(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).view(n, c, h, w)

    top = torch.lerp(at(r0, c0), at(r0, c0 + 1), fc)
    bottom = torch.lerp(at(r0 + 1, c0), at(r0 + 1, c0 + 1), fc)
    return torch.lerp(top, bottom, fr)


def _elastic_transform(x: torch.Tensor, severity: int, corners: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    alpha, sigma, _ = _ELASTIC[severity - 1]
    n = x.shape[0]
    # The affine that moves three fixed points (x, y) by the drawn jitter, applied as OpenCV's warpAffine does
    # (each output pixel reads the input at the inverse map; bilinear, reflect-101 border).
    half, third = SIZE // 2, SIZE // 3
    src = torch.tensor([[half + third, half + third], [half + third, half - third], [half - third, half - third]],
                       dtype=torch.float64, device=x.device)
    dst = src + corners
    ones = torch.ones(n, 3, 1, dtype=torch.float64, device=x.device)
    forward = torch.linalg.solve(torch.cat([src.expand(n, 3, 2), ones], 2), dst).transpose(1, 2)  # [n, 2, 3]
    full = torch.cat([forward, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64, device=x.device).expand(n, 1, 3)],
                     1)
    inverse = torch.linalg.inv(full)[:, :2]
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64, device=x.device),
                            torch.arange(SIZE, dtype=torch.float64, device=x.device), indexing="ij")
    grid = torch.stack([xx, yy, torch.ones_like(xx)]).view(3, -1)
    source = (inverse @ grid).view(n, 2, SIZE, SIZE)
    warped = _bilinear(x, source[:, 1], source[:, 0], "mirror")
    # The displacement: uniform noise smoothed by a wide Gaussian (reflect border, truncated at 3 sigma), scaled.
    displacement = _gaussian_blur(field.to(x.dtype), sigma, mode="reflect", truncate=3.0) * alpha
    out = _bilinear(warped, yy + displacement[:, 1], xx + displacement[:, 0], "reflect")
    return out.clamp_(0, 1) * 255


# spatter ------------------------------------------------------------------------------------------------------------

_SPATTER = ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1))
# loc, scale, smoothing sigma, threshold, strength (water) or mask sigma (mud), mud?
_TG22 = 13573  # OpenCV Canny's tan(22.5 degrees) in 15-bit fixed point


def _draw_liquid(severity: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    loc, scale = _SPATTER[severity - 1][:2]
    return {"liquid": torch.randn(1, SIZE, SIZE, generator=g, dtype=torch.float64) * scale + loc}


def _correlate3(x: torch.Tensor, kernel: list[list[float]], mode: str) -> torch.Tensor:
    """A 3x3 correlation of [N, 1, H, W] (OpenCV's filter2D orientation) with a border rule."""
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    return F.conv2d(_pad(x, 1, 1, mode), k)


def _canny(levels: torch.Tensor, low: int = 50, high: int = 150) -> torch.Tensor:
    """OpenCV's Canny (3x3 Sobel with a replicated border, L1 magnitude, its fixed-point direction test, 8-connected
    hysteresis) on 8-bit levels [N, 1, H, W]; True at edge pixels."""
    levels = levels.float()  # Sobel sums of 8-bit levels are integers below 2**11: exact in float32
    dx = _correlate3(levels, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "nearest")
    dy = _correlate3(levels, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "nearest")
    mag = dx.abs() + dy.abs()
    m = F.pad(mag, (1, 1, 1, 1))  # the magnitude is 0 outside the image

    def at(r: int, c: int) -> torch.Tensor:  # the neighbour at row offset r, column offset c
        h, w = mag.shape[-2:]
        return m[..., 1 + r:1 + r + h, 1 + c:1 + c + w]

    ax, ay = dx.abs().int(), dy.abs().int() << 15  # the direction test in OpenCV's integers
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << 16)
    same_sign = (dx * dy) >= 0
    horizontal = (mag > at(0, -1)) & (mag >= at(0, 1))
    vertical = (mag > at(-1, 0)) & (mag >= at(1, 0))
    diagonal = torch.where(same_sign, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1)))
    peak = torch.where(ay < tg22x, horizontal, torch.where(ay > tg67x, vertical, diagonal)) & (mag > low)
    edges = peak & (mag > high)
    candidates = peak.float()
    while True:  # grow the strong edges along the candidates, 8 steps between checks
        grown = edges.float()
        for _ in range(8):
            grown = F.max_pool2d(grown, 3, 1, 1).mul_(candidates)
        grown = grown > 0
        if torch.equal(grown, edges):
            return edges
        edges = grown


_CHAMFER = ((1.0, ((-1, 0), (1, 0), (0, -1), (0, 1))), (1.4, ((-1, -1), (-1, 1), (1, -1), (1, 1))),
            (2.1969, ((-2, -1), (-2, 1), (2, -1), (2, 1), (-1, -2), (1, -2), (-1, 2), (1, 2))))
# OpenCV's 5x5 mask for DIST_L2: 1 for the 4 neighbours, 1.4 for the diagonals, 2.1969 for the knight moves


def _distance_to(edges: torch.Tensor, cap: float) -> torch.Tensor:
    """OpenCV's distanceTransform(DIST_L2, 5) to the nearest edge pixel, capped at ``cap``: the chamfer distance,
    found by relaxing every pixel against its 16 mask neighbours; every step adds at least 1, so ``ceil(cap)``
    rounds settle every distance below the cap."""
    d = torch.where(edges, 0.0, float(cap)).float()  # a distance at the cap stays there: no need for infinity
    h, w = d.shape[-2:]
    for _ in range(math.ceil(cap)):
        p = F.pad(d, (2, 2, 2, 2), value=float(cap))
        for weight, offsets in _CHAMFER:
            nearest = None
            for dr, dc in offsets:
                window = p[..., 2 + dr:2 + dr + h, 2 + dc:2 + dc + w]
                nearest = window.clone() if nearest is None else torch.minimum(nearest, window, out=nearest)
            torch.minimum(d, nearest.add_(weight), out=d)
    return d.double()


def _equalize_hist(levels: torch.Tensor) -> torch.Tensor:
    """OpenCV's equalizeHist, per image, of 8-bit levels [N, 1, H, W] (float integers)."""
    n = levels.shape[0]
    flat = levels.reshape(n, -1).long()
    hist = torch.zeros(n, 256, dtype=torch.float64, device=levels.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float64))
    first = (hist > 0).double().argmax(1, keepdim=True)
    total = flat.shape[1]
    below = torch.arange(256, device=levels.device).view(1, -1) <= first
    cumulative = torch.where(below, torch.zeros_like(hist), hist).cumsum(1)
    first_count = hist.gather(1, first)
    scale = 255.0 / (total - first_count).clamp(min=1)
    lut = torch.round(cumulative * scale).clamp_(0, 255)  # cvRound: half to even, as torch.round
    lut = torch.where(first_count == total, first.double().expand(-1, 256), lut)
    return lut.gather(1, flat).view_as(levels)


def _spatter(x: torch.Tensor, severity: int, liquid: torch.Tensor) -> torch.Tensor:
    _, _, sigma, threshold, strength, mud = _SPATTER[severity - 1]
    liquid = _gaussian_blur(liquid.to(x.dtype), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mud:
        mask = _gaussian_blur((liquid > threshold).to(x.dtype), strength)
        mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
        colour = torch.tensor([63, 42, 20], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255 * mask
        return (x * (1 - mask) + colour).clamp_(0, 1) * 255
    # Water: the outline of the drops (Canny), the distance to it (capped at 20), box-blurred, equalised, embossed
    # and blurred again, as make_imagenet_c.py does with OpenCV, weighting the drops' own intensity.
    drops = liquid.mul(255).floor_().clamp_(0, 255)  # (liquid * 255).astype(np.uint8)
    dist = _distance_to(_canny(drops.double()), 20.0).to(x.dtype)
    dist = _correlate3(dist, [[1 / 9] * 3] * 3, "mirror").add_(_FLOOR_SLACK).floor_()  # cv2.blur, then uint8
    dist = _equalize_hist(dist)
    dist = _correlate3(dist, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "mirror").clamp_(0, 255)  # filter2D to uint8
    dist = _correlate3(dist, [[1 / 9] * 3] * 3, "mirror")
    m = drops * dist
    m = m / m.amax((2, 3), keepdim=True).clamp(min=1e-12) * strength
    colour = torch.tensor([175, 238, 238], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255
    return (x + m * colour).clamp_(0, 1) * 255


_OPS: dict[str, _Op] = {
    "brightness": _Op(_brightness, float64=True),
    "saturate": _Op(_saturate, float64=True),
    "contrast": _Op(_contrast),
    "gaussian_noise": _Op(_gaussian_noise, _draw_normal),
    "gaussian_blur": _Op(_gaussian_blur_corruption),
    "defocus_blur": _Op(_defocus_blur),
    "zoom_blur": _Op(_zoom_blur),
    "pixelate": _Op(_pixelate),
    "jpeg_compression": _Op(_jpeg_compression),
    "shot_noise": _Op(_shot_noise, _draw_uniform),
    "impulse_noise": _Op(_impulse_noise, _draw_impulse),
    "speckle_noise": _Op(_speckle_noise, _draw_normal),
    "glass_blur": _Op(_glass_blur, _draw_glass),
    "motion_blur": _Op(_motion_blur, _draw_angle(-45, 45)),
    "snow": _Op(_snow, _draw_snow),
    "frost": _Op(_frost, _draw_frost),
    "fog": _Op(_fog, _draw_plasma),
    "elastic_transform": _Op(_elastic_transform, _draw_elastic),
    "spatter": _Op(_spatter, _draw_liquid),
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
    if (generators is None or isinstance(generators, torch.Generator) or len(generators) != n
            or not all(isinstance(g, torch.Generator) for g in generators)):
        got = ("none" if generators is None else "one torch.Generator, not a sequence"
               if isinstance(generators, torch.Generator)
               else f"{len(generators)} of types {sorted({type(g).__name__ for g in generators})}")
        raise ValueError(f"Expected one CPU torch.Generator per image ({n}) for the stochastic corruption "
                         f"{corruption}, but got {got}. Pass generators=[torch.Generator().manual_seed(s) for s in "
                         f"seeds].")
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
