"""Run state: per-batch predictions committed to disk as batches finish, so a killed run resumes.

Batches follow one fixed grid over the dataset (batch ``k`` holds images ``[k*B, (k+1)*B)``), whatever
the number of ranks, so a resumed or sharded run feeds the model exactly the batches an uninterrupted
single-process run would: predictions are bit-identical, not just close.

Each finished batch is one small ``.npz`` file, written atomically (temp file + rename); a kill leaves
at most a stray temp file, never a half-written chunk. A lock file keeps two runs of the same command
from writing the same state at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write, cache_root

__all__ = ["Batch", "RunState", "batch_grid", "default_state_root", "run_key"]

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


class RunState:
    """The on-disk state of one run (one model x protocol x dataset x batch size).

    Args:
        directory: where this run's chunks live (``<state root>/<run key>``).
        shifts: the shift names whose predictions each chunk holds.
        rank: this process's rank; each rank holds its own lock (ranks write disjoint batches).
    """

    def __init__(self, directory: str | os.PathLike[str], shifts: list[str], rank: int = 0) -> None:
        self.directory = Path(directory)
        self.shifts = list(shifts)
        self.rank = rank
        self._lock_file: Any = None

    # -- locking --------------------------------------------------------------------------------
    def __enter__(self) -> RunState:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / f"lock-rank{self.rank}", "w")  # noqa: SIM115 - held for the run's lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise RuntimeError(
                f"Another run of the same command is writing {self.directory} right now. Wait for it to finish "
                f"(its result will be identical), or give this one another --state-dir."
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # -- chunks ---------------------------------------------------------------------------------
    def _path(self, k: int) -> Path:
        return self.directory / f"batch-{k:07d}.npz"

    def done(self) -> set[int]:
        """Indices ``k`` of the batches already committed."""
        return {int(p.stem.split("-")[1]) for p in self.directory.glob("batch-*.npz")}

    def commit(self, batch: Batch, labels: np.ndarray, predictions: Mapping[str, np.ndarray]) -> None:
        """Write one finished batch atomically."""
        with atomic_write(self._path(batch.k), "wb") as f:
            np.savez(f, labels=labels, **{f"pred_{i}": predictions[s] for i, s in enumerate(self.shifts)})

    def load(self, batch: Batch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A committed batch's labels and per-shift predictions."""
        path = self._path(batch.k)
        try:
            with np.load(path) as chunk:
                labels = chunk["labels"]
                predictions = {s: chunk[f"pred_{i}"] for i, s in enumerate(self.shifts)}
        except (OSError, ValueError, KeyError) as err:
            raise RuntimeError(
                f"The saved batch {path} cannot be read ({err}). Delete it; the run will recompute that batch."
            ) from err
        if len(labels) != batch.stop - batch.start:
            raise RuntimeError(f"The saved batch {path} holds {len(labels)} images, expected {batch.stop - batch.start}. "
                               f"Delete it; the run will recompute that batch.")
        return labels, predictions

    def iter_done(self, batches: list[Batch]) -> Iterator[tuple[Batch, np.ndarray, dict[str, np.ndarray]]]:
        done = self.done()
        for batch in batches:
            if batch.k in done:
                yield (batch, *self.load(batch))

    def clear(self) -> None:
        """Remove the state once the result is safely returned."""
        shutil.rmtree(self.directory, ignore_errors=True)
