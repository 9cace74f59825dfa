"""What every command shares: argument types that say what they accept, and the one error handler.

Library errors (bad data, weights, shifts, plug-ins, records: all ``ValueError``, ``RuntimeError``, ``KeyError``
or ``OSError`` subclasses with a message that names the file and the way out) become ``PROG: error: message``
on stderr and exit code 2, like argparse's own usage errors; Ctrl-C becomes exit 130 with what was saved.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..options import PLOT_SUFFIXES, command_line

__all__ = ["DATA_ENV", "HelpFormatter", "add_run_arguments", "add_shift_arguments", "check_writable", "device_type",
           "int_at_least", "int_in_range", "parse_kwargs", "parse_transform_weights", "plot_file", "run_command"]

DATA_ENV = "ROBUSTBENCH_IBN_DATA"
LIBRARY_ERRORS = (ValueError, KeyError, RuntimeError, OSError)


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` shows every option's default after its help text, unless the text already says it (``default:``)
    or there is nothing to show (no value, a switch that is off, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or not action.option_strings or nothing or action.default in ([], {}):
            return text
        return f"{text} (default: %(default)s)"


def add_run_arguments(parser: argparse.ArgumentParser, *, batch_size: int, models: str) -> None:
    """``--batch-size``, ``--workers`` and ``--device``: how a script's evaluation runs, the same in every script.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_run_arguments(parser, batch_size=32, models="the model")
        >>> parser.parse_args(["--device", "cpu"]).batch_size
        32
    """
    parser.add_argument("--batch-size", type=int_at_least(1, "images per batch"), default=batch_size, metavar="N",
                        help="images per batch")
    parser.add_argument("--workers", type=int_at_least(0, "decode processes; 0 decodes in the main process"),
                        default=None, metavar="N",
                        help="decode processes, 0 decodes in the main process (default: CPU cores, at most 8)")
    parser.add_argument("--device", type=device_type, default="auto", metavar="auto|cpu|cuda|cuda:N",
                        help=f"where {models} and the shifts run; auto: CUDA when available")


def add_shift_arguments(parser: argparse.ArgumentParser, *, style_dir: str) -> None:
    """``--transform-weights`` and ``--style-dir``: the files the shifts need, the same in every script (``style_dir``
    is the help text of ``--style-dir``, which says which shifts use it there).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_shift_arguments(parser, style_dir="style images")
        >>> parser.parse_args(["--transform-weights", "monet=g.pth"]).transform_weights
        [{'monet': 'g.pth'}]
    """
    parser.add_argument("--transform-weights", type=parse_transform_weights, action="append", default=[],
                        metavar="NAME=PATH", help="weights file (or URL) of a shift that needs one, e.g. "
                        "monet=style_monet.pth; repeatable or comma-separated (default: the official file, from the "
                        "torch hub cache or downloaded)")
    parser.add_argument("--style-dir", default=None, metavar="DIR", help=style_dir)


def plot_file(text: str) -> str:
    """``--plot FILE``: a name ending in one of :data:`~robustbench_ibn.options.PLOT_SUFFIXES`, checked as it is parsed.

    Example:
        >>> plot_file("drops.svg")
        'drops.svg'
    """
    if Path(text).suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"Expected a plot file ending in one of {', '.join(PLOT_SUFFIXES)}, but got "
                                         f"{text!r}.")
    return text


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run a command's ``body`` and turn library errors into ``PROG: error: message`` (exit 2), Ctrl-C into 130.

    Inside ``body`` library messages name flags, not Python keywords (:func:`robustbench_ibn.options.option`), and
    warnings print as ``PROG: warning: message``.

    Example:
        >>> def body():
        ...     raise ValueError("Expected x, but got y.")
        >>> run_command("robust-x", body)  # prints "robust-x: error: Expected x, but got y." on stderr
        2
    """
    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        print(f"{prog}: warning: {message}", file=sys.stderr)

    try:
        with command_line(), warnings.catch_warnings():
            warnings.showwarning = show  # "robust-eval: warning: ...", not a source path and line
            return body()
    except KeyboardInterrupt as err:  # the engine's Interrupted says how many images are saved and where
        message = str(err) or ("interrupted; the batches finished so far are kept in the run state (--state-dir); "
                               "run the same command again to resume.")
        print(f"{prog}: {message}", file=sys.stderr)
        return 130
    except LIBRARY_ERRORS as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def parse_kwargs(text: str) -> dict[str, Any]:
    """``in_ratio=0.25,layers=(1,2)`` -> dict; values through ``ast.literal_eval``, bare words as strings.

    Example:
        >>> parse_kwargs("in_ratio=0.25,name=x")
        {'in_ratio': 0.25, 'name': 'x'}
    """
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in _split_top_level(text))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise argparse.ArgumentTypeError(f"Expected key=value pairs separated by commas, but got {item!r}.")
        if key in out:
            raise argparse.ArgumentTypeError(f"Expected each key once, but {key!r} is given twice in {text!r}.")
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):  # not a Python literal: a bare word is a string (name=x)
            out[key] = value.strip()
        except (TypeError, MemoryError, RecursionError) as err:  # a literal that cannot be built: {[1]: 2}
            raise argparse.ArgumentTypeError(
                f"Expected the value of {key!r} to be a Python literal (number, string, tuple, list, dict, True, "
                f"False, None) or a bare word, but {value.strip()[:80]!r} cannot be built: {type(err).__name__}: "
                f"{str(err)[:80]}."
            ) from None
    return out


def _split_top_level(text: str) -> list[str]:
    # Split on commas that are not inside brackets or quotes, so tuples and strings survive: "a=(1,2),b='x,y'".
    parts, depth, start, quote, escaped = [], 0, 0, "", False
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote and not escaped else quote
            escaped = ch == "\\" and not escaped
            continue
        if ch in "'\"":
            quote = ch
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def int_at_least(minimum: int, meaning: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``; the message says what is accepted and what it means.

    Example:
        >>> int_at_least(1, "images per batch")("4")
        4
    """
    return int_in_range(minimum, None, meaning)


def int_in_range(minimum: int, maximum: int | None, meaning: str) -> Callable[[str], int]:
    """An argparse type: an integer in ``minimum..maximum`` (``None``: no upper bound), written as digits (``1e23``
    and ``2.5`` are refused, not rounded); the message says what is accepted and what it means.

    Example:
        >>> int_in_range(0, 2**63 - 1, "the seed")("7")
        7
        >>> int_in_range(1, 100, "resamples")("1000")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: Expected an integer in 1..100 (resamples), but got '1000'.
    """
    accepted = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) < 100 else None  # int() of a huge string is slow and refused anyway
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"Expected {accepted} ({meaning}), but got {text!r}.")
        return value

    parse.__name__ = accepted
    return parse


def check_writable(path: str | os.PathLike[str], flag: str, *, folder: bool = False, shown: str | None = None) -> None:
    """Refuse an output that cannot be written, before any work: a file path that is a folder, or whose folder
    neither exists nor can be made (the nearest existing one is a file, or is not writable). ``folder``: ``path`` is
    a folder to write into. ``shown``: the value the user gave, for the message (default ``path``).

    Raises:
        ValueError: what was expected, naming ``flag``, the path and the folder in the way.

    Example:
        >>> check_writable("/proc/version/r.json", "--output")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Expected --output /proc/version/r.json to be a file in a folder ... /proc/version is not a folder.
    """
    shown = str(path) if shown is None else shown
    target = Path(os.path.abspath(Path(path).expanduser()))
    if not folder and target.is_dir():
        raise ValueError(f"Expected {flag} {shown} to be a file, but it is a folder.")
    what = "a folder" if folder else "a file in a folder"
    expected = f"Expected {flag} {shown} to be {what} that exists or can be made"
    probe = target if folder else target.parent
    while not probe.is_dir() and not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent  # the nearest folder that exists: the missing ones below it are made on writing
    if not probe.is_dir():
        raise ValueError(f"{expected}, but {probe} is not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{expected}, but {probe} is not writable.")


def device_type(text: str) -> str:
    """An argparse type: ``auto`` or a torch device string (checked for syntax; availability at run time).

    Example:
        >>> device_type("cuda:1")
        'cuda:1'
    """
    if text != "auto":
        import torch  # only when a device is named: --help does not pay for torch

        try:
            torch.device(text)
        except RuntimeError:
            raise argparse.ArgumentTypeError(
                f"Expected auto, cpu, cuda or cuda:N (or another torch device type such as mps), but got {text!r}."
            ) from None
    return text


def parse_transform_weights(text: str) -> dict[str, str]:
    """``monet=/w/style_monet.pth[,vangogh=...]`` -> {shift name: file or URL}.

    Example:
        >>> parse_transform_weights("monet=style_monet.pth")
        {'monet': 'style_monet.pth'}
    """
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise argparse.ArgumentTypeError(f"Expected NAME=PATH pairs (e.g. monet=style_monet.pth), but got {item!r}.")
        out[name.strip()] = path.strip()
    return out
