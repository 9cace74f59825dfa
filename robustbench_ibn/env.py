"""The machine a run uses: device resolution and the environment record every result carries."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from .options import option

__all__ = ["BF16_FLAGS", "RUN_DEVICE_TYPES", "bf16_note", "cpu_has_native_bf16", "device_name", "resolve_device",
           "software_versions"]

RUN_DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The torch device types a run computes on (``meta`` holds no data; ``xpu``, ``hpu``, ... are not supported here)."""

CPUINFO = Path("/proc/cpuinfo")
# CPU flags of native bf16 arithmetic: x86 AVX-512 BF16 or AMX (Linux "flags"), Arm BF16 (Linux "Features").
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for a device torch does not have is an error, never a fallback.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("meta")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Expected device= to be auto, cpu, cuda, cuda:N or mps, but got 'meta': a run cannot compute on ...
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    accepted = f"Expected {option('device')} to be auto, cpu, cuda, cuda:N or mps"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):  # torch: "Invalid device string"
        raise ValueError(f"{accepted}, but got {str(device)!r}.") from None
    if dev.type not in RUN_DEVICE_TYPES:
        raise ValueError(f"{accepted}, but got {str(device)!r}: a run cannot compute on {dev.type!r} "
                         "devices.")
    cpu = option("device", "cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"Expected a CUDA device for {option('device', str(device))}, but torch sees none. "
                               f"Use {cpu}.")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise RuntimeError(f"Expected {option('device', str(dev))} to name one of the {count} CUDA devices torch "
                               f"sees (cuda:0..cuda:{count - 1}), but got index {dev.index}.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"Expected an MPS device for {option('device', 'mps')}, but torch sees none. Use {cpu}.")
    return dev


def cpu_has_native_bf16() -> bool | None:
    """Whether the CPU computes bf16 natively (one of :data:`BF16_FLAGS` in ``/proc/cpuinfo``); ``None`` when that
    cannot be told (not Linux). torch's ``get_cpu_capability()`` says ``AVX512`` for CPUs with and without it.

    Example:
        >>> cpu_has_native_bf16() in (True, False, None)
        True
    """
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = {flag for line in text.splitlines() if line.split(":", 1)[0].strip() in ("flags", "Features")
             for flag in line.split(":", 1)[-1].split()}
    return bool(flags & set(BF16_FLAGS))


def bf16_note(precision: str, device: torch.device) -> str | None:
    """The warning for bf16 on a CPU without native bf16 (emulated: slower than fp32), else ``None``."""
    if precision != "bf16" or device.type != "cpu" or cpu_has_native_bf16() is not False:
        return None
    return (f"{option('precision', 'bf16')} on a CPU without native bf16 (no {' or '.join(BF16_FLAGS[:2])} in "
            f"{CPUINFO}): bf16 is emulated there and usually slower than fp32 (4x slower on an AVX2-only CPU in "
            f"bench/bench_eval.py), and it changes predictions. Use {option('precision', 'fp32')} unless you have "
            "measured otherwise.")


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
