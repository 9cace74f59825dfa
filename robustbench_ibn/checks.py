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

__all__ = ["MAX_SEED", "check_finite", "is_hex", "is_iso_date", "nonfinite_fields"]

MAX_SEED = 2**63 - 1
"""Seeds (``--seed``, ``--ci-seed``) are integers in ``0..MAX_SEED``: what torch.manual_seed and numpy's generators
both take (numpy refuses negative seeds, torch those beyond 64 bits)."""

# ISO 8601 as the suite writes and quotes dates: a year, a year and month, a date, or a date and time (with
# seconds, fractions and a UTC offset optional). Reported entries give "2018" for a paper's year.
_ISO_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?)?)?")


def nonfinite_fields(obj: Any) -> list[str]:
    """Where ``obj`` (nested dicts and lists, as from JSON) holds NaN or an infinity: ``results[2].top1_drop``.

    Example:
        >>> nonfinite_fields({"results": [{"top1": 1.0}, {"top1": float("nan")}], "n": float("inf")})
        ['results[1].top1', 'n']
    """
    return [where for where, _ in _nonfinite(obj)]


def _nonfinite(obj: Any) -> list[tuple[str, float]]:
    # Iterative, so a deeply nested value cannot exhaust the stack.
    found = []
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append((where or "the value", value))
        elif isinstance(value, dict):
            stack += [(f"{where}.{key}" if where else str(key), item) for key, item in reversed(value.items())]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{where}[{i}]", item) for i, item in reversed(list(enumerate(value)))]
    return found


def check_finite(obj: Any, where: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming the first NaN/Inf field of ``obj`` (and how many more); ``where`` names the file.

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
        raise error(f"Expected finite numbers in {where}, but {first} is {value!r}{more}. Fix or re-create the file.")


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
