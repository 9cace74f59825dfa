"""ImageNet validation data: discovery, canonical labels, decode + eval geometry to uint8 crops.

Two folder layouts are accepted (see :class:`ImageNetVal`): the ImageFolder one (``val/<wnid>/*.JPEG``,
any subset of the 1000 classes) and a flat folder of images plus a labels file. Labels always come
from the canonical ImageNet-1k index shipped with the package, never from enumerating folders, so a
folder holding only some classes still gets the indices every ImageNet classifier predicts.
"""

from __future__ import annotations

import copy
import csv
import functools
import hashlib
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .labels import ImageNet1k, LabelSpace, Unlabelled
from .text import listing

__all__ = [
    "DataConfig",
    "DataError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "LABEL_FILE_NAMES",
    "ImageNetVal",
    "ImageSource",
    "UnlabelledImages",
    "build_transform",
    "imagenet_classes",
    "load_rgb",
    "wnid_to_index",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DataConfig:
    """A model's eval data config: geometry (done by the loader) and normalization (done on the device).

    The default is the official IBN-Net evaluation: shorter side to 256 (PIL bilinear, antialiased),
    centre crop 224, ImageNet mean/std.
    """

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DataError(ValueError):
    """A problem with the validation data: the message names the file/folder, what was expected and the fix."""


IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
# Looked for, in this order, in the data folder and then in its parent (flat layout only).
LABEL_FILE_NAMES = ("LOC_val_solution.csv", "val.txt", "labels.txt", "val_labels.txt")

_LAYOUTS_HELP = (
    "Accepted layouts: (1) ImageFolder: one sub-folder per class named by its ImageNet wnid "
    "(e.g. val/n01440764/ILSVRC2012_val_00000293.JPEG), all 1000 classes or any subset; "
    "(2) flat: the images directly in the folder plus a labels file (LOC_val_solution.csv, or "
    "'filename label_index' lines in val.txt / labels.txt / val_labels.txt) in the folder or its parent, "
    "or passed explicitly as labels_file."
)


# -- canonical class index --------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _classes() -> tuple[tuple[str, str], ...]:
    text = resources.files("robustbench_ibn").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    classes = tuple((wnid, name) for _, wnid, name in rows)
    # The file is package data; a damaged install must not silently shift every label.
    if [int(r[0]) for r in rows] != list(range(1000)) or list(classes) != sorted(classes):
        raise DataError("robustbench_ibn/imagenet_classes.tsv is damaged: expected indices 0..999 in sorted-wnid "
                        "order; reinstall the package.")
    return classes


def imagenet_classes() -> list[tuple[str, str]]:
    """The canonical ImageNet-1k classes as ``(wnid, name)`` in index order (sorted wnids, 0..999)."""
    return list(_classes())


@functools.lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, (wnid, _) in enumerate(_classes())}


def wnid_to_index() -> dict[str, int]:
    """Mapping from wnid (``"n01440764"``) to its canonical class index (a fresh copy, safe to modify)."""
    return dict(_wnid_index())


# -- decoding ---------------------------------------------------------------------------------------
def build_transform(config: DataConfig) -> T.Compose:
    """The eval geometry of ``config`` as torchvision transforms on PIL images, ending in a uint8 tensor.

    With the default config this is exactly ``Resize(256, BILINEAR) + CenterCrop(224) + PILToTensor()``,
    the official IBN-Net eval (PIL resize, antialiased), so the output is bit-identical to it.
    """
    try:
        mode = InterpolationMode(config.interpolation.lower())
    except ValueError:
        names = ", ".join(m.value for m in InterpolationMode)
        msg = f"DataConfig.interpolation={config.interpolation!r} is not known; use one of: {names}."
        raise DataError(msg) from None
    return T.Compose([T.Resize(config.resize, interpolation=mode), T.CenterCrop(config.crop), T.PILToTensor()])


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image as RGB, like torchvision's ImageFolder ``pil_loader``.

    Greyscale ("L"), CMYK, palette and RGBA images all become RGB through ``Image.convert("RGB")``.

    Raises:
        DataError: the file is missing, truncated or not an image; the message names its absolute path.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() forces the full decode while the file is open
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = _decode_problem(path, exc)
        error = DataError(f"cannot decode image {path.absolute()}: {reason}. "
                          "Remove or replace this file (e.g. re-extract it from the ImageNet archive), "
                          "and remove its line from the labels file if there is one.")
        error.reason = reason  # type: ignore[attr-defined]  # the short form, for lists of bad files
        raise error from exc


def _decode_problem(path: Path, exc: Exception) -> str:
    """Why ``path`` did not decode, in a few words (PIL's "cannot identify image file <_io...>" says little)."""
    if isinstance(exc, Image.UnidentifiedImageError):
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        return "empty file (0 bytes)" if empty else "not an image (no image format PIL can read)"
    return f"{type(exc).__name__}: {exc}"


# -- discovery --------------------------------------------------------------------------------------
def _is_image(path: Path) -> bool:
    # Hidden files are skipped: macOS "._x.JPEG" AppleDouble files carry an image extension but are not images.
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _visible_dirs(root: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .cache, ...) are tooling debris, not classes.
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _discover_imagefolder(root: Path, class_dirs: list[Path]) -> list[tuple[str, int]]:
    index = _wnid_index()
    unknown = [d.name for d in class_dirs if d.name not in index]
    if unknown:
        raise DataError(f"{root / unknown[0]} is not an ImageNet-1k class folder: in the ImageFolder layout every "
                        f"sub-folder of {root} must be named by a wnid such as n01440764 "
                        f"({len(unknown)} unknown: {listing(unknown, 5)}). Move or remove the unknown folder(s).")
    samples = []
    for d in class_dirs:
        # Walk recursively and follow links, as torchvision's ImageFolder does.
        for dirpath, dirnames, filenames in os.walk(d, followlinks=True):
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
            for name in filenames:
                p = Path(dirpath, name)
                if _is_image(p):
                    samples.append((p.relative_to(root).as_posix(), index[d.name]))
    return samples


def _find_labels_file(root: Path) -> Path | None:
    for folder in (root, root.parent):
        for name in LABEL_FILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def _read_labels(path: Path) -> dict[str, int]:
    """Parse a labels file into {image name or stem: canonical label}."""
    index = _wnid_index()
    labels: dict[str, int] = {}

    def put(key: str, label: int, where: str) -> None:
        if labels.setdefault(key, label) != label:
            raise DataError(f"{path}: {where}: {key} is listed twice with different labels "
                            f"({labels[key]} and {label}); fix the labels file.")

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels file {path}: {exc}.") from exc
    lines = text.splitlines()
    if path.suffix.lower() == ".csv" or (lines and lines[0].replace(" ", "").startswith("ImageId,")):
        # Kaggle LOC_val_solution.csv: "ImageId,PredictionString"; the string is "wnid x0 y0 x1 y1 [wnid ...]".
        try:
            rows = list(csv.reader(lines))
        except csv.Error as exc:  # NUL bytes, a field over csv's size limit
            raise DataError(f"{path} is not a readable CSV file ({exc}); expected Kaggle's LOC_val_solution.csv "
                            "('ImageId,PredictionString' lines).") from exc
        if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
            raise DataError(f"{path}: expected the Kaggle header 'ImageId,PredictionString' on the first line.")
        for n, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
            if wnid not in index:
                raise DataError(f"{path}, line {n}: expected 'ImageId,<wnid> ...' with an ImageNet-1k wnid, "
                                f"got {','.join(row)!r}; fix or replace the labels file.")
            put(row[0].strip(), index[wnid], f"line {n}")
        return labels
    for n, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        label_text = parts[1] if len(parts) == 2 else ""
        # A wnid is accepted too: it is unambiguous and some exports write it instead of the index. ASCII digits
        # only, and few of them: "²" is a digit to str.isdigit() but not to int(), and int() refuses huge strings.
        number = label_text.isascii() and label_text.isdigit() and len(label_text) <= 6
        label = int(label_text) if number else index.get(label_text, -1)
        if not 0 <= label < 1000:
            raise DataError(f"{path}, line {n}: expected 'filename label_index' with a label in 0..999, got "
                            f"{line.strip()!r}; fix the file or pass the right one as labels_file.")
        put(parts[0].rsplit("/", 1)[-1], label, f"line {n}")
    return labels


def _discover_flat(root: Path, images: list[Path], labels_file: Path | None) -> tuple[list[tuple[str, int]], Path]:
    if labels_file is None:
        labels_file = _find_labels_file(root)
        if labels_file is None:
            raise DataError(f"{root} holds {len(images)} images directly but no labels file: looked for "
                            f"{', '.join(LABEL_FILE_NAMES)} in {root} and {root.parent}. Pass labels_file=..., "
                            "or sort the images into wnid sub-folders. " + _LAYOUTS_HELP)
    labels = _read_labels(labels_file)
    samples, missing, used = [], [], set()
    for p in images:
        # Kaggle ImageIds have no extension, 'filename label' files usually do: accept either.
        key = p.name if p.name in labels else p.stem
        if key in labels:
            samples.append((p.name, labels[key]))
            used.add(key)
        else:
            missing.append(p.name)
    if missing:
        raise DataError(f"{root / missing[0]} has no label in {labels_file} ({len(missing)} of {len(images)} images "
                        f"unlabelled: {listing(missing, 5)}). Use the labels file that belongs to these images, "
                        "or remove the unlabelled images.")
    absent = sorted(set(labels) - used)
    if absent:
        # Evaluating silently on fewer images than the labels promise would publish a number for another set.
        raise DataError(f"{labels_file} lists {len(absent)} images that are not in {root} ({listing(absent, 5)}). "
                        "Restore the missing images, or give a labels file listing exactly the images present "
                        "(use limit=N for a deliberate subset).")
    return samples, labels_file


def _balanced_subset(samples: list[tuple[str, int]], limit: int) -> list[tuple[str, int]]:
    """Round-robin over classes (rank 0 of every class in label order, then rank 1, ...) until ``limit``."""
    by_label: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for s in samples:  # samples are path-sorted, so each class's ranks are deterministic
        by_label[s[1]].append(s)
    groups = [by_label[k] for k in sorted(by_label)]
    chosen: list[tuple[str, int]] = []
    for rank in range(max(map(len, groups))):
        for g in groups:
            if rank < len(g):
                chosen.append(g[rank])
                if len(chosen) == limit:
                    return sorted(chosen)
    return sorted(chosen)


class ImageSource(Dataset):
    """A labelled set of image files, decoded and preprocessed to a model's eval geometry: what a run reads.

    Items are ``(uint8 tensor [3, crop, crop], label)``, like torchvision datasets, so
    ``for x, y in DataLoader(source)`` works; ``samples[i]`` is ``(relative path, label)``. Labels are in
    :attr:`label_space` (the canonical ImageNet-1k indices for ImageNet val).

    Decoding is split in two steps so a shift can act on the whole decoded image, before the geometry
    (the ``image`` stage): :meth:`load` decodes file ``i`` to an RGB PIL image, :meth:`preprocess` applies the
    kind's preprocessing and the model's resize and crop. ``source[i] == (preprocess(load(i)), label)``.

    Subclasses (one per dataset kind) discover :attr:`samples` and set :attr:`root`, :attr:`config`,
    :attr:`layout`, :attr:`limit`, :attr:`n_available` and :attr:`label_space`; they override :meth:`preprocess`
    when their kind is preprocessed otherwise (e.g. files already cropped), and :attr:`kind` / :attr:`title`.
    """

    kind: str = "images"
    title: str = "images"

    root: Path
    config: DataConfig
    layout: str
    limit: int | None
    n_available: int
    samples: list[tuple[str, int]]
    label_space: LabelSpace
    labels_file: Path | None = None

    def _setup(self, samples: list[tuple[str, int]], config: DataConfig, limit: int | None) -> None:
        """The common tail of every subclass's ``__init__``: the (limited) samples, geometry and skip record."""
        self.config = config
        self.limit = limit
        self.n_available = len(samples)
        # A limit above the dataset size is capped rather than refused; describe() says so.
        self.samples = samples if limit is None else _balanced_subset(samples, limit)
        self.transform = build_transform(config)
        # Images left out because they could not be decoded (``evaluate(on_bad_image="skip")``): path -> reason.
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Image.Image:
        """Decode image ``i`` (fully, as RGB); :class:`DataError` names the file when it cannot be decoded."""
        return load_rgb(self.root / self.samples[i][0])

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """A decoded image to the network-input crop, uint8 ``[3, crop, crop]`` (default: the model's geometry)."""
        return self.transform(image)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.preprocess(self.load(i)), self.samples[i][1]

    @property
    def labels(self) -> list[int]:
        """Labels of :attr:`samples`, in order (in :attr:`label_space`)."""
        return [label for _, label in self.samples]

    def without(self, skipped: dict[str, str]) -> ImageSource:
        """A copy without the images ``skipped`` (relative path -> why it was left out), recorded in it.

        Its :meth:`fingerprint` and :meth:`describe` are those of the images that remain, so a result on
        them never passes for one on the whole set.
        """
        unknown = sorted(set(skipped) - {rel for rel, _ in self.samples})
        if unknown:
            raise DataError(f"Expected images of {self.root} to leave out, but got {listing(unknown, 5)}.")
        subset = copy.copy(self)
        subset.samples = [s for s in self.samples if s[0] not in skipped]
        subset.skipped = {**self.skipped, **skipped}
        return subset

    def fingerprint(self) -> dict[str, Any]:
        """Identity of the image set: size, sha256 of the sorted relative paths and of the labels, layout, limit,
        kind and label space.

        ``labels_sha256`` hashes the labels in sample order too, so the same files read with another
        labels file never pass for the same protocol.
        """
        digest = hashlib.sha256("\n".join(sorted(rel for rel, _ in self.samples)).encode("utf-8")).hexdigest()
        labels = hashlib.sha256(",".join(str(label) for _, label in self.samples).encode("utf-8")).hexdigest()
        return {"n": len(self.samples), "sha256": digest, "labels_sha256": labels, "layout": self.layout,
                "limit": self.limit, "kind": self.kind, "label_space": self.label_space.name}

    def describe_preprocessing(self) -> str:
        """The geometry part of :meth:`describe` (kinds preprocessed otherwise override it)."""
        c = self.config
        return f"resize {c.resize} {c.interpolation} + centre crop {c.crop}"

    def describe(self) -> str:
        """One line for report headers, e.g. ``ImageNet val /data/val: 50000 images, 1000 classes, ...``."""
        n_classes = len(set(self.labels))
        text = f"{self.title} {self.root}: {len(self)} images, {n_classes} classes, {self.layout} layout"
        if self.labels_file is not None:
            text += f" (labels {self.labels_file.name})"
        if self.limit is not None:
            if self.limit >= self.n_available:
                text += f", limit {self.limit} >= {self.n_available} available: all images used"
            else:
                text += f", class-balanced subset (limit {self.limit} of {self.n_available})"
        if self.skipped:
            k = len(self.skipped)
            text += f", {k} unreadable image{'s' if k > 1 else ''} skipped ({listing(sorted(self.skipped), 3)})"
        text += f", {self.describe_preprocessing()}"
        return text + f", sha256 {self.fingerprint()['sha256'][:12]}"


class ImageNetVal(ImageSource):
    """ImageNet-style validation images with canonical labels, decoded to the model's eval geometry.

    Items are ``(uint8 tensor [3, crop, crop], label)`` with the canonical ImageNet-1k label (see
    :class:`ImageSource`).

    Layouts (:attr:`layout`):
      * ``"imagefolder"``: ``root/<wnid>/**/*.JPEG`` for all or some of the 1000 wnids. A folder that only
        contains ``val/`` is accepted as the parent of the real root.
      * ``"flat"``: images directly in ``root`` plus ``labels_file`` (or one found in ``root`` or its parent,
        see :data:`LABEL_FILE_NAMES`): Kaggle's ``LOC_val_solution.csv`` or ``filename label_index`` lines.

    Args:
        root: the validation folder.
        config: eval geometry (resize, crop, interpolation); normalization is not applied here.
        labels_file: labels for the flat layout; auto-detected when None.
        limit: if set, a deterministic class-balanced subset of at most this many images.

    Raises:
        DataError: missing or empty folder, unknown class folder, unlabelled images, labels for absent images.
    """

    kind = "imagenet-val"
    title = "ImageNet val"

    def __init__(self, root: str | os.PathLike[str], config: DataConfig = DataConfig(), *,
                 labels_file: str | os.PathLike[str] | None = None, limit: int | None = None) -> None:
        # abspath, not resolve(): normalizes "a/../b" for the record but keeps the user's symlinks.
        root = Path(os.path.abspath(Path(root).expanduser()))
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist or is not a folder. " + _LAYOUTS_HELP)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(f"limit must be a positive integer or None, got {limit!r}.")
        images = sorted(p for p in root.iterdir() if _is_image(p))
        dirs = _visible_dirs(root)
        # Pointed at the parent of val/ (e.g. an ImageNet root with train/ and val/): use val/.
        if not images and (root / "val").is_dir() and not any(d.name in _wnid_index() for d in dirs):
            root = root / "val"
            images = sorted(p for p in root.iterdir() if _is_image(p))
            dirs = _visible_dirs(root)
        self.labels_file: Path | None = None
        if dirs:
            if images:
                raise DataError(f"{root} mixes class sub-folders with loose images ({listing([p.name for p in images], 5)});"
                                " keep one layout: move the loose images into their wnid folders or elsewhere.")
            if labels_file is not None:
                raise DataError(f"labels_file={labels_file} was given but {root} has class sub-folders (ImageFolder "
                                "layout, labelled by folder name); drop labels_file or use a flat folder.")
            self.layout = "imagefolder"
            samples = _discover_imagefolder(root, dirs)
        elif images:
            self.layout = "flat"
            given = Path(labels_file).expanduser().absolute() if labels_file is not None else None
            if given is not None and not given.is_file():
                raise DataError(f"labels file {given} does not exist; pass an existing labels_file or omit it to "
                                f"auto-detect {', '.join(LABEL_FILE_NAMES)} in {root} or {root.parent}.")
            samples, self.labels_file = _discover_flat(root, images, given)
        else:
            samples = []
        if not samples:
            raise DataError(f"no images found in {root} (image extensions: {', '.join(IMAGE_EXTENSIONS)}). "
                            + _LAYOUTS_HELP)
        samples.sort()
        self.root = root
        self.label_space = ImageNet1k()
        self._setup(samples, config, limit)


class UnlabelledImages(ImageSource):
    """Every image under a folder (recursive, sorted, hidden files skipped), without labels (``-1``).

    For a domain that is not ImageNet-labelled (e.g. frames of a game, for the feature-divergence analysis);
    its label space is :class:`~robustbench_ibn.labels.Unlabelled`. ``limit`` keeps that many evenly spaced
    images (deterministic, spanning the folder).

    Raises:
        DataError: the folder does not exist or holds no images.
    """

    kind = "images"
    title = "image folder"

    def __init__(self, root: str | os.PathLike[str], config: DataConfig = DataConfig(), *,
                 limit: int | None = None) -> None:
        self.root = Path(os.path.abspath(Path(root).expanduser()))
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist or is not a folder.")
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = [n for n in dirnames if not n.startswith(".")]
            found += [Path(dirpath, n).relative_to(self.root).as_posix() for n in filenames if _is_image(Path(dirpath, n))]
        if not found:
            raise DataError(f"no images found under {self.root} (extensions: {', '.join(IMAGE_EXTENSIONS)}).")
        found.sort()
        available = len(found)
        if limit is not None and limit < available:  # evenly spaced: deterministic, spans the folder
            step = (available - 1) / max(1, limit - 1)
            found = [found[round(i * step)] for i in range(limit)]
        self.layout = "folder"
        self.label_space = Unlabelled()
        self._setup([(rel, -1) for rel in found], config, None)
        self.limit, self.n_available = limit, available

    def describe(self) -> str:
        text = f"{self.title} {self.root}: {len(self)} images (unlabelled)"
        if self.limit is not None and self.limit < self.n_available:
            text += f", evenly spaced subset (limit {self.limit} of {self.n_available})"
        if self.skipped:
            text += f", {len(self.skipped)} unreadable skipped ({listing(sorted(self.skipped), 3)})"
        return text + f", {self.describe_preprocessing()}, sha256 {self.fingerprint()['sha256'][:12]}"

