"""Typed result records: per-image predictions plus everything needed to trust and redo the numbers."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checks import check_finite
from .files import atomic_write_text
from .metrics import prediction_uncertainty, topk_counts

__all__ = ["SCHEMA_VERSION", "DomainResult", "EvalResult", "protocol_fingerprint"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DomainResult:
    """One row of Table 1: errors on a domain and their drops against the clean images (percent)."""

    transform: str
    label: str
    n: int
    top1_err: float
    top5_err: float
    top1_drop: float
    top5_drop: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def protocol_fingerprint(protocol: dict[str, Any], dataset: dict[str, Any]) -> str:
    """Hash of what makes two results comparable: data, geometry, shift definitions and precision."""
    keyed = {
        "dataset": {k: dataset.get(k) for k in ("n", "sha256", "labels_sha256", "limit")},
        "geometry": protocol.get("geometry"),
        # "stochastic" holds a random shift's run seed: another seed is another set of images.
        "transforms": [{k: t[k] for k in ("name", "version", "params", "stochastic") if k in t}
                       for t in protocol.get("transforms", [])],
        "precision": protocol.get("precision"),
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EvalResult:
    """The outcome of :func:`robustbench_ibn.evaluate` for one model.

    Every number is derived from ``predictions`` (top-5 class indices per image and transform) and
    ``labels``; nothing else is stored as a result, so later reports can compute intervals and tests.
    """

    model: str
    weights: dict[str, Any]
    dataset: dict[str, Any]
    protocol: dict[str, Any]
    environment: dict[str, Any]
    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    images: list[str] = field(default_factory=list)

    @property
    def is_random(self) -> bool:
        return self.weights.get("kind") == "random"

    @property
    def results(self) -> list[DomainResult]:
        """Table 1's rows, clean first, drops relative to clean (0 for clean itself)."""
        labels = {t["name"]: t["label"] for t in self.protocol["transforms"]}
        counts = {name: topk_counts(preds, self.labels) for name, preds in self.predictions.items()}
        base = counts["clean"]
        return [
            DomainResult(
                transform=name,
                label=labels[name],
                n=c.n,
                top1_err=c.top1_err,
                top5_err=c.top5_err,
                top1_drop=c.top1_err - base.top1_err,
                top5_drop=c.top5_err - base.top5_err,
            )
            for name, c in counts.items()
        ]

    def to_frame(self) -> pd.DataFrame:
        """One row per transform: model, transform, label, n, errors and drops (percent)."""
        frame = pd.DataFrame([r.to_dict() for r in self.results])
        frame.insert(0, "model", self.model)
        return frame

    def uncertainty(self, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
        """95% intervals of every error and drop, flip rates and the mean drop, from the stored predictions.

        See :func:`robustbench_ibn.metrics.prediction_uncertainty` (paired bootstrap over images, seeded).
        """
        return prediction_uncertainty(self.labels, self.predictions, n_boot=n_boot, seed=seed, level=level)

    def summary(self, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
        """The record without per-image data: what ``--format json`` prints.

        ``uncertainty`` holds the bootstrap intervals (``n_boot`` resamples, ``seed``) of every row of
        ``results``, the flip rates and the mean drop (:meth:`uncertainty`).
        """
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "weights": self.weights,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "environment": self.environment,
            "results": [r.to_dict() for r in self.results],
            "uncertainty": self.uncertainty(n_boot=n_boot, seed=seed),
        }

    def to_dict(self) -> dict[str, Any]:
        """The full record, per-image predictions included (JSON-serializable)."""
        record = self.summary()
        record["images"] = list(self.images)
        record["labels"] = self.labels.astype(int).tolist()
        record["predictions"] = {name: p.astype(int).tolist() for name, p in self.predictions.items()}
        return record

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the full record as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvalResult:
        """Read a record written by :meth:`save`, checked against the record's schema before any use.

        Raises:
            ValueError: not JSON, another ``schema_version``, or a field missing or of the wrong type or
                shape; the message names the file and the field.
        """
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"Expected a JSON result record (robust-eval --output) in {path}, but it cannot be "
                             f"parsed: {err}.") from None
        if not isinstance(record, dict):
            raise ValueError(f"Expected a JSON object as result record in {path}, but got {type(record).__name__}.")
        if record.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"Expected a result record with schema_version {SCHEMA_VERSION} in {path}, "
                f"but got {record.get('schema_version')!r}. Re-run the evaluation with this version."
            )
        labels, predictions = _check_record(record, path)
        return cls(
            model=record["model"],
            weights=record["weights"],
            dataset=record["dataset"],
            protocol=record["protocol"],
            environment=record["environment"],
            labels=labels,
            predictions=predictions,
            images=record.get("images", []),
        )


def _check_record(record: dict[str, Any], path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The schema of a result record (the fields :class:`EvalResult` and the reports use); labels, predictions."""

    def bad(field: str, expected: str, got: Any) -> ValueError:
        shown = repr(got) if isinstance(got, (str, int, float, bool, type(None))) else type(got).__name__
        return ValueError(f"Expected {field} to be {expected} in result record {path}, but got {shown[:80]}. The "
                          "file was edited or damaged, or not written by robust-eval --output: re-run the evaluation.")

    if not isinstance(record.get("model"), str):
        raise bad("'model'", "a string", record.get("model"))
    # A NaN or an infinity anywhere else (predictions and labels are checked as integers below).
    check_finite({k: v for k, v in record.items() if k not in ("labels", "predictions")}, f"result record {path}")
    for key in ("weights", "dataset", "protocol", "environment"):
        if not isinstance(record.get(key), dict):
            raise bad(f"{key!r}", "an object", record.get(key))
    protocol = record["protocol"]
    transforms = protocol.get("transforms")
    if not isinstance(transforms, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("label"), str) for t in transforms
    ):
        raise bad("protocol.transforms", "a list of objects with a string name and label", transforms)
    names = [t["name"] for t in transforms]
    if "clean" not in names or len(set(names)) != len(names):
        raise bad("protocol.transforms", "unique names including 'clean'", ", ".join(names))
    if not isinstance(protocol.get("precision"), str):
        raise bad("protocol.precision", "a string", protocol.get("precision"))
    geometry = protocol.get("geometry")
    if not isinstance(geometry, dict) or not isinstance(geometry.get("crop"), int):
        raise bad("protocol.geometry.crop", "an integer",
                  geometry.get("crop") if isinstance(geometry, dict) else geometry)

    def integers(field: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
        try:
            array = np.asarray(value)
        except ValueError:  # ragged nested lists
            array = None
        expected = f"a list of {shape[0]} " + (f"lists of {shape[1]} " if len(shape) > 1 else "") + "integers in 0..999"
        if array is None or array.dtype.kind not in "iu" or array.shape != shape or (array.size and (
                array.min() < 0 or array.max() > 999)):
            raise bad(field, expected, value if array is None or array.ndim == 0 else f"shape {array.shape} "
                      f"{array.dtype}")
        return array.astype(np.int64)

    raw_labels = record.get("labels")
    if not isinstance(raw_labels, list):
        raise bad("'labels'", "a list of integers in 0..999", raw_labels)
    labels = integers("'labels'", raw_labels, (len(raw_labels),))
    n = record["dataset"].get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n != len(labels):
        raise bad("dataset.n", f"the number of labels ({len(labels)})", n)
    raw = record.get("predictions")
    if not isinstance(raw, dict) or sorted(raw) != sorted(names):
        got = ", ".join(map(str, raw)) if isinstance(raw, dict) else raw
        raise bad("'predictions'", f"an object with one entry per transform ({', '.join(names)})", got)
    predictions = {name: integers(f"predictions[{name!r}]", raw[name], (len(labels), 5)) for name in names}
    images = record.get("images", [])
    if (not isinstance(images, list) or not all(isinstance(i, str) for i in images)
            or len(images) not in (0, len(labels))):
        raise bad("'images'", f"a list of {len(labels)} image paths", images)
    return labels, predictions
