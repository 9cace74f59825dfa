"""Run state: per-batch predictions committed to disk as batches finish, so a killed run resumes.

A run is a list of passes (one per image source and image-stage shift, see :mod:`robustbench_ibn.engine`);
each pass follows one fixed grid over its source (batch ``k`` holds images ``[k*B, (k+1)*B)``), whatever
the number of ranks, so a resumed or sharded run feeds the model exactly the batches an uninterrupted
single-process run would: predictions are bit-identical, not just close. The unit of work, of sharding and
of saving is a (pass, batch) pair, a :class:`Unit`.

Each finished unit is one small ``.npz`` file, written atomically (temp file + rename); a kill leaves
at most a stray temp file, never a half-written chunk. A lock file keeps two runs of the same command
from writing the same state at once.
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

__all__ = ["Batch", "RunState", "Unit", "batch_grid", "default_state_root", "run_key", "unit_grid"]


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
                f"(its result will be identical), or give this one another {option('state_dir')}."
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

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

    def commit(self, unit: Unit, predictions: Mapping[str, np.ndarray], tied: Mapping[str, np.ndarray]) -> None:
        """Write one finished unit atomically: per domain of its pass, top-k predictions and tied flags."""
        arrays = {}
        for i, name in enumerate(self.passes[unit.pass_index]):
            arrays[f"pred_{i}"], arrays[f"tied_{i}"] = predictions[name], tied[name]
        with atomic_write(self._path(unit), "wb") as f:
            np.savez(f, **arrays)

    def load(self, unit: Unit) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """A committed unit's per-domain predictions and tied flags."""
        path = self._path(unit)
        names = self.passes[unit.pass_index]
        try:
            with np.load(path) as chunk:
                predictions = {name: chunk[f"pred_{i}"] for i, name in enumerate(names)}
                tied = {name: chunk[f"tied_{i}"] for i, name in enumerate(names)}
        except (OSError, ValueError, KeyError) as err:
            raise RuntimeError(
                f"The saved batch {path} cannot be read ({err}). Delete it; the run will recompute that batch."
            ) from err
        sizes = {len(p) for p in (*predictions.values(), *tied.values())}
        if sizes != {unit.size}:
            raise RuntimeError(f"The saved batch {path} holds {sorted(sizes)} images, expected {unit.size}. "
                               f"Delete it; the run will recompute that batch.")
        return predictions, tied

    def iter_done(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, dict[str, np.ndarray], dict[str, np.ndarray]]]:
        done = self.done()
        for unit in units:
            if (unit.pass_index, unit.batch.k) in done:
                yield (unit, *self.load(unit))

    def clear(self) -> None:
        """Remove the state once the result is safely returned."""
        shutil.rmtree(self.directory, ignore_errors=True)
