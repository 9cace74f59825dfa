"""The machine a run uses: device resolution and the environment record every result carries."""

from __future__ import annotations

import platform
from typing import Any

import torch

__all__ = ["device_name", "resolve_device", "software_versions"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without it is an error, never a fallback.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch: "Invalid device string"
        raise ValueError(f"Expected --device to be auto, cpu, cuda or cuda:N (or another torch device type such as "
                         f"mps), but got {str(device)!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("Expected a CUDA device for --device cuda, but torch sees none. Use --device cpu.")
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
