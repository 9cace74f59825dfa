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
    "MODEL_TYPES",
    "SOURCE",
    "LinearFit",
    "Testbed",
    "clean_setting",
    "effective_robustness",
    "effective_robustness_interval",
    "linear_fit",
    "logit",
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
    if paired:
        draws = 100.0 * bootstrap_means(np.stack([clean, shifted], axis=1), n_boot=n_boot, seed=clean_seed)
        x_b, y_b = draws[:, 0], draws[:, 1]
    else:
        x_b = 100.0 * bootstrap_means(clean[:, None], n_boot=n_boot, seed=clean_seed)[:, 0]
        y_b = 100.0 * bootstrap_means(shifted[:, None], n_boot=n_boot, seed=shifted_seed)[:, 0]
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
