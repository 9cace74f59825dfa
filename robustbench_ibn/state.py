"""Run state: per-batch predictions committed to disk as batches finish, so a killed run resumes.

A run is a list of passes (one per image source and image-stage shift, see :mod:`robustbench_ibn.engine`);
each pass follows one fixed grid over its source (batch ``k`` holds images ``[k*B, (k+1)*B)``), whatever
the number of ranks, so a resumed or sharded run feeds the model exactly the batches an uninterrupted
single-process run would: predictions are bit-identical, not just close. The unit of work, of sharding and
of saving is a (pass, batch) pair, a :class:`Unit`.

Each finished unit is one small ``.npz`` file, written atomically (temp file + rename); a kill leaves
at most a stray temp file, never a half-written chunk. Besides the predictions a chunk holds the **stamp** of
each of its image files (size, modification and inode-change time, taken before the file was read), so a run
resumed after the files changed notices it and evaluates those batches again instead of mixing old and new
predictions; a chunk that cannot be read (truncated, garbage) is evaluated again too. A lock file
(:class:`FileLock`) keeps two runs of the same command from writing the same state at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write, cache_root
from .options import option

__all__ = ["Batch", "Chunk", "FileLock", "RunState", "Unit", "batch_grid", "default_state_root", "file_stamp",
           "run_key", "unit_grid"]


def default_state_root() -> Path:
    """``<cache root>/runs`` (:func:`robustbench_ibn.files.cache_root`)."""
    return cache_root() / "runs"


def run_key(spec: Mapping[str, Any]) -> str:
    """A short stable hash of everything that determines a run's predictions."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Batch:
    """Batch ``k`` of the fixed grid: images ``start`` (inclusive) to ``stop`` (exclusive)."""

    k: int
    start: int
    stop: int

    @property
    def indices(self) -> list[int]:
        return list(range(self.start, self.stop))


def batch_grid(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[Batch]:
    """This rank's batches: every ``world_size``-th batch of the grid, starting at ``rank``.

    Example:
        >>> [(b.k, b.start, b.stop) for b in batch_grid(10, 4, rank=1, world_size=2)]
        [(1, 4, 8)]
    """
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1, but got {batch_size}.")
    count = -(-n // batch_size)
    return [Batch(k, k * batch_size, min(n, (k + 1) * batch_size)) for k in range(rank, count, world_size)]


@dataclass(frozen=True)
class Unit:
    """Batch ``batch`` of pass ``pass_index``: what one rank evaluates and commits at a time."""

    pass_index: int
    batch: Batch

    @property
    def size(self) -> int:
        return self.batch.stop - self.batch.start


def unit_grid(sizes: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1) -> list[Unit]:
    """This rank's units: every pass's batch grid (``sizes[p]`` images in pass ``p``), in pass order, then every
    ``world_size``-th unit starting at ``rank``.

    Example:
        >>> [(u.pass_index, u.batch.k) for u in unit_grid([5, 3], 2, rank=1, world_size=2)]
        [(0, 1), (1, 0)]
    """
    units = [Unit(p, b) for p, n in enumerate(sizes) for b in batch_grid(n, batch_size)]
    return units[rank::world_size]


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """What identifies a file's content cheaply: ``(size, mtime_ns, ctime_ns)`` of the file (links followed), or
    ``(-1, -1, -1)`` when it cannot be reached.

    The inode-change time is there because a copy that keeps the modification time (``cp -p``, ``rsync -t``) still
    changes it, and nothing can set it back; a stat costs far less than hashing 50,000 images.

    Example:
        >>> file_stamp("/no/such/file")
        (-1, -1, -1)
    """
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileLock:
    """An exclusive lock on ``path`` (``flock``), refused at once when another process holds it.

    Args:
        path: the lock file (created; its folder too).
        busy: the message of the ``RuntimeError`` raised when another process holds the lock.
        remove: delete the file when the lock is released (a lock beside a user's file leaves nothing behind).
            Safe against a process that opened the old file just before: whoever locks a file checks that the
            path still names it, and otherwise tries again with the new one.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / ".x.lock"
        >>> with FileLock(path, "busy"):
        ...     FileLock(path, "Another run holds it.").acquire()
        Traceback (most recent call last):
        ...
        RuntimeError: Another run holds it.
        >>> path.exists()
        False
    """

    def __init__(self, path: str | os.PathLike[str], busy: str, *, remove: bool = True) -> None:
        self.path, self.busy, self.remove = Path(path), busy, remove
        self._file: Any = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.path, "a")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise RuntimeError(self.busy) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same or not self.remove:
                self._file = f
                return self
            f.close()  # the holder removed that file as it let go: lock the one the path names now

    def release(self) -> None:
        if self._file is None:
            return
        if self.remove:
            self.path.unlink(missing_ok=True)  # still holding the lock: nobody can take this file meanwhile
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Chunk:
    """A committed unit: per domain of its pass, top-k predictions and tied flags; the stamps of its image files."""

    predictions: dict[str, np.ndarray]
    tied: dict[str, np.ndarray]
    stamps: np.ndarray  # int64 [n, 3]: file_stamp() of each image, taken before it was decoded


class RunState:
    """The on-disk state of one run (one model x plan x batch size).

    Args:
        directory: where this run's chunks live (``<state root>/<run key>``).
        passes: per pass, the names of the domains whose predictions its chunks hold.
        rank: this process's rank; each rank holds its own lock (ranks write disjoint units).
    """

    def __init__(self, directory: str | os.PathLike[str], passes: Sequence[Sequence[str]], rank: int = 0) -> None:
        self.directory = Path(directory)
        self.passes = [list(p) for p in passes]
        self.rank = rank
        self._lock: FileLock | None = None

    # -- locking --------------------------------------------------------------------------------
    def __enter__(self) -> RunState:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(
            self.directory / f"lock-rank{self.rank}", remove=False,  # removed with the directory
            busy=f"Another run of the same command is writing {self.directory} right now. Wait for it to finish "
                 f"(its result will be identical), or give this one another {option('state_dir')}.").acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- chunks ---------------------------------------------------------------------------------
    def _path(self, unit: Unit) -> Path:
        return self.directory / f"batch-p{unit.pass_index}-{unit.batch.k:07d}.npz"

    def done(self) -> set[tuple[int, int]]:
        """``(pass, batch k)`` of the units already committed."""
        done = set()
        for path in self.directory.glob("batch-p*-*.npz"):
            p, k = path.stem[len("batch-p"):].split("-")
            done.add((int(p), int(k)))
        return done

    def commit(self, unit: Unit, predictions: Mapping[str, np.ndarray], tied: Mapping[str, np.ndarray],
               stamps: np.ndarray) -> None:
        """Write one finished unit atomically: per domain of its pass, top-k predictions and tied flags, and the
        stamps of its image files (:func:`file_stamp`, ``[n, 3]``)."""
        arrays = {"stamps": np.asarray(stamps, dtype=np.int64).reshape(unit.size, 3)}
        for i, name in enumerate(self.passes[unit.pass_index]):
            arrays[f"pred_{i}"], arrays[f"tied_{i}"] = predictions[name], tied[name]
        with atomic_write(self._path(unit), "wb") as f:
            np.savez(f, **arrays)

    def load(self, unit: Unit) -> Chunk:
        """A committed unit. A chunk that cannot be read, or holds another number of images, raises
        ``RuntimeError`` naming it (the engine evaluates such a unit again, see :meth:`discard`)."""
        path = self._path(unit)
        names = self.passes[unit.pass_index]
        try:
            with np.load(path) as chunk:
                predictions = {name: chunk[f"pred_{i}"] for i, name in enumerate(names)}
                tied = {name: chunk[f"tied_{i}"] for i, name in enumerate(names)}
                stamps = chunk["stamps"]
        except Exception as err:  # untrusted bytes: a truncated zip, garbage, a missing array, an older chunk
            raise RuntimeError(f"{path}: {type(err).__name__}: {err}") from err
        sizes = {len(p) for p in (*predictions.values(), *tied.values(), stamps)}
        if sizes != {unit.size}:
            raise RuntimeError(f"{path}: it holds {sorted(sizes)} images, expected {unit.size}")
        return Chunk(predictions, tied, stamps)

    def discard(self, unit: Unit) -> None:
        """Forget a committed unit (its images changed, or its chunk cannot be read): it is evaluated again."""
        self._path(unit).unlink(missing_ok=True)

    def iter_done(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, Chunk]]:
        """``(unit, chunk)`` of each of ``units`` already committed, in order."""
        done = self.done()
        for unit in units:
            if (unit.pass_index, unit.batch.k) in done:
                yield unit, self.load(unit)

    def clear(self) -> None:
        """Remove the state once the result is safely returned."""
        shutil.rmtree(self.directory, ignore_errors=True)
