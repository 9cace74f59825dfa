"""Reference domains: the clean ImageNet val images of a dataset's classes, predicted in its label space.

An ImageNet-R row is scored among its 200 classes (ObjectNet among its 113, mapped to 125 ImageNet classes); its
drop against clean val scored 1000-way would subtract two different questions. Its reference is what
imagenet-testbed calls ``val-on-imagenet-r-classes``: the val images whose class is in the dataset's label space,
labelled in that space and predicted by its rule (:meth:`~robustbench_ibn.labels.LabelSpace.restrict`). The
engine computes it from the clean pass's logits (no second forward pass, no second decode) and keeps it as a
domain of its own, with its per-image predictions, so intervals and paired tests treat it as any row; the
dataset's rows measure their drops against it (protocol 4, docs/protocol.md).

ImageNet-1k sources (V2, Sketch, Stylized, ImageNet-C, a folder) and the shifts of val keep clean val, scored
1000-way, as their reference; unlabelled sources have no accuracy and so none.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import DataError, ImageSource
from .labels import LabelSpace
from .text import listing

__all__ = ["REFERENCE_SETTINGS", "ReferenceSource", "reference_label", "reference_name"]

# The label spaces of the packaged kinds -> imagenet-testbed's setting name of their reference (its
# src/eval_settings/imagenet_r.py, imagenet_a.py, objectnet.py) and the row's display label.
REFERENCE_SETTINGS: dict[str, tuple[str, str]] = {
    "imagenet-r-200": ("val-on-imagenet-r-classes", "val on ImageNet-R classes"),
    "imagenet-a-200": ("val-on-imagenet-a-classes", "val on ImageNet-A classes"),
    "objectnet-113": ("val-on-objectnet-classes", "val on ObjectNet classes"),
}


def _needs_reference(space: LabelSpace) -> bool:
    """A space other than the 1000 classes (a subset or a mapping) and with labels."""
    return space.kind not in ("imagenet-1k", "none")


def reference_name(space: LabelSpace) -> str | None:
    """The name of the reference domain of ``space`` (``None``: clean val is its reference, or it has no labels).

    The testbed's names for the official ``subset`` policy; ``-full`` added for the 1000-way policy, which is
    another question (classes outside the space count as wrong, on val as on the dataset).

    Example:
        >>> from robustbench_ibn.labels import ClassSubset, ImageNet1k
        >>> reference_name(ClassSubset("imagenet-r-200", [1, 2])), reference_name(ImageNet1k()) is None
        ('val-on-imagenet-r-classes', True)
        >>> reference_name(ClassSubset("imagenet-a-200", [1, 2], policy="full"))
        'val-on-imagenet-a-classes-full'
    """
    if not _needs_reference(space):
        return None
    name = REFERENCE_SETTINGS.get(space.name, (f"val-on-{space.name}-classes", ""))[0]
    return name if space.policy == "subset" else f"{name}-full"


def reference_label(space: LabelSpace) -> str:
    """The display label of ``space``'s reference row (``val on ImageNet-R classes``).

    Example:
        >>> from robustbench_ibn.labels import ClassSubset
        >>> reference_label(ClassSubset("imagenet-r-200", [1, 2], policy="full"))
        'val on ImageNet-R classes (1000-way)'
    """
    label = REFERENCE_SETTINGS.get(space.name, ("", f"val on {space.name} classes"))[1]
    return label if space.policy == "subset" else f"{label} (1000-way)"


class ReferenceSource(ImageSource):
    """The images of ``parent`` (the run's ImageNet val, after its ``limit``) whose class is in ``space``, labelled
    in ``space``: a view, never decoded on its own (the engine restricts the clean pass's logits for them).

    ``indices`` are their positions in ``parent`` (``member`` the same as a mask over it), as the run's passes see
    it (an image skipped later leaves both); a ``--limit`` or a val of some classes restricts the reference
    the same way, since only the parent's images are in it.

    Raises:
        DataError: ``parent`` holds no image of ``space``'s classes (no reference, so no drop to measure).

    Example:
        >>> from pathlib import Path
        >>> from robustbench_ibn.data import DataConfig
        >>> from robustbench_ibn.labels import ClassSubset, ImageNet1k
        >>> class Val(ImageSource):
        ...     def __init__(self):
        ...         self.root, self.layout, self.label_space = Path("/val"), "imagefolder", ImageNet1k()
        ...         self._setup([("a/1.JPEG", 1), ("b/2.JPEG", 2), ("c/3.JPEG", 3)], DataConfig(), None)
        >>> ref = ReferenceSource(Val(), ClassSubset("two", [1, 3]))
        >>> ref.samples, ref.indices.tolist()
        ([('a/1.JPEG', 1), ('c/3.JPEG', 3)], [0, 2])
    """

    kind = "val-reference"

    def __init__(self, parent: ImageSource, space: LabelSpace, *, parent_key: str = "val",
                 parent_domain: str = "clean") -> None:
        mapped = space.from_imagenet(np.asarray(parent.labels, dtype=np.int64))
        self.indices = np.flatnonzero(mapped >= 0)
        self.parent_key, self.parent_domain, self.n_parent = parent_key, parent_domain, len(parent)
        self.title = f"ImageNet val on the classes of {space.name}"
        if not len(self.indices):
            raise DataError(
                f"Expected ImageNet val images of the classes of {space.name} in {parent.shown_root} ({len(parent)} "
                f"images), but there are none: the drop of a domain scored in that label space is measured against "
                f"them ({reference_name(space)}). Give a val folder holding images of those classes (the full val "
                f"set has 50 per class), or a larger --limit.")
        self.root, self.given_root, self.layout = parent.root, parent.given_root, parent.layout
        self.labels_file, self.config, self.transform = parent.labels_file, parent.config, parent.transform
        self.limit, self.n_available, self.label_space = parent.limit, len(parent), space
        self.samples = [(parent.samples[i][0], int(mapped[i])) for i in self.indices.tolist()]
        self.skipped: dict[str, str] = {}
        self.member = np.zeros(self.n_parent, dtype=bool)  # which of the parent's images are in it
        self.member[self.indices] = True

    def without(self, skipped: dict[str, str]) -> ReferenceSource:
        subset = super().without(skipped)
        assert isinstance(subset, ReferenceSource)
        keep = np.array([rel not in skipped for rel, _ in self.samples], dtype=bool)
        subset.indices = self.indices[keep]
        subset.member = np.zeros(self.n_parent, dtype=bool)
        subset.member[subset.indices] = True
        return subset

    def record_extra(self) -> dict[str, Any]:
        """What a result records besides the fingerprint: the source and domain it is derived from."""
        return {"derived_from": {"source": self.parent_key, "domain": self.parent_domain, "n": self.n_parent}}

    def describe(self) -> str:
        n_classes = len(set(self.labels))
        text = (f"{self.title} {self.shown_root}: {len(self)} of the run's {self.n_parent} val images, {n_classes} "
                f"classes, {self.label_space.describe()}; from the {self.parent_domain} pass's logits")
        if self.skipped:
            text += f", {len(self.skipped)} unreadable skipped ({listing(sorted(self.skipped), 3)})"
        return text + f", sha256 {self.fingerprint()['sha256'][:12]}"
