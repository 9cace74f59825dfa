"""Properties (hypothesis) of the text that leaves the suite: file names made from names, markdown table cells
and LaTeX text. Each holds for any string, so no name, label, date or fingerprint can write outside its folder,
split a table, open HTML or a comment, or leave a LaTeX special character unescaped."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robustbench_ibn.files import safe_filename
from robustbench_ibn.text import latex_escape, markdown_cell

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Any text, and text made of the characters that matter to paths, markdown and LaTeX.
ANY = st.text(max_size=80)
SPECIAL = st.text(alphabet="./\\:|<>!-_*`~$&#;[](){}^%×\n\r\t \0aZ0é", max_size=40)
TEXT = st.one_of(ANY, SPECIAL)


# -- file names -------------------------------------------------------------------------------------------------
@PROPERTY
@given(TEXT)
@example("..")
@example("../../etc/passwd")
@example("hub:/dir:entry")
@example("a" * 1000)
@example("\u202e")  # right-to-left override: not kept
def test_any_name_becomes_one_safe_path_component(name: str) -> None:
    file = safe_filename(name, ".json")
    assert re.fullmatch(r"[A-Za-z0-9+][A-Za-z0-9._+-]*\.json", file), file  # never hidden, never an option
    assert len(file.encode()) <= 255 and file not in (".", "..")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file
        assert path.parent == Path(tmp) and path.resolve().parent == Path(tmp).resolve()
        path.write_text("x")  # a file the file system accepts
    assert safe_filename(name, ".json") == file  # stable


@PROPERTY
@given(TEXT, TEXT)
@example("a/b", "a_b")
@example("A", "a")  # case-insensitive file systems
@example("x" * 200 + "1", "x" * 200 + "2")  # same readable part after truncation
def test_distinct_names_get_distinct_files(a: str, b: str) -> None:
    if a != b:
        assert safe_filename(a).lower() != safe_filename(b).lower()


def test_file_names_are_stable_across_versions():
    # Entries already saved must keep their names: this is the function's contract, not an implementation detail.
    assert safe_filename("resnet50_ibn_a", ".json") == "resnet50_ibn_a-42963ea18e.json"


# -- markdown cells ----------------------------------------------------------------------------------------------
def markdown_tokens(cell: str) -> list[str]:
    """The cell as a markdown reader sees it: backslash escapes, entities and single characters."""
    return re.findall(r"\\[!-/:-@\[-`{-~]|&(?:lt|gt|amp);|.", cell, flags=re.DOTALL)


def markdown_text(cell: str) -> str:
    entities = {"&lt;": "<", "&gt;": ">", "&amp;": "&"}
    return "".join(entities.get(t, t[1:] if len(t) == 2 and t[0] == "\\" else t) for t in markdown_tokens(cell))


@PROPERTY
@given(TEXT)
@example("a | b")
@example("<!-- hide the rest")
@example("<img src=x onerror=alert(1)>")
@example("\\|")  # an escaped pipe in the input must not become an unescaped one
@example("[x](javascript:alert(1))")
@example("a&lt;b")
@example("_a_ __b__ x_y")
def test_any_text_is_one_literal_table_cell(text: str) -> None:
    cell = markdown_cell(text)
    assert "\n" not in cell and "\r" not in cell  # cannot end the row
    tokens = markdown_tokens(cell)
    assert "|" not in tokens  # every pipe escaped: cannot split the row
    assert "<" not in cell and ">" not in cell  # cannot open HTML, a comment or an autolink
    assert not {"`", "*", "~", "$", "\\"} & set(tokens)  # no code span, emphasis, strikethrough, math, stray escape
    assert "](" not in "".join(t if len(t) == 1 else "_" for t in tokens)  # no inline link
    assert markdown_text(cell) == re.sub(r"\r\n|[\r\n]", " ", text).replace("\0", "\ufffd")  # shows what was given
    row = f"| {cell} | next |"
    assert len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) == 2


# -- LaTeX -------------------------------------------------------------------------------------------------------
LATEX_ESCAPES = {r"\textbackslash{}": "\\", r"\{": "{", r"\}": "}", r"\$": "$", r"\&": "&", r"\%": "%", r"\#": "#",
                 r"\_": "_", r"\textasciicircum{}": "^", r"\textasciitilde{}": "~", r"\textless{}": "<",
                 r"\textgreater{}": ">", r"\textbar{}": "|", r"$\times$": "×"}
LATEX_TOKEN = re.compile("|".join(map(re.escape, sorted(LATEX_ESCAPES, key=len, reverse=True))) + "|.", re.DOTALL)


@PROPERTY
@given(TEXT)
@example("std×1.5 & 50% of a_b {x} #1 $y$ ^~ \\")
@example("\\textbackslash{}")  # already escaped-looking input is escaped again, not trusted
def test_latex_output_has_no_unescaped_special_character(text: str) -> None:
    out = latex_escape(text)
    tokens = LATEX_TOKEN.findall(out)
    plain = [t for t in tokens if t not in LATEX_ESCAPES]
    assert not set("\\{}$&%#_^~<>|×\n\r") & set(plain), (text, out)
    assert "".join(LATEX_ESCAPES.get(t, t) for t in tokens) == re.sub(r"[\r\n]", " ", text)  # nothing lost
