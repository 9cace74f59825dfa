"""Tests for robustbench_ibn.corruption: CE, mCE and relative mCE against hand computations, partial sets, errors."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest

import robustbench_ibn.corruption as corruption_module
from robustbench_ibn.corruption import corruption_scores, coverage, severity_span

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "domains"


@pytest.fixture(scope="module")
def alexnet() -> dict[str, float]:
    """AlexNet's severity-mean errors (fractions) from the reference file, not from the package."""
    path = REFERENCE / "imagenet_c_constants.json"
    if not path.is_file():
        pytest.fail(f"Expected the reference file {path} (../shared/reference/domains beside the project root).")
    return {e["name"]: e["alexnet_err"] for e in json.loads(path.read_text())["benchmark_corruptions"]}


def test_hand_computation_two_corruptions_and_an_extra(alexnet):
    errors = {("gaussian_noise", s): e for s, e in zip(range(1, 6), [50, 60, 70, 80, 90])}  # mean 70
    errors |= {("fog", s): e for s, e in zip(range(1, 6), [30, 35, 40, 45, 50])}  # mean 40
    errors |= {("speckle_noise", s): e for s, e in zip(range(1, 6), [20, 30, 40, 50, 60])}  # an extra: mean 40
    scores = corruption_scores(errors, clean_error=25.0)
    # By hand: CE = 100 * mean / (100 * alexnet_err); relative CE = 100 * (mean - 25) / (100 * (alexnet_err - 0.43478)).
    assert alexnet["gaussian_noise"] == 0.886428 and alexnet["fog"] == 0.819324
    assert scores.ce == pytest.approx({"gaussian_noise": 70 / 0.886428, "fog": 40 / 0.819324})
    assert scores.ce["gaussian_noise"] == pytest.approx(78.96862464, abs=1e-8)
    assert scores.ce["fog"] == pytest.approx(48.82073514, abs=1e-8)
    assert scores.mce == pytest.approx(63.89467989, abs=1e-8)
    assert scores.relative_ce["gaussian_noise"] == pytest.approx(45 / 45.1648 * 100, abs=1e-8)  # 99.63511407
    assert scores.relative_ce["fog"] == pytest.approx(15 / 38.4544 * 100, abs=1e-8)  # 39.00723974
    assert scores.relative_mce == pytest.approx(69.32117691, abs=1e-8)
    assert scores.mean_error == {"gaussian_noise": 70.0, "fog": 40.0, "speckle_noise": 40.0}
    assert "speckle_noise" not in scores.ce and "speckle_noise" not in scores.relative_ce  # extras: no CE
    assert scores.mean_benchmark_error == 55.0
    assert not scores.complete
    assert scores.note().startswith("not the published mCE (that averages all 15 benchmark corruptions x 5 "
                                    "severities): 2 of 15 benchmark corruptions, severities 1-5: missing shot_noise, ")


def test_alexnet_itself_scores_100(alexnet):
    errors = {(c, s): 100 * e for c, e in alexnet.items() for s in range(1, 6)}
    scores = corruption_scores(errors, clean_error=43.478)
    assert scores.mce == pytest.approx(100.0) and scores.relative_mce == pytest.approx(100.0)
    assert scores.complete and scores.note() == ""
    assert all(ce == pytest.approx(100.0) for ce in scores.ce.values()) and len(scores.ce) == 15
    assert scores.mean_benchmark_error == pytest.approx(100 * 0.788993, abs=1e-4)


def test_ce_averages_severities_before_dividing(alexnet):
    """CE is sum_s E / sum_s E_AlexNet: a severity's error counts by its size, not by its ratio."""
    errors = {("contrast", 1): 10.0, ("contrast", 2): 90.0}
    scores = corruption_scores(errors)
    assert scores.ce["contrast"] == pytest.approx(50 / alexnet["contrast"])
    assert scores.relative_ce == {} and scores.relative_mce is None and scores.clean_error is None


def test_partial_severities_are_marked():
    errors = {(c, s): 50.0 for c in ("gaussian_noise", "shot_noise", "impulse_noise") for s in (1, 2)}
    scores = corruption_scores(errors)
    assert scores.mce is not None and not scores.complete
    assert scores.coverage.summary() == (
        "3 of 15 benchmark corruptions, severities 1-2 only: missing defocus_blur, glass_blur, motion_blur, zoom_blur, "
        "snow, frost, fog, brightness, contrast, elastic_transform, pixelate, jpeg_compression")
    assert scores.to_dict()["complete"] is False and "not the published mCE" in scores.to_dict()["note"]


def test_only_extras_give_no_mce():
    scores = corruption_scores({("saturate", 3): 30.0})
    assert scores.mce is None and scores.relative_mce is None and scores.mean_error == {"saturate": 30.0}
    assert scores.coverage.summary() == (
        "0 of 15 benchmark corruptions: missing gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, "
        "motion_blur, zoom_blur, snow, frost, fog, brightness, contrast, elastic_transform, pixelate, "
        "jpeg_compression; extra corruptions (reported apart, no CE): saturate 3")


def test_coverage_of_uneven_severities():
    cover = coverage([("fog", 1), ("fog", 2), ("snow", 1)])
    assert cover.severities == {"snow": (1,), "fog": (1, 2)} and cover.benchmark == ("snow", "fog")
    assert "severities differ (snow 1; fog 1-2)" in cover.summary()
    assert not cover.complete


@pytest.mark.parametrize("errors, clean, match", [
    ({("gaussian_noize", 1): 50.0}, None, "Did you mean gaussian_noise"),
    ({("fog", 6): 50.0}, None, "severity in 1..5 for fog, but got 6"),
    ({("fog", 1): 120.0}, None, "in percent \\(0..100\\), but got 120"),
    ({("fog", 1): float("nan")}, None, "but got nan"),
    ({("fog", 1): 50.0}, -1.0, "clean ImageNet val in percent"),
    ({("fog", 1): 0.5, ("fog", 2): 0.6}, 0.2, "small percentages\\? Say which: unit='fraction'"),
])
def test_bad_arguments(errors, clean, match):
    with pytest.raises(ValueError, match=match):
        corruption_scores(errors, clean_error=clean)


def test_the_unit_tells_small_percentages_from_fractions():
    errors = {("fog", 1): 0.5, ("fog", 2): 0.25}  # mean 0.375
    percent = corruption_scores(errors, clean_error=0.1, unit="percent")
    fraction = corruption_scores(errors, clean_error=0.1, unit="fraction")
    assert percent.mean_error["fog"] == 0.375 and fraction.mean_error["fog"] == 37.5
    assert fraction.ce["fog"] == pytest.approx(100 * percent.ce["fog"]) and fraction.clean_error == 10.0
    with pytest.raises(ValueError, match=re.escape("fog severity 1 in a fraction (0..1), but got 50")):
        corruption_scores({("fog", 1): 50}, unit="fraction")
    with pytest.raises(ValueError, match="Expected unit to be one of"):
        corruption_scores(errors, unit="%")


def test_severity_span():
    assert [severity_span(s) for s in ([1, 2, 3, 4, 5], [5], [1, 3], [2, 3, 5])] == ["1-5", "5", "1, 3", "2, 3, 5"]


def test_doctests():
    result = doctest.testmod(corruption_module)
    assert result.attempted > 0 and result.failed == 0
