"""Effective robustness: where a model stands among the field's 338 models (Taori et al., NeurIPS 2020).

Across hundreds of ImageNet models, accuracy under a natural distribution shift follows clean accuracy along one
line in logit space. imagenet-testbed measured 338 models on 213 settings; its table ships as package data
(``robustbench_ibn/testbed/``, source and commit in its NOTICE.md). With ``t(a) = ln(p / (1 - p))``, ``p = a / 100``:

* the **default fit** is the ordinary least squares line ``t(shifted) = slope * t(clean) + intercept`` over the
  testbed's STANDARD models (trained on ImageNet-1k, no robustness intervention), leaving out names containing
  ``aws``, ``batch64`` or ``subsample`` (the testbed's own rule) and points at 0 or 100 % (no logit);
* the clean axis is the column the testbed pairs with the setting: ``val-on-imagenet-r-classes`` for
  ``imagenet-r`` (clean val images of its classes, predicted among them), likewise for ``imagenet-a`` and
  ``objectnet-1.0-beta``; ``val`` for every other setting;
* a model's **expected** shifted accuracy is ``t^-1(slope * t(clean) + intercept)``, its **effective
  robustness** ``shifted - expected`` and its **relative robustness** ``shifted - clean``, in percentage points.

The paper's figures add per-figure filters (a minimum clean accuracy); :func:`linear_fit` offers them as named
options (``min_clean_acc``, ``types``), never as the default. Uncertainty (:func:`effective_robustness_interval`)
combines the fit's (the reference models resampled with replacement, the line refitted) with the model's own (its
images resampled, as :mod:`robustbench_ibn.metrics` does for every other number of a run).

Example:
    >>> import robustbench_ibn as rb
    >>> round(rb.effective_robustness("imagenetv2-matched-frequency-format-val", 76.13, 63.21), 2)
    -0.74
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from .metrics import bootstrap_means, percentile_interval
from .options import MAX_N_BOOT

__all__ = [
    "DEFAULT_TYPES",
    "EXCLUDED_NAME_PARTS",
    "FULL_SIZES",
    "MODEL_TYPES",
    "SETTING_ALIASES",
    "SHIFT_SETTINGS",
    "SOURCE",
    "FieldPoint",
    "LinearFit",
    "Testbed",
    "clean_setting",
    "comparability",
    "domain_setting",
    "effective_robustness",
    "effective_robustness_interval",
    "field_points",
    "has_setting",
    "linear_fit",
    "logit",
    "reference_domain",
    "settings",
    "testbed",
]

SOURCE = ("modestyachts/imagenet-testbed robustness_top1s.csv and src/plotting/model_types.py at commit "
          "0170eec658d664289d9f61de8f90f967f49abca0 (Taori et al., NeurIPS 2020)")
MODEL_TYPES = ("STANDARD", "ROBUST_INTV", "LP_ADV", "MORE_DATA", "LOW_ACCURACY_CNN", "RANDOM_FEATURES",
               "LINEAR_PIXELS", "RANDOM_FORESTS")
DEFAULT_TYPES = ("STANDARD",)
EXCLUDED_NAME_PARTS = ("aws", "batch64", "subsample")
_N_MODELS, _N_COLUMNS = 338, 214  # what the shipped table holds (model column included): a damaged file is refused
# The settings whose clean axis is val restricted to the dataset's classes (same label space as the shifted set).
_CLEAN_OF = {
    "imagenet-r": "val-on-imagenet-r-classes",
    "imagenet-a": "val-on-imagenet-a-classes",
    "objectnet-1.0-beta": "val-on-objectnet-classes",
}
# Setting names as other files spell them (the reported results follow a later testbed commit) -> the table's.
SETTING_ALIASES = {"imagenetv2-threshold0.7-format-val": "imagenetv2-threshold-0.7-format-val"}
_V2 = tuple(f"imagenetv2-{v}{fmt}" for v in ("matched-frequency", "threshold-0.7", "threshold0.7", "top-images",
                                              "topimages") for fmt in ("", "-format-val"))


@dataclass(frozen=True)
class Testbed:
    """The shipped table: model names, their types (``""`` for none), and each setting's accuracies (NaN: not
    evaluated), percent, in the order of :attr:`models`."""

    models: tuple[str, ...]
    types: tuple[str, ...]
    columns: dict[str, np.ndarray]

    def accuracy(self, model: str, setting: str) -> float:
        """One cell of the table (NaN where the testbed has none).

        Example:
            >>> round(testbed().accuracy("resnet50", "val"), 2)
            76.13
        """
        _check_setting(setting, list(self.columns))
        if model not in self.models:
            close = difflib.get_close_matches(model, self.models, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"Expected one of the testbed's {len(self.models)} models, but got {model!r}.{hint}")
        return float(self.columns[setting][self.models.index(model)])


def _text(name: str) -> str:
    return resources.files(__package__).joinpath("testbed", name).read_text(encoding="utf-8")


@functools.cache
def testbed() -> Testbed:
    """The testbed's table, read once from the package data and checked (shape, values in [0, 100]).

    Example:
        >>> t = testbed()
        >>> len(t.models), t.types[t.models.index("resnet50")]
        (338, 'STANDARD')
    """
    rows = list(csv.reader(io.StringIO(_text("testbed_top1.csv"))))
    header, body = rows[0], rows[1:]
    types_text = [line.split("\t") for line in _text("testbed_model_types.tsv").splitlines() if line]
    if (header[0] != "model" or len(header) != _N_COLUMNS or len(body) != _N_MODELS
            or any(len(r) != _N_COLUMNS for r in body) or types_text[0] != ["model", "type"]):
        raise ValueError(f"robustbench_ibn/testbed/testbed_top1.csv or testbed_model_types.tsv is damaged: expected "
                         f"{_N_MODELS} models x {_N_COLUMNS - 1} settings and a model/type header; reinstall the "
                         "package.")
    kinds = dict(types_text[1:])
    values = np.array([[float(c) if c else np.nan for c in r[1:]] for r in body], dtype=np.float64)
    if np.nanmin(values) < 0 or np.nanmax(values) > 100 or set(kinds.values()) - set(MODEL_TYPES):
        raise ValueError("robustbench_ibn/testbed/ is damaged: an accuracy outside [0, 100] or an unknown model type; "
                         "reinstall the package.")
    models = tuple(r[0] for r in body)
    return Testbed(models, tuple(kinds.get(m, "") for m in models),
                   {name: values[:, j] for j, name in enumerate(header[1:])})


@functools.cache
def settings() -> tuple[str, ...]:
    """The testbed settings effective robustness is defined for here: the natural shifts (ImageNet-R, -A, -Sketch,
    the ImageNet-V2 variants, ObjectNet), Stylized-ImageNet, greyscale and every ImageNet-C set (``_on-disk``: the
    released JPEG files; ``_in-memory``: corrupted on the fly; never mix them).

    Example:
        >>> s = settings()
        >>> "imagenet-r" in s, "imagenet-c.fog.3_on-disk" in s, "val" in s, len(s)
        (True, True, False, 197)
    """
    columns = testbed().columns
    named = [*_CLEAN_OF, "imagenet-sketch", *_V2, "stylized_imagenet", "greyscale"]
    return tuple(s for s in columns if s in named or s.startswith("imagenet-c."))


def _check_setting(setting: str, known: Sequence[str]) -> None:
    if setting not in known:
        close = difflib.get_close_matches(str(setting), known, n=3, cutoff=0.85)
        hint = f" Did you mean {', '.join(close)}?" if close else " See robustbench_ibn.effective.settings()."
        raise ValueError(f"Expected a testbed setting ({len(known)} known, e.g. imagenet-r, imagenet-sketch, "
                         f"imagenetv2-matched-frequency-format-val, objectnet-1.0-beta), but got {setting!r}.{hint}")


def clean_setting(setting: str) -> str:
    """The clean column the testbed pairs with ``setting`` (the fit's x-axis).

    Example:
        >>> clean_setting("imagenet-r"), clean_setting("imagenet-sketch")
        ('val-on-imagenet-r-classes', 'val')
    """
    _check_setting(setting, settings())
    return _CLEAN_OF.get(setting, "val")


def logit(acc: Any) -> Any:
    """``ln(p / (1 - p))`` of an accuracy in percent (``p = acc / 100``); float or array.

    Example:
        >>> logit(50.0), round(logit(75.0), 6)
        (0.0, 1.098612)
    """
    p = np.asarray(acc, dtype=np.float64) / 100.0
    with np.errstate(divide="ignore"):
        out = np.log(p) - np.log1p(-p)
    return float(out) if out.ndim == 0 else out


def _inverse_logit(t: Any) -> Any:
    """Accuracy in percent of a logit (the inverse of :func:`logit`)."""
    out = 100.0 / (1.0 + np.exp(-np.asarray(t, dtype=np.float64)))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class LinearFit:
    """The logit-linear fit of one setting: ``logit(shifted) = slope * logit(clean) + intercept``.

    Attributes:
        setting: the shifted setting (a testbed column); clean: its paired clean column.
        slope, intercept: the ordinary least squares line in logit space.
        models: the reference models fitted, in the table's order; x, y: their clean and shifted accuracies (%).
        types, min_clean_acc: the options that chose them (:func:`linear_fit`).
    """

    setting: str
    clean: str
    slope: float
    intercept: float
    models: tuple[str, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    types: tuple[str, ...] = DEFAULT_TYPES
    min_clean_acc: float | None = None

    @property
    def is_default(self) -> bool:
        return self.types == DEFAULT_TYPES and self.min_clean_acc is None

    def expected(self, clean_acc: Any) -> Any:
        """The shifted accuracy (%) the line predicts for a clean accuracy (%), float or array."""
        return _inverse_logit(self.slope * logit(clean_acc) + self.intercept)

    def describe(self) -> str:
        """One line, e.g. ``OLS in logit space over 80 STANDARD models (testbed), slope 1.23, intercept -0.45``."""
        extra = "" if self.min_clean_acc is None else f" with clean accuracy >= {self.min_clean_acc:g} %"
        return (f"OLS of logit({self.setting}) on logit({self.clean}) over {len(self.models)} "
                f"{'/'.join(self.types)} models{extra} (imagenet-testbed), slope {self.slope:.4f}, intercept "
                f"{self.intercept:.4f}")

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "clean_setting": self.clean, "slope": self.slope,
                "intercept": self.intercept, "n_models": len(self.models), "types": list(self.types),
                "min_clean_acc": self.min_clean_acc, "excluded_name_parts": list(EXCLUDED_NAME_PARTS),
                "source": SOURCE}


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    dx = x - x.mean()
    slope = float(np.dot(dx, y - y.mean()) / np.dot(dx, dx))
    return slope, float(y.mean() - slope * x.mean())


@functools.cache
def linear_fit(setting: str, *, types: tuple[str, ...] = DEFAULT_TYPES, min_clean_acc: float | None = None) -> LinearFit:
    """The fit of ``setting`` over the testbed's models of ``types`` (default: the default fit, module docstring).

    Args:
        setting: a testbed setting (:func:`settings`).
        types: the model types fitted (:data:`MODEL_TYPES`); the default, STANDARD, is the testbed's.
        min_clean_acc: only models with at least this clean accuracy (%), as some of the paper's figures do.

    Raises:
        ValueError: an unknown setting or type, or fewer than 3 models left to fit.

    Example:
        >>> fit = linear_fit("imagenet-r")
        >>> fit.clean, len(fit.models), round(fit.slope, 4)
        ('val-on-imagenet-r-classes', 80, 0.6368)
    """
    clean = clean_setting(setting)
    unknown = sorted(set(types) - set(MODEL_TYPES))
    if unknown or not types:
        raise ValueError(f"Expected model types among {', '.join(MODEL_TYPES)}, but got {list(types)!r}.")
    table = testbed()
    x_all, y_all = table.columns[clean], table.columns[setting]
    keep = [i for i, (m, kind) in enumerate(zip(table.models, table.types)) if kind in types
            and not any(part in m for part in EXCLUDED_NAME_PARTS)
            and 0 < x_all[i] < 100 and 0 < y_all[i] < 100  # NaN (not evaluated) fails both
            and (min_clean_acc is None or x_all[i] >= min_clean_acc)]
    if len(keep) < 3:
        raise ValueError(f"Expected at least 3 testbed models to fit {setting}, but {len(keep)} of types "
                         f"{'/'.join(types)} have both accuracies" + (f" with clean accuracy >= {min_clean_acc}"
                                                                        if min_clean_acc is not None else "") + ".")
    x, y = x_all[keep], y_all[keep]
    slope, intercept = _ols(logit(x), logit(y))
    return LinearFit(setting, clean, slope, intercept, tuple(table.models[i] for i in keep), tuple(map(float, x)),
                     tuple(map(float, y)), tuple(types), min_clean_acc)


def _check_accuracy(name: str, value: float, *, open_interval: bool) -> float:
    value = float(value)
    ok = 0 < value < 100 if open_interval else 0 <= value <= 100
    if not ok:
        bounds = "strictly between 0 and 100 (its logit must exist)" if open_interval else "in [0, 100]"
        raise ValueError(f"Expected {name} to be an accuracy in percent {bounds}, but got {value!r}.")
    return value


def effective_robustness(setting: str, clean_acc: float, shifted_acc: float) -> float:
    """Effective robustness (percentage points) of a model with ``clean_acc`` and ``shifted_acc`` (percent, top-1)
    on testbed ``setting``, under the default fit: ``shifted_acc`` minus what a standard model of the same clean
    accuracy reaches. ``clean_acc`` is on the setting's clean column (:func:`clean_setting`): for ``imagenet-r``,
    ``-a`` and ``objectnet-1.0-beta`` the val images of their classes, predicted among them.

    Raises:
        ValueError: an unknown setting (with the closest names), or an accuracy out of range.

    Example:
        >>> round(effective_robustness("imagenet-sketch", 76.13, 24.09), 3)
        -0.363
        >>> effective_robustness("imagenet-sketchy", 76.0, 24.0)
        Traceback (most recent call last):
        ...
        ValueError: Expected a testbed setting (197 known, e.g. imagenet-r, imagenet-sketch, imagenetv2-matched-frequency-format-val, objectnet-1.0-beta), but got 'imagenet-sketchy'. Did you mean imagenet-sketch?
    """
    _check_setting(setting, settings())
    clean = _check_accuracy("clean_acc", clean_acc, open_interval=True)
    shifted = _check_accuracy("shifted_acc", shifted_acc, open_interval=False)
    return shifted - linear_fit(setting).expected(clean)


def _fit_draws(fit: LinearFit, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts of ``n_boot`` refits over the reference models resampled with replacement."""
    x, y = logit(np.array(fit.x)), logit(np.array(fit.y))
    m = len(x)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(fit.setting.encode())]))
    idx = rng.integers(0, m, size=(n_boot, m))
    counts = np.bincount((idx + (np.arange(n_boot) * m)[:, None]).ravel(), minlength=n_boot * m)
    w = counts.reshape(n_boot, m).astype(np.float64) / m  # weights of one resample sum to 1
    mx, my = w @ x, w @ y
    sxx = w @ (x * x) - mx * mx
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample of one distinct point has no slope
        slope = (w @ (x * y) - mx * my) / sxx
    slope = np.where(sxx > 1e-12 * max(1.0, float(np.var(x))), slope, fit.slope)
    return slope, my - slope * mx


def _accuracy_draws(correct: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap accuracies (%) of per-image correctness; the last few are kept, so a run's clean accuracy is
    resampled once for all its domains (ImageNet-C's 95 sets share it)."""
    packed = np.packbits(correct.astype(bool)).tobytes()
    return _cached_draws(packed, int(correct.size), n_boot, seed)


@functools.lru_cache(maxsize=8)
def _cached_draws(packed: bytes, n: int, n_boot: int, seed: int) -> np.ndarray:
    correct = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=n).astype(np.float64)
    draws = 100.0 * bootstrap_means(correct[:, None], n_boot=n_boot, seed=seed)[:, 0]
    draws.setflags(write=False)
    return draws


def effective_robustness_interval(
    fit: LinearFit | str,
    clean_correct: np.ndarray,
    shifted_correct: np.ndarray,
    *,
    paired: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    image_seeds: tuple[int, int] | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """Effective robustness of per-image top-1 correctness with its bootstrap interval.

    Each of the ``n_boot`` resamples refits the line over the reference models drawn with replacement (the fit's
    uncertainty) and draws the images with replacement (the model's own): ``paired`` when the clean and shifted
    correctness are of the same images (a shift of val: one draw serves both), else each set on its own.

    Args:
        fit: a :class:`LinearFit` or a setting (its default fit).
        clean_correct, shifted_correct: booleans ``[N_clean]``, ``[N_shifted]`` (``[N]`` both when paired).
        seed: the fit's resampling seed, and the images' unless ``image_seeds`` gives theirs (clean, shifted), as
            a run does so that the images are drawn as for its error intervals.
        level: the interval's coverage.

    Returns:
        ``{"clean_acc", "shifted_acc", "expected_acc", "effective", "relative"}`` (percent / points) and their
        intervals ``"expected_acc_ci"``, ``"effective_ci"``, ``"relative_ci"`` (``[low, high]``).

    Example:
        >>> clean = np.arange(1000) % 4 != 0  # 75 % right
        >>> shifted = np.arange(1000) % 2 == 0  # 50 % right
        >>> out = effective_robustness_interval("imagenet-sketch", clean, shifted, n_boot=200)
        >>> out["effective_ci"][0] < out["effective"] < out["effective_ci"][1]
        True
    """
    fit = fit if isinstance(fit, LinearFit) else linear_fit(fit)
    clean = np.asarray(clean_correct, dtype=np.float64).ravel()
    shifted = np.asarray(shifted_correct, dtype=np.float64).ravel()
    if not clean.size or not shifted.size or (paired and clean.size != shifted.size):
        raise ValueError(f"Expected per-image correctness of {'one' if paired else 'each'} image set (N >= 1"
                         f"{', the same N' if paired else ''}), but got {clean.size} clean and {shifted.size} shifted.")
    if not 1 <= n_boot <= MAX_N_BOOT:
        raise ValueError(f"Expected n_boot in 1..{MAX_N_BOOT}, but got {n_boot}.")
    clean_seed, shifted_seed = image_seeds if image_seeds is not None else (seed, seed + 1)
    # One seed draws the same images for every set of one size (bootstrap_means), so paired is one seed for both.
    x_b = _accuracy_draws(clean, n_boot, clean_seed)
    y_b = _accuracy_draws(shifted, n_boot, clean_seed if paired else shifted_seed)
    slope, intercept = _fit_draws(fit, n_boot, seed)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # a resample at 0 or 100 %: expected 0/100
        expected_b = np.nan_to_num(_inverse_logit(slope * logit(x_b) + intercept), nan=0.0)
    x, y = 100.0 * float(clean.mean()), 100.0 * float(shifted.mean())
    expected = float(fit.expected(x)) if 0 < x < 100 else float("nan")

    def ci(samples: np.ndarray) -> list[float]:
        return [float(v) for v in percentile_interval(samples, level)]

    return {"clean_acc": x, "shifted_acc": y, "expected_acc": expected, "effective": y - expected,
            "relative": y - x, "expected_acc_ci": ci(expected_b), "effective_ci": ci(y_b - expected_b),
            "relative_ci": ci(y_b - x_b), "n_boot": n_boot, "seed": seed, "level": level}


# -- a run's domains among the field -------------------------------------------------------------------------------
# Sizes of the full official sets (the testbed's numbers are on them): ImageNet-R, -A (hendrycks' releases), V2
# (10 per class), ObjectNet's 113 overlapping classes, ImageNet-C (val's 50,000 per set). ImageNet-Sketch's
# release holds 50,889 files for a nominal 50,000; ObjectNet 1.0 holds 18,574 images there, the testbed's
# 1.0-beta copy 18,514 (both accepted: shared/reference/domains/imagenet_sketch.md, objectnet.md).
FULL_SIZES: dict[str, tuple[int, ...]] = {
    "imagenet-val": (50_000,), "imagenet-r": (30_000,), "imagenet-a": (7_500,), "imagenet-v2": (10_000,),
    "objectnet": (18_574, 18_514), "imagenet-sketch": (50_000, 50_889), "stylized-imagenet": (50_000,),
    "imagenet-c": (50_000,),
}
_KIND_SETTING = {"imagenet-r": "imagenet-r", "imagenet-a": "imagenet-a", "imagenet-sketch": "imagenet-sketch",
                 "objectnet": "objectnet-1.0-beta", "stylized-imagenet": "stylized_imagenet"}
_V2_SETTING = {"matched-frequency": "imagenetv2-matched-frequency-format-val",
               "threshold0.7": "imagenetv2-threshold-0.7-format-val", "top-images": "imagenetv2-top-images-format-val"}
# Shifts of the val images that are a testbed setting, by shift name. The hook for more: add a name here, or a
# pattern to _SHIFT_PATTERNS. ``grey1`` is the greyscale image (BT.601 weights, kornia on the float crop; the
# testbed converts with PIL, which rounds to 8 bits: differences at that rounding only).
SHIFT_SETTINGS: dict[str, str] = {"grey1": "greyscale"}
# No on-the-fly ImageNet-C set maps to a testbed column. The testbed's ``_in-memory`` columns were measured with
# its own torch re-implementation of the corruptions (imagenet-testbed src/eval_settings/image_utils.py: pixelate
# by area/nearest resampling, glass blur with a 5-tap kernel of twice the sigma and 10 cached shuffles, its own
# motion-blur kernel, frost from 6 pictures, OpenCV's JPEG), not with make_imagenet_c.py, which ours follow: the
# same name, other images, and accuracies that can differ by points. The JPEG-saved twins emulate the released
# files but are not them. The released files, read as a ``--domain imagenet-c``, are ``_on-disk``. A pattern
# here (regex over the shift name -> setting template) is the hook for a shift that truly is a testbed setting.
_SHIFT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = ()
_VAL_NAME = re.compile(r"ILSVRC2012_val_\d{8}\.JPEG")


def domain_setting(result: Any, domain: str) -> str | None:
    """The testbed setting a run's domain is an instance of, or None (Table 1's shifts, a plain folder, ...).

    A natural-shift source maps by its kind (ImageNet-V2 by its variant, ImageNet-C's released files to
    ``imagenet-c.<corruption>.<severity>_on-disk``); a shift of the val images by its name (:data:`SHIFT_SETTINGS`;
    the on-the-fly ImageNet-C sets map to none, see ``_SHIFT_PATTERNS``).
    """
    d = next(d for d in result.domains if d["name"] == domain)
    if d["shift"] is not None:
        if d["source"] != result.baseline_source:  # a shift of another set's images is no testbed setting
            return None
        name = d["shift"].get("name", "")
        if name in SHIFT_SETTINGS:
            return SHIFT_SETTINGS[name]
        for pattern, template in _SHIFT_PATTERNS:
            match = pattern.fullmatch(name)
            if match:
                setting = template.format(**match.groupdict())
                return setting if setting in settings() else None
        return None
    record = result.sources[d["source"]].record
    kind, options = record.get("kind"), record.get("options") or {}
    if kind == "imagenet-v2":
        return _V2_SETTING.get(options.get("variant"))
    if kind == "imagenet-c":
        setting = f"imagenet-c.{options.get('corruption')}.{options.get('severity')}_on-disk"
        return setting if setting in settings() else None
    return _KIND_SETTING.get(kind)


def has_setting(transforms: Sequence[str], kinds: Sequence[str]) -> bool:
    """Whether a run of these shift names and dataset kinds will have a domain that is a testbed setting (what
    ``--plot-kind field`` checks before any work).

    Example:
        >>> has_setting(["clean", "rgb+50"], []), has_setting(["clean", "grey1"], []), has_setting([], ["imagenet-r"])
        (False, True, True)
    """
    shifts = any(t in SHIFT_SETTINGS or any(p.fullmatch(t) for p, _ in _SHIFT_PATTERNS) for t in transforms)
    return shifts or any(k in _KIND_SETTING or k in ("imagenet-v2", "imagenet-c") for k in kinds)


def _source_problem(record: dict[str, Any], what: str) -> str:
    """Why an image source is not its full official set ("" when it is)."""
    kind = record.get("kind")
    if record.get("limit") is not None:
        return f"sample: {what} limited to {record['n']:,} images (limit {record['limit']})"
    if record.get("skipped"):
        return f"sample: {len(record['skipped']):,} unreadable {what} images skipped"
    sizes = FULL_SIZES.get(kind)
    if sizes and record.get("n") not in sizes:
        return f"sample: {record.get('n', 0):,} of the {' or '.join(f'{n:,}' for n in sizes)} {what} images"
    if kind in ("imagenet-r", "imagenet-a", "objectnet") and record.get("label_policy") != "subset":
        return f"{what} scored 1000-way (subset_policy full); the testbed predicts among the set's classes"
    if (record.get("options") or {}).get("upsample"):
        return f"{what} upsampled (not the official protocol)"
    return ""


def comparability(result: Any, domain: str) -> str:
    """Why the effective robustness of ``domain`` cannot be set among the testbed's numbers ("" when it can).

    The reference points are on the full official sets: ImageNet val's 50,000 images under their official names
    (``ILSVRC2012_val_XXXXXXXX.JPEG``) in all 1000 classes, and the whole shifted set (:data:`FULL_SIZES`), scored
    as the testbed scores it. A sample, a ``--limit``, skipped images or a class subset is "not comparable: sample".
    """
    val = result.dataset
    problem = _source_problem(val, "ImageNet val") if val.get("kind") == "imagenet-val" else (
        f"the clean images are not ImageNet val (kind {val.get('kind')!r})")
    if not problem and val.get("label_space", {}).get("name") != "imagenet-1k":
        problem = "ImageNet val not in the 1000-class label space"
    if not problem and len(np.unique(result.labels)) != 1000:
        problem = f"sample: ImageNet val images of {len(np.unique(result.labels))} of the 1000 classes"
    if not problem and result.images and not all(_VAL_NAME.fullmatch(os.path.basename(p)) for p in result.images):
        problem = "sample: ImageNet val images not under their official names (ILSVRC2012_val_XXXXXXXX.JPEG)"
    if not problem and len({os.path.basename(p) for p in result.images}) != len(result.images):
        problem = "sample: an ImageNet val file name appears twice"
    source = result.source_of(domain)
    if not problem and source is not result.sources[result.baseline_source]:
        problem = _source_problem(source.record, next(d["label"] for d in result.domains if d["name"] == domain))
    return problem


def reference_domain(result: Any, domain: str, setting: str) -> str | None:
    """The run's domain that gives the clean accuracy of ``setting``'s fit: ``clean`` for val's column, else the
    domain of that name (``val-on-imagenet-r-classes``, the same images scored in the shifted set's label space),
    or None when the record has none (made before protocol 4)."""
    clean = clean_setting(setting)
    if clean == "val":
        return "clean"
    d = next(d for d in result.domains if d["name"] == domain)
    named = d.get("reference") or clean
    return named if named in result.predictions and named != "clean" else None


@dataclass(frozen=True)
class FieldPoint:
    """One domain of a run placed among the field: accuracies (%), effective and relative robustness (points).

    ``comparable`` is False with a ``reason`` ("sample: 500 of the 50,000 ImageNet val images") when the run does
    not cover the full official sets: the numbers are then shown only with the mark :attr:`mark`, never on a
    leaderboard. Intervals are ``[low, high]`` at ``level`` (:func:`effective_robustness_interval`).
    """

    model: str
    domain: str
    label: str
    setting: str
    clean_domain: str
    clean_acc: float
    shifted_acc: float
    expected_acc: float
    effective: float
    relative: float
    effective_ci: tuple[float, float]
    expected_acc_ci: tuple[float, float]
    relative_ci: tuple[float, float]
    fit: LinearFit
    comparable: bool
    reason: str = ""
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95

    @property
    def mark(self) -> str:
        """``""``, or ``not comparable: <reason>``: what every output shows beside a number of a sample."""
        return "" if self.comparable else f"not comparable: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an undefined number, at a clean accuracy of 0 or 100 %, is null)."""

        def num(v: float) -> float | None:
            return None if math.isnan(v) else float(v)


        return {"domain": self.domain, "label": self.label, "setting": self.setting,
                "clean_domain": self.clean_domain, "clean_acc": self.clean_acc, "shifted_acc": self.shifted_acc,
                "expected_acc": num(self.expected_acc), "effective": num(self.effective), "relative": self.relative,
                "effective_ci": [num(v) for v in self.effective_ci],
                "expected_acc_ci": [num(v) for v in self.expected_acc_ci],
                "relative_ci": [num(v) for v in self.relative_ci], "comparable": self.comparable, "mark": self.mark,
                "fit": self.fit.to_dict(), "n_boot": self.n_boot, "seed": self.seed, "level": self.level}


def field_points(result: Any, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95, ci: bool = True,
                 types: tuple[str, ...] = DEFAULT_TYPES, min_clean_acc: float | None = None) -> list[FieldPoint]:
    """Every domain of ``result`` that is a testbed setting, placed among the field (default fit unless ``types`` or
    ``min_clean_acc`` say otherwise), in evaluation order; each marked when not comparable (:func:`comparability`).

    Images are resampled as :meth:`EvalResult.uncertainty` resamples them (``seed`` for the val images, a seed per
    other source), so a shift of val is paired with its clean accuracy. A domain whose clean column the record
    lacks (``val-on-imagenet-r-classes`` in a record made before protocol 4) is left out; a clean accuracy of 0 or
    100 % (no logit) gives NaN, marked. Without ``ci`` the intervals are NaN (no resampling: quick).
    """
    from .metrics import source_seed, topk_correct

    points = []
    for d in result.domains:
        setting = domain_setting(result, d["name"]) if d["name"] != "clean" else None
        reference = reference_domain(result, d["name"], setting) if setting else None
        if reference is None:
            continue
        fit = linear_fit(setting, types=tuple(types), min_clean_acc=min_clean_acc)
        correct, seeds = [], []
        for name in (reference, d["name"]):
            source = result.source_of(name)
            correct.append(topk_correct(result.predictions[name], source.labels, 1, source.label_space))
            key = next(x["source"] for x in result.domains if x["name"] == name)
            seeds.append(seed if key == result.baseline_source else source_seed(seed, key))
        paired = result.source_of(reference) is result.source_of(d["name"])
        if ci:
            out = effective_robustness_interval(fit, correct[0], correct[1], paired=paired, n_boot=n_boot, seed=seed,
                                                image_seeds=(seeds[0], seeds[1]), level=level)
        else:
            x, y = 100.0 * float(correct[0].mean()), 100.0 * float(correct[1].mean())
            expected = float(fit.expected(x)) if 0 < x < 100 else math.nan
            out = {"clean_acc": x, "shifted_acc": y, "expected_acc": expected, "effective": y - expected,
                   "relative": y - x, **{k: [math.nan, math.nan] for k in ("effective_ci", "expected_acc_ci",
                                                                          "relative_ci")}}
        reason = comparability(result, d["name"]) or ("" if 0 < out["clean_acc"] < 100 else
                                                       f"clean accuracy {out['clean_acc']:g} %: no logit")
        points.append(FieldPoint(
            model=result.model, domain=d["name"], label=d["label"], setting=setting, clean_domain=reference,
            clean_acc=out["clean_acc"], shifted_acc=out["shifted_acc"], expected_acc=out["expected_acc"],
            effective=out["effective"], relative=out["relative"], effective_ci=tuple(out["effective_ci"]),
            expected_acc_ci=tuple(out["expected_acc_ci"]), relative_ci=tuple(out["relative_ci"]), fit=fit,
            comparable=not reason, reason=reason, n_boot=n_boot, seed=seed, level=level))
    return points
