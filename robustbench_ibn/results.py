"""Typed result records: per-image predictions plus everything needed to trust and redo the numbers.

A record (``schema_version`` 2) holds one model's run over one or more image sources (ImageNet val is the
baseline source ``"val"``; its ``clean`` domain the baseline of every drop) and a list of domains (a
source, an optional shift and the stage it acts at). Every number is a pure function of the stored top-5
predictions, the sources' labels and their label spaces.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .checks import check_finite, is_hex, is_integer, is_number
from .files import atomic_write_text, read_json
from .labels import LabelSpace, label_space_from_dict
from .metrics import prediction_uncertainty, topk_counts

__all__ = [
    "BASELINE_DOMAIN",
    "BASELINE_SOURCE",
    "ERROR_UNIT",
    "FAST_FINGERPRINT_KEYS",
    "PROTOCOL_CHANGES",
    "PROTOCOL_VERSION",
    "REFERENCES_SINCE",
    "SCHEMA_VERSION",
    "STAGES",
    "DomainResult",
    "EvalResult",
    "SourceResult",
    "fast_label",
    "is_fast_record",
    "check_record_derivations",
    "protocol_fingerprint",
    "weights_problem",
]

SCHEMA_VERSION = 2
PROTOCOL_VERSION = 4
PROTOCOL_CHANGES = {
    1: "the first protocol: std{F} scaled the deviation from each model's own normalization mean; the fingerprint "
       "included the model's geometry",
    2: "std{F} scales the deviation from the fixed ImageNet mean (0.485, 0.456, 0.406) for every model, so every "
       "model sees the same shifted pixels (identical numbers for models normalized with that mean, as the paper's); "
       "the fingerprint covers the images, the domains' shift definitions and versions, the precision and this "
       "version, not the model's geometry, so models with other preprocessing rank together",
    3: "'all' (Table 1) runs Monet as the official CycleGAN test pipeline, monet-official (image stage: the whole "
       "image squashed to 256x256 bicubic, the generator, its output truncated to 8 bits as the tool's PNGs, then the "
       "model's resize and crop), as the paper's authors most likely did; under protocol 2 'all' ran monet, the "
       "generator on the model's 224 crop rounded to 8 bits (still available as monet). Everything else as in "
       "protocol 2: std{F} about the fixed ImageNet mean, the fingerprint without the model's geometry",
    4: "drops in the same label space: a domain scored in a label space other than the 1000 classes (ImageNet-R and "
       "-A among their 200 classes, ObjectNet among its 113) measures its drop against its reference domain, the "
       "clean val images of those classes predicted in that space (imagenet-testbed's val-on-imagenet-r-classes, "
       "val-on-imagenet-a-classes, val-on-objectnet-classes), computed from the clean pass's logits and recorded as "
       "a domain of its own; under protocol 3 those drops were against clean val scored 1000-way, two different "
       "questions subtracted. Every other row (the shifts, V2, Sketch, Stylized, ImageNet-C) is still against clean; "
       "each domain records its reference. Everything else as in protocol 3",
}
"""What each protocol version changed, and why (recorded numbers are comparable only within one version)."""
BASELINE_SOURCE = "val"
BASELINE_DOMAIN = "clean"
STAGES = ("crop", "image")
TOPK = 5
REFERENCES_SINCE = 4  # the first protocol whose domains record the reference of their drop
ERROR_UNIT = "percent"
"""The unit of every error and drop a record's rows hold (and every number derived from them): percent of the images,
as :class:`~robustbench_ibn.metrics.TopkCounts` computes them from the stored predictions; never fractions."""
FAST_FINGERPRINT_KEYS = ("fold_batchnorm", "compiled")
"""The fields of a record's ``protocol.fast`` that enter its fingerprint
(:meth:`robustbench_ibn.fast.FastPath.fingerprint`; the rest describes the run)."""


@dataclass(frozen=True)
class DomainResult:
    """One row of Table 1: errors on a domain and their drops against its reference (percent).

    ``transform`` is the domain's name (a shift of the baseline images, or a domain of another source);
    ``reference`` the domain its drops are against (``clean``, or its label space's reference domain, which is its
    own reference: drop 0, as clean).
    """

    transform: str
    label: str
    source: str
    n: int
    top1_err: float
    top5_err: float
    top1_drop: float
    top5_drop: float
    reference: str = BASELINE_DOMAIN

    @property
    def is_reference(self) -> bool:
        """A baseline row (clean, or a label space's reference): its drops are 0 by definition, not shown."""
        return self.reference == self.transform

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class SourceResult:
    """One image source of a run: its record (fingerprint, root, description, kind, label space), labels, images."""

    record: dict[str, Any]
    labels: np.ndarray
    images: list[str] = field(default_factory=list)

    @property
    def label_space(self) -> LabelSpace:
        return label_space_from_dict(self.record["label_space"])


_FINGERPRINT_SOURCE = ("n", "sha256", "labels_sha256", "limit", "kind", "label_space")
_FINGERPRINT_SHIFT = ("name", "version", "params", "stochastic")


def protocol_fingerprint(sources: Mapping[str, Mapping[str, Any]], domains: Sequence[Mapping[str, Any]],
                         precision: str, version: int = PROTOCOL_VERSION, *,
                         fast: Mapping[str, Any] | None = None) -> str:
    """Hash of what makes two results comparable: the images, the domains' shifts, the precision, the version, and
    the fast path when it ran (``fast``: :meth:`~robustbench_ibn.fast.FastPath.fingerprint`; it changes float
    rounding, so a fast and an exact run are never ranked together; ``None``, the exact path, leaves the hash what it
    was before the fast path existed).

    Not the model's geometry or normalization: a 224-px and a 240-px model on the same images and shifts are
    ranked together, as on every ImageNet leaderboard (each records its own geometry).
    """
    keyed = {
        "version": version,
        "sources": {key: {k: record.get(k) for k in _FINGERPRINT_SOURCE} for key, record in sources.items()},
        # "stochastic" holds a random shift's run seed: another seed is another set of images.
        "domains": [{"name": d["name"], "source": d["source"], "stage": d["stage"],
                     "shift": None if d["shift"] is None else {k: d["shift"][k] for k in _FINGERPRINT_SHIFT
                                                               if k in d["shift"]}}
                    for d in domains],
        "precision": precision,
        **({"fast": dict(fast)} if fast is not None else {}),
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def is_fast_record(fast: Any) -> bool:
    """Whether ``fast`` is what a record's ``protocol.fast`` may hold: null (the exact path) or an object whose
    fingerprint fields (:data:`FAST_FINGERPRINT_KEYS`) are true/false.

    Example:
        >>> is_fast_record(None), is_fast_record({"fold_batchnorm": True, "compiled": False}), is_fast_record("yes")
        (True, True, False)
    """
    return fast is None or (isinstance(fast, dict)
                            and all(isinstance(fast.get(k), bool) for k in FAST_FINGERPRINT_KEYS))


def fast_label(protocol: Mapping[str, Any]) -> str:
    """How a table or leaderboard names a protocol's fast path: ``""`` for the exact path.

    Example:
        >>> fast_label({"fast": {"fold_batchnorm": True, "compiled": False}}), fast_label({"precision": "fp32"})
        ('fast path (BatchNorm folded, not compiled)', '')
    """
    fast = protocol.get("fast")
    if not fast:
        return ""
    return f"fast path (BatchNorm folded, {'compiled' if fast.get('compiled') else 'not compiled'})"


@dataclass(eq=False)
class EvalResult:
    """The outcome of :func:`robustbench_ibn.evaluate` for one model.

    Every number is derived from ``predictions`` (top-5 ImageNet class indices per image and domain), the
    sources' labels and label spaces; nothing else is stored as a result, so later reports can compute
    intervals and tests. ``labels``, ``images`` and ``dataset`` are those of the baseline source (ImageNet val).
    """

    model: str
    weights: dict[str, Any]
    data_config: dict[str, Any]
    sources: dict[str, SourceResult]
    domains: list[dict[str, Any]]
    protocol: dict[str, Any]
    environment: dict[str, Any]
    predictions: dict[str, np.ndarray]
    tied: dict[str, int] = field(default_factory=dict)
    _uncertainty: dict[tuple[int, int, float], dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    # Where the run state was left by evaluate(keep_state=True) for more outputs (engine.release_state removes it);
    # not part of the record.
    state_dir: Path | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def baseline_source(self) -> str:
        return next(d["source"] for d in self.domains if d["name"] == BASELINE_DOMAIN)

    @property
    def dataset(self) -> dict[str, Any]:
        return self.sources[self.baseline_source].record

    @property
    def labels(self) -> np.ndarray:
        return self.sources[self.baseline_source].labels

    @property
    def images(self) -> list[str]:
        return self.sources[self.baseline_source].images

    @property
    def is_random(self) -> bool:
        return self.weights.get("kind") == "random"

    def source_of(self, domain: str) -> SourceResult:
        """The source a domain's images come from."""
        return self.sources[next(d["source"] for d in self.domains if d["name"] == domain)]

    def reference_of(self, domain: str) -> str:
        """The name of the domain ``domain``'s drop is measured against: ``"clean"``, or (protocol 4) its label
        space's reference domain (``val-on-imagenet-r-classes``, ...), which is its own reference. A protocol 3
        record has none recorded: every drop there was against clean (:meth:`drops_note` says so).

        Example:
            >>> r = EvalResult("m", {}, {}, {}, [{"name": "clean"}, {"name": "imagenet-r",
            ...                "reference": "val-on-imagenet-r-classes"}], {"version": 4}, {}, {})
            >>> r.reference_of("imagenet-r"), r.reference_of("clean")
            ('val-on-imagenet-r-classes', 'clean')
        """
        d = next((d for d in self.domains if d["name"] == domain), None)
        if d is None:
            raise KeyError(f"Expected a domain of the result ({', '.join(x['name'] for x in self.domains)}), but got "
                           f"{domain!r}.")
        return str(d.get("reference", BASELINE_DOMAIN))

    def drops_note(self) -> str | None:
        """For a record made before protocol 4 with domains scored in another label space than the 1000 classes:
        the sentence that says their drops are against clean val scored 1000-way (as they were computed; they are
        never re-interpreted). ``None`` otherwise.

        Example:
            >>> EvalResult("m", {}, {}, {}, [{"name": "clean"}], {"version": 4}, {}, {}).drops_note() is None
            True
        """
        if int(self.protocol.get("version", 0)) >= REFERENCES_SINCE:
            return None
        other = [d["label"] for d in self.domains
                 if self.sources[d["source"]].label_space.kind not in ("imagenet-1k", "none")]
        if not other:
            return None
        return (f"protocol {self.protocol.get('version')} record: the drops of {', '.join(other)} are against clean val "
                f"scored 1000-way, not in their own label space (protocol {REFERENCES_SINCE} measures them against "
                f"the val images of their classes, predicted among those classes); re-run for those")

    @property
    def results(self) -> list[DomainResult]:
        """Table 1's rows in evaluation order, drops relative to each row's reference (:meth:`reference_of`; 0 for
        a reference itself)."""
        counts = {}
        for d in self.domains:
            source = self.sources[d["source"]]
            counts[d["name"]] = topk_counts(self.predictions[d["name"]], source.labels, source.label_space)
        rows = []
        for d in self.domains:
            c, base, reference = counts[d["name"]], counts[self.reference_of(d["name"])], self.reference_of(d["name"])
            rows.append(DomainResult(transform=d["name"], label=d["label"], source=d["source"], n=c.n,
                                     top1_err=c.top1_err, top5_err=c.top5_err, top1_drop=c.top1_err - base.top1_err,
                                     top5_drop=c.top5_err - base.top5_err, reference=reference))
        return rows

    def to_frame(self) -> pd.DataFrame:
        """One row per domain: model, transform (the domain), label, source, n, errors and drops (percent)."""
        frame = pd.DataFrame([r.to_dict() for r in self.results])
        frame.insert(0, "model", self.model)
        return frame

    def uncertainty(self, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
        """95% intervals of every error and drop, flip rates and the mean drop, from the stored predictions.

        See :func:`robustbench_ibn.metrics.prediction_uncertainty` (paired bootstrap over images, seeded). Computed
        once per ``(n_boot, seed, level)``: reports, plots, entries and :meth:`save` reuse it.
        """
        key = (n_boot, seed, level)
        if key not in self._uncertainty:
            from .corruption import imagenet_c_trees  # an ImageNet-C tree is one row of the mean drop

            trees = {domain: tree for tree, sets in imagenet_c_trees(self).items() for domain in sets.values()}
            self._uncertainty[key] = prediction_uncertainty(
                {k: s.labels for k, s in self.sources.items()}, self.predictions, baseline=BASELINE_DOMAIN,
                sources={d["name"]: d["source"] for d in self.domains},
                spaces={k: s.label_space for k, s in self.sources.items()}, groups=trees,
                references={d["name"]: self.reference_of(d["name"]) for d in self.domains}, n_boot=n_boot, seed=seed,
                level=level)
        return self._uncertainty[key]

    def summary(self, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
        """The record without per-image data: what ``--format json`` prints.

        ``uncertainty`` holds the bootstrap intervals (``n_boot`` resamples, ``seed``) of every row of
        ``results``, the flip rates and the mean drop (:meth:`uncertainty`). The dict is the caller's own: its nested
        fields are copies, so editing it never changes this result (or a record written from it later).
        """
        return copy.deepcopy({
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "weights": self.weights,
            "data_config": self.data_config,
            "sources": {key: source.record for key, source in self.sources.items()},
            "domains": self.domains,
            "protocol": self.protocol,
            "environment": self.environment,
            "tied": self.tied,
            "results": [r.to_dict() for r in self.results],
            "uncertainty": self.uncertainty(n_boot=n_boot, seed=seed),
        })

    def to_dict(self) -> dict[str, Any]:
        """The full record, per-image labels, images and predictions included (JSON-serializable)."""
        record = self.summary()
        record["sources"] = {key: {**s.record, "images": list(s.images), "labels": s.labels.astype(int).tolist()}
                             for key, s in self.sources.items()}
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
        record = read_json(path, "JSON result record (robust-eval --output)")
        if not isinstance(record, dict):
            raise ValueError(f"Expected a JSON object as result record in {path}, but got {type(record).__name__}.")
        if record.get("schema_version") != SCHEMA_VERSION:
            older = record.get("schema_version") == 1
            raise ValueError(
                f"Expected a result record with schema_version {SCHEMA_VERSION} in {path}, "
                f"but got {record.get('schema_version')!r}. "
                + ("Records of schema 1 were made under protocol version 1 (std shifts relative to each model's "
                   "normalization), so their numbers are not comparable: re-run the evaluation with this version."
                   if older else "Re-run the evaluation with this version.")
            )
        sources, predictions = _check_record(record, path)
        result = cls(model=record["model"], weights=record["weights"], data_config=record["data_config"],
                     sources=sources, domains=record["domains"], protocol=record["protocol"],
                     environment=record["environment"], predictions=predictions, tied=record.get("tied", {}))
        check_record_derivations(result, record, path)
        return result


def _check_record(record: dict[str, Any], path: str | os.PathLike[str]) -> tuple[dict[str, SourceResult],
                                                                                  dict[str, np.ndarray]]:
    """The schema of a result record (the fields :class:`EvalResult` and the reports use); sources, predictions."""

    def bad(field: str, expected: str, got: Any) -> ValueError:
        shown = repr(got) if isinstance(got, (str, int, float, bool, type(None))) else type(got).__name__
        return ValueError(f"Expected {field} to be {expected} in result record {path}, but got {shown[:80]}. The "
                          "file was edited or damaged, or not written by robust-eval --output: re-run the evaluation.")

    def integers(field: str, value: Any, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
        try:
            array = np.asarray(value)
        except ValueError:  # ragged nested lists
            array = None
        expected = (f"a list of {shape[0]} " + (f"lists of {shape[1]} " if len(shape) > 1 else "")
                    + f"integers in {low}..{high}")
        if array is None or array.dtype.kind not in "iu" or array.shape != shape or (array.size and (
                array.min() < low or array.max() > high)):
            raise bad(field, expected, value if array is None or array.ndim == 0 else f"shape {array.shape} "
                      f"{array.dtype}")
        return array.astype(np.int64)

    if not isinstance(record.get("model"), str):
        raise bad("'model'", "a string", record.get("model"))
    # A NaN or an infinity anywhere but in the integer arrays (labels and predictions are checked as integers below).
    check_finite({k: v for k, v in record.items() if k not in ("sources", "predictions")}, f"result record {path}")
    for key in ("weights", "data_config", "sources", "protocol", "environment"):
        if not isinstance(record.get(key), dict):
            raise bad(f"{key!r}", "an object", record.get(key))
    # The per-source fields but the per-image lists (labels are checked as integers below, images as strings).
    check_finite({"sources": {key: {k: v for k, v in s.items() if k not in ("labels", "images")}
                              if isinstance(s, dict) else s for key, s in record["sources"].items()}},
                 f"result record {path}")
    if not is_integer(record["data_config"].get("crop")):
        raise bad("data_config.crop", "an integer", record["data_config"].get("crop"))
    protocol = record["protocol"]
    if not isinstance(protocol.get("precision"), str):
        raise bad("protocol.precision", "a string", protocol.get("precision"))
    if not is_integer(protocol.get("version")):
        raise bad("protocol.version", "an integer", protocol.get("version"))
    if not is_fast_record(protocol.get("fast")):
        raise bad("protocol.fast", "null (the exact path) or an object with true/false "
                  + " and ".join(FAST_FINGERPRINT_KEYS), protocol.get("fast"))

    sources: dict[str, SourceResult] = {}
    for key, source in record["sources"].items():
        where = f"sources[{key!r}]"
        if not isinstance(source, dict):
            raise bad(where, "an object", source)
        try:
            space = label_space_from_dict(source.get("label_space") or {})
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad(f"{where}.label_space", "a label space record (kind, name, policy)", source.get("label_space"))
        raw_labels = source.get("labels")
        if not isinstance(raw_labels, list):
            raise bad(f"{where}.labels", "a list of integers", raw_labels)
        unlabelled = space.kind == "none"
        high = len(getattr(space, "classes", ())) - 1 if space.kind == "mapping" else 999
        labels = integers(f"{where}.labels", raw_labels, (len(raw_labels),), -1 if unlabelled else 0,
                          -1 if unlabelled else high)
        n = source.get("n")
        if not is_integer(n) or n != len(labels):
            raise bad(f"{where}.n", f"the number of labels ({len(labels)})", n)
        images = source.get("images", [])
        if (not isinstance(images, list) or not all(isinstance(i, str) for i in images)
                or len(images) not in (0, len(labels))):
            raise bad(f"{where}.images", f"a list of {len(labels)} image paths", images)
        record_only = {k: v for k, v in source.items() if k not in ("labels", "images")}
        sources[key] = SourceResult(record_only, labels, images)

    domains = record.get("domains")
    if not isinstance(domains, list) or not all(
        isinstance(d, dict) and isinstance(d.get("name"), str) and isinstance(d.get("label"), str)
        and isinstance(d.get("source"), str) and d["source"] in sources and isinstance(d.get("stage"), str)
        and d["stage"] in STAGES and isinstance(d.get("paired"), bool)
        and (d.get("shift") is None or isinstance(d.get("shift"), dict)) for d in domains
    ):
        raise bad("'domains'", f"a list of objects with a string name and label, a source of {sorted(sources)}, a "
                  f"stage in {STAGES}, a shift (object or null) and paired (true/false)", domains)
    for i, d in enumerate(domains):
        shift = d["shift"] or {}
        severity = shift.get("severity")
        if d["shift"] is not None and not (isinstance(shift.get("name"), str) and (severity is None or (
                isinstance(severity, dict) and isinstance(severity.get("family"), str)
                and isinstance(severity.get("param"), str) and is_number(severity.get("value"))
                and (severity.get("identity") is None or is_number(severity["identity"]))))):
            raise bad(f"domains[{i}].shift", "null or a shift definition (a string name; severity null or "
                      "{family, param, value, identity: number or null})", d["shift"])
    names = [d["name"] for d in domains]
    if BASELINE_DOMAIN not in names or len(set(names)) != len(names):
        raise bad("'domains'", f"unique names including {BASELINE_DOMAIN!r}", ", ".join(names))
    # Protocol 4 records name each drop's reference: a baseline (clean, or a domain that is its own reference).
    own = {d["name"] for d in domains if d.get("reference") == d["name"]} | {BASELINE_DOMAIN}
    for i, d in enumerate(domains):
        if "reference" in d or protocol["version"] >= REFERENCES_SINCE:
            if d.get("reference") not in own:
                raise bad(f"domains[{i}].reference", f"the name of a reference domain ({', '.join(sorted(own))})",
                          d.get("reference"))
    raw = record.get("predictions")
    if not isinstance(raw, dict) or sorted(raw) != sorted(names):
        got = ", ".join(map(str, raw)) if isinstance(raw, dict) else raw
        raise bad("'predictions'", f"an object with one entry per domain ({', '.join(names)})", got)
    predictions = {d["name"]: integers(f"predictions[{d['name']!r}]", raw[d["name"]],
                                       (len(sources[d["source"]].labels), TOPK), 0, 999) for d in domains}
    tied = record.get("tied", {})
    if not isinstance(tied, dict) or not all(is_integer(v) and k in names for k, v in tied.items()):
        raise bad("'tied'", "an object of domain name -> number of images", tied)
    return sources, predictions


# -- what a record states that its per-image data give again (hostile or edited records) ---------------------------
_RANDOM_MARK = "RANDOM INIT"  # how text.random_weights_mark begins
_DIGEST_SHOWN = re.compile(r"\(sha256 ([0-9a-f]+)\.\.\.\)\Z")  # how WeightsSource.describe ends with the digest
_FILE_KINDS = ("path", "url")  # weights read from a file the suite hashed itself: the digest is always known
_ROW_FIELDS = ("n", "top1_err", "top5_err", "top1_drop", "top5_drop")


def weights_problem(weights: Mapping[str, Any]) -> str | None:
    """What contradicts itself in a weights record (a result's or a leaderboard entry's ``weights``), or None.

    Its fields say the same thing several times: a random init has an integer seed and no file (no sha256), weights
    from a file or URL always have the file's sha256, only a random init has a seed, and the description
    (:meth:`~robustbench_ibn.models.WeightsSource.describe`) names random init loudly and shows the digest's first
    digits. A record edited to pass random weights for trained ones, or one file for another, breaks one of these.

    Example:
        >>> weights_problem({"kind": "path", "sha256": "ab" * 32, "seed": None, "description": "file w.pth"})
        >>> weights_problem({"kind": "official", "sha256": None, "seed": 0, "description": "RANDOM INIT (seed 0)"})
        "weights.kind is 'official' while weights.seed is 0: only a random init records a seed"
    """
    kind, sha, seed, text = (weights.get(k) for k in ("kind", "sha256", "seed", "description"))
    if not isinstance(kind, str):
        return f"weights.kind is {kind!r:.40}, not a string"
    if sha is not None and not is_hex(sha, 64):
        return f"weights.sha256 is {sha!r:.80}, not null or 64 hexadecimal digits"
    if kind == "random":
        if sha is not None:
            return "weights.kind is 'random' (no file) while weights.sha256 is set"
        if not is_integer(seed):
            return f"weights.kind is 'random' while weights.seed is {seed!r:.40}, not the init seed (an integer)"
    elif seed is not None:
        return f"weights.kind is {kind!r:.40} while weights.seed is {seed!r:.40}: only a random init records a seed"
    elif kind in _FILE_KINDS and sha is None:
        return f"weights.kind is {kind!r} while weights.sha256 is null: the digest of a weights file is always recorded"
    if isinstance(text, str):
        if text.startswith(_RANDOM_MARK) != (kind == "random"):
            return f"weights.description is {text!r:.60} while weights.kind is {kind!r:.40}"
        shown = _DIGEST_SHOWN.search(text)
        if shown and not (sha or "").startswith(shown[1]):
            return f"weights.description shows sha256 {shown[1]}... while weights.sha256 is {sha!r:.80}"
    return None


def check_record_derivations(result: EvalResult, record: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a record whose stated identity disagrees with its own per-image data: what tables, entries and rankings
    copy from it without computing it (every error and drop they show is recomputed from the predictions).

    Recomputed and compared: each source's ``labels_sha256`` (from its labels) and ``sha256`` (from its stored
    relative paths, when the record has them), the protocol fingerprint (from the sources, domains, precision,
    version and fast path), the stored rows of ``results`` (from the predictions), and the weights record's
    agreement with itself (:func:`weights_problem`). ``n`` is checked with the schema (the number of labels).

    Raises:
        ValueError: the field that disagrees, what it says and what it should say; the file is named.
    """
    from .data import images_sha256, labels_sha256  # data is heavier than what loading a record otherwise needs

    def disagree(field: str, stated: Any, recomputed: Any, origin: str) -> ValueError:
        return ValueError(f"Expected {field} in result record {path} to be {recomputed} ({origin}), but it is "
                          f"{stated!r:.80}. The file was edited or damaged: re-run the evaluation, or use the record "
                          f"robust-eval --output wrote.")

    problem = weights_problem(result.weights)
    if problem:
        raise ValueError(f"Expected the weights record of result record {path} to agree with itself, but {problem}. "
                         f"The file was edited or damaged: re-run the evaluation, or use the record robust-eval "
                         f"--output wrote.")
    for key, source in result.sources.items():
        stated = source.record.get("labels_sha256")
        if stated is not None and stated != labels_sha256(source.labels):
            raise disagree(f"sources[{key!r}].labels_sha256", stated, labels_sha256(source.labels),
                           "the digest of its labels")
        stated = source.record.get("sha256")
        if source.images and stated != images_sha256(source.images):
            raise disagree(f"sources[{key!r}].sha256", stated, images_sha256(source.images),
                           "the digest of its stored image paths")
    protocol = result.protocol
    if protocol.get("fingerprint") is not None:
        fast = protocol.get("fast")
        recomputed = protocol_fingerprint(
            {key: s.record for key, s in result.sources.items()}, result.domains, protocol["precision"],
            protocol["version"], fast=None if fast is None else {k: fast[k] for k in FAST_FINGERPRINT_KEYS})
        if protocol["fingerprint"] != recomputed:
            raise disagree("protocol.fingerprint", protocol["fingerprint"], recomputed,
                           "the hash of its sources, domains, precision and protocol version")
    stated_rows = record.get("results")
    if stated_rows is None:
        return
    rows = result.results
    if not isinstance(stated_rows, list) or len(stated_rows) != len(rows):
        raise disagree("'results'", stated_rows if not isinstance(stated_rows, list) else f"{len(stated_rows)} rows",
                       f"{len(rows)} rows, one per domain", "its domains")
    for i, (stated, row) in enumerate(zip(stated_rows, rows)):
        if not isinstance(stated, dict) or stated.get("transform") != row.transform:
            raise disagree(f"results[{i}].transform", stated.get("transform") if isinstance(stated, dict) else stated,
                           repr(row.transform), "the domains in order")
        for name in _ROW_FIELDS:
            value, expected = stated.get(name), getattr(row, name)
            if not (is_number(value) and math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9)):
                raise disagree(f"results[{i}].{name} ({row.transform})", value, f"{expected:.6g}",
                               "recomputed from its per-image predictions")
