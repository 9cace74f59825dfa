"""The options the library and the command line share, importable without torch: the choices they accept, and
how a message names one, as a flag on the command line (``--weights``) or a keyword in Python (``weights=``).

One message serves both: the library builds it with :func:`option`, which names the argument as the caller
wrote it. The console scripts run their work inside :func:`command_line`; everything else is Python.

Example:
    >>> f"pass {option('weights', 'random')} for a random init"
    "pass weights='random' for a random init"
    >>> with command_line():
    ...     f"pass {option('weights', 'random')} for a random init"
    'pass --weights random for a random init'
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["BAD_IMAGE_POLICIES", "DIVERGENCE_EPS", "FLAGS", "MAX_N_BOOT", "PLOT_KINDS", "PLOT_SUFFIXES", "PRECISIONS",
           "REPORT_FORMATS", "command_line", "on_command_line", "option"]

PRECISIONS = ("fp32", "bf16", "fp16")
BAD_IMAGE_POLICIES = ("error", "skip")
REPORT_FORMATS = ("markdown", "latex", "csv", "json")
PLOT_KINDS = ("auto", "curves", "bars", "field")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
# At most this many resamples: 100,000 give percentile intervals stable to about 0.01 points, and already draw
# 5e9 indices for 50,000 images (minutes per domain); more only waits (100,000,000 would run for days).
MAX_N_BOOT = 100_000
DIVERGENCE_EPS = 1e-8
"""Added to both domains' per-channel variances (squared feature units) so constant channels stay finite."""

# Python keyword (of evaluate, feature_divergence, create_model, ...) -> the flag that sets it.
FLAGS = {
    "batch_size": "--batch-size",
    "calibrate": "--calibrate",
    "data": "--data",
    "device": "--device",
    "labels_file": "--labels",
    "layers": "--layers",
    "limit": "--limit",
    "model_kwargs": "--model-kwargs",
    "on_bad_image": "--on-bad-image",
    "plugins": "--plugin",
    "precision": "--precision",
    "state_dir": "--state-dir",
    "style_dir": "--style-dir",
    "transform_weights": "--transform-weights",
    "transforms": "--transforms",
    "weights": "--weights",
}

_INTERFACE: ContextVar[str] = ContextVar("robustbench_ibn_interface", default="python")
_PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # PATH, DIR, N: written as is in both wordings


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Messages raised inside name flags (``--weights``), not Python keywords (``weights=``)."""
    token = _INTERFACE.set("command line")
    try:
        yield
    finally:
        _INTERFACE.reset(token)


def on_command_line() -> bool:
    """Whether the current work runs for a console script (inside :func:`command_line`)."""
    return _INTERFACE.get() == "command line"


def option(name: str, value: Any = None) -> str:
    """How a message names argument ``name`` (a Python keyword, see :data:`FLAGS`), with an optional value.

    ``value`` is written as typed on the command line and as a Python literal otherwise; an upper-case
    placeholder (``PATH``) stays as it is; a ``(key, value)`` pair is a mapping entry (``--transform-weights
    monet=PATH``, ``transform_weights={'monet': PATH}``).

    Example:
        >>> option("labels_file"), option("transform_weights", ("monet", "style_monet.pth"))
        ('labels_file=', "transform_weights={'monet': 'style_monet.pth'}")
        >>> with command_line():
        ...     option("labels_file"), option("transform_weights", ("monet", "PATH")), option("weights", "PATH")
        ('--labels', '--transform-weights monet=PATH', '--weights PATH')
    """
    if name not in FLAGS:
        raise KeyError(f"Expected an argument named in robustbench_ibn.options.FLAGS, but got {name!r}.")
    if on_command_line():
        if value is None:
            return FLAGS[name]
        return f"{FLAGS[name]} {'='.join(map(str, value)) if isinstance(value, tuple) else value}"
    if value is None:
        return f"{name}="

    def literal(v: Any) -> str:
        return v if isinstance(v, str) and _PLACEHOLDER.fullmatch(v) else repr(v)

    if isinstance(value, tuple):
        key, item = value
        return f"{name}={{{key!r}: {literal(item)}}}"
    return f"{name}={literal(value)}"
