"""Figures from stored results: severity curves and Table 1 drop bars (matplotlib, no display needed).

Figures are built with matplotlib's object API on the Agg canvas, never through ``pyplot``, so nothing
global changes and no display is needed. The file type follows the extension (``.png``, ``.svg``,
``.pdf``). matplotlib is an optional dependency (``pip install 'robustbench-ibn[plot]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .options import PLOT_KINDS, PLOT_SUFFIXES
from .report import column_names, severity_curves
from .results import EvalResult
from .text import random_init_title

__all__ = ["PLOT_KINDS", "PLOT_SUFFIXES", "check_plot_path", "new_figure", "plot_drop_bars", "plot_field",
           "plot_report", "plot_severity_curves", "reported_field_points", "save_figure"]



def check_plot_path(path: str | os.PathLike[str], *, what: str = "plots") -> Path:
    """``path`` if a figure can be written there: its extension is one of :data:`PLOT_SUFFIXES` and matplotlib can
    be imported (``what`` names the request in the message, e.g. ``--plot``). What a run checks before any work.

    Example:
        >>> check_plot_path("fig.txt")
        Traceback (most recent call last):
        ...
        ValueError: Expected a plot file ending in one of .png, .svg, .pdf, but got 'fig.txt'.
    """
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ValueError(f"Expected a plot file ending in one of {', '.join(PLOT_SUFFIXES)}, but got {str(path)!r}.")
    _matplotlib(what)
    return path


def _matplotlib(what: str) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise RuntimeError(f"Expected matplotlib for {what}, but it cannot be imported ({err}). Install it with: pip "
                           f"install 'robustbench-ibn[plot]'.") from err
    return Figure, FigureCanvasAgg


def new_figure(width: float, height: float) -> Any:
    Figure, FigureCanvasAgg = _matplotlib("plots")  # noqa: N806 - classes
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Any, path: str | os.PathLike[str]) -> Path:
    path = check_plot_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No creation date or software version in the file: the same results give the same bytes.
    metadata = {"Software": None} if path.suffix.lower() == ".png" else {"Date": None}
    if path.suffix.lower() == ".pdf":
        metadata = {"CreationDate": None, "Producer": None}
    figure.savefig(path, metadata=metadata)
    return path


def _is_random(results: Sequence[EvalResult]) -> str:
    return random_init_title("not accuracy") if any(r.is_random for r in results) else ""


def plot_severity_curves(
    results: Sequence[EvalResult], path: str | os.PathLike[str], *, ci: bool = True, n_boot: int = 1000, seed: int = 0
) -> Path:
    """Top-1 error against severity, one panel per swept family, one line per model.

    With ``ci`` a band shows each point's 95% bootstrap interval; a dotted line marks twice each model's
    clean error (where the doubling severity is read).
    """
    curves_per_model = [
        severity_curves(r, r.uncertainty(n_boot=n_boot, seed=seed) if ci else None) for r in results
    ]
    families = list(dict.fromkeys(c["family"] for curves in curves_per_model for c in curves))
    if not families:
        raise ValueError(
            "Expected a severity sweep (two or more members of one family, e.g. --transforms rgb+10:100:10) to plot "
            "curves, but the results have none. Use the bar chart (--plot-kind bars) instead."
        )
    cols = min(3, len(families))
    rows = -(-len(families) // cols)
    figure = new_figure(4.2 * cols, 3.2 * rows)
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    names = column_names(results)
    colours = [f"C{i % 10}" for i in range(len(results))]
    for ax, family in zip(axes, families):
        for name, colour, curves in zip(names, colours, curves_per_model):
            for c in (c for c in curves if c["family"] == family):
                ax.plot(c["severities"], c["top1_err"], marker="o", markersize=3, color=colour, label=name)
                if c["top1_err_ci"] is not None:
                    low = [b[0] for b in c["top1_err_ci"]]
                    high = [b[1] for b in c["top1_err_ci"]]
                    ax.fill_between(c["severities"], low, high, color=colour, alpha=0.15, linewidth=0)
                if 2 * c["clean_top1_err"] <= 100:
                    ax.axhline(2 * c["clean_top1_err"], color=colour, linestyle=":", linewidth=0.8)
        ax.set_title(family)
        param = next(c["param"] for curves in curves_per_model for c in curves if c["family"] == family)
        ax.set_xlabel(f"severity ({param})")
        ax.set_ylabel("top-1 error (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(families):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    figure.suptitle("Error vs severity" + _is_random(results), fontsize=10)
    return save_figure(figure, path)


def plot_drop_bars(
    results: Sequence[EvalResult], path: str | os.PathLike[str], *, ci: bool = True, n_boot: int = 1000, seed: int = 0
) -> Path:
    """Table 1 as grouped bars: per shift and model, the top-1 drop (left) and the flip rate (right).

    The drop is the shifted minus the reference's top-1 error (origin; for a dataset scored among its own classes,
    the val images of those classes, :meth:`~robustbench_ibn.results.EvalResult.reference_of`); the flip rate the
    share of images whose top-1 prediction changes under the shift. With ``ci`` the error bars are their 95% paired-bootstrap intervals.
    The sets of an ImageNet-C tree get no bars (75 of them would bury the other shifts; their summary is the mCE of
    the report's per-corruption table); the title says when some were left out.
    """
    from .corruption import imagenet_c_trees

    order: list[str] = []
    labels: dict[str, str] = {}
    trees: set[str] = set()
    for result in results:
        found = imagenet_c_trees(result)
        sets = {d for tree in found.values() for d in tree.values()}
        trees |= set(found)
        for row in result.results:
            # clean and a label space's reference row are baselines (their drop is 0 by definition): no bar
            if not row.is_reference and row.transform not in labels and row.transform not in sets:
                order.append(row.transform)
                labels[row.transform] = row.label
    if not order:
        raise ValueError("Expected at least one shift besides clean to plot drops (ImageNet-C sets are summarised by "
                         "their mCE, in the report's tables), but got none.")
    names = column_names(results)
    width = 0.8 / len(results)
    figure = new_figure(2 * max(3.5, 1.2 + len(order) * (0.5 + 0.25 * len(results))), 3.4)
    drop_ax, flip_ax = figure.subplots(1, 2)
    for i, (name, result) in enumerate(zip(names, results)):
        rows = {r.transform: r for r in result.results}
        uncertainty = {r["transform"]: r for r in result.uncertainty(n_boot=n_boot, seed=seed)["rows"]}
        present_in = [t for t in order if t in rows]
        for ax, value, key in ((drop_ax, lambda t: rows[t].top1_drop, "top1_drop_ci"),
                               (flip_ax, lambda t: uncertainty[t]["flip_rate"], "flip_rate_ci")):
            # A domain of another source has no flip rate (other images): no bar there.
            present = [t for t in present_in if value(t) is not None]
            xs = [order.index(t) + (i - (len(results) - 1) / 2) * width for t in present]
            heights = [value(t) for t in present]
            yerr = None
            if ci:
                yerr = [[max(0.0, h - uncertainty[t][key][0]) for t, h in zip(present, heights)],
                        [max(0.0, uncertainty[t][key][1] - h) for t, h in zip(present, heights)]]
            ax.bar(xs, heights, width=width * 0.95, yerr=yerr, capsize=2, label=name, color=f"C{i % 10}")
    others = any(row.reference != "clean" for r in results for row in r.results if row.transform in order)
    against = "reference (origin, or val on its classes)" if others else "origin"
    for ax, ylabel in ((drop_ax, f"top-1 drop vs {against} (pp)"), (flip_ax, "flip rate: top-1 changed (%)")):
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(order)), [labels[t] for t in order])
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    drop_ax.legend(fontsize=7)
    left_out = f" (not shown: {', '.join(sorted(trees))}, see its mCE table)" if trees else ""
    if any(r.drops_note() for r in results):  # a protocol 3 record: its drops as they were computed, said so
        left_out += "; protocol 3: ImageNet-R/-A/ObjectNet drops vs 1000-way origin"
    figure.suptitle("Per shift and model" + (", 95% CI" if ci else "") + left_out + _is_random(results), fontsize=10)
    return save_figure(figure, path)


# The testbed's type colours: one per model type, STANDARD (the fitted models) in blue.
_TYPE_COLOURS = {"STANDARD": "tab:blue", "ROBUST_INTV": "tab:olive", "LP_ADV": "tab:purple", "MORE_DATA": "tab:green",
                 "LOW_ACCURACY_CNN": "tab:gray", "RANDOM_FEATURES": "tab:brown", "LINEAR_PIXELS": "tab:pink",
                 "RANDOM_FORESTS": "tab:cyan", "": "black"}
_MAX_FIELD_PANELS = 12  # more (a whole ImageNet-C tree: 95 sets) would be unreadable: they are left out, and said so


def reported_field_points() -> list[dict[str, Any]]:
    """The published numbers that can be placed among the field: ``{"name", "setting", "clean_acc", "shifted_acc",
    "source"}`` per (reported model, testbed setting) whose clean accuracy on the setting's clean column (val, or
    val on the set's classes for ImageNet-R, -A and ObjectNet) is published too.

    The IBN-Net paper publishes no number on these sets; torchvision ResNet-50's published results
    (:func:`~robustbench_ibn.datasets.facts.reported_results`) place it on every natural shift.

    Example:
        >>> [(p["setting"], p["clean_acc"], p["shifted_acc"]) for p in reported_field_points()][:1]
        [('imagenetv2-matched-frequency-format-val', 76.13, 63.21)]
    """
    from .datasets.facts import reported_results
    from .effective import SETTING_ALIASES, clean_setting, settings

    preferred = [r for r in reported_results() if r.preferred and r.metric in ("top1_acc", "reference_top1_acc")]
    clean = {r.setting: r.value for r in preferred if r.domain == "imagenet-val" or r.metric == "reference_top1_acc"}
    points = []
    for r in (r for r in preferred if r.metric == "top1_acc"):
        setting = SETTING_ALIASES.get(r.setting, r.setting)
        if setting in settings() and clean_setting(setting) in clean:
            points.append({"name": "ResNet-50 (reported)", "setting": setting,
                           "clean_acc": clean[clean_setting(setting)], "shifted_acc": r.value, "source": r.source})
    return points


def plot_field(
    results: Sequence[EvalResult], path: str | os.PathLike[str], *, reported: bool = True, ci: bool = True,
    n_boot: int = 1000, seed: int = 0, settings: Sequence[str] | None = None,
) -> Path:
    """The testbed's picture: per shift, clean against shifted top-1 accuracy on logit axes.

    Every one of the testbed's models is a point coloured by its type; the default fit (STANDARD models) is a line
    with its 95% band (the models resampled); y = x is dashed. The results' models are highlighted (black-edged
    stars, labelled, with their 95% intervals when ``ci``); a run that does not cover the full official sets is drawn
    hollow and labelled ``not comparable: sample``. With ``reported``, the published numbers that can be placed
    (:func:`reported_field_points`) join as labelled diamonds. One panel per setting the results (or ``settings``)
    hold; beyond 12, ImageNet-C sets are left out and the title says so.
    """
    import numpy as np

    from .effective import _fit_draws, clean_setting, field_points, linear_fit, logit, testbed

    names = column_names(results)
    points = {name: field_points(r, n_boot=n_boot, seed=seed, ci=ci) for name, r in zip(names, results)}
    extra = reported_field_points() if reported else []
    wanted = list(dict.fromkeys([p.setting for ps in points.values() for p in ps]
                                + ([e["setting"] for e in extra] if not any(points.values()) else [])))
    if settings is not None:
        wanted = list(settings)
    left_out = []
    if len(wanted) > _MAX_FIELD_PANELS:
        left_out = [s for s in wanted if s.startswith("imagenet-c.")]
        wanted = [s for s in wanted if not s.startswith("imagenet-c.")][:_MAX_FIELD_PANELS]
    if not wanted:
        raise ValueError("Expected a domain that is a testbed setting (ImageNet-R, -A, -Sketch, -V2, ObjectNet, "
                         "Stylized-ImageNet, greyscale grey1, ImageNet-C) to plot the field, but the results have none. "
                         "Add one (--domain imagenet-r=DIR), or use --plot-kind bars.")
    cols = min(3, len(wanted))
    rows = -(-len(wanted) // cols)
    figure = new_figure(4.4 * cols, 4.0 * rows)
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    table = testbed()
    ticks = np.array([1, 5, 10, 20, 30, 50, 70, 80, 90, 95, 99], dtype=float)
    marked = False
    for ax, setting in zip(axes, wanted):
        fit = linear_fit(setting)
        x_all, y_all = table.columns[fit.clean], table.columns[setting]
        ok = (x_all > 0) & (x_all < 100) & (y_all > 0) & (y_all < 100)
        kinds = np.array(table.types)
        for kind, colour in _TYPE_COLOURS.items():
            sel = ok & (kinds == kind)
            if sel.any():
                ax.scatter(logit(x_all[sel]), logit(y_all[sel]), s=9, color=colour, alpha=0.55, linewidths=0,
                           label=kind.lower().replace("_", " ") if kind else "no type", gid=f"testbed:{kind}")
        # The axis spans the reference models and every point drawn on this panel.
        shown_x = [*x_all[ok], *(p.clean_acc for ps in points.values() for p in ps if p.setting == setting
                                 and 0 < p.clean_acc < 100), *(e["clean_acc"] for e in extra if e["setting"] == setting)]
        lo, hi = float(np.min(logit(np.array(shown_x)))), float(np.max(logit(np.array(shown_x))))
        grid = np.linspace(lo - 0.3, hi + 0.3, 60)
        ax.plot(grid, fit.slope * grid + fit.intercept, color="tab:blue", linewidth=1.4,
                label=f"fit: {len(fit.models)} standard models", gid="fit")
        slopes, intercepts = _fit_draws(fit, 400, seed)
        band = slopes[:, None] * grid[None, :] + intercepts[:, None]
        ax.fill_between(grid, *np.percentile(band, [2.5, 97.5], axis=0), color="tab:blue", alpha=0.2, linewidth=0,
                        gid="fit band")
        ax.plot(grid, grid, color="black", linestyle="--", linewidth=0.8, label="y = x", gid="y=x")
        for i, (name, model_points) in enumerate(points.items()):
            for p in (p for p in model_points if p.setting == setting):
                if not 0 < p.clean_acc < 100 or not 0 < p.shifted_acc < 100:
                    continue  # no logit: said in the tables (effective robustness undefined)
                colour = f"C{(i + 3) % 10}"
                marked |= not p.comparable
                label = f"{name}: {p.effective:+.2f}" + ("" if p.comparable else " (not comparable: sample)")
                x, y = logit(p.clean_acc), logit(p.shifted_acc)
                ax.scatter([x], [y], s=140, marker="*", zorder=5, edgecolors="black", linewidths=1.0,
                           facecolors=colour if p.comparable else "none", label=label, gid=f"model:{name}")
                ax.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=8, zorder=6)
        for e in (e for e in extra if e["setting"] == setting and 0 < e["shifted_acc"] < 100):
            x, y = logit(e["clean_acc"]), logit(e["shifted_acc"])
            ax.scatter([x], [y], s=60, marker="D", zorder=5, color="tab:red", edgecolors="black", linewidths=0.6,
                       label=f"{e['name']}: {e['shifted_acc'] - fit.expected(e['clean_acc']):+.2f}",
                       gid=f"reported:{e['name']}")
            ax.annotate(e["name"], (x, y), xytext=(6, -10), textcoords="offset points", fontsize=7, zorder=6)
        shown = ticks[(logit(ticks) >= grid[0] - 1) & (logit(ticks) <= grid[-1] + 1)]
        ax.set_xticks(logit(shown), [f"{t:g}" for t in shown])
        ax.set_yticks(logit(ticks), [f"{t:g}" for t in ticks])
        ax.set_xlim(grid[0], grid[-1])
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel(f"{fit.clean} top-1 accuracy % (logit axis)", fontsize=8)
        ax.set_ylabel(f"{setting} top-1 accuracy % (logit axis)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes[len(wanted):]:
        ax.set_visible(False)
    title = "Effective robustness among imagenet-testbed's models (Taori et al. 2020)"
    if marked:
        title += "; hollow stars: NOT COMPARABLE (a sample, not the full official sets)"
    if left_out:
        title += f"; {len(left_out)} ImageNet-C sets not shown (see the report's table)"
    figure.suptitle(title + _is_random(results), fontsize=10)
    return save_figure(figure, path)


def plot_report(
    results: Sequence[EvalResult], path: str | os.PathLike[str], kind: str = "auto", *, ci: bool = True,
    n_boot: int = 1000, seed: int = 0,
) -> Path:
    """``--plot FILE``: severity curves when the results hold a sweep (``auto``), else the drop bars; ``field``: the
    results among the testbed's models (:func:`plot_field`)."""
    if kind not in PLOT_KINDS:
        raise ValueError(f"Expected plot kind to be one of {PLOT_KINDS}, but got {kind!r}.")
    if kind == "field":
        return plot_field(results, path, ci=ci, n_boot=n_boot, seed=seed)
    if kind == "auto":
        kind = "curves" if any(severity_curves(r) for r in results) else "bars"
    plot = plot_severity_curves if kind == "curves" else plot_drop_bars
    return plot(results, path, ci=ci, n_boot=n_boot, seed=seed)
