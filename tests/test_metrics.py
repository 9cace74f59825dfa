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
