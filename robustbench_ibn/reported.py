"""Numbers others published (the IBN-Net paper's tables, its official README), as the reported leaderboard entries
hold them: the one source of the reference errors a model's :class:`~robustbench_ibn.models.ModelInfo` shows
(``--list-models``) and of the leaderboard's reported section.

An IBN-Net model's info names the entry it cites (``ModelInfo.reported``, a source key such as ``paper-table1``);
:func:`~robustbench_ibn.models.model_info` fills in ``ref_top1_err`` / ``ref_top5_err`` from that entry's clean row.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from .files import read_json

__all__ = ["REPORTED_DIR", "ReportedError", "reported_clean_errors"]

REPORTED_DIR = Path(__file__).resolve().parents[1] / "leaderboards" / "reported"


class ReportedError(RuntimeError):
    """A reported entry that a model cites is missing or does not hold a usable clean row."""


@functools.lru_cache(maxsize=1)
def _entries(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    if not directory.is_dir():
        raise ReportedError(f"Expected the reported leaderboard entries (the paper's numbers) in {directory}, but "
                            "that folder does not exist: this installation is incomplete. Reinstall the package.")
    out = {}
    for path in sorted(directory.glob("*.json")):
        entry = read_json(path, "reported leaderboard entry")
        if isinstance(entry, dict) and entry.get("kind") == "reported" and isinstance(entry.get("source"), dict):
            out[str(entry["source"].get("key")), str(entry.get("model"))] = {**entry, "path": path}
    return out


def reported_clean_errors(source: str, model: str, directory: Path | None = None) -> tuple[float, float, str]:
    """``(top-1 error, top-5 error, citation)`` of ``model``'s clean row in the reported entry of ``source``.

    Example:
        >>> top1, top5, cited = reported_clean_errors("paper-table1", "resnet50_ibn_b")
        >>> (top1, top5), cited
        ((23.64, 6.86), 'IBN-Net paper (ECCV 2018), Table 1: ImageNet val under appearance transforms (IBN-Net50-b)')
    """
    entries = _entries(Path(directory or REPORTED_DIR))
    entry = entries.get((source, model))
    if entry is None:
        known = sorted(key for key, name in entries if name == model)
        raise ReportedError(f"Expected a reported leaderboard entry of {model} from source {source!r} in "
                            f"{directory or REPORTED_DIR}, but there is none (its entries: {known or 'none'}).")
    clean = next((row for row in entry.get("results", []) if row.get("transform") == "clean"), None)
    errors = [clean.get(k) if clean else None for k in ("top1_err", "top5_err")]
    if not all(isinstance(e, (int, float)) and math.isfinite(e) and 0 <= e <= 100 for e in errors):
        raise ReportedError(f"Expected {entry['path']} to hold a clean row with top-1 and top-5 errors in [0, 100], "
                            f"but got {errors}.")
    return float(errors[0]), float(errors[1]), f"{entry['source'].get('title')} ({entry.get('display_name', model)})"
