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

__all__ = ["PLOT_KINDS", "PLOT_SUFFIXES", "check_plot_path", "new_figure", "plot_drop_bars", "plot_report",
           "plot_severity_curves", "save_figure"]



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


def plot_report(
    results: Sequence[EvalResult], path: str | os.PathLike[str], kind: str = "auto", *, ci: bool = True,
    n_boot: int = 1000, seed: int = 0,
) -> Path:
    """``--plot FILE``: severity curves when the results hold a sweep (``auto``), else the drop bars."""
    if kind not in PLOT_KINDS:
        raise ValueError(f"Expected plot kind to be one of {PLOT_KINDS}, but got {kind!r}.")
    if kind == "auto":
        kind = "curves" if any(severity_curves(r) for r in results) else "bars"
    plot = plot_severity_curves if kind == "curves" else plot_drop_bars
    return plot(results, path, ci=ci, n_boot=n_boot, seed=seed)
