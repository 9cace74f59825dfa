"""Files: the one atomic writer, the one cache root, file names made from names, and JSON read from files.

Every file the suite writes (result records, run-state batches, leaderboard entries and pages, cached
stylized images, downloads) goes through :func:`atomic_write` so that its path holds either the old content
or the whole new one, never a part: a kill, a full disk or a crash leaves at most a hidden temporary file
beside it (none at all for a SIGTERM inside :func:`sigterm_raises`). Every cache (run state, stylized images)
lives under :func:`cache_root`. A file named after something a user or a file chose (a model name, a
protocol) gets :func:`safe_filename`, never the name joined as a path. Untrusted JSON is read with
:func:`read_json`, which turns every way it can fail into one ``ValueError`` naming the file.

This module imports nothing else from the package, so every other module may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["CACHE_ENV", "atomic_write", "atomic_write_bytes", "atomic_write_text", "cache_root", "read_json",
           "safe_filename", "sigterm_raises"]

CACHE_ENV = "ROBUSTBENCH_IBN_CACHE"


def cache_root() -> Path:
    """Where the suite keeps its caches: ``$ROBUSTBENCH_IBN_CACHE``, else ``$XDG_CACHE_HOME/robustbench_ibn``,
    else ``~/.cache/robustbench_ibn`` (``~`` expanded in each).

    Run state lives in ``<root>/runs``, stylized images in ``<root>/style``.

    Example:
        >>> import os
        >>> os.environ["ROBUSTBENCH_IBN_CACHE"] = "~/rb-cache"
        >>> cache_root() == Path.home() / "rb-cache"
        True
        >>> del os.environ["ROBUSTBENCH_IBN_CACHE"]
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "robustbench_ibn"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", *, fsync: bool = True) -> Iterator[IO]:
    """Open a private temporary file beside ``path``; on a clean exit it replaces ``path`` in one step.

    The temporary file is hidden (``.<name>.<random>.tmp``) in the same folder, so the final ``os.replace`` is
    atomic; on any exception (Ctrl-C included) it is removed and ``path`` is untouched. The new file gets the
    mode a plain ``open()`` would give it (0666 less the umask), not ``mkstemp``'s 0600. Parent folders are
    created.

    Args:
        path: the file to write.
        mode: ``"w"`` (text, UTF-8) or ``"wb"``.
        fsync: flush the data to disk before the rename (the default; a crash then never leaves an empty file).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out" / "record.json"
        >>> with atomic_write(target) as f:
        ...     _ = f.write("{}")
        >>> target.read_text()
        '{}'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"Expected mode 'w' or 'wb', but got {mode!r}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` holds either the old content or the whole new one, never a part."""
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """:func:`atomic_write_text` for bytes (``fsync=False`` for cheap, regenerable cache entries)."""
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)


# Characters kept in a file name; everything else (path separators, "..", spaces, control characters, shell
# and markdown syntax) becomes "_". ASCII only: the same name gives the same file on every file system.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_SLUG_MAX = 80  # characters of the readable part: with the hash and a suffix far below the 255-byte limit
_NAME_HASH = 10  # hex digits of sha256(name): 40 bits, so distinct names do not meet in practice


def safe_filename(name: str, suffix: str = "") -> str:
    """A single, safe path component for ``name``: a readable slug plus a short hash of the whole name.

    The slug keeps ``A-Z a-z 0-9 . _ + -`` (anything else becomes ``_``, leading dots and dashes are dropped,
    at most 80 characters), so the result never holds a path separator, never is ``.`` or ``..``, never is
    hidden and never looks like an option. The hash (10 hex digits of the name's sha256) is always added:
    names that slug alike (``a/b`` and ``a_b``) still get different files, and the same name always gets the
    same file. ``suffix`` (e.g. ``".json"``) is appended as given and must itself be safe.

    Example:
        >>> safe_filename("resnet50_ibn_a", ".json")
        'resnet50_ibn_a-42963ea18e.json'
        >>> safe_filename("../../etc/passwd")
        'etc_passwd-3754d6cb3a'
    """
    if not isinstance(name, str):
        raise TypeError(f"Expected a string name for a file name, but got {type(name).__name__}.")
    if _UNSAFE.sub("", suffix) != suffix or suffix.startswith(".."):
        raise ValueError(f"Expected a file name suffix of A-Z a-z 0-9 . _ + - only, but got {suffix!r}.")
    slug = _UNSAFE.sub("_", name).lstrip("._-")[:_SLUG_MAX].rstrip(".")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_NAME_HASH]
    return f"{slug}-{digest}{suffix}" if slug else f"{digest}{suffix}"


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The JSON value in ``path``; every way an untrusted file fails to parse is one ``ValueError`` naming it.

    Besides a syntax error that is: bytes that are not UTF-8, nesting deeper than Python's recursion limit
    (``[[[[...]]]]``, a ``RecursionError`` in ``json``) and an integer of more than 4300 digits (Python refuses
    to convert it). ``NaN`` and ``Infinity`` are parsed as floats, as ``json`` does: check the values where
    finite numbers are needed (:func:`robustbench_ibn.checks.nonfinite_fields`).

    Raises:
        ValueError: the file cannot be parsed; the message names ``what``, the path and the cause.
        OSError: the file cannot be read (``FileNotFoundError``: there is none, and the message says where it was
            looked for).
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:  # torch-free wording of "[Errno 2] No such file or directory: 'x.json'"
        raise FileNotFoundError(f"Expected a {what} at {path}, but there is no such file ({path.absolute()}).") from None
    try:
        return json.loads(text.decode("utf-8-sig"))
    except RecursionError:
        raise ValueError(f"Expected a {what} in {path}, but it cannot be parsed: nested too deeply.") from None
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError is a ValueError, as is a too long integer
        raise ValueError(f"Expected a {what} in {path}, but it cannot be parsed: {str(err)[:200]}") from None


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises ``SystemExit(143)`` instead of ending the process on the spot.

    A SIGTERM's default action kills the process without running ``finally`` clauses, which leaves the
    temporary file of an :func:`atomic_write` (or a download) behind. As an exception it unwinds the stack, so
    every temporary file is removed, and the exit status is still the conventional 128 + 15. Only in the main
    thread (the only one Python delivers signals to) and only while SIGTERM has its default action: a program
    that installed its own handler keeps it.

    Example:
        >>> with sigterm_raises():
        ...     pass  # a download or a write that must not leave a temporary file when terminated
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
