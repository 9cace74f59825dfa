"""Numbers from stored per-image predictions: pure functions, no model, no data.

Predictions are integer arrays ``[N, k]`` (top-k class indices, best first) and labels ``[N]``.
Counts are kept as integers; percentages are derived once, at the end.

Predictions are ImageNet-1k indices; labels are in their source's label space
(:mod:`robustbench_ibn.labels`), and :meth:`LabelSpace.correct` is the only place the two meet.

Uncertainty comes from the same stored predictions: a seeded, vectorized **paired bootstrap over
images** (every statistic of one resample, every domain's error, every drop, the flip rates, is
computed on the same resampled images, so a drop's interval accounts for the clean and shifted errors
being measured on the same pictures), a binomial (Wilson) reference interval, and McNemar's paired
test between two models. A domain of another image source is resampled over its own images,
independently of the baseline's (its drop's interval is that of a difference of independent
estimates), and has no flip rate. Severity curves are summarized by their area and the doubling severity.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .labels import ImageNet1k, LabelSpace
from .options import MAX_N_BOOT

__all__ = [
    "BOOTSTRAP_METHOD",
    "MAX_N_BOOT",
    "McNemarResult",
    "TopkCounts",
    "bootstrap_means",
    "curve_auc",
    "doubling_severity",
    "flip_rate",
    "mcnemar",
    "percentile_interval",
    "prediction_uncertainty",
    "source_seed",
    "topk_correct",
    "topk_counts",
    "wilson_interval",
]

BOOTSTRAP_METHOD = "paired percentile bootstrap over images (same resampled images for every domain)"
# Resample rows are drawn in chunks whose size depends only on n, so a seed gives the same numbers
# on every machine; about 4M indices per chunk keeps memory flat for the full 50k-image val set.
_CHUNK_INDICES = 1 << 22


@dataclass(frozen=True)
class TopkCounts:
    """Correct top-1/top-5 counts over ``n`` images; errors in percent."""

    n: int
    correct1: int
    correct5: int

    @property
    def top1_err(self) -> float:
        return 100.0 * (self.n - self.correct1) / self.n if self.n else float("nan")

    @property
    def top5_err(self) -> float:
        return 100.0 * (self.n - self.correct5) / self.n if self.n else float("nan")


def topk_correct(predictions: np.ndarray, labels: np.ndarray, k: int, space: LabelSpace | None = None) -> np.ndarray:
    """Boolean ``[N]``: is one of the first ``k`` predictions of each image right (in ``space``, default ImageNet-1k).

    Example:
        >>> topk_correct(np.array([[3, 1], [2, 0]]), np.array([1, 5]), k=2).tolist()
        [True, False]
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Expected predictions [N, k] and labels [N], but got {predictions.shape} and {labels.shape}."
        )
    if predictions.shape[1] < k:
        raise ValueError(f"Expected at least {k} predictions per image, but got {predictions.shape[1]}.")
    return (space or ImageNet1k()).correct(predictions[:, :k], labels).any(axis=1)


def topk_counts(predictions: np.ndarray, labels: np.ndarray, space: LabelSpace | None = None) -> TopkCounts:
    """Top-1 and top-5 correct counts of stored predictions (labels in ``space``, default ImageNet-1k)."""
    return TopkCounts(
        n=int(len(labels)),
        correct1=int(topk_correct(predictions, labels, 1, space).sum()),
        correct5=int(topk_correct(predictions, labels, 5, space).sum()),
    )


def flip_rate(reference: np.ndarray, shifted: np.ndarray) -> float:
    """Percent of images whose top-1 prediction differs between ``reference`` and ``shifted`` ``[N, k]``.

    Example:
        >>> flip_rate(np.array([[1, 2], [3, 4], [5, 6], [7, 8]]), np.array([[1, 0], [4, 3], [5, 6], [0, 7]]))
        50.0
    """
    reference, shifted = np.asarray(reference), np.asarray(shifted)
    if reference.shape[0] != shifted.shape[0] or reference.ndim != 2 or shifted.ndim != 2:
        raise ValueError(f"Expected two prediction arrays [N, k] of one N, but got {reference.shape} and {shifted.shape}.")
    return 100.0 * float(np.mean(reference[:, 0] != shifted[:, 0])) if len(reference) else float("nan")


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Column means of ``values`` ``[N, D]`` over ``n_boot`` resamples of its rows: ``[n_boot, D]``.

    Every resample draws N row indices with replacement; all D columns of one resample use the same
    rows (paired). Vectorized: each chunk of resamples becomes a count matrix ``[b, N]`` (how often each
    row was drawn) multiplied by ``values``. Deterministic for a given ``seed``, N and ``n_boot``.

    Example:
        >>> samples = bootstrap_means(np.array([[0.0], [1.0]]), n_boot=4000, seed=0)
        >>> samples.shape, round(float(samples.mean()), 1)
        ((4000, 1), 0.5)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"Expected values [N, D] with N >= 1, but got shape {values.shape}.")
    if not 1 <= n_boot <= MAX_N_BOOT:
        raise ValueError(f"Expected n_boot in 1..{MAX_N_BOOT}, but got {n_boot}.")
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_INDICES // n))
    out = np.empty((n_boot, values.shape[1]), dtype=np.float64)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        out[start:start + b] = counts.astype(np.float64) @ values / n
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> np.ndarray:
    """The central ``level`` percentile interval of bootstrap ``samples`` ``[B, ...]``: ``[2, ...]`` (low, high)."""
    if not 0 < level < 1:
        raise ValueError(f"Expected level in (0, 1), but got {level}.")
    alpha = 100.0 * (1.0 - level) / 2.0
    return np.percentile(np.asarray(samples), [alpha, 100.0 - alpha], axis=0)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion, as fractions (the bootstrap's reference).

    Example:
        >>> [round(x, 4) for x in wilson_interval(500, 2000)]
        [0.2315, 0.2694]
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"Expected 0 <= successes <= n and n >= 1, but got successes={successes}, n={n}.")
    z = _normal_quantile(0.5 + level / 2.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _normal_quantile(q: float) -> float:
    # Inverse of the standard normal CDF by bisection on erf (exact to ~1e-12; no scipy needed).
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def source_seed(seed: int, source: str) -> int:
    """The bootstrap seed of a non-baseline source: fixed by (seed, source key), independent of the baseline's.

    Example:
        >>> source_seed(0, "imagenet-r") == source_seed(0, "imagenet-r") != source_seed(0, "imagenet-a")
        True
    """
    return int(np.random.SeedSequence([seed, zlib.crc32(source.encode())]).generate_state(1)[0])


def prediction_uncertainty(
    labels: np.ndarray | Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray],
    *,
    baseline: str = "clean",
    sources: Mapping[str, str] | None = None,
    spaces: Mapping[str, LabelSpace] | None = None,
    groups: Mapping[str, str] | None = None,
    references: Mapping[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Intervals for every error, drop and flip rate of one model, from its stored predictions.

    One paired bootstrap over the images of each source: each resample draws the same images for every
    domain of that source, so the interval of a drop (shifted minus ``baseline`` error) and of the mean drop
    over the shifts use matched clean and shifted errors. A domain of another source is resampled over its
    own images (seed fixed by ``seed`` and the source key) and its drop's interval is that of the difference
    of independent resamples; it has no flip rate (``None``): its images are not the baseline's. Percent.

    Args:
        labels: the baseline source's labels ``[N]``, or ``{source key: labels}`` for several sources.
        predictions: domain name -> top-k predictions ``[N_source, k]`` (ImageNet indices).
        baseline: the clean domain (its source is the baseline source): the reference of the flip rates, and of
            every drop not given another in ``references``.
        sources: domain name -> source key (default: every domain on the baseline source).
        spaces: source key -> its :class:`~robustbench_ibn.labels.LabelSpace` (default ImageNet-1k).
        groups: domain name -> the row it counts as in the mean drop (default: its own). The sets of an ImageNet-C
            tree are one row of the report (its mCE), so they count once, with their mean drop: 75 sets must not
            outweigh Table 1's four shifts.
        references: domain name -> the domain its drop is against (default: ``baseline``). A domain that is its
            own reference (the val images of ImageNet-R's classes, predicted among them) is a baseline, as
            ``baseline`` is: drop 0, not in the mean drop.

    Returns:
        ``{"method", "n_boot", "seed", "level", "rows": [...], "mean_drop": {...}}``: one row per domain
        with its ``reference``, ``top1_err_ci``, ``top5_err_ci``, ``top1_drop_ci``, ``top5_drop_ci`` (``[low, high]``),
        ``paired``, ``flip_rate`` and ``flip_rate_ci`` (share of images whose top-1 prediction differs from the
        baseline's); ``mean_drop`` holds the mean top-1/top-5 drop over the non-baseline rows (``groups``) and
        their intervals (``None`` when there is no shift), ``n_shifts`` the number of those rows.
    """
    names = list(predictions)
    if baseline not in predictions:
        raise ValueError(f"Expected the baseline domain {baseline!r} among the predictions, but got {names}.")
    source_of = dict(sources or {})
    base_source = source_of.get(baseline, "")
    labels_of = dict(labels) if isinstance(labels, Mapping) else {base_source: np.asarray(labels)}
    by_source: dict[str, list[str]] = {}
    for name in names:
        by_source.setdefault(source_of.get(name, base_source), []).append(name)
    base = np.asarray(predictions[baseline])
    errors: dict[str, np.ndarray] = {}  # domain -> bootstrap samples [n_boot, 2] (top-1, top-5 error)
    point: dict[str, np.ndarray] = {}  # domain -> [top-1 err, top-5 err, flip rate]
    flips: dict[str, np.ndarray] = {}
    for source, members in by_source.items():
        paired = source == base_source
        space, source_labels = (spaces or {}).get(source), np.asarray(labels_of[source])
        columns = []
        for name in members:
            preds = np.asarray(predictions[name])
            columns += [~topk_correct(preds, source_labels, 1, space), ~topk_correct(preds, source_labels, 5, space)]
            if paired:
                columns.append(preds[:, 0] != base[:, 0])
        width = 3 if paired else 2
        values = np.stack(columns, axis=1).astype(np.float64)  # [N, width * domains]: top-1/top-5 wrong (flipped)
        draws = 100.0 * bootstrap_means(values, n_boot=n_boot, seed=seed if paired else source_seed(seed, source))
        draws = draws.reshape(n_boot, len(members), width)
        means = 100.0 * values.mean(axis=0).reshape(len(members), width)
        for i, name in enumerate(members):
            errors[name], point[name] = draws[:, i, :2], means[i]
            if paired:
                flips[name] = draws[:, i, 2]
    reference = {name: dict(references or {}).get(name, baseline) for name in names}
    unknown = sorted({r for r in reference.values() if r not in predictions})
    if unknown:
        raise ValueError(f"Expected every reference among the predictions ({names}), but got {unknown}.")
    drops = {name: errors[name] - errors[reference[name]] for name in names}

    def pair(samples: np.ndarray) -> list[Any]:
        ci = percentile_interval(samples, level)
        return [float(v) for v in ci] if ci.ndim == 1 else [[float(ci[0, j]), float(ci[1, j])] for j in range(ci.shape[1])]

    rows = []
    for name in names:
        (err1, err5), (drop1, drop5) = pair(errors[name]), pair(drops[name])
        rows.append({"transform": name, "reference": reference[name], "top1_err_ci": err1, "top5_err_ci": err5,
                     "top1_drop_ci": drop1, "top5_drop_ci": drop5, "paired": name in flips,
                     "flip_rate": float(point[name][2]) if name in flips else None,
                     "flip_rate_ci": pair(flips[name]) if name in flips else None})
    units: dict[str, list[str]] = {}  # a row of the mean drop -> its domains
    for name in names:
        if name != baseline and reference[name] != name:
            units.setdefault(dict(groups or {}).get(name, name), []).append(name)
    mean_drop: dict[str, Any] = {"top1": None, "top1_ci": None, "top5": None, "top5_ci": None, "n_shifts": len(units)}
    if units:
        point_drop = np.mean([np.mean([point[n][:2] - point[reference[n]][:2] for n in u], axis=0)
                              for u in units.values()], axis=0)
        top1_ci, top5_ci = pair(np.mean([np.mean([drops[n] for n in u], axis=0) for u in units.values()], axis=0))
        mean_drop.update(top1=float(point_drop[0]), top1_ci=top1_ci, top5=float(point_drop[1]), top5_ci=top5_ci)
    return {"method": BOOTSTRAP_METHOD, "n_boot": n_boot, "seed": seed, "level": level, "rows": rows,
            "mean_drop": mean_drop}


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's paired test of two classifiers on the same images.

    ``only_a``: images model A gets right and model B wrong; ``only_b`` the reverse. ``method`` is
    ``"exact"`` (two-sided binomial test of ``only_a`` against Bin(only_a + only_b, 1/2)) or
    ``"chi2-cc"`` (chi-square with one degree of freedom and Edwards' continuity correction).
    """

    only_a: int
    only_b: int
    statistic: float | None
    p_value: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"only_a": self.only_a, "only_b": self.only_b, "statistic": self.statistic,
                "p_value": self.p_value, "method": self.method}


# Below this many discordant images the exact binomial test is used (the chi-square approximation is
# poor there); at or above it, chi-square with continuity correction.
MCNEMAR_EXACT_BELOW = 25


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray, method: str = "auto") -> McNemarResult:
    """McNemar's test on paired per-image correctness (boolean ``[N]`` each, same images, same order).

    ``method="auto"`` uses the exact binomial test when fewer than 25 images are discordant and the
    chi-square test with continuity correction otherwise; ``"exact"`` and ``"chi2-cc"`` force one.

    Example:
        >>> a = np.array([True] * 10 + [False] * 2 + [True] * 8)
        >>> b = np.array([False] * 10 + [True] * 2 + [True] * 8)
        >>> r = mcnemar(a, b)
        >>> (r.only_a, r.only_b, r.method, round(r.p_value, 4))
        (10, 2, 'exact', 0.0386)
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"Expected two boolean arrays [N] of one N, but got {a.shape} and {b.shape}.")
    if method not in ("auto", "exact", "chi2-cc"):
        raise ValueError(f"Expected method to be one of ('auto', 'exact', 'chi2-cc'), but got {method!r}.")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    if method == "auto":
        method = "exact" if discordant < MCNEMAR_EXACT_BELOW else "chi2-cc"
    if discordant == 0:
        return McNemarResult(only_a, only_b, 0.0 if method == "chi2-cc" else None, 1.0, method)
    if method == "exact":
        k = min(only_a, only_b)
        # P(X <= k) for X ~ Bin(discordant, 1/2), summed in log space so large counts do not overflow.
        log_terms = [math.lgamma(discordant + 1) - math.lgamma(i + 1) - math.lgamma(discordant - i + 1)
                     for i in range(k + 1)]
        top = max(log_terms)
        tail = math.exp(top + math.log(sum(math.exp(t - top) for t in log_terms)) - discordant * math.log(2))
        return McNemarResult(only_a, only_b, None, min(1.0, 2.0 * tail), method)
    statistic = (abs(only_a - only_b) - 1.0) ** 2 / discordant
    return McNemarResult(only_a, only_b, statistic, math.erfc(math.sqrt(statistic / 2.0)), method)


def curve_auc(severities: Sequence[float], errors: Sequence[float]) -> float:
    """Area under an error-vs-severity curve by the trapezoid rule (severity units x percent).

    Example:
        >>> curve_auc([10, 20, 40], [30.0, 40.0, 60.0])
        1350.0
    """
    x, y = np.asarray(severities, dtype=float), np.asarray(errors, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"Expected matching severities and errors with at least 2 points, but got {x.shape}, {y.shape}.")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"Expected strictly increasing severities, but got {x.tolist()}.")
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def doubling_severity(severities: Sequence[float], errors: Sequence[float], clean_error: float) -> float | None:
    """The lowest severity at which the error reaches twice ``clean_error``, linearly interpolated.

    The curve is the measured points joined by straight lines. If the first point is already at or
    above double, its severity is returned (an upper bound: start the sweep at the identity, e.g.
    ``rgb+0`` or ``std1``, to interpolate from the origin). ``None`` when the curve never gets there
    (always the case for a clean error of 50% or more).

    Example:
        >>> doubling_severity([10, 20, 30], [20.0, 30.0, 50.0], clean_error=20.0)
        25.0
        >>> doubling_severity([10, 20], [20.0, 30.0], clean_error=20.0) is None
        True
    """
    x, y = np.asarray(severities, dtype=float), np.asarray(errors, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"Expected matching non-empty severities and errors, but got {x.shape}, {y.shape}.")
    target = 2.0 * clean_error
    if y[0] >= target:
        return float(x[0])
    for i in range(1, len(x)):
        if y[i] >= target:
            return float(x[i - 1] + (target - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    return None
