"""Text: the one place numbers, lists and the random-weights mark are written for people, and the one place
text from names and files is escaped for the markdown and LaTeX the suite generates.

Imports nothing else from the package, so the transforms, the models and the reports all use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["latex_escape", "listing", "markdown_cell", "number", "positional", "random_init_tag", "random_init_title",
           "random_weights_banner", "random_weights_mark", "significant"]


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


# Markdown: characters that start inline markup. "|" would split a table row, "<" opens HTML and "<!--" a
# comment that hides the rest of the page, "&" an entity; the others emphasis, code, math and strikethrough.
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_BACKSLASHED = set("\\|`*~$")
_MD_NEWLINE = re.compile(r"\r\n|[\r\n]")
_ENTITY = re.compile(r"&#?[A-Za-z0-9]+;")


def markdown_cell(text: Any) -> str:
    """``text`` as the literal content of a markdown table cell (GitHub flavour), also fit for headings.

    Newlines become spaces (a newline would end the row), ``|`` is ``\\|`` (it would split the row),
    ``< >`` are entities (no HTML, no ``<!--`` comment hiding the rest of the page), as is ``&`` where it
    would start one (``&lt;`` shows as typed), and the characters of
    inline markup are backslash-escaped: ``\\ ` * ~ $``, ``](`` (a link), and ``_`` unless it sits between
    letters or digits, where it never marks emphasis (so ``resnet50_ibn_a`` stays readable).

    Example:
        >>> markdown_cell("resnet50_ibn_a")
        'resnet50_ibn_a'
        >>> print(markdown_cell("<img onerror=x> | <!-- [a](b) *c* _d_"))
        &lt;img onerror=x&gt; \\| &lt;!-- [a]\\(b) \\*c\\* \\_d\\_
    """
    text = _MD_NEWLINE.sub(" ", str(text)).replace("\0", "\ufffd")
    out = []
    for i, char in enumerate(text):
        if char in "<>" or (char == "&" and _ENTITY.match(text, i)):  # a lone "&" (a&d) shows as itself
            out.append(_MD_ENTITIES[char])
        elif char in _MD_BACKSLASHED or (char == "(" and i and text[i - 1] == "]"):
            out.append("\\" + char)
        elif char == "_" and not _inert_underscore(text, i):
            out.append("\\_")
        else:
            out.append(char)
    return "".join(out)


def _inert_underscore(text: str, i: int) -> bool:
    """Whether the run of ``_`` holding ``text[i]`` lies between ASCII letters or digits: it cannot open or close
    emphasis there (CommonMark's flanking rules), so escaping it would only clutter names like ``a_b``."""
    start, end = i, i
    while start > 0 and text[start - 1] == "_":
        start -= 1
    while end < len(text) - 1 and text[end + 1] == "_":
        end += 1
    before = text[start - 1] if start > 0 else ""
    after = text[end + 1] if end + 1 < len(text) else ""
    return before.isascii() and before.isalnum() and after.isascii() and after.isalnum()


# LaTeX: every character that is special in text mode (or, for < > |, prints another glyph in the default
# font encoding), and the multiplication sign the display labels use (std×1.5).
_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
          "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
          ">": r"\textgreater{}", "|": r"\textbar{}", "×": r"$\times$", "\r": " ", "\n": " "}
_LATEX_SPECIAL = re.compile("|".join(map(re.escape, _LATEX)))


def latex_escape(text: Any) -> str:
    """``text`` as literal LaTeX text: ``\\ { } $ & % # _ ^ ~ < > |`` escaped, ``×`` as ``$\\times$``, newlines
    as spaces (a blank line would end a table cell's paragraph). One pass, so no escape is escaped again.

    Example:
        >>> print(latex_escape("std×1.5 & 50% of a_b {x}"))
        std$\\times$1.5 \\& 50\\% of a\\_b \\{x\\}
    """
    return _LATEX_SPECIAL.sub(lambda m: _LATEX[m.group()], str(text))
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

