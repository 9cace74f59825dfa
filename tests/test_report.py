"""Reports from stored predictions: multi-model Table 1 in every format, intervals, McNemar, sweeps, plots.

Almost everything runs on synthetic EvalResult objects whose predictions are built so that every
number is known exactly; one CLI test runs two small real models end to end.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import few_images
from robustbench_ibn.cli.eval import main
from robustbench_ibn.cli.report import main as report_main
from robustbench_ibn.plots import plot_drop_bars, plot_report, plot_severity_curves
from robustbench_ibn.report import column_names, format_report, paired_tests, severity_curves, table1_frame
from robustbench_ibn.data import DataConfig, images_sha256, labels_sha256
from robustbench_ibn.engine import Domain
from robustbench_ibn.labels import ImageNet1k
from robustbench_ibn.results import EvalResult, SourceResult, protocol_fingerprint
from robustbench_ibn.transforms import TransformError, create_transform, resolve_transform_names
from robustbench_ibn.transforms._base import expand_transform_range

TABLE = {"clean": (20, 5), "rgb+50": (30, 10), "std1.5": (50, 20)}  # wrong top-1 / top-5 images out of 100


def make_result(
    model: str = "resnet50",
    domains: dict[str, tuple[int, int]] | None = None,
    *,
    n: int = 100,
    random: bool = False,
    sha256: str | None = "0123456789abcdef" * 4,
    date: str = "2024-05-06T07:08:09+00:00",
    images: list[str] | None = None,
    resize: int = 256,
    crop: int = 224,
) -> EvalResult:
    """A result whose domain ``name`` has exactly ``w1`` top-1 and ``w5`` top-5 wrong images (the first ones).

    Wrong images predict ``label + 1`` first, so the images that turn wrong under a shift are exactly the
    ones whose top-1 prediction changes (the flip rate is the top-1 drop when the wrong sets are nested).
    """
    domains = domains or TABLE
    labels = np.arange(n) % 1000
    predictions = {}
    for name, (w1, w5) in domains.items():
        preds = (labels[:, None] + np.arange(1, 6)[None, :]) % 1000  # all wrong
        preds[w5:w1, 2] = labels[w5:w1]  # top-1 wrong, top-5 right
        preds[w1:, 0] = labels[w1:]  # right
        predictions[name] = preds
    images = images if images is not None else [f"n0/{i}.JPEG" for i in range(n)]
    # Digests and fingerprint as a run computes them, so a saved copy loads as the run's own record would.
    dataset = {"n": n, "sha256": images_sha256(images) if images else "ab" * 32, "labels_sha256": labels_sha256(labels),
               "layout": "imagefolder", "limit": None, "kind": "imagenet-val", "label_space": ImageNet1k().to_dict(),
               "root": "/data/val", "description": f"ImageNet val /data/val: {n} images (synthetic)"}
    source = SourceResult(dataset, labels, images)
    records = []
    for name in domains:
        shift = create_transform(name)
        records.append(Domain(name, shift.label, "val", None if name == "clean" else shift).record())
    protocol = {"version": 2, "precision": "fp32", "memory_format": "channels_last", "topk": 5}
    protocol["fingerprint"] = protocol_fingerprint({"val": dataset}, records, "fp32", protocol["version"])
    if random:
        weights = {"kind": "random", "location": None, "sha256": None, "seed": 0,
                   "description": "RANDOM INIT (seed 0) - not pretrained; numbers are meaningless as accuracy"}
    else:
        weights = {"kind": "official", "location": f"https://example.org/{model}.pth", "sha256": sha256, "seed": None,
                   "description": f"official https://example.org/{model}.pth"}
    environment = {"date": date, "device": "cpu (test)", "versions": {"robustbench_ibn": "0.1.0"},
                   "duration_s": 1.0, "loader_wait_s": 0.0, "compute_s": 1.0}
    return EvalResult(model=model, weights=weights, data_config=DataConfig(resize=resize, crop=crop).to_dict(),
                      sources={"val": source}, domains=records, protocol=protocol, environment=environment,
                      predictions=predictions)


@pytest.fixture()
def two() -> list[EvalResult]:
    return [make_result("resnet50"),
            make_result("resnet50_ibn_b", {"clean": (15, 5), "rgb+50": (16, 5), "std1.5": (15, 5)}, sha256="f" * 64)]


def rows_of(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| transform")]


# --- Table 1 with one column per model -------------------------------------------------------------


def test_markdown_multi_model_exact(two):
    out = format_report(two)
    assert "models: resnet50, resnet50_ibn_b  " in out
    assert "weights resnet50: official https://example.org/resnet50.pth" in out
    assert out.count("protocol:") == 1 and "note:" not in out
    header = next(line for line in out.splitlines() if line.startswith("| transform"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["transform", "resnet50", "resnet50_ibn_b"]
    assert rows_of(out) == [
        ["origin", "20.00/5.00", "15.00/5.00"],
        ["RGB+50", "30.00/10.00 (10.00/5.00)", "16.00/5.00 (1.00/0.00)"],
        ["std×1.5", "50.00/20.00 (30.00/15.00)", "15.00/5.00 (0.00/0.00)"],
    ]
    assert "95% CI" not in out and "McNemar" not in out  # intervals only on request


def test_markdown_ci_rows_flip_rates_and_mcnemar(two):
    out = format_report(two, ci=True, n_boot=500, seed=3)
    assert "intervals: 95% paired percentile bootstrap over images" in out and "500 resamples, seed 3" in out
    table, flips, mc = out.split("\n\n")[1], out.split("\n\n")[3], out.split("\n\n")[5]
    rows = rows_of(table)
    assert [r[0] for r in rows] == ["origin", "95% CI", "RGB+50", "95% CI", "std×1.5", "95% CI"]
    u = two[0].uncertainty(n_boot=500, seed=3)["rows"][1]
    lo1, hi1 = u["top1_err_ci"]
    assert rows[3][1].startswith(f"[{lo1:.2f}, {hi1:.2f}]/")
    assert re.fullmatch(r"\[\d+\.\d\d, \d+\.\d\d\]/\[\d+\.\d\d, \d+\.\d\d\] \(\[\d+\.\d\d, \d+\.\d\d\]/"
                        r"\[\d+\.\d\d, \d+\.\d\d\]\)", rows[3][1])
    assert rows[1][2] == rows_of(format_report(two[1:], ci=True, n_boot=500, seed=3).split("\n\n")[1])[1][1]
    # Nested wrong sets: the flip rate equals the top-1 drop.
    assert rows_of(flips)[0][0] == "RGB+50" and rows_of(flips)[0][1].startswith("10.00 [")
    assert rows_of(flips)[1][2].startswith("0.00 [0.00, 0.00]")
    # resnet50 is wrong on a superset of resnet50_ibn_b's images: only the second model is ever right alone.
    assert rows_of(mc)[0] == ["origin", "p=0.062 (0 vs 5, exact)"]
    assert rows_of(mc)[2] == ["std×1.5", "p=9.1e-09 (0 vs 35, chi2-cc)"]  # (34^2 / 35 = 33.03, 1 df)


def test_latex_is_booktabs_and_escaped(two):
    out = format_report(two, "latex", ci=True, n_boot=200)
    lines = out.splitlines()
    assert lines[0].startswith("% models: resnet50, resnet50_ibn_b")
    assert r"\begin{tabular}{lcc}" in lines and r"\toprule" in lines and r"\midrule" in lines
    assert r"Transform & resnet50 & resnet50\_ibn\_b \\" in lines
    assert r"std$\times$1.5 & 50.00/20.00 (30.00/15.00) & 15.00/5.00 (0.00/0.00) \\" in lines
    assert sum(line.startswith(r"\scriptsize 95\% CI & \scriptsize [") for line in lines) == 3
    assert out.count(r"\begin{tabular}") == 3 and out.count(r"\bottomrule") == 3  # Table 1, flips, McNemar
    assert not any("%" in line and not line.startswith("%") and r"\%" not in line for line in lines)


def test_csv_long_format_with_intervals(two):
    frame = pd.read_csv(io.StringIO(format_report(two, "csv")))
    assert list(frame.columns) == ["model", "transform", "label", "source", "n", "top1_err", "top5_err", "top1_drop",
                                   "top5_drop", "reference"]
    assert frame["top1_err"].tolist() == [20.0, 30.0, 50.0, 15.0, 16.0, 15.0]
    assert frame["reference"].tolist() == ["clean"] * 6  # shifts of val: every drop against clean
    frame = pd.read_csv(io.StringIO(format_report(two, "csv", ci=True, n_boot=200)))
    assert {"top1_err_lo", "top1_err_hi", "top1_drop_lo", "top5_drop_hi", "flip_rate", "flip_rate_lo"} <= set(frame)
    assert (frame["top1_err_lo"] <= frame["top1_err"]).all() and (frame["top1_err"] <= frame["top1_err_hi"]).all()
    assert frame["flip_rate"].tolist() == [0.0, 10.0, 30.0, 0.0, 1.0, 0.0]


def test_json_always_carries_intervals_and_keeps_result_fields(two):
    single = json.loads(format_report(two[:1], "json"))
    assert [r["transform"] for r in single["results"]] == ["clean", "rgb+50", "std1.5"]
    assert set(single["results"][0]) == {"transform", "label", "source", "n", "top1_err", "top5_err", "top1_drop",
                                         "top5_drop", "reference"}
    u = single["uncertainty"]
    assert u["n_boot"] == 1000 and u["seed"] == 0 and u["level"] == 0.95 and "paired" in u["method"]
    assert [r["flip_rate"] for r in u["rows"]] == [0.0, 10.0, 30.0]
    assert u["mean_drop"]["top1"] == pytest.approx(20.0) and len(u["mean_drop"]["top1_ci"]) == 2
    multi = json.loads(format_report(two, "json"))
    assert multi["columns"] == ["resnet50", "resnet50_ibn_b"] and len(multi["models"]) == 2
    tests = {t["transform"]: t for t in multi["paired_tests"]}
    assert tests["rgb+50"]["only_a"] == 0 and tests["rgb+50"]["only_b"] == 14
    assert tests["rgb+50"]["top1_err_diff"] == pytest.approx(14.0) and tests["rgb+50"]["method"] == "exact"
    assert "continuity correction" in multi["paired_test_method"]


def test_unpaired_results_get_no_mcnemar_and_protocol_note(two):
    other = make_result("resnet18", n=80)
    tests = paired_tests([two[0], other])
    assert tests == [{"a": "resnet50", "b": "resnet18", "paired": False,
                      "reason": "different images or labels: no paired test"}]
    out = format_report([two[0], other], ci=True, n_boot=100)
    assert "McNemar" not in out and "note: the columns differ in protocol" in out
    shuffled = make_result("resnet18", images=[f"x/{i}.JPEG" for i in range(100)])
    assert paired_tests([two[0], shuffled])[0]["paired"] is False


def test_column_names_and_missing_rows():
    a = make_result("resnet50", random=True)
    b = make_result("resnet50", sha256="1" * 64)
    c = make_result("resnet50", {"clean": (10, 1), "r+50": (12, 2)}, sha256="2" * 64)
    assert column_names([a, b, c]) == ["resnet50 (random init)", "resnet50 (sha256 11111111)",
                                       "resnet50 (sha256 22222222)"]
    assert column_names([b, b]) == ["resnet50 (sha256 11111111) #1", "resnet50 (sha256 11111111) #2"]
    frame = table1_frame([b, c])
    assert list(frame.index) == ["origin", "RGB+50", "std×1.5", "R+50"]
    assert frame.loc["R+50"].tolist() == ["", "12.00/2.00 (2.00/1.00)"]
    with pytest.raises(ValueError, match="format"):
        format_report([b], "html")


# --- severity sweeps ----------------------------------------------------------------------------------


def test_range_expansion_and_errors():
    assert expand_transform_range("rgb+10:100:10") == [f"rgb+{k}" for k in range(10, 101, 10)]
    assert expand_transform_range("std1.2:2.0:0.2") == ["std1.2", "std1.4", "std1.6", "std1.8", "std2"]
    assert resolve_transform_names("r-0:40:20,std1.5") == ["clean", "r-0", "r-20", "r-40", "std1.5"]
    for bad, message in [
        ("rgb+10:100", "Expected a severity range (a family name with START:STOP:STEP in place of its number"),
        ("rgb+10:100:0", "step > 0"),
        ("rgb+100:10:10", "START <= STOP"),
        ("rgb+10:100:7", "whole number of STEPs"),
        ("rbg+10:100:10", "Did you mean: rgb+10"),
        ("clean:1:2", "Expected a severity range"),
        ("rgb+0:5000:1", "at most 1000"),
    ]:
        with pytest.raises(TransformError, match=re.escape(message)):
            resolve_transform_names(bad)


SWEEP = {"clean": (10, 2), "rgb+20": (14, 3), "rgb+40": (18, 4), "rgb+60": (30, 6), "std1.5": (12, 2),
         "std2": (40, 9)}


def test_severity_curves_area_and_doubling():
    result = make_result("resnet50", SWEEP)
    rgb, std = severity_curves(result)
    assert rgb["family"] == "rgb+{k}" and rgb["includes_origin"] and rgb["severities"] == [0.0, 20.0, 40.0, 60.0]
    assert rgb["top1_err"] == [10.0, 14.0, 18.0, 30.0]
    assert rgb["auc_top1"] == pytest.approx(20 * (12 + 16 + 24))
    assert rgb["mean_top1_err"] == pytest.approx(20 * (12 + 16 + 24) / 60)
    assert rgb["doubling_severity"] == pytest.approx(40 + 20 * 2 / 12)  # 20% is reached between 18% and 30%
    assert std["severities"] == [1.0, 1.5, 2.0] and std["doubling_severity"] == pytest.approx(1.5 + 0.5 * 8 / 28)
    assert rgb["top1_err_ci"] is None
    with_ci = severity_curves(result, result.uncertainty(n_boot=100))[0]
    assert len(with_ci["top1_err_ci"]) == 4 and with_ci["top1_err_ci"][0] == with_ci["top1_err_ci"][0]
    # A record without declared severities (older runs, unknown plug-ins) falls back to the trailing number.
    for d in result.domains:
        (d["shift"] or {}).pop("severity", None)
    rgb_old = severity_curves(result)[0]
    assert rgb_old["family"] == "rgb+{}" and not rgb_old["includes_origin"] and rgb_old["severities"] == [20, 40, 60]
    assert severity_curves(make_result()) == []  # one member per family is not a sweep


def test_sweep_summary_in_report():
    out = format_report([make_result("resnet50", SWEEP)])
    table = out.split("\n\n")[-1]
    assert rows_of(table) == [
        ["model", "family", "severities", "AUC top-1", "mean top-1 err", "top-1 err doubles at"],
        ["resnet50", "rgb+{k}", "0..60 (from origin)", "1040.0", "17.33", "43.33"],
        ["resnet50", "std{factor}", "1..2 (from origin)", "18.5", "18.50", "1.643"],
    ]
    curves = json.loads(format_report([make_result("resnet50", SWEEP)], "json"))["curves"]
    assert [c["family"] for c in curves] == ["rgb+{k}", "std{factor}"]


# --- plots ------------------------------------------------------------------------------------------


def test_plots_are_written(tmp_path, two):
    curves = plot_severity_curves([make_result("resnet50", SWEEP), make_result("x", SWEEP, sha256="e" * 64)],
                                  tmp_path / "c.png", n_boot=50)
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curves.stat().st_size > 5000
    bars = plot_drop_bars(two, tmp_path / "b.svg", n_boot=50)
    assert "<svg" in bars.read_text()[:500]
    assert plot_report(two, tmp_path / "auto.png", n_boot=20).exists()  # no sweep: bars
    with pytest.raises(ValueError, match="severity sweep"):
        plot_report(two, tmp_path / "x.png", "curves")
    with pytest.raises(ValueError, match="ending in one of"):
        plot_report(two, tmp_path / "x.jpg")


# --- command line -----------------------------------------------------------------------------------


def test_robust_report_over_stored_records(tmp_path, capsys, two):
    paths = []
    for r in two:
        paths.append(tmp_path / f"{r.model}.json")
        r.save(paths[-1])
    assert report_main([str(p) for p in paths]) == 0
    out = capsys.readouterr().out
    assert rows_of(out)[1] == ["RGB+50", "30.00/10.00 (10.00/5.00)", "16.00/5.00 (1.00/0.00)"]
    assert report_main([*map(str, paths), "--format", "latex", "--ci", "--n-boot", "100"]) == 0
    assert r"\scriptsize 95\% CI" in capsys.readouterr().out
    assert report_main([str(paths[0]), str(tmp_path / "missing.json")]) == 2
    assert "robust-report: error:" in capsys.readouterr().err


def test_robust_eval_several_models_sweep_ci_entry_and_plot(tmp_path, capsys, sample_val):
    data = few_images(sample_val, 3, tmp_path / "val")
    argv = ["--model", "resnet18_ibn_b,resnet18", "--weights", "random", "--transforms", "std1.5:2:0.5",
            "--data", str(data), "--batch-size", "3", "--workers", "0", "--no-progress", "--ci", "--n-boot", "200",
            "--output", str(tmp_path / "runs" / "{model}.json"), "--plot", str(tmp_path / "curve.svg")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "models: resnet18_ibn_b, resnet18" in out
    header = next(line for line in out.splitlines() if line.startswith("| transform"))
    assert "resnet18_ibn_b (random init)" in header and "resnet18 (random init)" in header
    assert [r[0] for r in rows_of(out.split("\n\n")[1])] == ["origin", "95% CI", "std×1.5", "95% CI", "std×2", "95% CI"]
    assert "McNemar" in out and "severity sweeps" in out and "std{factor}" in out
    assert (tmp_path / "curve.svg").read_text().lstrip().startswith("<?xml")
    records = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert records == ["resnet18.json", "resnet18_ibn_b.json"]  # {model}: a registered name is already a safe one
    assert "record written to" in err
    # The stored records reproduce the printed table.
    loaded = [EvalResult.load(tmp_path / "runs" / f"{m}.json") for m in ("resnet18_ibn_b", "resnet18")]
    assert format_report(loaded, ci=True, n_boot=200).split("\n\n")[1] == out.split("\n\n")[1]


def test_robust_eval_several_models_needs_output_placeholder(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--model", "resnet18,resnet18_ibn_b", "--data", str(tmp_path), "--output", "r.json"])
    assert "{model}" in capsys.readouterr().err
    code = main(["--model", "resnet18,resnt18_ibn_b", "--data", str(tmp_path), "--weights", "random"])
    assert code == 2 and "resnt18_ibn_b" in capsys.readouterr().err  # checked before any evaluation
