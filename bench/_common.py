"""What every benchmark here shares: the shared sample images as small ImageFolder trees, progress lines on
stderr, the machine line, and the closing table of each measured figure next to its target."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SAMPLE_VAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-sample" / "val"
_START = time.perf_counter()


def sample_tree(n: int, dest: Path) -> Path:
    """An ImageFolder tree at ``dest`` with the first ``n`` shared class folders (symlinks, one image each)."""
    if not SAMPLE_VAL.is_dir():
        raise SystemExit(f"Expected the shared sample images at {SAMPLE_VAL} (../shared/data beside the project).")
    for class_dir in sorted(SAMPLE_VAL.iterdir())[:n]:
        (dest / class_dir.name).mkdir(parents=True)
        for image in class_dir.iterdir():
            (dest / class_dir.name / image.name).symlink_to(image)
    return dest


def progress(message: str) -> None:
    """``[  12.3 s] message`` on stderr: what the benchmark is doing now (results go to stdout)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, the device's queued work included (CUDA is synchronized around it)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def machine() -> str:
    """The CPU the figures were measured on: its model name, cores, torch threads and whether it has native
    bf16 (``bf16 --precision`` is emulated, and slower than fp32, without it)."""
    import torch

    from robustbench_ibn.env import cpu_has_native_bf16

    name = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    bf16 = {True: "native bf16", False: "no native bf16", None: "bf16 support unknown"}[cpu_has_native_bf16()]
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{name}, {os.cpu_count()} cores, {bf16} (torch CPU capability {torch.backends.cpu.get_cpu_capability()}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads{load}")


def targets_table(rows: Sequence[tuple[str, str, str | None, bool | None]]) -> str:
    """The closing summary: ``(figure, measured, target, met)`` rows; a figure without a target is a measurement
    (``target`` and ``met`` None).

    Example:
        >>> print(targets_table([("throughput", "1.39x", ">= 1.5x", False), ("cache speed-up", "97x", None, None)]))
        figure          measured  target   met
        throughput      1.39x     >= 1.5x  NOT MET
        cache speed-up  97x       -        (no target)
    """
    cells = [("figure", "measured", "target", "met")]
    cells += [(f, m, t or "-", "(no target)" if ok is None else "met" if ok else "NOT MET") for f, m, t, ok in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in cells)
