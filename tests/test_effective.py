"""Effective robustness against imagenet-testbed's models: the fit and the numbers checked against a computation by
hand from the published CSV (read here without the package), the comparability guard, the bootstrap interval, the
report/leaderboard columns and the field picture (its matplotlib artists inspected).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robustbench_ibn as rb
from robustbench_ibn import DataConfig, EvalResult, evaluate
from robustbench_ibn import effective as er
from robustbench_ibn.leaderboard import entry_from_result, leaderboard_markdown
from robustbench_ibn.report import format_report
from robustbench_ibn.results import SourceResult
from test_natural import builder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "effective_robustness"
PIXELS = DataConfig(resize=40, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
RUN = dict(workers=0, progress=False, device="cpu", batch_size=16)
PAIRED_CLEAN = {"imagenet-r": "val-on-imagenet-r-classes", "imagenet-a": "val-on-imagenet-a-classes",
                "objectnet-1.0-beta": "val-on-objectnet-classes"}
NATURAL = ["imagenet-r", "imagenet-a", "imagenet-sketch", "objectnet-1.0-beta", "stylized_imagenet", "greyscale",
           "imagenetv2-matched-frequency", "imagenetv2-matched-frequency-format-val", "imagenetv2-threshold0.7",
           "imagenetv2-threshold-0.7-format-val", "imagenetv2-topimages", "imagenetv2-top-images-format-val"]


# -- by hand, from the published files ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def published() -> tuple[list[dict[str, str]], dict[str, str]]:
    with open(SHARED / "testbed_top1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(SHARED / "testbed_model_types.tsv") as f:
        types = dict(line.rstrip("\n").split("\t") for line in list(f)[1:])
    return rows, types


def fit_by_hand(rows, types, setting):
    clean = PAIRED_CLEAN.get(setting, "val")
    xs, ys = [], []
    for row in rows:
        name = row["model"]
        if types.get(name) != "STANDARD" or "aws" in name or "batch64" in name or "subsample" in name:
            continue
        if not row[clean] or not row[setting]:
            continue
        x, y = float(row[clean]), float(row[setting])
        if 0 < x < 100 and 0 < y < 100:
            xs.append(math.log(x / (100 - x)))
            ys.append(math.log(y / (100 - y)))
    slope, intercept = np.polyfit(xs, ys, 1)
    return clean, len(xs), slope, intercept


def test_every_supported_setting_is_the_natural_shifts_and_imagenet_c(published):
    rows, _ = published
    imagenet_c = [c for c in rows[0] if c.startswith("imagenet-c.")]
    assert sorted(er.settings()) == sorted(NATURAL + imagenet_c)
    assert len(imagenet_c) == 185 and {c.rsplit("_", 1)[1] for c in imagenet_c} == {"in-memory", "on-disk"}


def test_fit_and_effective_robustness_match_a_computation_by_hand_on_every_setting(published):
    rows, types = published
    by_name = {row["model"]: row for row in rows}
    models = ["resnet50", "densenet121", "resnet152", "resnext101_32x8d", "efficientnet-b0"]  # standard, in the fit
    models += ["BiT-M-R50x1-ILSVRC2012", "resnet50_augmix", "resnet50_trained_on_SIN"]  # other types
    checked = 0
    for setting in er.settings():
        clean, n, slope, intercept = fit_by_hand(rows, types, setting)
        fit = er.linear_fit(setting)
        assert (fit.clean, len(fit.models)) == (clean, n), setting
        assert fit.slope == pytest.approx(slope, abs=1e-9) and fit.intercept == pytest.approx(intercept, abs=1e-9)
        for model in models:
            row = by_name[model]
            if not row.get(clean) or not row.get(setting) or not 0 < float(row[clean]) < 100:
                continue
            x, y = float(row[clean]), float(row[setting])
            t = slope * math.log(x / (100 - x)) + intercept
            expected = 100 / (1 + math.exp(-t))
            assert rb.effective_robustness(setting, x, y) == pytest.approx(y - expected, abs=1e-9), (setting, model)
            checked += 1
    assert checked > 1000


def test_the_public_function_refuses_unknown_settings_and_accuracies_without_a_logit():
    with pytest.raises(ValueError, match=r"but got 'imagenet_r'\. Did you mean imagenet-r\?"):
        rb.effective_robustness("imagenet_r", 70.0, 30.0)
    with pytest.raises(ValueError, match="strictly between 0 and 100"):
        rb.effective_robustness("imagenet-sketch", 100.0, 30.0)
    with pytest.raises(ValueError, match=r"in \[0, 100\]"):
        rb.effective_robustness("imagenet-sketch", 70.0, 130.0)
    assert rb.effective_robustness("imagenet-sketch", 70.0, 0.0) < 0  # a shifted accuracy of 0 is a number
    assert er.linear_fit("imagenet-sketch", min_clean_acc=70.0).models != er.linear_fit("imagenet-sketch").models


# -- the bootstrap interval ----------------------------------------------------------------------------------------
def test_the_interval_holds_the_estimate_widens_with_fewer_images_and_replays_by_seed():
    def correct(n, share):
        return np.arange(n) % 100 < share

    many = er.effective_robustness_interval("imagenet-sketch", correct(4000, 75), correct(4000, 40), n_boot=300)
    few = er.effective_robustness_interval("imagenet-sketch", correct(200, 75), correct(200, 40), n_boot=300)
    again = er.effective_robustness_interval("imagenet-sketch", correct(200, 75), correct(200, 40), n_boot=300)
    other = er.effective_robustness_interval("imagenet-sketch", correct(200, 75), correct(200, 40), n_boot=300, seed=1)
    assert many["effective"] == pytest.approx(40 - er.linear_fit("imagenet-sketch").expected(75.0))
    for out in (many, few):
        assert out["effective_ci"][0] < out["effective"] < out["effective_ci"][1]
    width = lambda out: out["effective_ci"][1] - out["effective_ci"][0]  # noqa: E731
    assert width(few) > 2 * width(many)
    assert again == few and other["effective_ci"] != few["effective_ci"]
    # The fit's own uncertainty is in it: identical clean and shifted correctness (paired) leaves only the fit's.
    same = er.effective_robustness_interval("greyscale", correct(4000, 75), correct(4000, 75), paired=True, n_boot=300)
    assert same["relative_ci"] == [0.0, 0.0] and width(same) > 0


# -- runs: the guard, the outputs ----------------------------------------------------------------------------------
class Fixed(nn.Module):
    """Every image gets the same logits, class ``top`` first: a known share of each set is right."""

    def __init__(self, top: int) -> None:
        super().__init__()
        logits = -torch.arange(1000, dtype=torch.float32) * 1e-3
        logits[top] = 10.0
        self.register_buffer("logits", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1) + 0 * x.mean()


@pytest.fixture(scope="module")
def sample_run(sample_val, tmp_path_factory) -> EvalResult:
    """A real run on the shared images (8 val images, greyscale, ImageNet-V2 and -R trees): a sample, never comparable."""
    trees = builder.build(tmp_path_factory.mktemp("er"), sample_val)
    from robustbench_ibn.datasets.facts import imagenet_r_classes

    r_classes = {index for _, index in imagenet_r_classes()}
    # One val image is right (on val, on greyscale, and among ImageNet-R's classes): every accuracy has a logit.
    top = next(label for _, label in rb.ImageNetVal(trees["val"]).samples if label in r_classes)
    return evaluate(Fixed(top), trees["val"], "grey1", data_config=PIXELS,
                    domains=[f"imagenet-v2={trees['imagenet-v2']}", f"imagenet-r={trees['imagenet-r']}"], **RUN)


def full_size(result: EvalResult, *, limit: int | None = None) -> EvalResult:
    """``result`` as if over the full official sets: 50,000 val images of the 1000 classes under their official
    names, ImageNet-V2's 10,000, -R's 30,000, each the run's predictions repeated (the guard reads the records and
    labels, as it must for any run)."""
    sources, predictions = {}, {}
    for key, source in result.sources.items():
        n = er.FULL_SIZES.get(source.record["kind"], (10_000,))[0]  # val's 50,000, R's 30,000, ...
        reps = -(-n // len(source.labels))
        names = [f"n0/ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)] if key == result.baseline_source else []
        record = {**source.record, "n": n, "limit": limit if key == result.baseline_source else None}
        labels = np.arange(n) % 1000 if key == result.baseline_source else np.tile(source.labels, reps)[:n]
        sources[key] = SourceResult(record, labels, names)
    for d in result.domains:
        n = len(sources[d["source"]].labels)
        predictions[d["name"]] = np.tile(result.predictions[d["name"]], (-(-n // len(result.predictions[d["name"]])),
                                                                         1))[:n]
    return dataclasses.replace(result, sources=sources, predictions=predictions)


def test_a_sample_run_is_marked_not_comparable_everywhere_and_stays_off_the_leaderboard(sample_run):
    points = er.field_points(sample_run, n_boot=50)
    assert [(p.domain, p.setting, p.clean_domain) for p in points] == [
        ("grey1", "greyscale", "clean"), ("imagenet-v2", "imagenetv2-matched-frequency-format-val", "clean"),
        ("imagenet-r", "imagenet-r", "val-on-imagenet-r-classes")]
    for p in points:
        assert not p.comparable and p.mark == "not comparable: sample: 8 of the 50,000 ImageNet val images"
    grey, _, r = points
    assert grey.clean_acc == pytest.approx(100 / 8) and grey.shifted_acc == pytest.approx(100 / 8)
    assert grey.effective == pytest.approx(100 / 8 - er.linear_fit("greyscale").expected(100 / 8))
    # ImageNet-R against val on its classes, predicted among them (the reference domain), as the testbed pairs them.
    rows = {row.transform: row for row in sample_run.results}
    assert r.clean_acc == pytest.approx(100 - rows["val-on-imagenet-r-classes"].top1_err) and 0 < r.clean_acc < 100
    assert r.shifted_acc == pytest.approx(100 - rows["imagenet-r"].top1_err)
    assert r.effective == pytest.approx(r.shifted_acc - er.linear_fit("imagenet-r").expected(r.clean_acc))
    text = format_report([sample_run], "markdown", ci=True, n_boot=50)
    table = text.split("effective robustness:")[1]
    assert table.count("not comparable: sample: 8 of the 50,000 ImageNet val images") == 3
    record = json.loads(format_report([sample_run], "json", n_boot=50))
    assert [p["mark"] for p in record["effective_robustness"]] == [p.mark for p in points]
    trained = dataclasses.replace(sample_run, weights={**sample_run.weights, "kind": "official"})  # not random-init
    entry = entry_from_result(trained, n_boot=50)
    assert not any("effective_robustness" in r for r in entry["results"])


def test_full_official_sets_are_comparable_and_a_limit_or_other_names_are_not(sample_run):
    full = full_size(sample_run)
    points = {p.domain: p for p in er.field_points(full, n_boot=20)}
    assert all(p.comparable and p.mark == "" for p in points.values())
    v2 = points["imagenet-v2"]
    assert v2.effective == pytest.approx(er.effective_robustness(v2.setting, v2.clean_acc, v2.shifted_acc))
    entry = entry_from_result(dataclasses.replace(full, weights={**full.weights, "kind": "official"}), n_boot=20)
    cells = {r["transform"]: r.get("effective_robustness") for r in entry["results"]}
    assert cells["imagenet-v2"]["setting"] == "imagenetv2-matched-frequency-format-val"
    assert cells["imagenet-v2"]["value"] == pytest.approx(v2.effective, abs=1e-4)
    assert "ImageNet-V2 matched-frequency eff. rob." in leaderboard_markdown([entry])
    limited = full_size(sample_run, limit=50_000)
    assert er.comparability(limited, "grey1") == "sample: ImageNet val limited to 50,000 images (limit 50000)"
    renamed = dataclasses.replace(full, sources={**full.sources, "val": dataclasses.replace(
        full.sources["val"], images=[f"x/{i}.JPEG" for i in range(50_000)])})
    assert er.comparability(renamed, "grey1").startswith("sample: ImageNet val images not under their official names")
    classes = dataclasses.replace(full, sources={**full.sources, "val": dataclasses.replace(
        full.sources["val"], labels=np.arange(50_000) % 500)})
    assert er.comparability(classes, "grey1") == "sample: ImageNet val images of 500 of the 1000 classes"


# -- the picture ---------------------------------------------------------------------------------------------------
def _by_gid(ax, gid):
    """The artists of ``ax`` whose gid is ``gid`` or, for ``"kind:"``, starts with it."""
    return [c for c in [*ax.collections, *ax.lines] if (c.get_gid() or "") == gid
            or (gid.endswith(":") and str(c.get_gid() or "").startswith(gid))]


def test_the_field_plot_of_a_sample_run_shows_the_field_the_fit_and_the_marked_model(sample_run, tmp_path,
                                                                                      monkeypatch):
    from robustbench_ibn import plots

    captured = {}
    original = plots.save_figure

    def keep(figure, path):
        captured["figure"] = figure
        return original(figure, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    assert plots.plot_field([sample_run], tmp_path / "field.png", n_boot=50).stat().st_size > 0
    figure = captured["figure"]
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["greyscale", "imagenetv2-matched-frequency-format-val", "imagenet-r"]
    assert "NOT COMPARABLE" in figure._suptitle.get_text()
    table = er.testbed()
    for ax, setting in zip(axes, ["greyscale", "imagenetv2-matched-frequency-format-val", "imagenet-r"]):
        fit = er.linear_fit(setting)
        x, y = table.columns[fit.clean], table.columns[setting]
        standard = [i for i, t in enumerate(table.types) if t == "STANDARD" and 0 < x[i] < 100 and 0 < y[i] < 100]
        (points,) = _by_gid(ax, "testbed:STANDARD")  # every reference model, by type
        np.testing.assert_allclose(points.get_offsets(), np.c_[er.logit(x[standard]), er.logit(y[standard])])
        assert len(_by_gid(ax, "testbed:")) >= 4  # coloured by type
        (line,) = _by_gid(ax, "fit")
        np.testing.assert_allclose(line.get_ydata(), fit.slope * line.get_xdata() + fit.intercept)
        assert _by_gid(ax, "fit band") and _by_gid(ax, "y=x")
        (star,) = _by_gid(ax, "model:")
        point = next(p for p in er.field_points(sample_run, ci=False) if p.setting == setting)
        np.testing.assert_allclose(star.get_offsets(), [[er.logit(point.clean_acc), er.logit(point.shifted_acc)]])
        assert "not comparable" in star.get_label() and star.get_facecolors().size == 0  # hollow
        assert [t.get_text() for t in ax.texts][0] == "Fixed"  # the model's label beside its star
    reported = _by_gid(axes[1], "reported:")
    assert len(reported) == 1  # ResNet-50's published V2 number joins the V2 panel
    np.testing.assert_allclose(reported[0].get_offsets(), [[er.logit(76.13), er.logit(63.21)]])


def test_the_field_plot_from_reported_entries_alone(tmp_path, monkeypatch):
    from robustbench_ibn import plots

    shown = plots.reported_field_points()
    assert {(p["setting"], p["clean_acc"], p["shifted_acc"]) for p in shown} == {
        ("imagenetv2-matched-frequency-format-val", 76.13, 63.21),
        ("imagenetv2-threshold-0.7-format-val", 76.13, 72.29), ("imagenetv2-top-images-format-val", 76.13, 77.73),
        ("imagenet-sketch", 76.13, 24.09), ("stylized_imagenet", 76.13, 20.48),
        ("imagenet-r", 92.12, 36.17), ("imagenet-a", 91.86, 0.0), ("objectnet-1.0-beta", 78.86, 35.75)}
    captured = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: captured.setdefault("figure", figure) and path)
    plots.plot_field([], tmp_path / "reported.png")  # the sample-run test above writes a file; this one inspects
    axes = [ax for ax in captured["figure"].axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in axes) == sorted({p["setting"] for p in shown})
    for ax in axes:
        assert _by_gid(ax, "fit") and _by_gid(ax, "testbed:STANDARD") and not _by_gid(ax, "model:")
        point = next(p for p in shown if p["setting"] == ax.get_title())
        diamonds = _by_gid(ax, "reported:")
        if point["shifted_acc"] == 0:  # ResNet-50 on ImageNet-A (the set was filtered against it): no logit
            assert not diamonds
        else:
            np.testing.assert_allclose(diamonds[0].get_offsets(),
                                       [[er.logit(point["clean_acc"]), er.logit(point["shifted_acc"])]])


def test_robust_report_prints_the_columns_and_draws_the_field(sample_run, tmp_path, capsys):
    from robustbench_ibn.cli.report import main

    sample_run.save(tmp_path / "run.json")
    assert main([str(tmp_path / "run.json"), "--format", "csv", "--n-boot", "20", "--plot", str(tmp_path / "f.png"),
                 "--plot-kind", "field"]) == 0
    out = capsys.readouterr()
    lines = list(csv.DictReader(out.out.splitlines()))
    grey = next(r for r in lines if r["transform"] == "grey1")
    assert grey["testbed_setting"] == "greyscale" and grey["effective_note"].startswith("not comparable: sample")
    assert float(grey["effective_robustness"]) == pytest.approx(er.field_points(sample_run, ci=False)[0].effective,
                                                                abs=1e-4)
    assert (tmp_path / "f.png").stat().st_size > 0 and "plot written to" in out.err


def test_shifts_of_val_map_by_name_and_no_on_the_fly_imagenet_c_set_takes_a_testbed_column(sample_run):
    def renamed(shift):
        domains = [{**d, "shift": {**d["shift"], "name": shift}} if d["name"] == "grey1" else d
                   for d in sample_run.domains]
        return dataclasses.replace(sample_run, domains=domains)

    # the testbed's _in-memory columns come from its own re-implementation of the corruptions, not ours
    assert "imagenet-c.fog.3_in-memory" in er.settings()
    assert er.domain_setting(renamed("imagenet-c.fog.3.memory"), "grey1") is None
    assert er.domain_setting(renamed("imagenet-c.fog.3"), "grey1") is None  # a JPEG emulation, not the released files
    assert er.domain_setting(renamed("grey0.5"), "grey1") is None
    assert er.domain_setting(sample_run, "clean") is None


def test_plot_kind_field_without_a_testbed_setting_is_refused_before_any_work(capsys):
    from robustbench_ibn.cli.eval import main

    assert main(["--model", "resnet18", "--weights", "random", "--transforms", "rgb+50", "--data", str(SHARED),
                 "--plot", "x.png", "--plot-kind", "field"]) == 2
    assert "error: Expected a domain that is an imagenet-testbed setting for --plot-kind field" in capsys.readouterr().err
