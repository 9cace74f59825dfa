"""Files: the one atomic writer and the one cache root of the suite.

Every file the suite writes (result records, run-state batches, leaderboard entries and pages, cached
stylized images, downloads) goes through :func:`atomic_write` so that its path holds either the old content
or the whole new one, never a part: a kill, a full disk or a crash leaves at most a hidden temporary file
beside it. Every cache (run state, stylized images) lives under :func:`cache_root`.

This module imports nothing else from the package, so every other module may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["CACHE_ENV", "atomic_write", "atomic_write_bytes", "atomic_write_text", "cache_root"]

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
