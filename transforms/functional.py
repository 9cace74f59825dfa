"""Pure functional forms of the photometric shifts: float [B, 3, H, W] in [0, 1] -> same."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["add_channel_offset", "scale_contrast_about"]


def add_channel_offset(images: torch.Tensor, offset: Sequence[float], clip: bool = True) -> torch.Tensor:
    """Add a per-channel offset (on the [0, 1] scale) and clip to [0, 1].

    Table 1's RGB+50 is ``offset=(50/255,) * 3``; R+50 is ``(50/255, 0, 0)``.

    Example:
        >>> add_channel_offset(torch.full((1, 3, 1, 1), 0.875), (0.25, 0.0, -1.0)).flatten().tolist()
        [1.0, 0.875, 0.0]
    """
    shift = torch.as_tensor(offset, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    out = images + shift
    return out.clamp_(0.0, 1.0) if clip else out


def scale_contrast_about(images: torch.Tensor, factor: float, center: Sequence[float]) -> torch.Tensor:
    """Scale each pixel's deviation from ``center`` (per channel) by ``factor``; no clipping.

    With ``center`` the ImageNet mean, a model normalized with that mean sees its normalized input multiplied by
    ``factor``: Table 1's std×1.5.

    Example:
        >>> scale_contrast_about(torch.full((1, 3, 1, 1), 0.75), 1.5, (0.5, 0.5, 0.5)).flatten().tolist()
        [0.875, 0.875, 0.875]
    """
    c = torch.as_tensor(center, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    # x + (f - 1)(x - c) rather than c + f(x - c): the same value, but factor 1 is exactly the identity.
    return images + (images - c).mul_(factor - 1.0)
