"""Table 1 style reports: pure functions from results to text.

The layout follows the paper: one row per domain in evaluation order (origin first, then the shifts, then the
domains of other image sources), one column per model, cells ``top1/top5`` error with the drops against
origin in brackets, two decimals. On request (``ci=True``) every cell gets a
second row with its 95% bootstrap intervals, followed by the flip rates and, for two or more models,
McNemar's paired test of every pair of models on every shift. Severity sweeps (several members of one
family, e.g. ``rgb+10:100:10``) are summarized per model by the area under the error curve and the
severity at which the top-1 error doubles. The sets of an ImageNet-C tree (one domain per corruption and
severity) are one row, their mCE and relative mCE, followed by a per-corruption table (CE, relative CE, mean
top-1 error; the extra corruptions apart) in every format. JSON always carries all of it.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from .corruption import ON_THE_FLY, CorruptionRun, imagenet_c_runs
from .datasets.facts import imagenet_c_facts
from .metrics import BOOTSTRAP_METHOD, curve_auc, doubling_severity, mcnemar, topk_correct
from .options import REPORT_FORMATS
from .results import SCHEMA_VERSION, DomainResult, EvalResult, fast_label
from .text import latex_escape as _latex_escape
from .text import markdown_cell
from .text import random_init_tag, random_weights_banner

__all__ = [
    "FORMATS",
    "column_names",
    "corruption_frames",
    "effective_frame",
    "format_report",
    "header_lines",
    "latex_tabular",
    "paired_tests",
    "severity_curves",
    "table1_cell",
    "table1_frame",
]

FORMATS = REPORT_FORMATS
CI_LABEL = "95% CI"
# A family member's name when its record predates the declared severities: the number is the parameter.
_MEMBER = re.compile(r"(?P<family>.*?)(?P<value>\d+(?:\.\d*)?|\.\d+)(?P<suffix>\D*)\Z")


def table1_cell(row: DomainResult) -> str:
    """``24.27/7.08`` for the clean row, ``28.22/9.64 (3.94/2.56)`` for a shifted one."""
    cell = f"{row.top1_err:.2f}/{row.top5_err:.2f}"
    if not row.is_reference:  # clean, or a label space's reference row: the baseline of other rows' drops
        cell += f" ({row.top1_drop:.2f}/{row.top5_drop:.2f})"
    return cell


def _interval(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _ci_cell(ci_row: dict[str, Any]) -> str:
    """``[23.1, 25.4]/[6.5, 7.7]``, plus the drops' intervals in brackets for a shifted row."""
    cell = f"{_interval(ci_row['top1_err_ci'])}/{_interval(ci_row['top5_err_ci'])}"
    if ci_row.get("reference", "clean") != ci_row["transform"]:
        cell += f" ({_interval(ci_row['top1_drop_ci'])}/{_interval(ci_row['top5_drop_ci'])})"
    return cell


def column_names(results: Sequence[EvalResult]) -> list[str]:
    """One column name per result: the model, ``(random init)`` when so, the weights' hash if names collide."""
    base = [r.model + (random_init_tag() if r.is_random else "") for r in results]
    names = list(base)
    for i, result in enumerate(results):
        if base.count(base[i]) > 1:
            sha = result.weights.get("sha256")
            tag = f"sha256 {sha[:8]}" if sha else f"seed {result.weights.get('seed')}" if result.is_random else ""
            names[i] = f"{result.model} ({tag or result.weights.get('kind', '?')})"
    tagged = list(names)
    for i, name in enumerate(tagged):  # still colliding (same model and weights twice): number them
        if tagged.count(name) > 1:
            names[i] = f"{name} #{tagged[:i + 1].count(name)}"
    return names


def _domain_order(results: Sequence[EvalResult]) -> tuple[list[str], dict[str, str]]:
    order: list[str] = []
    labels: dict[str, str] = {}
    for result in results:
        for row in result.results:
            if row.transform not in labels:
                order.append(row.transform)
                labels[row.transform] = row.label
    return order, labels


def table1_frame(
    results: Sequence[EvalResult], uncertainty: Sequence[dict[str, Any]] | None = None
) -> pd.DataFrame:
    """Rows: transform labels in evaluation order; columns: models; cells: :func:`table1_cell`.

    With ``uncertainty`` (one :meth:`EvalResult.uncertainty` per result) every row is followed by a
    ``95% CI`` row holding the intervals of the errors and drops. A model that did not evaluate a row
    has an empty cell there.
    """
    order, labels = _domain_order(results)
    columns = column_names(results)
    by_model = [{row.transform: row for row in result.results} for result in results]
    ci_by_model = [{row["transform"]: row for row in u["rows"]} for u in uncertainty] if uncertainty else None
    trees = [{run.name: run for run in imagenet_c_runs(result)} for result in results]
    member = {d: run.name for runs in trees for run in runs.values() for d in run.domains.values()}
    index, body, shown = [], [], set()
    for name in order:
        if name in member:  # an ImageNet-C set: its tree's mCE row stands where the tree's first set would
            tree = member[name]
            if tree in shown:
                continue
            shown.add(tree)
            label = next(runs[tree].label for runs in trees if tree in runs)
            index.append(f"{label} mCE")
            body.append([_mce_cell(runs[tree]) if tree in runs else "" for runs in trees])
            if ci_by_model is not None:  # no interval for mCE: the sets' intervals are in the JSON report
                index.append(CI_LABEL)
                body.append(["" for _ in trees])
            continue
        index.append(labels[name])
        body.append([table1_cell(rows[name]) if name in rows else "" for rows in by_model])
        if ci_by_model is not None:
            index.append(CI_LABEL)
            body.append([_ci_cell(ci[name]) if name in ci else "" for ci in ci_by_model])
    frame = pd.DataFrame(body, index=pd.Index(index, name="transform"), columns=columns)
    return frame


def _mce_cell(run: CorruptionRun) -> str:
    """``mCE 76.70, relative 105.03``, marked ``(partial)`` when not over all 15 x 5 sets."""
    scores = run.scores
    if scores.mce is None:
        return f"no benchmark corruption (extras' mean top-1 err {_mean(scores.mean_error.values()):.2f})"
    relative = "" if scores.relative_mce is None else f", relative {scores.relative_mce:.2f}"
    return f"mCE {scores.mce:.2f}{relative}" + ("" if scores.complete else " (partial)")


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def corruption_frames(results: Sequence[EvalResult]) -> list[tuple[str, pd.DataFrame]]:
    """One per-corruption table per ImageNet-C tree: ``(title, frame)``.

    Rows: the benchmark corruptions present (canonical order), the mean over them (``mCE``), then the extra
    corruptions (no AlexNet normaliser, so no CE). Columns per model: CE and relative CE (AlexNet = 100) and the
    top-1 error averaged over the severities present (percent); with several models, prefixed by the model.
    """
    facts = imagenet_c_facts()
    names = column_names(results)
    trees = [{run.name: run for run in imagenet_c_runs(result)} for result in results]
    order = list(dict.fromkeys(name for runs in trees for name in runs))
    frames = []
    for tree in order:
        present = {c for runs in trees if tree in runs for c in runs[tree].scores.mean_error}
        bench = [c for c in facts.benchmark if c in present]
        extras = [c for c in facts.extras if c in present]
        columns, body = [], {c: [] for c in [*bench, "mCE", *extras]}
        for name, runs in zip(names, trees):
            prefix = f"{name} " if len(results) > 1 else ""
            columns += [f"{prefix}CE", f"{prefix}relative CE", f"{prefix}mean top-1 err"]
            scores = runs[tree].scores if tree in runs else None
            for c in body:
                if scores is None:
                    cells = ["", "", ""]
                elif c == "mCE":
                    cells = [_number(scores.mce), _number(scores.relative_mce), _number(scores.mean_benchmark_error)]
                elif c not in scores.mean_error:
                    cells = ["", "", ""]
                else:
                    cells = [_number(scores.ce.get(c)), _number(scores.relative_ce.get(c)),
                             _number(scores.mean_error[c])]
                body[c] += cells
        label = next(runs[tree].label for runs in trees if tree in runs)
        index = [*bench, "mCE" if bench else "mean", *(f"{c} (extra)" for c in extras)]
        frame = pd.DataFrame(list(body.values()), index=pd.Index(index, name="corruption"), columns=columns)
        title = (f"{label} per corruption: CE and relative CE (AlexNet = 100), top-1 error % averaged over the "
                 f"severities; mCE: their means over the benchmark corruptions (mean top-1 err: over every benchmark "
                 f"set); extra corruptions apart (no AlexNet normaliser, no CE)")
        frames.append((title, frame))
    return frames


EFFECTIVE_TITLE = ("effective robustness: top-1 accuracy % under the shift minus what a standard model of the same clean "
                   "accuracy reaches (logit-linear fit over imagenet-testbed's STANDARD models, Taori et al. 2020; "
                   "docs/effective-robustness.md); relative: shifted minus clean accuracy; points")


def effective_frame(results: Sequence[EvalResult], points: Sequence[Sequence[Any]], *,
                    ci: bool) -> pd.DataFrame | None:
    """The effective-robustness table: one row per (model, domain that is a testbed setting), ``None`` if none.

    ``points``: one :func:`~robustbench_ibn.effective.field_points` list per result. The sets of an ImageNet-C tree
    are one row (their mean; every set is in the CSV and JSON). A run that does not cover the full official sets has
    every number marked ``not comparable: ...`` in the last column.
    """
    import math

    names = column_names(results)
    body, index = [], []
    for name, result, model_points in zip(names, results, points):
        member = {d: run for run in imagenet_c_runs(result) for d in run.domains.values()}
        rows: list[tuple[str, list[Any]]] = []
        trees: dict[str, list[Any]] = {}
        for p in model_points:
            if p.domain in member:
                trees.setdefault(member[p.domain].label, []).append(p)
            else:
                rows.append((p.label, [p]))
        rows += [(f"{label} (mean of {len(group)} sets)", group) for label, group in trees.items()]
        for label, group in rows:
            first = group[0]
            mean = (lambda key: sum(getattr(p, key) for p in group) / len(group))  # noqa: E731
            effective = mean("effective")
            cell = "undefined" if math.isnan(effective) else f"{effective:+.2f}"
            interval = _interval(first.effective_ci) if ci and len(group) == 1 and not math.isnan(effective) else ""
            marks = list(dict.fromkeys(p.mark for p in group if p.mark))
            index.append(label)
            body.append([name, first.setting if len(group) == 1 else f"{len(group)} imagenet-c sets",
                         f"{mean('clean_acc'):.2f} ({first.clean_domain})", f"{mean('shifted_acc'):.2f}",
                         "-" if math.isnan(mean("expected_acc")) else f"{mean('expected_acc'):.2f}",
                         cell + (f" {interval}" if interval else ""), f"{mean('relative'):+.2f}", "; ".join(marks)])
    if not body:
        return None
    columns = ["model", "testbed setting", "clean acc", "top-1 acc", "expected",
               f"effective{' [95% CI]' if ci else ''}", "relative", "note"]
    return pd.DataFrame(body, index=pd.Index(index, name="shift"), columns=columns)


def _corruption_lines(results: Sequence[EvalResult]) -> list[str]:
    """Header lines: what the mCE row is, and every tree whose mCE is not the published one, saying why."""
    names = column_names(results)
    lines = []
    for name, result in zip(names, results):
        for run in imagenet_c_runs(result):
            if not lines:
                lines.append("ImageNet-C: one row per tree, mCE and relative mCE (AlexNet = 100, lower is better) over "
                             "its benchmark corruptions; no interval, no flip rate; per corruption below")
            if not run.scores.complete:
                who = f" ({name})" if len(results) > 1 else ""
                lines.append(f"{run.label}{who}: {run.scores.note()}")
    return lines


def _flip_frame(results: Sequence[EvalResult], uncertainty: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Flip rates of the shifts of the baseline images (a domain of another source has none: other images)."""
    order, labels = _domain_order(results)
    ci_by_model = [{row["transform"]: row for row in u["rows"]} for u in uncertainty]
    shifted = [n for n in order if n != "clean" and any(ci.get(n, {}).get("flip_rate") is not None
                                                       for ci in ci_by_model)]
    body = [
        [f"{ci[name]['flip_rate']:.2f} {_interval(ci[name]['flip_rate_ci'])}"
         if ci.get(name, {}).get("flip_rate") is not None else "" for ci in ci_by_model]
        for name in shifted
    ]
    return pd.DataFrame(body, index=pd.Index([labels[n] for n in shifted], name="transform"),
                        columns=column_names(results))


def _same_images(a: EvalResult, b: EvalResult, domain: str | None = None) -> bool:
    """Do ``a`` and ``b`` hold the same images, in the same order, with the same labels (of ``domain``'s source,
    default the baseline's)?"""
    sa, sb = (a.source_of(domain), b.source_of(domain)) if domain else (a.sources[a.baseline_source],
                                                                         b.sources[b.baseline_source])
    if len(sa.labels) != len(sb.labels) or not np.array_equal(sa.labels, sb.labels):
        return False
    if sa.images and sb.images:
        return list(sa.images) == list(sb.images)
    return sa.record.get("sha256") == sb.record.get("sha256")


def paired_tests(results: Sequence[EvalResult], method: str = "auto") -> list[dict[str, Any]]:
    """McNemar's test (top-1 correctness) for every pair of results on every domain both evaluated.

    Pairs are only formed between results on the same images in the same order (else the pair is
    listed with ``"paired": false`` and no test; likewise a domain of another source whose images differ).
    ``method``: see :func:`robustbench_ibn.metrics.mcnemar` (``auto``: exact binomial below 25 discordant
    images, chi-square with continuity correction above). Differences are ``a - b`` in top-1 error (percent).
    """
    names = column_names(results)
    tests: list[dict[str, Any]] = []
    for (i, a), (j, b) in combinations(enumerate(results), 2):
        if not _same_images(a, b):
            tests.append({"a": names[i], "b": names[j], "paired": False,
                          "reason": "different images or labels: no paired test"})
            continue
        for name in (n for n in a.predictions if n in b.predictions):
            if not _same_images(a, b, name):
                tests.append({"a": names[i], "b": names[j], "paired": False, "transform": name,
                              "reason": "different images or labels in this domain's source: no paired test"})
                continue
            source = a.source_of(name)
            ca = topk_correct(a.predictions[name], source.labels, 1, source.label_space)
            cb = topk_correct(b.predictions[name], source.labels, 1, source.label_space)
            test = mcnemar(ca, cb, method=method)
            tests.append({"a": names[i], "b": names[j], "paired": True, "transform": name, "metric": "top1",
                          "top1_err_diff": 100.0 * (float(np.mean(~ca)) - float(np.mean(~cb))), **test.to_dict()})
    return tests


def _mcnemar_frame(results: Sequence[EvalResult], tests: list[dict[str, Any]]) -> pd.DataFrame | None:
    order, labels = _domain_order(results)
    pairs: dict[str, dict[str, str]] = {}
    for t in tests:
        if not t["paired"]:
            continue
        cell = f"p={_p(t['p_value'])} ({t['only_a']} vs {t['only_b']}, {t['method']})"
        pairs.setdefault(f"{t['a']} vs {t['b']}", {})[t["transform"]] = cell
    if not pairs:
        return None
    body = [[cells.get(name, "") for cells in pairs.values()] for name in order]
    return pd.DataFrame(body, index=pd.Index([labels[n] for n in order], name="transform"), columns=list(pairs))


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _severity_points(result: EvalResult) -> dict[str, dict[str, Any]]:
    """Family -> {param, identity, members: [(value, name)]} from the recorded shift definitions (of the shifts
    of the baseline images: a sweep is read against their clean error)."""
    families: dict[str, dict[str, Any]] = {}
    for domain in result.domains:
        definition, name = domain["shift"], domain["name"]
        if definition is None or not domain["paired"]:
            continue
        severity = definition.get("severity")
        if severity:
            family, param, value, identity = (severity["family"], severity["param"], float(severity["value"]),
                                              severity.get("identity"))
        else:  # records without declared severities: the trailing number of the name
            match = _MEMBER.match(name)
            if match is None:
                continue
            family = match["family"] + "{}" + match["suffix"]
            param, value, identity = "severity", float(match["value"]), None
        entry = families.setdefault(family, {"param": param, "identity": identity, "members": []})
        entry["members"].append((value, name))
    return families


def severity_curves(result: EvalResult, uncertainty: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Error against severity for every family with two or more evaluated members (a sweep).

    The curve holds the measured members sorted by severity; when the family declares the severity
    at which it changes nothing (``identity``: 0 for ``rgb+K``, 1 for ``stdF``) and the sweep lies above
    it, the clean error is the curve's first point at that severity (``includes_origin``). Summaries:
    ``auc_top1``/``auc_top5`` (trapezoid over severity, percent x severity units), ``mean_top1_err``
    (the area divided by the severity range) and ``doubling_severity`` (where the top-1 error first
    reaches twice the clean error, linearly interpolated; ``None`` if never).
    """
    rows = {r.transform: r for r in result.results}
    ci = {row["transform"]: row for row in uncertainty["rows"]} if uncertainty else {}
    clean = rows["clean"]
    curves = []
    for family, info in _severity_points(result).items():
        members = sorted(info["members"])
        if len(members) < 2:
            continue
        values = [v for v, _ in members]
        names = [n for _, n in members]
        identity = info["identity"]
        includes_origin = identity is not None and float(identity) < values[0]
        if includes_origin:
            values, names = [float(identity), *values], ["clean", *names]
        top1 = [rows[n].top1_err for n in names]
        top5 = [rows[n].top5_err for n in names]
        span = values[-1] - values[0]
        auc1 = curve_auc(values, top1)
        curves.append({
            "model": result.model,
            "family": family,
            "param": info["param"],
            "identity": identity,
            "includes_origin": includes_origin,
            "transforms": names,
            "severities": values,
            "top1_err": top1,
            "top5_err": top5,
            "top1_err_ci": [ci[n]["top1_err_ci"] for n in names] if ci else None,
            "clean_top1_err": clean.top1_err,
            "auc_top1": auc1,
            "auc_top5": curve_auc(values, top5),
            "mean_top1_err": auc1 / span,
            "doubling_severity": doubling_severity(values, top1, clean.top1_err),
        })
    return curves


def _curve_frame(results: Sequence[EvalResult], curves: list[list[dict[str, Any]]]) -> pd.DataFrame | None:
    names = column_names(results)
    body, index = [], []
    for column, model_curves in zip(names, curves):
        for c in model_curves:
            doubling = "never" if c["doubling_severity"] is None else f"{c['doubling_severity']:.4g}"
            span = f"{c['severities'][0]:g}..{c['severities'][-1]:g}" + (" (from origin)" if c["includes_origin"] else "")
            index.append(column)
            body.append([c["family"], span, f"{c['auc_top1']:.1f}", f"{c['mean_top1_err']:.2f}", doubling])
    if not body:
        return None
    return pd.DataFrame(body, index=pd.Index(index, name="model"),
                        columns=["family", "severities", "AUC top-1", "mean top-1 err", "top-1 err doubles at"])


ON_THE_FLY_TREES = {name for name, _ in ON_THE_FLY.values()}


def _data_lines(result: EvalResult, prefix: str = "data") -> list[str]:
    """``data: <baseline description>``, then ``data <key>: ...`` for every other source."""
    lines = [f"{prefix}: {result.dataset.get('description', result.dataset.get('root'))}"]
    trees = {d: run for run in imagenet_c_runs(result) for d in run.domains.values()}
    source_of = {d["source"]: d["name"] for d in result.domains}
    shown = set()
    for run in imagenet_c_runs(result):  # the on-the-fly sets: shifts of the images above, in their own geometry
        if run.name in ON_THE_FLY_TREES:
            shown.add(run.name)
            first = next(d for d in result.domains if d["name"] == next(iter(run.domains.values())))
            lines.append(f"{prefix} {run.name}: {len(run.domains)} sets ({len(run.scores.coverage.severities)} "
                         f"corruptions) of the images above; first set: {first['shift']['description']}")
    for key, s in result.sources.items():
        if key == result.baseline_source:
            continue
        run = trees.get(source_of.get(key, ""))
        if run is not None and run.name in ON_THE_FLY_TREES:
            continue
        if run is None:
            lines.append(f"{prefix} {key}: {s.record.get('description', s.record.get('root'))}")
        elif run.name not in shown:  # one line per ImageNet-C tree, not one per set
            shown.add(run.name)
            members = [result.source_of(d) for d in run.domains.values()]
            roots = [str(m.record.get("root", "")) for m in members]
            common = os.path.commonpath(roots) if all(roots) else "?"
            sizes = sorted({len(m.labels) for m in members})
            each = f"{sizes[0]} images each" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]} images per set"
            lines.append(f"{prefix} {run.name}: ImageNet-C tree {common}: {len(members)} sets "
                         f"({len(run.scores.coverage.severities)} corruptions), {each}; first set: "
                         f"{members[0].record.get('description')}")
    return lines


def _protocol_text(result: EvalResult) -> str:
    stages = "shifts on the {}px crop".format(result.data_config["crop"])
    if any(d["stage"] == "image" for d in result.domains):
        stages += " or on the decoded image (image stage)"
    fast = fast_label(result.protocol)
    return (f"{result.protocol['precision']}{', ' + fast if fast else ''}, {stages} before normalization, protocol "
            f"v{result.protocol.get('version')}, fingerprint {result.protocol.get('fingerprint', '?')}")


def _cells_line(results: Sequence[EvalResult]) -> str:
    """What a cell holds, and what its drop is against (origin, or a label space's reference row)."""
    references = [labels for labels in ({d["label"] for d in r.domains if r.reference_of(d["name"]) == d["name"]
                                         and d["name"] != "clean"} for r in results) if labels]
    if not references:
        return "cells: top-1/top-5 error % (drop vs origin)"
    shown = sorted(set().union(*references))
    return (f"cells: top-1/top-5 error % (drop vs origin; a dataset scored among its own classes: vs its reference "
            f"row, the val images of those classes predicted among them: {', '.join(shown)})")


def _drops_notes(results: Sequence[EvalResult]) -> list[str]:
    """A record made before protocol 4: its label-space rows' drops are against 1000-way clean, as computed."""
    names = column_names(results)
    return [f"note{f' ({name})' if len(results) > 1 else ''}: {note}"
            for name, note in zip(names, (r.drops_note() for r in results)) if note]


def header_lines(result: EvalResult) -> list[str]:
    """What the numbers are: model, weights (loudly when random), data, protocol, what the drops are against."""
    return [
        f"model: {result.model}",
        f"weights: {_weights_text(result)}",
        *_data_lines(result),
        f"protocol: {_protocol_text(result)}",
        _cells_line([result]),
        *_drops_notes([result]),
    ]


def _weights_text(result: EvalResult) -> str:
    if result.is_random:
        return random_weights_banner(result.weights.get("seed"))
    return str(result.weights.get("description", result.weights.get("kind")))


def _headers(results: Sequence[EvalResult], ci: bool, n_boot: int, seed: int) -> list[str]:
    if len(results) == 1:
        lines = header_lines(results[0])
    else:
        names = column_names(results)
        lines = [f"models: {', '.join(r.model for r in results)}"]
        weights = [_weights_text(r) for r in results]
        if len(set(weights)) == 1:
            lines.append(f"weights: {weights[0]} (every model)")
        else:
            lines += [f"weights {name}: {w}" for name, w in zip(names, weights)]
        data = [_data_lines(r) for r in results]
        if all(d == data[0] for d in data):
            lines += data[0]
        else:
            lines += [line for n, r in zip(names, results) for line in _data_lines(r, f"data {n}")]
        protocols = [_protocol_text(r) for r in results]
        if len(set(protocols)) == 1:
            lines.append(f"protocol: {protocols[0]}")
        else:
            lines += [f"protocol {n}: {p}" for n, p in zip(names, protocols)]
            lines.append("note: the columns differ in protocol (data, geometry, shift set or precision); "
                         "compare them with care")
        lines += [_cells_line(results), *_drops_notes(results)]
    if any(not d["paired"] for r in results for d in r.domains):
        against = ("clean ImageNet val (1000-way) or their reference row"
                   if any(d.get("restricts") for r in results for d in r.domains) else "clean ImageNet val")
        lines.append(f"other sources: their rows' drops are against {against}, intervals from resampling each source "
                     "on its own; no flip rate (other images)")
    lines += _corruption_lines(results)
    if ci:
        lines.append(f"intervals: 95% {BOOTSTRAP_METHOD}, {n_boot} resamples, seed {seed}")
    return lines


def latex_tabular(frame: pd.DataFrame, first: str = "Transform") -> list[str]:
    """A booktabs ``tabular`` of ``frame`` (index as the first column, titled ``first``), every cell escaped; the
    rows labelled ``95% CI`` in ``\\scriptsize``.

    Example:
        >>> print("\\n".join(latex_tabular(pd.DataFrame({"a_b": ["1%"]}, index=["x"]))))
        \\begin{tabular}{lc}
        \\toprule
        Transform & a\\_b \\\\
        \\midrule
        x & 1\\% \\\\
        \\bottomrule
        \\end{tabular}
    """
    lines = [
        r"\begin{tabular}{l" + "c" * len(frame.columns) + "}",
        r"\toprule",
        " & ".join([first, *(_latex_escape(str(c)) for c in frame.columns)]) + r" \\",
        r"\midrule",
    ]
    for label, row in zip(frame.index, frame.values):
        if label == CI_LABEL:
            cells = [r"\scriptsize " + _latex_escape(str(c)) if c else "" for c in row]
            lines.append(" & ".join([r"\scriptsize " + _latex_escape(CI_LABEL), *cells]) + r" \\")
        else:
            lines.append(" & ".join([_latex_escape(str(label)), *(_latex_escape(str(c)) for c in row)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def _markdown(frame: pd.DataFrame, first: str = "transform") -> str:
    # Cells are already formatted text: no number parsing (it would drop the decimals of "10000.0"). Every cell,
    # header and row label is escaped: model names and labels come from records, which anyone can write.
    cells = pd.DataFrame([[markdown_cell(c) for c in row] for row in frame.values],
                         index=[markdown_cell(i) for i in frame.index],
                         columns=[markdown_cell(c) for c in frame.columns])
    return tabulate(cells, headers=[first, *cells.columns], tablefmt="github", disable_numparse=True,
                    colalign=("left", *("right",) * len(frame.columns)))


def report_json(results: Sequence[EvalResult], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The JSON report: one result's summary (with intervals and curves), or every model's plus paired tests."""
    summaries = []
    for result in results:
        summary = result.summary(n_boot=n_boot, seed=seed)
        curves = severity_curves(result, summary["uncertainty"])
        if curves:
            summary["curves"] = curves
        from .effective import field_points

        points = field_points(result, n_boot=n_boot, seed=seed)
        if points:
            summary["effective_robustness"] = [p.to_dict() for p in points]
        runs = imagenet_c_runs(result)
        if runs:
            summary["imagenet_c"] = [{"name": run.name, "label": run.label,
                                      "domains": {f"{c}/{s}": d for (c, s), d in run.domains.items()},
                                      **run.scores.to_dict()} for run in runs]
        summaries.append(summary)
    if len(results) == 1:
        return summaries[0]
    return {
        "schema_version": SCHEMA_VERSION,
        "columns": column_names(results),
        "models": summaries,
        "paired_tests": paired_tests(results),
        "paired_test_method": "McNemar on top-1 correctness: exact two-sided binomial below 25 discordant "
                              "images, chi-square with continuity correction otherwise",
    }


def _with_effective(frame: pd.DataFrame, result: EvalResult, ci: bool, n_boot: int, seed: int) -> pd.DataFrame:
    """The long CSV frame plus, when a domain is a testbed setting, its effective robustness columns (empty
    elsewhere): setting, expected accuracy, effective and relative robustness (points), the interval with ``ci``,
    and ``effective_note`` (``not comparable: ...`` for a sample)."""
    from .effective import field_points

    points = {p.domain: p for p in field_points(result, n_boot=n_boot, seed=seed, ci=ci)}
    if not points:
        return frame
    column = {key: [getattr(points[t], key) if t in points else None for t in frame["transform"]]
              for key in ("setting", "expected_acc", "effective", "relative", "mark")}
    frame = frame.assign(testbed_setting=column["setting"], expected_acc=column["expected_acc"],
                         effective_robustness=column["effective"], relative_robustness=column["relative"])
    if ci:
        frame["effective_robustness_lo"] = [points[t].effective_ci[0] if t in points else None
                                            for t in frame["transform"]]
        frame["effective_robustness_hi"] = [points[t].effective_ci[1] if t in points else None
                                            for t in frame["transform"]]
    return frame.assign(effective_note=column["mark"])


def _with_corruption_rows(frame: pd.DataFrame, result: EvalResult, model: str) -> pd.DataFrame:
    """The long CSV frame plus, per ImageNet-C tree, one row per corruption and one mCE row (``row`` says which;
    ``ce``/``relative_ce`` hold CE/relative CE, or mCE/relative mCE; ``top1_err`` the mean error)."""
    runs = imagenet_c_runs(result)
    if not runs:
        return frame
    frame = frame.assign(row="domain", ce=np.nan, relative_ce=np.nan)
    rows = {r.transform: r for r in result.results}
    clean = rows["clean"].top1_err
    extra = []
    for run in runs:
        scores = run.scores
        for c, error in scores.mean_error.items():
            n = sum(rows[d].n for (name, _), d in run.domains.items() if name == c)
            extra.append({"model": model, "transform": f"{run.name}/{c}", "label": f"{run.label} {c}",
                          "source": run.name, "n": n, "top1_err": error, "top1_drop": error - clean,
                          "row": "corruption", "ce": scores.ce.get(c, np.nan),
                          "relative_ce": scores.relative_ce.get(c, np.nan)})
        mean = scores.mean_benchmark_error
        n = sum(rows[d].n for (name, _), d in run.domains.items() if name in scores.ce)
        extra.append({"model": model, "transform": f"{run.name}/mce", "label": f"{run.label} mCE",
                      "source": run.name, "n": n, "top1_err": mean, "top1_drop": None if mean is None else mean - clean,
                      "row": "mce", "ce": scores.mce, "relative_ce": scores.relative_mce, "note": scores.note()})
    return pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)


def format_report(
    results: Sequence[EvalResult], fmt: str = "markdown", *, ci: bool = False, n_boot: int = 1000, seed: int = 0
) -> str:
    """Render results as ``markdown`` (with a header), ``latex`` (booktabs), ``csv`` (long) or ``json``.

    Args:
        results: one column per result (Table 1 layout, rows matched by transform name).
        fmt: one of :data:`FORMATS`.
        ci: add the 95% bootstrap intervals, flip rates and (two or more models) McNemar's tests to the
            text formats. JSON always carries them.
        n_boot: bootstrap resamples.
        seed: bootstrap seed (with the same seed and images, every model is resampled identically).
    """
    if fmt not in FORMATS:
        raise ValueError(f"Expected format to be one of {FORMATS}, but got {fmt!r}.")
    if not results:
        raise ValueError("Expected at least one result to report, but got none.")
    if fmt == "json":
        return json.dumps(report_json(results, n_boot=n_boot, seed=seed), indent=2)
    uncertainty = [r.uncertainty(n_boot=n_boot, seed=seed) for r in results] if ci else None
    if fmt == "csv":
        frames = []
        for i, (name, result) in enumerate(zip(column_names(results), results)):
            frame = result.to_frame()
            frame["model"] = name
            if uncertainty is not None:
                ci_rows = {row["transform"]: row for row in uncertainty[i]["rows"]}
                for key in ("top1_err", "top5_err", "top1_drop", "top5_drop", "flip_rate"):
                    bounds = np.array([ci_rows[t][f"{key}_ci"] or [np.nan, np.nan] for t in frame["transform"]])
                    if key == "flip_rate":  # none for a domain of another source
                        frame[key] = [ci_rows[t]["flip_rate"] for t in frame["transform"]]
                    frame[f"{key}_lo"], frame[f"{key}_hi"] = bounds[:, 0], bounds[:, 1]
            frames.append(_with_corruption_rows(_with_effective(frame, result, ci, n_boot, seed), result, name))
        buffer = io.StringIO()
        pd.concat(frames).to_csv(buffer, index=False, float_format="%.4f")
        return buffer.getvalue().rstrip("\n")

    frame = table1_frame(results, uncertainty)
    headers = _headers(results, ci, n_boot, seed)
    extras: list[tuple[str, pd.DataFrame, str]] = []
    if uncertainty is not None:
        extras.append(("flip rate: % of images whose top-1 prediction differs from origin's [95% CI]"
                       + (" (shifts of the origin images only)" if any(not d["paired"] for r in results
                                                                          for d in r.domains) else ""),
                       _flip_frame(results, uncertainty), "transform"))
        if len(results) > 1:
            mc = _mcnemar_frame(results, paired_tests(results))
            if mc is not None:
                extras.append(("McNemar's test, top-1, per pair of models (images only the first / only the second "
                               "gets right; exact binomial below 25 discordant images, else chi-square with "
                               "continuity correction)", mc, "transform"))
    extras += [(title, corruption, "corruption") for title, corruption in corruption_frames(results)]
    from .effective import field_points

    effective = effective_frame(results, [field_points(r, n_boot=n_boot, seed=seed, ci=ci) for r in results], ci=ci)
    if effective is not None:
        extras.append((EFFECTIVE_TITLE, effective, "shift"))
    curves = [severity_curves(r, u) for r, u in zip(results, uncertainty or [None] * len(results))]
    curve_frame = _curve_frame(results, curves)
    if curve_frame is not None:
        extras.append(("severity sweeps: area under the top-1 error curve (trapezoid, % x severity), its mean "
                       "over the range, and the severity where the top-1 error doubles vs origin", curve_frame,
                       "model"))
    if fmt == "latex":
        lines = [f"% {h}" for h in headers] + [r"% needs \usepackage{booktabs}"] + latex_tabular(frame)
        for title, extra, first in extras:
            lines += ["", f"% {title}", *latex_tabular(extra, first.capitalize())]
        return "\n".join(lines)
    parts = ["\n".join(f"{h}  " for h in headers), _markdown(frame)]
    parts += [f"{title}:\n\n{_markdown(extra, first)}" for title, extra, first in extras]
    return "\n\n".join(parts)
