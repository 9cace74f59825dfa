"""The machine a run uses: device resolution and the environment record every result carries."""

from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["RUN_DEVICE_TYPES", "device_name", "resolve_device", "software_versions"]


RUN_DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The torch device types a run computes on (``meta`` holds no data; ``xpu``, ``hpu``, ... are not supported here)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for a device torch does not have is an error, never a fallback.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("meta")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Expected --device to be auto, cpu, cuda, cuda:N or mps, but got 'meta': a run cannot compute on ...
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = "Expected --device to be auto, cpu, cuda, cuda:N or mps"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch: "Invalid device string"
        raise ValueError(f"{accepted}, but got {str(device)!r}.") from None
    if dev.type not in RUN_DEVICE_TYPES:
        raise ValueError(f"{accepted}, but got {str(device)!r}: a run cannot compute on {dev.type!r} "
                         "devices.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("Expected a CUDA device for --device cuda, but torch sees none. Use --device cpu.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise RuntimeError(f"Expected --device {dev} to name one of the {count} CUDA devices torch sees "
                               f"(cuda:0..cuda:{count - 1}), but got index {dev.index}.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("Expected an MPS device for --device mps, but torch sees none. Use --device cpu.")
    return dev


def device_name(device: torch.device) -> str:
    """What a record says of the device: the GPU's name, or ``cpu (<processor>)``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


def software_versions() -> dict[str, str]:
    """The versions that can change a number: this package, torch, torchvision, Python."""
    import torchvision

    from . import __version__

    return {
        "robustbench_ibn": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def environment_record(device: torch.device, **extra: Any) -> dict[str, Any]:
    """``device`` and ``versions`` (plus ``extra`` fields): the environment part of every record."""
    return {"device": device_name(device), **extra, "versions": software_versions()}
