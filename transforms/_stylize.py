"""What the network style shifts (the CycleGAN generators, AdaIN) share.

* :func:`check_layout`: a checkpoint's state_dict against a network's, every missing, unexpected and mis-shaped
  key listed at once (a strict load that explains itself).
* :func:`check_finite_output`: a network's float output checked for NaN and Inf before it becomes 8 bits (which
  would turn them into black pixels, cached).
* :func:`pad_to_multiple`: centred reflection padding to a network's total stride, so that its output can be
  cropped back to the input's size and position.
* :func:`crop_keys` and :func:`cached_apply`: a batch's stylization read from a
  :class:`~robustbench_ibn.stylecache.StyleCache` where present, the misses computed and stored.
* :func:`progress_bar`: the per-batch bar of a slow network on stderr.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..stylecache import StyleCache, content_key
from ..text import listing
from ._base import TransformError

__all__ = ["cached_apply", "check_finite_output", "check_layout", "crop_keys", "pad_to_multiple", "progress_bar"]


def check_layout(
    state: Mapping[str, Any], model: nn.Module, path: str | os.PathLike[str], what: str, expected: str
) -> None:
    """Raise :class:`TransformError` unless ``state`` has exactly ``model``'s keys and shapes.

    ``what`` names the network in the message (``"the AdaIN decoder"``), ``expected`` says which file fits and
    how to recognise it. ``model`` may live on the ``meta`` device: only its keys and shapes are read.
    """
    reference = model.state_dict()
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    misshaped = [f"{k} expected {list(reference[k].shape)} got {list(v.shape)}" for k, v in state.items()
                 if k in reference and isinstance(v, torch.Tensor) and v.shape != reference[k].shape]
    if not (missing or unexpected or misshaped):
        return
    lines = [f"{path} does not fit {what}: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(misshaped)} mis-shaped key(s)."]
    for kind, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if keys:
            lines.append(f"  {kind}: {listing(keys, most=8)}")
    lines.append(expected)
    raise TransformError("\n".join(lines))


def check_finite_output(output: torch.Tensor, what: str) -> None:
    """Raise :class:`TransformError` when a network's float output holds NaN or Inf, before it becomes 8 bits.

    Rounding to 8 bits would hide it (NaN becomes 0: a black image), and the cache would keep it. ``what`` names
    the network (``"the AdaIN decoder"``).

    Example:
        >>> check_finite_output(torch.tensor([[0.5, float("nan")]]), "the decoder")
        Traceback (most recent call last):
        ...
        robustbench_ibn.transforms._base.TransformError: Expected the decoder to output finite values, but got NaN or Inf for 1 of 1 images (they would become black 8-bit images). Check its weights file (a damaged or diverged checkpoint); nothing of this batch was cached.
    """
    if torch.isfinite(output.sum()):  # NaN or Inf anywhere makes the sum non-finite: one cheap reduction
        return
    bad = int((~torch.isfinite(output.flatten(1))).any(dim=1).sum())
    if bad:
        raise TransformError(f"Expected {what} to output finite values, but got NaN or Inf for {bad} of "
                             f"{output.shape[0]} images (they would become black 8-bit images). Check its weights "
                             "file (a damaged or diverged checkpoint); nothing of this batch was cached.")


def pad_to_multiple(
    x: torch.Tensor, multiple: int, minimum: int
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Reflection-pad H and W, centred, to a multiple of ``multiple`` (at least ``minimum``).

    Returns the padded batch and ``(left, right, top, bottom)``. The caller checks the input is large enough
    for reflection (each side's padding must be smaller than the side).
    """
    h, w = x.shape[-2:]
    ph, pw = max(minimum, -(-h // multiple) * multiple) - h, max(minimum, -(-w // multiple) * multiple) - w
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(x, pads, mode="reflect") if ph or pw else x), pads


def crop_keys(images: torch.Tensor) -> list[str]:
    """:func:`~robustbench_ibn.stylecache.content_key` of every image of a float batch.

    The runner's crops are 8-bit values divided by 255, so their bytes are hashed; any other input hashes its
    float32 values, so two inputs share a key only if they are identical.
    """
    cpu = images.detach().float().cpu()
    as_bytes = (cpu * 255).round_().clamp_(0, 255)
    pixels = as_bytes.to(torch.uint8).numpy() if torch.equal(as_bytes / 255, cpu) else cpu.numpy()
    return [content_key(p) for p in pixels]


def cached_apply(
    cache: StyleCache, images: torch.Tensor, entry_keys: Sequence[str],
    compute: Callable[[list[int]], torch.Tensor], notes: Sequence[str],
) -> tuple[torch.Tensor, int]:
    """The uint8 stylization of a batch, entries read from ``cache`` where present.

    ``entry_keys[i]`` identifies image i's output exactly; ``compute(indices)`` returns the uint8
    ``[len(indices), 3, H, W]`` outputs of the missing images, which are then stored (``notes[i]``, e.g. the
    image path, is kept inside the entry). Returns the batch on the CPU and the number of cache hits.
    """
    height, width = images.shape[-2:]
    out = torch.empty(images.shape, dtype=torch.uint8)
    misses = []
    for i, key in enumerate(entry_keys):
        cached = cache.get(key, height, width)
        if cached is None:
            misses.append(i)
        else:
            out[i] = torch.from_numpy(cached).permute(2, 0, 1)
    if misses:
        fresh = compute(misses).cpu()
        for j, i in enumerate(misses):
            out[i] = fresh[j]
            cache.put(entry_keys[i], fresh[j].permute(1, 2, 0).numpy(), source=notes[i])
    return out, len(entry_keys) - len(misses)


def progress_bar(label: str, total: int, enabled: bool) -> tqdm:
    """A bar below the run's own (position 1) that shows an ETA once an image is done; off for single images."""
    return tqdm(total=total, desc=f"{label}: generating", unit="img", leave=False, position=1, dynamic_ncols=True,
                mininterval=0, disable=not enabled or total < 2)
