"""Label facts of the natural-shift datasets, read from the package data in ``datasets/data/``.

Each file names its source in its first line. The loaders are cached and check what they read (counts,
indices in range, wnids in the canonical ImageNet-1k index), because a damaged install must never shift a
label silently:

* ``imagenet_r_classes.tsv``, ``imagenet_a_classes.tsv``: the 200 classes of ImageNet-R and ImageNet-A.
* ``objectnet_classes.tsv``: the 313 ObjectNet folders, their labels and, for the 113 that overlap ImageNet-1k,
  the ImageNet classes they map to.
* ``imagenet_c.json``: the 15 benchmark and 4 extra ImageNet-C corruptions, their groups and AlexNet's errors.
* ``reported_resnet50.json``: published results of torchvision ResNet-50 on these sets, with their sources.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..data import DataError, wnid_to_index
from ..labels import NUM_CLASSES

__all__ = [
    "CorruptionFacts",
    "ReportedResult",
    "imagenet_a_classes",
    "imagenet_c_facts",
    "imagenet_r_classes",
    "objectnet_classes",
    "objectnet_mapping",
    "reported_results",
    "reported_sources",
]

DOMAINS = ("imagenet-val", "imagenet-v2", "imagenet-r", "imagenet-a", "imagenet-sketch", "objectnet", "imagenet-c",
           "stylized-imagenet")
# reference_top1_acc: top-1 accuracy on the val images of the set's classes, predicted among them (the reference of
# the set's drop in its own label space, imagenet-testbed's val-on-imagenet-r-classes and the like).
METRICS = ("top1_acc", "top5_acc", "top1_err", "mce", "mean_top1_acc", "reference_top1_acc")


def _text(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


def _damaged(name: str, problem: str) -> DataError:
    return DataError(f"robustbench_ibn/datasets/data/{name} is damaged: {problem}; reinstall the package.")


def _table(name: str, columns: tuple[str, ...]) -> list[list[str]]:
    """The rows of a tab-separated package file: ``#`` lines first (the source), then a header, then rows."""
    lines = [line for line in _text(name).splitlines() if line and not line.startswith("#")]
    if not lines or tuple(lines[0].split("\t")) != columns:
        raise _damaged(name, f"expected the header {' '.join(columns)}")
    rows = [line.split("\t") for line in lines[1:]]
    if any(len(row) != len(columns) for row in rows):
        raise _damaged(name, f"expected {len(columns)} tab-separated columns on every line")
    return rows


@functools.cache
def _subset_classes(name: str) -> tuple[tuple[str, int], ...]:
    rows = _table(name, ("target_index", "wnid", "imagenet1k_index", "lemma"))
    index = wnid_to_index()
    wnids = [row[1] for row in rows]
    if (len(rows) != 200 or [row[0] for row in rows] != [str(i) for i in range(200)] or wnids != sorted(set(wnids))
            or any(index.get(row[1]) != int(row[2]) for row in rows)):
        raise _damaged(name, "expected 200 distinct wnids of the canonical ImageNet-1k index in ascending order, "
                             "numbered 0..199, each with its canonical index")
    return tuple((row[1], int(row[2])) for row in rows)


def imagenet_r_classes() -> tuple[tuple[str, int], ...]:
    """The 200 ImageNet-R classes as ``(wnid, ImageNet-1k index)``, in ascending wnid order.

    Example:
        >>> classes = imagenet_r_classes()
        >>> len(classes), classes[0]
        (200, ('n01443537', 1))
    """
    return _subset_classes("imagenet_r_classes.tsv")


def imagenet_a_classes() -> tuple[tuple[str, int], ...]:
    """The 200 ImageNet-A classes as ``(wnid, ImageNet-1k index)``, in ascending wnid order (not the R set).

    Example:
        >>> classes = imagenet_a_classes()
        >>> len(classes), classes[0]
        (200, ('n01498041', 6))
    """
    return _subset_classes("imagenet_a_classes.tsv")


@functools.lru_cache(maxsize=1)
def _objectnet() -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    name = "objectnet_classes.tsv"
    rows = _table(name, ("folder", "label", "imagenet1k_indices"))
    parsed = []
    for folder, label, indices in rows:
        try:
            mapped = tuple(int(i) for i in indices.split(",")) if indices else ()
        except ValueError:
            raise _damaged(name, f"expected comma-separated ImageNet indices for {folder}, got {indices!r}") from None
        parsed.append((folder, label, mapped))
    folders = [row[0] for row in parsed]
    flat = [i for row in parsed for i in row[2]]
    overlapping = [row for row in parsed if row[2]]
    if (len(parsed) != 313 or folders != sorted(set(folders)) or len(overlapping) != 113 or len(flat) != 125
            or len(set(flat)) != 125 or not all(0 <= i < NUM_CLASSES for i in flat)):
        raise _damaged(name, "expected 313 distinct sorted folders, 113 of them mapped to 125 distinct ImageNet-1k "
                             "indices in 0..999")
    return tuple(parsed)


def objectnet_classes() -> dict[str, str]:
    """All 313 ObjectNet image folders -> their human-readable label, in folder order.

    Example:
        >>> classes = objectnet_classes()
        >>> len(classes), classes["full_sized_towel"]
        (313, 'Bath towel')
    """
    return {folder: label for folder, label, _ in _objectnet()}


def objectnet_mapping() -> dict[str, list[int]]:
    """The 113 ObjectNet folders that overlap ImageNet-1k -> their ImageNet-1k indices (sorted), in folder order.

    Keyed by folder name, never by an ImageFolder index or an official ObjectNet id: those orders differ.

    Example:
        >>> mapping = objectnet_mapping()
        >>> len(mapping), mapping["chair"]
        (113, [423, 559, 765])
    """
    return {folder: sorted(mapped) for folder, _, mapped in _objectnet() if mapped}


@dataclass(frozen=True)
class CorruptionFacts:
    """The ImageNet-C constants: corruption names (15 benchmark, then 4 extra), groups and AlexNet's errors.

    Attributes:
        benchmark: the 15 corruptions of the mCE, in the order of the official test.
        extras: the 4 extra ("validation") corruptions, reported apart, without a CE.
        groups: corruption -> noise / blur / weather / digital (for the extras by analogy, not official).
        families: corruption -> the family folder of the public archives (the extras: ``"extra"``).
        alexnet_err: benchmark corruption -> AlexNet's top-1 error (fraction), mean over severities 1-5.
        alexnet_clean_err: AlexNet's clean top-1 error (fraction), the relative-mCE baseline.
        severities: ``(1, 2, 3, 4, 5)``.
    """

    benchmark: tuple[str, ...]
    extras: tuple[str, ...]
    groups: dict[str, str]
    families: dict[str, str]
    alexnet_err: dict[str, float]
    alexnet_clean_err: float
    severities: tuple[int, ...]

    @property
    def corruptions(self) -> tuple[str, ...]:
        """All 19 names: the benchmark ones, then the extras."""
        return self.benchmark + self.extras


@functools.lru_cache(maxsize=1)
def imagenet_c_facts() -> CorruptionFacts:
    """The ImageNet-C constants (see :class:`CorruptionFacts`).

    Example:
        >>> facts = imagenet_c_facts()
        >>> len(facts.benchmark), len(facts.extras), facts.alexnet_err["gaussian_noise"], facts.alexnet_clean_err
        (15, 4, 0.886428, 0.43478)
    """
    name = "imagenet_c.json"
    try:
        doc = json.loads(_text(name))
        benchmark = tuple(str(e["name"]) for e in doc["benchmark"])
        extras = tuple(str(e["name"]) for e in doc["extra"])
        groups = {**{e["name"]: e["group"] for e in doc["benchmark"]},
                  **{e["name"]: e["group_by_analogy"] for e in doc["extra"]}}
        alexnet = {e["name"]: float(e["alexnet_err"]) for e in doc["benchmark"]}
        facts = CorruptionFacts(benchmark, extras, groups,
                                {**{c: groups[c] for c in benchmark}, **{c: doc["extra_family"] for c in extras}},
                                alexnet, float(doc["alexnet_clean_err"]), tuple(int(s) for s in doc["severities"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(name, f"unreadable ({type(exc).__name__}: {exc})") from exc
    if (len(benchmark) != 15 or len(extras) != 4 or len(set(facts.corruptions)) != 19
            or set(groups.values()) != {"noise", "blur", "weather", "digital"} or facts.severities != (1, 2, 3, 4, 5)
            or not all(0 < v < 1 for v in alexnet.values()) or not 0 < facts.alexnet_clean_err < min(alexnet.values())):
        raise _damaged(name, "expected 15 + 4 distinct corruptions in the 4 groups, severities 1..5, and AlexNet "
                             "errors in (0, 1) above its clean error")
    return facts


@dataclass(frozen=True)
class ReportedResult:
    """One published number: ``value`` (percent) of ``metric`` on ``domain`` (``variant``), from ``source``.

    ``preferred`` marks the one value per (domain, variant, metric) a reported leaderboard entry shows.
    """

    domain: str
    variant: str | None
    metric: str
    value: float
    source: str
    setting: str
    preferred: bool
    notes: str


@functools.lru_cache(maxsize=1)
def _reported() -> tuple[dict[str, Any], tuple[ReportedResult, ...]]:
    name = "reported_resnet50.json"
    try:
        doc = json.loads(_text(name))
        results = tuple(ReportedResult(**entry) for entry in doc["results"])
        sources = doc["sources"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(name, f"unreadable ({type(exc).__name__}: {exc})") from exc
    preferred = [(r.domain, r.variant, r.metric) for r in results if r.preferred]
    bad = [r for r in results if r.domain not in DOMAINS or r.metric not in METRICS or r.source not in sources
           or not (isinstance(r.value, (int, float)) and math.isfinite(r.value) and 0 <= r.value <= 100)]
    if bad or len(preferred) != len(set(preferred)):
        raise _damaged(name, f"expected known domains, metrics and sources, values in 0..100 and at most one "
                             f"preferred value per (domain, variant, metric); first bad entry: {bad[:1]}")
    return sources, results


def reported_results(domain: str | None = None) -> list[ReportedResult]:
    """Published results of torchvision ResNet-50 (original weights), all or those of one ``domain``.

    Example:
        >>> [(r.metric, r.value, r.source) for r in reported_results("imagenet-r") if r.preferred][1:]
        [('reference_top1_acc', 92.12, 'imagenet-testbed'), ('top5_acc', 52.87, 'timm-results')]
    """
    return [r for r in _reported()[1] if domain is None or r.domain == domain]


def reported_sources() -> dict[str, dict[str, str]]:
    """Source key -> ``{"title", "citation", "protocol"}`` for :func:`reported_results` (a fresh copy).

    Example:
        >>> reported_sources()["hendrycks-robustness"]["citation"][:28]
        'hendrycks/robustness README.'
    """
    return {key: dict(value) for key, value in _reported()[0].items()}
