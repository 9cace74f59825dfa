"""Numbers from stored per-image predictions: pure functions, no model, no data.

Predictions are integer arrays ``[N, k]`` (top-k class indices, best first) and labels ``[N]``.
Counts are kept as integers; percentages are derived once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TopkCounts", "topk_correct", "topk_counts"]


@dataclass(frozen=True)
class TopkCounts:
    """Correct top-1/top-5 counts over ``n`` images; errors in percent."""

    n: int
    correct1: int
    correct5: int

    @property
    def top1_err(self) -> float:
        return 100.0 * (self.n - self.correct1) / self.n if self.n else float("nan")

    @property
    def top5_err(self) -> float:
        return 100.0 * (self.n - self.correct5) / self.n if self.n else float("nan")


def topk_correct(predictions: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``[N]``: is the label among the first ``k`` predictions of each image.

    Example:
        >>> topk_correct(np.array([[3, 1], [2, 0]]), np.array([1, 5]), k=2).tolist()
        [True, False]
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Expected predictions [N, k] and labels [N], but got {predictions.shape} and {labels.shape}."
        )
    if predictions.shape[1] < k:
        raise ValueError(f"Expected at least {k} predictions per image, but got {predictions.shape[1]}.")
    return (predictions[:, :k] == labels[:, None]).any(axis=1)


def topk_counts(predictions: np.ndarray, labels: np.ndarray) -> TopkCounts:
    """Top-1 and top-5 correct counts of stored predictions."""
    return TopkCounts(
        n=int(len(labels)),
        correct1=int(topk_correct(predictions, labels, 1).sum()),
        correct5=int(topk_correct(predictions, labels, 5).sum()),
    )
