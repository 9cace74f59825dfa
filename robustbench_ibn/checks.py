"""Format checks shared by every reader of untrusted JSON (result records, leaderboard entries).

A value that passes the type checks can still be wrong in a way that silently changes what is shown:
a NaN drop sorts anywhere and scrambles a ranking, a "date" or a "fingerprint" can carry markup into a
generated page. These checks say which field is wrong. Also the range every seed of the suite must lie in
(:data:`MAX_SEED`). Imports nothing else from the package.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

__all__ = ["MAX_SEED", "check_finite", "is_hex", "is_integer", "is_iso_date", "is_number", "nonfinite_fields"]

MAX_SEED = 2**63 - 1
"""Seeds (``--seed``, ``--ci-seed``) are integers in ``0..MAX_SEED``: what torch.manual_seed and numpy's generators
both take (numpy refuses negative seeds, torch those beyond 64 bits)."""

# ISO 8601 as the suite writes and quotes dates: a year, a year and month, a date, or a date and time (with
# seconds, fractions and a UTC offset optional). Reported entries give "2018" for a paper's year.
_ISO_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?")


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer as JSON gives one: an ``int``, never a ``bool`` (``True`` is an ``int`` to
    Python, not a count or a version to a reader).

    Example:
        >>> is_integer(3), is_integer(True), is_integer(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite number that arithmetic on floats can use: an ``int`` or ``float``, not a
    ``bool``, not NaN or an infinity, and not an integer too large for a float (``float(10**400)`` raises).

    Example:
        >>> is_number(1.5), is_number(2), is_number(True), is_number(float("nan")), is_number(10**400)
        (True, True, False, False, False)
    """
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and _shown_nonfinite(value) is None)


def _shown_nonfinite(value: Any) -> str | None:
    """How a number that no float can hold is shown in a message (None for any other value): NaN and the
    infinities as ``nan``, ``inf``; an integer beyond the float range by its size (its digits could be thousands)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            return f"an integer of {len(str(abs(value)))} digits, beyond the range of a float"
    return None


def nonfinite_fields(obj: Any) -> list[str]:
    """Where ``obj`` (nested dicts and lists, as from JSON) holds NaN, an infinity or an integer too large for a
    float (``float()`` of it raises): ``results[2].top1_drop``.

    Example:
        >>> nonfinite_fields({"results": [{"top1": 1.0}, {"top1": float("nan")}], "n": float("inf"), "k": 10**400})
        ['results[1].top1', 'n', 'k']
    """
    return [where for where, _ in _nonfinite(obj)]


def _nonfinite(obj: Any) -> list[tuple[str, str]]:
    # Iterative, so a deeply nested value cannot exhaust the stack.
    found = []
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, value = stack.pop()
        shown = _shown_nonfinite(value)
        if shown is not None:
            found.append((where or "the value", shown))
        elif isinstance(value, dict):
            stack += [(f"{where}.{key}" if where else str(key), item) for key, item in reversed(value.items())]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value)))]
    return found


def check_finite(obj: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first field of ``obj`` that no float can hold (NaN, an infinity, ``10**400``) and
    how many more; ``where`` names the file.

    Example:
        >>> check_finite({"top1_err": 1.5}, "entry.json")
        >>> check_finite({"mean_drop": {"top1": float("nan")}}, "entry.json")
        Traceback (most recent call last):
        ...
        ValueError: Expected finite numbers in entry.json, but mean_drop.top1 is nan. Fix or re-create the file.
    """
    bad = _nonfinite(obj)
    if bad:
        (first, value), rest = bad[0], [w for w, _ in bad[1:]]
        more = f" (and {len(rest)} more: {', '.join(rest[:3])}{', ...' if len(rest) > 3 else ''})" if rest else ""
        raise error(f"Expected finite numbers in {where}, but {first} is {value}{more}. Fix or re-create the file.")


def is_iso_date(text: Any) -> bool:
    """Whether ``text`` is an ISO 8601 date as entries hold them: ``2018``, ``2018-09``, ``2018-09-08`` or a
    date and time (``2026-11-20T22:22:05+00:00``), with valid months, days and times.

    Example:
        >>> is_iso_date("2018"), is_iso_date("2026-11-20T22:22:05+00:00"), is_iso_date("2018-13"), is_iso_date("<b>")
        (True, True, False, False)
    """
    if not isinstance(text, str) or not _ISO_DATE.fullmatch(text):
        return False
    if len(text) == 4:
        return True
    try:
        datetime.fromisoformat(text if len(text) > 7 else text + "-01")  # a year and month: check the month
    except ValueError:
        return False
    return True


def is_hex(text: Any, length: int | None = None) -> bool:
    """Whether ``text`` is lowercase hexadecimal (of ``length`` digits when given), as digests are written.

    Example:
        >>> is_hex("48b554f818ed5502", 16), is_hex("48B5"), is_hex("x")
        (True, False, False)
    """
    return (isinstance(text, str) and bool(re.fullmatch(r"[0-9a-f]+", text))
            and (length is None or len(text) == length))
