import numpy as np
import pytest

from robustbench_ibn.metrics import topk_correct, topk_counts


def test_topk_counts_exact():
    preds = np.array([[1, 2, 3, 4, 5], [9, 1, 2, 3, 4], [7, 8, 9, 10, 11], [0, 1, 2, 3, 4]])
    labels = np.array([1, 1, 5, 0])
    c = topk_counts(preds, labels)
    assert (c.n, c.correct1, c.correct5) == (4, 2, 3)
    assert c.top1_err == 50.0 and c.top5_err == 25.0


def test_shape_errors():
    with pytest.raises(ValueError, match=r"Expected predictions \[N, k\]"):
        topk_correct(np.zeros((3, 5)), np.zeros(2), 1)
    with pytest.raises(ValueError, match="at least 5"):
        topk_correct(np.zeros((3, 2)), np.zeros(3), 5)


# --- uncertainty: bootstrap, flip rate, McNemar, curves -------------------------------------------------
import math  # noqa: E402

from robustbench_ibn.metrics import (  # noqa: E402
    MAX_N_BOOT,
    bootstrap_means,
    curve_auc,
    doubling_severity,
    flip_rate,
    mcnemar,
    percentile_interval,
    prediction_uncertainty,
    wilson_interval,
)


def _predictions(labels: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """Top-5 predictions whose first entry is the label unless ``wrong``; never the label elsewhere."""
    preds = (labels[:, None] + np.arange(1, 6)[None, :]) % 1000
    preds[~wrong, 0] = labels[~wrong]
    return preds


def test_bootstrap_interval_matches_the_binomial_interval():
    # n = 2000 images, 25% top-1 error: the percentile bootstrap must agree with Wilson's and the normal
    # (Wald) interval to within 0.5 percentage points at each bound.
    n, wrong = 2000, np.arange(2000) < 500
    samples = 100 * bootstrap_means(wrong.astype(float), n_boot=2000, seed=0)
    low, high = percentile_interval(samples)[:, 0]
    w_low, w_high = (100 * x for x in wilson_interval(500, n))
    half = 100 * 1.959964 * math.sqrt(0.25 * 0.75 / n)
    assert (w_low, w_high) == pytest.approx((23.155, 26.945), abs=0.01)
    assert abs(low - w_low) < 0.5 and abs(high - w_high) < 0.5
    assert abs(low - (25 - half)) < 0.5 and abs(high - (25 + half)) < 0.5
    assert samples.mean() == pytest.approx(25.0, abs=0.1)


def test_bootstrap_is_seeded_and_paired():
    values = np.random.default_rng(3).random((300, 4))
    a, b = bootstrap_means(values, n_boot=50, seed=7), bootstrap_means(values, n_boot=50, seed=7)
    assert np.array_equal(a, b) and a.shape == (50, 4)
    assert not np.array_equal(a, bootstrap_means(values, n_boot=50, seed=8))
    # Paired: identical columns stay identical in every resample.
    twin = bootstrap_means(np.stack([values[:, 0], values[:, 0]], axis=1), n_boot=50, seed=1)
    assert np.array_equal(twin[:, 0], twin[:, 1])
    for n_boot in (0, MAX_N_BOOT + 1):  # more resamples would only wait: 100,000,000 ran for days
        with pytest.raises(ValueError, match=f"Expected n_boot in 1..{MAX_N_BOOT}, but got {n_boot}"):
            bootstrap_means(values, n_boot=n_boot)


def test_drop_interval_uses_the_same_images_for_clean_and_shifted():
    # 1000 images: clean wrong on the first 250, shifted wrong on the first 260 (the shift breaks 10 images).
    # Every paired resample has a drop >= 0, so the interval's lower bound is >= 0; an unpaired one is not.
    n = 1000
    labels = np.arange(n) % 1000
    preds = {"clean": _predictions(labels, np.arange(n) < 250), "rgb+50": _predictions(labels, np.arange(n) < 260)}
    u = prediction_uncertainty(labels, preds, n_boot=1000, seed=0)
    clean, shifted = u["rows"]
    assert clean["transform"] == "clean" and clean["top1_drop_ci"] == [0.0, 0.0] and clean["flip_rate"] == 0.0
    low, high = shifted["top1_drop_ci"]
    assert 0.0 <= low < 1.0 < high < 2.0
    assert shifted["flip_rate"] == 1.0  # the 10 images that turned wrong changed their top-1 prediction
    assert shifted["top5_drop_ci"] == shifted["top1_drop_ci"]  # here an image is top-1 wrong iff top-5 wrong
    assert u["mean_drop"]["top1"] == pytest.approx(1.0) and u["mean_drop"]["n_shifts"] == 1
    assert u["mean_drop"]["top1_ci"] == pytest.approx([low, high])
    e_low, e_high = clean["top1_err_ci"]
    assert e_low < 25.0 < e_high and e_high - e_low > 4  # the error itself varies far more than the drop
    assert u["n_boot"] == 1000 and u["seed"] == 0 and u["level"] == 0.95
    with pytest.raises(ValueError, match="baseline domain 'clean'"):
        prediction_uncertainty(labels, {"rgb+50": preds["rgb+50"]})


def test_a_group_of_domains_is_one_row_of_the_mean_drop():
    """An ImageNet-C tree's sets count once in the mean drop, with their mean: drops 1 (rgb+50), 2 and 4 (two sets
    of tree c) give (1 + (2 + 4) / 2) / 2 = 2, not (1 + 2 + 4) / 3; every resample is averaged the same way."""
    n = 1000
    labels = np.arange(n) % 1000
    wrong = {"clean": 100, "rgb+50": 110, "c/fog/1": 120, "c/fog/2": 140}  # images wrong: drops 1, 2, 4 points
    preds = {name: _predictions(labels, np.arange(n) < k) for name, k in wrong.items()}
    grouped = prediction_uncertainty(labels, preds, groups={"c/fog/1": "c", "c/fog/2": "c"}, n_boot=200, seed=0)
    assert grouped["mean_drop"]["top1"] == pytest.approx(2.0) and grouped["mean_drop"]["n_shifts"] == 2
    flat = prediction_uncertainty(labels, preds, n_boot=200, seed=0)
    assert flat["mean_drop"]["top1"] == pytest.approx(7 / 3) and flat["mean_drop"]["n_shifts"] == 3
    rows = {r["transform"]: r["top1_drop_ci"] for r in flat["rows"]}
    low = (rows["rgb+50"][0] + (rows["c/fog/1"][0] + rows["c/fog/2"][0]) / 2) / 2  # the drops move together here
    assert grouped["mean_drop"]["top1_ci"][0] == pytest.approx(low, abs=0.3)
    assert grouped["rows"] == flat["rows"]  # the rows themselves do not change


def test_flip_rate_exact():
    a = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
    assert flip_rate(a, a) == 0.0
    assert flip_rate(a, np.array([[1, 9], [4, 3], [5, 6], [0, 7]])) == 50.0
    with pytest.raises(ValueError, match="one N"):
        flip_rate(a, a[:3])


def _binomial_two_sided(k: int, n: int) -> float:
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n)


def test_mcnemar_exact_and_chi_square():
    def pair(only_a: int, only_b: int, both: int = 50) -> tuple[np.ndarray, np.ndarray]:
        a = np.array([True] * only_a + [False] * only_b + [True] * both)
        b = np.array([False] * only_a + [True] * only_b + [True] * both)
        return a, b

    r = mcnemar(*pair(10, 2))
    assert (r.only_a, r.only_b, r.method, r.statistic) == (10, 2, "exact", None)
    assert r.p_value == pytest.approx(2 * 79 / 4096, rel=1e-12)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar(*pair(2, 10)).p_value == pytest.approx(r.p_value)  # symmetric
    r = mcnemar(*pair(30, 10))  # 40 discordant images: chi-square with continuity correction
    assert r.method == "chi2-cc" and r.statistic == pytest.approx(19**2 / 40)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-12)
    assert r.p_value == pytest.approx(0.002663, abs=1e-6)
    exact = mcnemar(*pair(30, 10), method="exact")
    assert exact.p_value == pytest.approx(_binomial_two_sided(10, 40), rel=1e-9)
    big = mcnemar(*pair(2000, 1900), method="exact")  # log-space sum: no overflow for large counts
    assert big.p_value == pytest.approx(_binomial_two_sided(1900, 3900), rel=1e-6)
    none = mcnemar(*pair(0, 0))
    assert none.p_value == 1.0 and none.method == "exact"
    with pytest.raises(ValueError, match="method"):
        mcnemar(*pair(1, 1), method="fisher")


def test_curve_summaries():
    assert curve_auc([0, 10, 20], [10.0, 20.0, 40.0]) == 150.0 + 300.0
    assert doubling_severity([0, 10, 20], [10.0, 15.0, 40.0], clean_error=10.0) == pytest.approx(12.0)
    assert doubling_severity([0, 10], [10.0, 19.9], clean_error=10.0) is None
    assert doubling_severity([5, 10], [30.0, 40.0], clean_error=10.0) == 5.0  # already doubled at the first point
    assert doubling_severity([0, 1], [60.0, 100.0], clean_error=60.0) is None  # 120% is out of reach
    with pytest.raises(ValueError, match="increasing"):
        curve_auc([0, 0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2 points"):
        curve_auc([1], [1.0])
