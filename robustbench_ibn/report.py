"""Table 1 style reports: pure functions from results to text.

The layout follows the paper: one row per transform (origin first), one column per model, cells
``top1/top5`` error with the drops in brackets, two decimals.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import pandas as pd
from tabulate import tabulate

from .results import DomainResult, EvalResult

__all__ = ["FORMATS", "format_report", "header_lines", "table1_cell", "table1_frame"]

FORMATS = ("markdown", "latex", "csv", "json")


def table1_cell(row: DomainResult) -> str:
    """``24.27/7.08`` for the clean row, ``28.22/9.64 (3.94/2.56)`` for a shifted one."""
    cell = f"{row.top1_err:.2f}/{row.top5_err:.2f}"
    if row.transform != "clean":
        cell += f" ({row.top1_drop:.2f}/{row.top5_drop:.2f})"
    return cell


def table1_frame(results: Sequence[EvalResult]) -> pd.DataFrame:
    """Rows: transform labels in evaluation order; columns: models; cells: :func:`table1_cell`."""
    columns: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for result in results:
        column = result.model + (" (random init)" if result.is_random else "")
        columns[column] = {}
        for row in result.results:
            columns[column][row.label] = table1_cell(row)
            if row.label not in order:
                order.append(row.label)
    frame = pd.DataFrame(columns, index=order).fillna("")
    frame.index.name = "transform"
    return frame


def header_lines(result: EvalResult) -> list[str]:
    """What the numbers are: model, weights (loudly when random), data, protocol."""
    weights = result.weights.get("description", result.weights.get("kind"))
    if result.is_random:
        weights = f"!!! {weights} !!!"
    protocol = result.protocol
    return [
        f"model: {result.model}",
        f"weights: {weights}",
        f"data: {result.dataset.get('description', result.dataset.get('root'))}",
        f"protocol: {protocol['precision']}, shifts on the {protocol['geometry']['crop']}px crop before normalization, "
        f"fingerprint {protocol.get('fingerprint', '?')}",
        "cells: top-1/top-5 error % (drop vs origin)",
    ]


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                       ("×", r"$\times$")):
        text = text.replace(char, repl)
    return text


def _latex(frame: pd.DataFrame, headers: list[str]) -> str:
    lines = [f"% {h}" for h in headers]
    lines += [
        r"\begin{tabular}{l" + "c" * len(frame.columns) + "}",
        r"\toprule",
        " & ".join(["Transform", *(_latex_escape(c) for c in frame.columns)]) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join([_latex_escape(str(i)), *row]) + r" \\" for i, row in zip(frame.index, frame.values)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def format_report(results: Sequence[EvalResult], fmt: str = "markdown") -> str:
    """Render results as ``markdown`` (with a header), ``latex`` (booktabs), ``csv`` (long) or ``json``."""
    if fmt not in FORMATS:
        raise ValueError(f"Expected format to be one of {FORMATS}, but got {fmt!r}.")
    if fmt == "json":
        payload = [r.summary() for r in results]
        return json.dumps(payload[0] if len(payload) == 1 else payload, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        pd.concat([r.to_frame() for r in results]).to_csv(buffer, index=False, float_format="%.4f")
        return buffer.getvalue().rstrip("\n")
    frame = table1_frame(results)
    headers = [line for r in results for line in header_lines(r)]
    if fmt == "latex":
        return _latex(frame, headers)
    table = tabulate(frame, headers=["transform", *frame.columns], tablefmt="github",
                     colalign=("left", *("right",) * len(frame.columns)))
    return "\n".join([*(f"{h}  " for h in headers), "", table])
