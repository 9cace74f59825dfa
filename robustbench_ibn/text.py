"""Text: the one place numbers, lists and the random-weights mark are written for people.

Imports nothing else from the package, so the transforms, the models and the reports all use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["listing", "number", "positional", "random_init_tag", "random_init_title", "random_weights_banner",
           "random_weights_mark", "significant"]


def number(value: float) -> str:
    """A parameter as a label shows it: shortest form (``%g``), ``50`` not ``50.0``.

    Example:
        >>> number(50.0), number(1.5), number(0.25)
        ('50', '1.5', '0.25')
    """
    return f"{value:g}"


def positional(value: float) -> str:
    """A number in positional notation, never an exponent (registry names do not accept ``1e-05``).

    Example:
        >>> positional(1e-5), positional(80.0), positional(0)
        ('0.00001', '80', '0')
    """
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def significant(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits, ``-`` for a missing value (None or NaN).

    Example:
        >>> significant(3.14159), significant(float("nan"))
        ('3.142', '-')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def listing(items: Iterable[Any], most: int = 10) -> str:
    """``a, b, c, ... and 7 more``: the first ``most`` items of a list for an error message.

    Example:
        >>> listing(["a", "b", "c", "d"], most=2)
        'a, b, ... and 2 more'
    """
    items = [str(i) for i in items]
    shown = ", ".join(items[:most])
    return shown + (f", ... and {len(items) - most} more" if len(items) > most else "")


def random_weights_mark(seed: int | None, *, what: str = "numbers are meaningless as accuracy") -> str:
    """The loud mark every output made with random-init weights carries (headers, records, plots).

    Example:
        >>> random_weights_mark(0)
        'RANDOM INIT (seed 0) - not pretrained; numbers are meaningless as accuracy'
    """
    return f"RANDOM INIT (seed {seed}) - not pretrained; {what}"


def random_weights_banner(seed: int | None, *, what: str = "numbers are meaningless as accuracy") -> str:
    """:func:`random_weights_mark` as a report header shows it, impossible to overlook.

    Example:
        >>> random_weights_banner(0)
        '!!! RANDOM INIT (seed 0) - not pretrained; numbers are meaningless as accuracy !!!'
    """
    return f"!!! {random_weights_mark(seed, what=what)} !!!"


def random_init_tag(*, calibrated: bool = False) -> str:
    """What a table column or a plot legend adds to the name of a random-init model.

    Example:
        >>> "resnet50" + random_init_tag(), "resnet50" + random_init_tag(calibrated=True)
        ('resnet50 (random init)', 'resnet50 (random init, calibrated)')
    """
    return " (random init, calibrated)" if calibrated else " (random init)"


def random_init_title(what: str = "") -> str:
    """What a figure's title adds when a random-init model is in it.

    Example:
        >>> random_init_title("not accuracy")
        ' (RANDOM-INIT weights: not accuracy)'
    """
    return f" (RANDOM-INIT weights{': ' + what if what else ''})"

