"""Label spaces: how a domain's labels relate to the model's 1000 ImageNet-1k outputs.

Every model predicts the 1000 ImageNet-1k classes (canonical index, sorted wnids). A domain's images are
labelled in its own label space:

* :class:`ImageNet1k`: labels are the canonical indices 0..999 (ImageNet val, -Sketch, -V2, -C, Stylized).
* :class:`ClassSubset`: labels are canonical indices of a declared subset (the 200 classes of ImageNet-R and
  -A). Policy ``"subset"`` (their official protocol) takes the prediction over the subset's columns of the
  logits only; policy ``"full"`` keeps the 1000-way prediction, so a class outside the subset is wrong.
* :class:`Unlabelled`: images without labels (label -1, e.g. a folder of frames for the feature-divergence
  analysis): no prediction is ever right, and reports say there is no accuracy to show.
* :class:`ClassMapping`: labels are the dataset's own classes, each mapped to one or more ImageNet classes
  (ObjectNet's 113 overlapping classes -> 125 ImageNet classes). A prediction is right when it is any ImageNet
  class mapped to the true class. Policy ``"subset"`` restricts the prediction to the mapped columns
  (imagenet-testbed's rule); ``"full"`` keeps the 1000-way prediction (unmapped predictions are wrong).

The engine stores every prediction as canonical ImageNet indices (top-5, best first) and every label in the
domain's label space; :meth:`LabelSpace.correct` is the only place the two meet, so every number (errors,
intervals, paired tests) is a pure function of the stored predictions and the label space's record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["NUM_CLASSES", "POLICIES", "ClassMapping", "ClassSubset", "ImageNet1k", "LabelSpace", "Unlabelled",
           "label_space_from_dict"]

NUM_CLASSES = 1000
POLICIES = ("subset", "full")


class LabelSpace:
    """The label space of a domain (see the module docstring). Subclasses are frozen value objects.

    Attributes:
        name: identifies the space in records (``"imagenet-1k"``, ``"imagenet-r-200"``).
        policy: ``"full"`` (the 1000-way prediction) or ``"subset"`` (the prediction over :meth:`columns`).
    """

    kind: ClassVar[str] = ""
    name: str = ""
    policy: str = "full"

    def columns(self) -> np.ndarray | None:
        """The ImageNet columns a ``"subset"`` prediction is taken over (sorted), or None for all 1000."""
        return None

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1000]`` with every column outside :meth:`columns` set to ``-inf`` (policy ``"subset"``).

        Applied after the logits are checked to be finite, before top-k: the top-5 are then the best five
        allowed classes, in ImageNet indices.
        """
        columns = self.columns()
        if self.policy != "subset" or columns is None:
            return logits
        keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        keep[torch.as_tensor(columns, device=logits.device)] = True
        return logits.masked_fill(~keep, float("-inf"))

    def from_imagenet(self, labels: np.ndarray) -> np.ndarray:
        """The labels in this space of images whose ImageNet-1k labels are ``labels``; ``-1`` where the class is
        outside the space. What picks, and labels, the ImageNet val images of a dataset's classes (its reference
        domain, :mod:`robustbench_ibn.references`).

        Example:
            >>> ClassSubset("two", [1, 3]).from_imagenet(np.array([3, 2, 1])).tolist()
            [3, -1, 1]
        """
        labels = np.asarray(labels, dtype=np.int64)
        return np.where((labels >= 0) & (labels < NUM_CLASSES), labels, -1)

    def correct(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Boolean ``[N, k]``: is the prediction at rank ``j`` right for image ``i`` (``predictions`` in ImageNet
        indices, ``labels`` in this space; a ``-1`` prediction, an image never classified, is never right)."""
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if predictions.ndim != 2 or labels.shape != (predictions.shape[0],):
            raise ValueError(f"Expected predictions [N, k] and labels [N], but got {predictions.shape} and "
                             f"{labels.shape}.")
        return (predictions == labels[:, None]) & (predictions >= 0)

    def describe(self) -> str:
        """One line for report headers."""
        return self.name

    def to_dict(self) -> dict[str, Any]:
        """The JSON record that :func:`label_space_from_dict` turns back into this space."""
        return {"kind": self.kind, "name": self.name, "policy": self.policy}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict().items(), key=lambda kv: kv[0])))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, policy={self.policy!r})"


def _check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"Expected a subset policy in {POLICIES}, but got {policy!r}.")
    return policy


def _check_indices(indices: Sequence[int], what: str) -> np.ndarray:
    array = np.asarray(list(indices), dtype=np.int64)
    if array.ndim != 1 or not len(array) or array.min() < 0 or array.max() >= NUM_CLASSES:
        raise ValueError(f"Expected {what} to be ImageNet-1k indices in 0..{NUM_CLASSES - 1}, but got {list(indices)[:8]}.")
    if len(set(array.tolist())) != len(array):
        raise ValueError(f"Expected {what} to hold each ImageNet-1k index once, but some repeat.")
    return array


class ImageNet1k(LabelSpace):
    """Labels are the canonical ImageNet-1k indices; the prediction is the 1000-way one.

    Example:
        >>> ImageNet1k().correct(np.array([[3, 1], [2, 0]]), np.array([1, 5])).tolist()
        [[False, True], [False, False]]
    """

    kind = "imagenet-1k"

    def __init__(self) -> None:
        self.name = "imagenet-1k"
        self.policy = "full"


class Unlabelled(LabelSpace):
    """Images without labels (every label is ``-1``): predictions are kept, but none is ever right.

    Example:
        >>> Unlabelled().correct(np.array([[3, 1]]), np.array([-1])).tolist()
        [[False, False]]
    """

    kind = "none"

    def __init__(self) -> None:
        self.name = "unlabelled"
        self.policy = "full"

    def from_imagenet(self, labels: np.ndarray) -> np.ndarray:
        return np.full(np.shape(labels), -1, dtype=np.int64)

    def correct(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.zeros(np.shape(super().correct(predictions, labels)), dtype=bool)


class ClassSubset(LabelSpace):
    """Labels are canonical indices of ``indices``; policy ``"subset"`` predicts over those columns only.

    Args:
        name: e.g. ``"imagenet-r-200"``.
        indices: the subset's ImageNet-1k indices (any order; kept sorted).
        policy: ``"subset"`` (official for ImageNet-R/-A) or ``"full"``.

    Example:
        >>> space = ClassSubset("two", [1, 3])
        >>> logits = torch.zeros(1, 1000)
        >>> logits[0, [0, 1, 3]] = torch.tensor([9.0, 1.0, 2.0])
        >>> int(space.restrict(logits).argmax()), int(logits.argmax())
        (3, 0)
    """

    kind = "subset"

    def __init__(self, name: str, indices: Sequence[int], policy: str = "subset") -> None:
        self.name = name
        self.indices = np.sort(_check_indices(indices, f"the classes of {name!r}"))
        self.policy = _check_policy(policy)

    def columns(self) -> np.ndarray:
        return self.indices

    def from_imagenet(self, labels: np.ndarray) -> np.ndarray:
        labels = super().from_imagenet(labels)
        return np.where(np.isin(labels, self.indices), labels, -1)

    def describe(self) -> str:
        rule = (f"prediction over its {len(self.indices)} classes' logits" if self.policy == "subset"
                else "1000-way prediction, classes outside the subset count as wrong")
        return f"{self.name} ({rule})"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "indices": self.indices.tolist()}


class ClassMapping(LabelSpace):
    """Labels are the dataset's classes ``0..len(classes)-1``; each maps to one or more ImageNet classes.

    Args:
        name: e.g. ``"objectnet-113"``.
        classes: the dataset's class names, in label order.
        mapping: class name -> its ImageNet-1k indices (every class mapped; no ImageNet class used twice).
        policy: ``"subset"`` (predict over the mapped columns only) or ``"full"`` (the 1000-way prediction).

    Example:
        >>> space = ClassMapping("toy", ["cup", "dog"], {"cup": [968], "dog": [207, 208]})
        >>> space.correct(np.array([[208, 968], [5, 968]]), np.array([1, 0])).tolist()
        [[True, False], [False, True]]
    """

    kind = "mapping"

    def __init__(self, name: str, classes: Sequence[str], mapping: Mapping[str, Sequence[int]],
                 policy: str = "subset") -> None:
        self.name = name
        self.classes = list(classes)
        if sorted(mapping) != sorted(self.classes) or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"Expected {name!r} to map each of its {len(self.classes)} classes exactly once, but the "
                             f"mapping has {len(mapping)} entries.")
        self.mapping = {c: sorted(int(i) for i in mapping[c]) for c in self.classes}
        flat = _check_indices([i for c in self.classes for i in self.mapping[c]], f"the classes mapped by {name!r}")
        self.policy = _check_policy(policy)
        # ImageNet index -> dataset label (-1: unmapped); one lookup scores any prediction array.
        self.table = np.full(NUM_CLASSES + 1, -1, dtype=np.int64)  # the extra slot maps the -1 of unclassified rows
        for label, cls in enumerate(self.classes):
            self.table[self.mapping[cls]] = label
        self._columns = np.sort(flat)

    def columns(self) -> np.ndarray:
        return self._columns

    def from_imagenet(self, labels: np.ndarray) -> np.ndarray:
        """ImageNet-1k labels to this space's: the dataset class an ImageNet class is mapped to (``-1``: none).

        Example:
            >>> ClassMapping("toy", ["cup", "dog"], {"cup": [968], "dog": [207, 208]}).from_imagenet(
            ...     np.array([208, 968, 5])).tolist()
            [1, 0, -1]
        """
        labels = super().from_imagenet(labels)
        return self.table[np.where(labels >= 0, labels, NUM_CLASSES)]

    def correct(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        predictions, labels = np.asarray(predictions), np.asarray(labels)
        if predictions.ndim != 2 or labels.shape != (predictions.shape[0],):
            raise ValueError(f"Expected predictions [N, k] and labels [N], but got {predictions.shape} and "
                             f"{labels.shape}.")
        mapped = self.table[np.where(predictions >= 0, predictions, NUM_CLASSES)]
        return (mapped == labels[:, None]) & (mapped >= 0)

    def describe(self) -> str:
        rule = ("prediction over the mapped classes' logits" if self.policy == "subset"
                else "1000-way prediction, unmapped classes count as wrong")
        return (f"{self.name} ({len(self.classes)} classes mapped to {len(self._columns)} ImageNet classes; a "
                f"prediction is right when it maps to the true class; {rule})")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "classes": self.classes, "mapping": self.mapping}


def label_space_from_dict(record: Mapping[str, Any]) -> LabelSpace:
    """The :class:`LabelSpace` a record describes (:meth:`LabelSpace.to_dict`).

    Example:
        >>> label_space_from_dict(ClassSubset("two", [3, 1]).to_dict())
        ClassSubset('two', policy='subset')
    """
    kind = record.get("kind")
    if kind == ImageNet1k.kind:
        return ImageNet1k()
    if kind == Unlabelled.kind:
        return Unlabelled()
    if kind == ClassSubset.kind:
        return ClassSubset(record["name"], record["indices"], record.get("policy", "subset"))
    if kind == ClassMapping.kind:
        return ClassMapping(record["name"], record["classes"], record["mapping"], record.get("policy", "subset"))
    raise ValueError(f"Expected a label space of kind {ImageNet1k.kind!r}, {ClassSubset.kind!r}, "
                     f"{ClassMapping.kind!r} or {Unlabelled.kind!r}, but got {kind!r}.")
