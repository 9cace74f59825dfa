"""ImageNet-C numbers: corruption error (CE), mCE and relative mCE, normalised by AlexNet (pure functions).

Hendrycks & Dietterich (ICLR 2019), with E the top-1 error on corruption c at severity s:

* CE(c) = sum_s E(c, s) / sum_s E_AlexNet(c, s) = mean_s E(c, s) / alexnet_err[c] (the table holds AlexNet's
  severity mean), in percent (AlexNet = 100);
* relative CE(c) = (mean_s E(c, s) - E_clean) / (alexnet_err[c] - E_clean,AlexNet);
* mCE and relative mCE: the means of those over the 15 benchmark corruptions.

The 4 extra corruptions get their mean error only (no AlexNet normaliser exists for them). A partial set
(some corruptions or severities) is computed over what is present, and the result says it is not the
published mCE (:attr:`CorruptionScores.complete`, :meth:`CorruptionScores.note`). Errors are in percent,
as :class:`~robustbench_ibn.metrics.TopkCounts` gives them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .checks import is_number
from .datasets.facts import imagenet_c_facts
from .results import ERROR_UNIT
from .text import listing

__all__ = ["ON_THE_FLY", "UNITS", "CorruptionRun", "CorruptionScores", "Coverage", "corruption_scores", "coverage",
           "imagenet_c_runs", "imagenet_c_trees", "on_the_fly_set", "severity_span"]


def severity_span(severities: Iterable[int]) -> str:
    """``1-5``, ``1-2``, ``3`` or ``1, 2, 4``: a set of severities as a report writes it.

    Example:
        >>> severity_span([2, 1]), severity_span([3]), severity_span([1, 2, 4])
        ('1-2', '3', '1, 2, 4')
    """
    values = sorted(set(severities))
    if len(values) > 1 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(v) for v in values)


def _check_corruption(name: str) -> None:
    known = imagenet_c_facts().corruptions
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Expected an ImageNet-C corruption ({', '.join(known)}), but got {name!r}.{hint}")


@dataclass(frozen=True)
class Coverage:
    """Which of the 19 corruptions x 5 severities a tree or a set of results holds.

    Attributes:
        severities: present corruption -> its severities (sorted), benchmark corruptions first, in canonical order.
        missing_benchmark: the benchmark corruptions absent altogether.
    """

    severities: dict[str, tuple[int, ...]]
    missing_benchmark: tuple[str, ...]

    @property
    def benchmark(self) -> tuple[str, ...]:
        """The benchmark corruptions present."""
        return tuple(c for c in self.severities if c in imagenet_c_facts().benchmark)

    @property
    def extras(self) -> tuple[str, ...]:
        """The extra corruptions present."""
        return tuple(c for c in self.severities if c in imagenet_c_facts().extras)

    @property
    def complete(self) -> bool:
        """All 15 benchmark corruptions at all 5 severities: what the published mCE averages over."""
        full = imagenet_c_facts().severities
        return not self.missing_benchmark and all(self.severities[c] == full for c in self.benchmark)

    def summary(self) -> str:
        """One line, e.g. ``3 of 15 benchmark corruptions, severities 1-2 only: missing shot_noise, ...``.

        Example:
            >>> coverage([("fog", 1), ("fog", 2), ("saturate", 1)]).summary()[:68]
            '1 of 15 benchmark corruptions, severities 1-2 only: missing gaussian'
        """
        facts = imagenet_c_facts()
        bench = self.benchmark
        text = f"{len(bench)} of {len(facts.benchmark)} benchmark corruptions"
        spans = {severity_span(self.severities[c]) for c in bench}
        if len(spans) == 1:
            only = "" if self.severities[bench[0]] == facts.severities else " only"
            text += f", severities {spans.pop()}{only}"
        elif spans:
            text += ", severities differ (" + "; ".join(f"{c} {severity_span(self.severities[c])}" for c in bench) + ")"
        if self.missing_benchmark:
            text += f": missing {listing(self.missing_benchmark, len(facts.benchmark))}"
        if self.extras:
            text += ("; extra corruptions (reported apart, no CE): "
                     + ", ".join(f"{c} {severity_span(self.severities[c])}" for c in self.extras))
        return text


def coverage(pairs: Iterable[tuple[str, int]]) -> Coverage:
    """The :class:`Coverage` of a set of ``(corruption, severity)`` pairs.

    Raises:
        ValueError: an unknown corruption name or a severity outside 1..5.

    Example:
        >>> c = coverage([("fog", s) for s in range(1, 6)])
        >>> c.benchmark, c.complete, len(c.missing_benchmark)
        (('fog',), False, 14)
    """
    facts = imagenet_c_facts()
    found: dict[str, set[int]] = {}
    for corruption, severity in pairs:
        _check_corruption(corruption)
        if isinstance(severity, bool) or severity not in facts.severities:
            raise ValueError(f"Expected an ImageNet-C severity in 1..5 for {corruption}, but got {severity!r}.")
        found.setdefault(corruption, set()).add(int(severity))
    return Coverage({c: tuple(sorted(found[c])) for c in facts.corruptions if c in found},
                    tuple(c for c in facts.benchmark if c not in found))


@dataclass(frozen=True)
class CorruptionScores:
    """CE, mCE and relative mCE of one model (percent); see the module docstring for the formulas.

    Attributes:
        mean_error: present corruption -> its top-1 error averaged over its severities (extras included).
        ce: benchmark corruption -> corruption error, AlexNet = 100.
        relative_ce: benchmark corruption -> relative CE (empty without a clean error).
        mce: mean CE over the benchmark corruptions present (None if none is).
        relative_mce: mean relative CE (None without a clean error or a benchmark corruption).
        mean_benchmark_error: mean top-1 error over every benchmark (corruption, severity) present.
        clean_error: the model's clean top-1 error, if given.
        coverage: what the errors covered; ``coverage.complete`` is what makes ``mce`` the published mCE.
    """

    mean_error: dict[str, float]
    ce: dict[str, float]
    relative_ce: dict[str, float]
    mce: float | None
    relative_mce: float | None
    mean_benchmark_error: float | None
    clean_error: float | None
    coverage: Coverage = field(repr=False)

    @property
    def complete(self) -> bool:
        """True when the mCE is over all 15 x 5 sets, so it compares with published mCEs."""
        return self.coverage.complete

    def note(self) -> str:
        """Empty for a complete set; else why the mCE is not the published one, and what is missing."""
        if self.complete:
            return ""
        return ("not the published mCE (that averages all 15 benchmark corruptions x 5 severities): "
                + self.coverage.summary())

    def to_dict(self) -> dict[str, Any]:
        return {"mean_error": self.mean_error, "ce": self.ce, "relative_ce": self.relative_ce, "mce": self.mce,
                "relative_mce": self.relative_mce, "mean_benchmark_error": self.mean_benchmark_error,
                "clean_error": self.clean_error, "complete": self.complete, "coverage": self.coverage.summary(),
                "note": self.note()}


def _check_error(value: float, what: str, scale: float = 1.0) -> float:
    """``value`` as a float in 0..100 / ``scale`` (the range of its unit)."""
    top = 100 / scale
    if not (is_number(value) and 0 <= value <= top):
        unit = "percent (0..100)" if scale == 1 else "a fraction (0..1)"
        raise ValueError(f"Expected the top-1 error of {what} in {unit}, but got {value!r:.80}.")
    return float(value)


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


UNITS = ("percent", "fraction")


def corruption_scores(errors: Mapping[tuple[str, int], float], clean_error: float | None = None, *,
                      unit: str | None = None) -> CorruptionScores:
    """CE per corruption, mCE and relative mCE from top-1 errors per ``(corruption, severity)``, in percent.

    Args:
        errors: ``{("gaussian_noise", 1): 41.2, ...}``; any subset of the 19 corruptions x 5 severities.
        clean_error: the same model's top-1 error on clean ImageNet val, for the relative CE.
        unit: what ``errors`` and ``clean_error`` are in: ``"percent"`` (0..100), ``"fraction"`` (0..1, scaled to
            percent here), or ``None``: percent, unless every value is below 1, which is refused (it cannot tell 0.5%
            from a fraction 0.5, and a wrong guess is a mCE 100 times off). A result's errors are percent
            (:data:`~robustbench_ibn.results.ERROR_UNIT`): :func:`imagenet_c_runs` says so.

    Raises:
        ValueError: unknown corruption or severity, or unit; an error outside its unit's range; or, without a unit,
            errors that are all below 1.

    Example:
        >>> alexnet = {(c, s): 100 * e for c, e in imagenet_c_facts().alexnet_err.items() for s in range(1, 6)}
        >>> scores = corruption_scores(alexnet, clean_error=43.478)
        >>> round(scores.mce, 6), round(scores.relative_mce, 6), scores.complete
        (100.0, 100.0, True)
    """
    if unit is not None and unit not in UNITS:
        raise ValueError(f"Expected unit to be one of {UNITS} or None, but got {unit!r}.")
    facts = imagenet_c_facts()
    cover = coverage(errors)
    scale = 100.0 if unit == "fraction" else 1.0
    checked = {(c, s): scale * _check_error(e, f"{c} severity {s}", scale) for (c, s), e in errors.items()}
    clean = None if clean_error is None else scale * _check_error(clean_error, "clean ImageNet val", scale)
    values = list(checked.values()) + ([clean] if clean is not None else [])
    # all zero (a perfect model on a few images) reads the same in either unit
    if unit is None and values and 0 < max(values) < 1:
        raise ValueError(f"Expected top-1 errors in percent, but every value is below 1 (largest {max(values)}): "
                         "fractions, or small percentages? Say which: unit='fraction' (or multiply them by 100), or "
                         "unit='percent'.")
    mean_error = {c: sum(checked[c, s] for s in sev) / len(sev) for c, sev in cover.severities.items()}
    ce = {c: 100 * mean_error[c] / (100 * facts.alexnet_err[c]) for c in cover.benchmark}
    relative = {} if clean is None else {
        c: 100 * (mean_error[c] - clean) / (100 * (facts.alexnet_err[c] - facts.alexnet_clean_err))
        for c in cover.benchmark}
    bench = [e for (c, _), e in checked.items() if c in facts.benchmark]
    return CorruptionScores(mean_error=mean_error, ce=ce, relative_ce=relative, mce=_mean(ce.values()),
                            relative_mce=_mean(relative.values()), mean_benchmark_error=_mean(bench),
                            clean_error=clean, coverage=cover)


@dataclass(frozen=True)
class CorruptionRun:
    """The ImageNet-C sets of one run that come from one tree, and their scores.

    Attributes:
        name: the tree's domain name (``imagenet-c``, or its label), the prefix of its sets' domains.
        label: how reports name it (``ImageNet-C``, or the label).
        domains: ``(corruption, severity)`` -> the domain of that set (``imagenet-c/fog/3``).
        scores: :func:`corruption_scores` of the sets' top-1 errors, with the run's clean val error.
    """

    name: str
    label: str
    domains: dict[tuple[str, int], str]
    scores: CorruptionScores


def imagenet_c_trees(result: Any) -> dict[str, dict[tuple[str, int], str]]:
    """The ImageNet-C trees of an :class:`~robustbench_ibn.results.EvalResult`'s domains: tree name ->
    ``{(corruption, severity): domain name}``, in evaluation order (see :func:`imagenet_c_runs`).

    Example:
        >>> class Run:  # the fields of an EvalResult this reads
        ...     domains = [{"name": "clean", "source": "val", "shift": None},
        ...                {"name": "imagenet-c/fog/3", "source": "c-fog-3", "shift": None}]
        ...     sources = {"val": type("S", (), {"record": {"kind": "imagenet-val"}}),
        ...                "c-fog-3": type("S", (), {"record": {"kind": "imagenet-c",
        ...                                                     "options": {"corruption": "fog", "severity": 3}}})}
        >>> imagenet_c_trees(Run())
        {'imagenet-c': {('fog', 3): 'imagenet-c/fog/3'}}

    Raises:
        ValueError: one tree holding a (corruption, severity) twice.
    """
    found: dict[str, dict[tuple[str, int], str]] = {}
    for domain in result.domains:
        record = result.sources[domain["source"]].record
        options = record.get("options") or {}
        fly = on_the_fly_set(domain)
        if fly is not None:
            key, name = fly[:2], ON_THE_FLY[fly[2]][0]
        elif record.get("kind") != "imagenet-c" or domain["shift"] is not None or "corruption" not in options:
            continue
        else:
            key = (str(options["corruption"]), int(options["severity"]))
            suffix = f"/{key[0]}/{key[1]}"
            name = domain["name"][:-len(suffix)] if domain["name"].endswith(suffix) else domain["name"]
        if key in found.setdefault(name, {}):
            raise ValueError(f"Expected each ImageNet-C set once in tree {name}, but {key[0]} severity {key[1]} is "
                             f"domains {found[name][key]} and {domain['name']}.")
        found[name][key] = domain["name"]
    return found


# The trees of the on-the-fly sets (transforms/imagenet_c.py), by storage: name and label. Their names are not the
# released files' tree name (``imagenet-c``), so reports and leaderboards never put their mCE in the same column.
ON_THE_FLY = {False: ("imagenet-c-on-the-fly", "ImageNet-C on the fly (on-disk emulation, JPEG q85)"),
              True: ("imagenet-c-on-the-fly-in-memory", "ImageNet-C on the fly (in memory)")}


def on_the_fly_set(domain: Mapping[str, Any]) -> tuple[str, int, bool] | None:
    """``(corruption, severity, in memory)`` of a result's domain that is an on-the-fly ImageNet-C set (a shift
    ``imagenet-c.<corruption>.<severity>[.memory]``); ``None`` for any other domain.

    Example:
        >>> on_the_fly_set({"name": "imagenet-c.fog.3", "shift": {"name": "imagenet-c.fog.3",
        ...                 "params": {"corruption": "fog", "severity": 3, "storage": "jpeg-q85"}}})
        ('fog', 3, False)
    """
    shift = domain.get("shift") or {}
    params = shift.get("params") or {}
    if not str(shift.get("name", "")).startswith("imagenet-c.") or "corruption" not in params:
        return None
    return str(params["corruption"]), int(params["severity"]), params.get("storage") == "in-memory"


def imagenet_c_runs(result: Any) -> list[CorruptionRun]:
    """The ImageNet-C trees of an :class:`~robustbench_ibn.results.EvalResult`, scored (in evaluation order).

    A domain is an ImageNet-C set when its source's record is of kind ``imagenet-c`` (its options name the
    corruption and severity) and it has no shift; the sets of one tree share the domain name's prefix
    (``imagenet-c/fog/3`` belongs to ``imagenet-c``). The on-the-fly sets (shifts
    ``imagenet-c.<corruption>.<severity>``, :func:`on_the_fly_set`) make trees of their own, one per storage (:data:`ON_THE_FLY`: on-disk emulation or in
    memory), never the released files' tree. Their top-1 errors and the clean val error go through
    :func:`corruption_scores`, so a run's mCE is the published formula of its stored predictions.

    Raises:
        ValueError: one tree holding a (corruption, severity) twice.
    """
    rows = {r.transform: r for r in result.results}
    found = imagenet_c_trees(result)
    clean = rows["clean"].top1_err
    labels = {"imagenet-c": "ImageNet-C", **dict(ON_THE_FLY.values())}
    return [CorruptionRun(name, labels.get(name, name), sets,
                          corruption_scores({key: rows[d].top1_err for key, d in sets.items()}, clean_error=clean,
                                            unit=ERROR_UNIT))
            for name, sets in found.items()]
