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
import io
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .labels import ImageNet1k, LabelSpace, Unlabelled
from .options import option
from .text import listing

__all__ = [
    "DataConfig",
    "DataError",
    "FolderWalk",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "LABEL_FILE_NAMES",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PIXELS",
    "ImageNetVal",
    "ImageSource",
    "UnlabelledImages",
    "build_transform",
    "imagenet_classes",
    "images_sha256",
    "labels_sha256",
    "load_rgb",
    "to_rgb",
    "val_folder",
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

def _layouts_help() -> str:
    return (
        "Accepted layouts: (1) ImageFolder: one sub-folder per class named by its ImageNet wnid "
        "(e.g. val/n01440764/ILSVRC2012_val_00000293.JPEG), all 1000 classes or any subset; "
        "(2) flat: the images directly in the folder plus a labels file (LOC_val_solution.csv, or "
        "'filename label_index' lines in val.txt / labels.txt / val_labels.txt) in the folder or its parent, "
        f"or passed explicitly as {option('labels_file', 'FILE')}."
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
# Bounds checked on the header, before any pixel is allocated. PIL's own limit (Image.MAX_IMAGE_PIXELS) only
# warns below twice its value and can be switched off by any library; this one always holds. ImageNet's largest
# val image is about 10 MP, its most elongated about 6:1.
MAX_IMAGE_PIXELS = 89_478_485  # PIL's default limit (about 0.25 GiB of 24-bit pixels), enforced as an error
# Resizing the shorter side to s makes the longer one s * ratio: 1x20000 at s = 256 would be 256x5,120,000
# (3.9 GB). At this bound a crop at s = 256 stays below 256 x 25,600 pixels (20 MB).
MAX_ASPECT_RATIO = 100


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


def load_rgb(path: str | os.PathLike[str], *, content: bytes | None = None) -> Image.Image:
    """Open and fully decode an image as RGB, like torchvision's ImageFolder ``pil_loader``: the suite's one image
    loader (dataset images and style images alike).

    The pixels become 8-bit RGB as :func:`to_rgb` says (16-bit greyscale scaled, not clipped to white). Before
    decoding, the header's size is checked: more than :data:`MAX_IMAGE_PIXELS` pixels, or a side more than
    :data:`MAX_ASPECT_RATIO` times the other (resizing its shorter side would allocate gigabytes), is a bad image
    like an undecodable one, so ``on_bad_image`` names or skips it.

    Args:
        path: the image file.
        content: the file's bytes, already read (then decoded instead of reading the file again: bytes whose
            sha256 was checked, for one); ``path`` then only names the file.

    Raises:
        DataError: the file is missing, truncated, not an image, too large or too elongated; the message names its
            absolute path, ``.reason`` says why in a few words.
    """
    path = Path(path)
    try:
        opened = io.BytesIO(content) if content is not None else open(path, "rb")
        with opened as f, warnings.catch_warnings():
            # PIL warns between its limit and twice it; _check_size refuses all of that range itself.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(f)
            _check_size(img.size)
            return to_rgb(img)  # forces the full decode while the file is open
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = exc.reason if isinstance(exc, DataError) else _decode_problem(path, exc)
        error = DataError(f"cannot decode image {path.absolute()}: {reason}. "
                          "Remove or replace this file (e.g. re-extract it from the ImageNet archive), "
                          "and remove its line from the labels file if there is one.")
        error.reason = reason  # type: ignore[attr-defined]  # the short form, for lists of bad files
        raise error from exc


def _check_size(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise _bad(f"{width}x{height} is {width * height:,} pixels, more than the {MAX_IMAGE_PIXELS:,} allowed "
                   "(data.MAX_IMAGE_PIXELS; a decompression bomb or not a photo)")
    if max(width, height) > MAX_ASPECT_RATIO * max(min(width, height), 1):
        raise _bad(f"{width}x{height} is more elongated than {MAX_ASPECT_RATIO}:1 (data.MAX_ASPECT_RATIO; resizing its "
                   "shorter side would blow the longer one up to gigabytes)")


def _bad(reason: str) -> DataError:
    error = DataError(reason)
    error.reason = reason  # type: ignore[attr-defined]
    return error


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB, the way :func:`load_rgb` converts every decoded image.

    Greyscale ("L"), CMYK, palette and RGBA images become RGB through ``Image.convert("RGB")``. 16-bit greyscale
    images (PNG modes ``I;16``, ``I;16B``, ``I``) are scaled to 8 bits as an 8-bit export does
    (``round(v * 255 / 65535)``): ``convert`` would clip every value above 255 to white. Images whose range is not
    known (32-bit integer or float pixels from other formats) raise :class:`DataError`.

    Example:
        >>> deep = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))  # 16-bit greyscale
        >>> np.asarray(to_rgb(deep))[0, :, 0].tolist(), np.asarray(deep.convert("RGB"))[0, :, 0].tolist()
        ([0, 128, 255], [0, 255, 255])
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N") or (img.mode == "I" and img.format == "PNG"):
        # PNG stores 16-bit greyscale; PIL gives it as I;16* or (older versions) as 32-bit I holding 0..65535.
        pixels = np.asarray(img, dtype=np.uint32)
        return Image.fromarray(((pixels * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    if img.mode in ("I", "F") or img.mode.startswith(("I;", "F;")):
        raise _bad(f"{img.mode!r} pixels ({img.format or 'unknown'} format, 32-bit integer or float) have no known "
                   "range to map to 8 bits; convert the file to 8-bit RGB")
    return img.convert("RGB")


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
def _is_image_name(name: str) -> bool:
    # Hidden files are skipped: macOS "._x.JPEG" AppleDouble files carry an image extension but are not images.
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _is_image(path: Path) -> bool:
    return _is_image_name(path.name) and path.is_file()


def _visible_dirs(root: Path) -> list[Path]:
    """The visible sub-folders of ``root``, sorted; a broken link or an unreadable folder there is named
    (:class:`FolderWalk`), never dropped."""
    walk = FolderWalk(root)
    dirs, _ = walk.scan(root)
    walk.check()
    return dirs


class FolderWalk:
    """One discovery pass over a data folder: every image file reached once, every problem named.

    Every dataset kind lists its images through one (:meth:`scan` a folder, :meth:`images_under` a class folder,
    then :meth:`check`).

    Links are followed, as torchvision's ImageFolder does, also to folders outside the root (a subset made of
    links into a full copy is common), but each real folder and each real image file is reached once: a link
    that leads back to the root or one of its ancestors (``up -> ..``), into a folder already reached (another
    class folder, or its own) or to an image already reached is a problem, as are folders that cannot be read
    and links that lead nowhere. Without that, a loop counts the same images many times, under the class of
    the folder holding the link. Problems are collected and raised together by :meth:`check`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_real = os.path.realpath(root)
        self.dirs: dict[str, Path] = {}  # real path -> the path it was first reached by
        self.files: dict[str, Path] = {}
        self.problems: list[str] = []

    def scan(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """The visible sub-folders and image files of ``folder``, sorted; problems are recorded."""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            self.problems.append(f"{folder} cannot be read ({err.strerror or err})")
            return [], []
        folder_real = os.path.realpath(folder)
        dirs, images = [], []
        for entry in entries:
            if entry.name.startswith("."):  # tooling debris (.ipynb_checkpoints, ._x.JPEG), not data
                continue
            path = Path(entry.path)
            try:
                link = entry.is_symlink()
                if link:
                    os.stat(path)  # a dangling or looping link raises here, not silently below
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except FileNotFoundError:
                self.problems.append(f"{path} is a broken link (to {os.readlink(path)}, which does not exist)")
                continue
            except OSError as err:
                self.problems.append(f"{path} cannot be resolved ({err.strerror or err})")
                continue
            if is_dir:
                if self._first_visit(path, os.path.realpath(path)):
                    dirs.append(path)
            elif is_file and _is_image_name(entry.name):
                real = os.path.realpath(path) if link else os.path.join(folder_real, entry.name)
                if real in self.files:
                    self.problems.append(f"{path} and {self.files[real]} are the same image file (through a link)")
                else:
                    self.files[real] = path
                    images.append(path)
        return dirs, images

    def _first_visit(self, path: Path, real: str) -> bool:
        if real == self.root_real or self.root_real.startswith(real.rstrip(os.sep) + os.sep):
            self.problems.append(f"{path} leads back to {real}, which holds the data folder: a link loop")
            return False
        if real in self.dirs:
            self.problems.append(f"{path} and {self.dirs[real]} are the same folder (through a link)")
            return False
        self.dirs[real] = path
        return True

    def images_under(self, top: Path) -> list[Path]:
        """Every image file in ``top`` and its sub-folders (none when ``top`` is itself a folder reached before)."""
        real = os.path.realpath(top)
        if self.dirs.get(real) != top and not self._first_visit(top, real):  # not yet met through scan()
            return []
        found, stack = [], [top]
        while stack:
            dirs, images = self.scan(stack.pop())
            found += images
            stack += reversed(dirs)
        return found

    def check(self) -> None:
        if self.problems:
            k = len(self.problems)
            raise DataError(
                f"{k} problem{'s' if k > 1 else ''} in data folder {self.root}: each image file must be reached "
                f"exactly once, and every folder and link must lead somewhere readable:\n  "
                + "\n  ".join(self.problems[:20]) + (f"\n  ... and {k - 20} more" if k > 20 else "")
                + "\nMake the folders readable (chmod -R u+rX), remove or repair the broken links, and remove the "
                "links that loop or reach a folder or image a second time."
            )


def _discover_imagefolder(root: Path, class_dirs: list[Path], walk: FolderWalk) -> list[tuple[str, int]]:
    index = _wnid_index()
    unknown = [d.name for d in class_dirs if d.name not in index]
    if unknown:
        raise DataError(f"{root / unknown[0]} is not an ImageNet-1k class folder: in the ImageFolder layout every "
                        f"sub-folder of {root} must be named by a wnid such as n01440764 "
                        f"({len(unknown)} unknown: {listing(unknown, 5)}). Move or remove the unknown folder(s).")
    samples = [(p.relative_to(root).as_posix(), index[d.name]) for d in class_dirs for p in walk.images_under(d)]
    walk.check()
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
        # The label is the last field; a file name may hold spaces when it keeps its image extension (then where
        # the name ends is unambiguous: "my photo.JPEG 65"). Without one, "a b 65" could be a name and a label or
        # a line of three fields, so it is refused, saying so.
        parts = line.strip().rsplit(None, 1)
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) == 2 and len(parts[0].split()) > 1 and not _is_image_name(parts[0].rsplit("/", 1)[-1]):
            raise DataError(f"{path}, line {n}: expected 'filename label_index', got {line.strip()!r}: "
                            f"{len(line.split())} fields, and {parts[0]!r} is not a file name with an image "
                            f"extension ({', '.join(IMAGE_EXTENSIONS)}), so the line cannot be read unambiguously. "
                            "A file name with spaces must keep its extension; fix the line.")
        label_text = parts[1] if len(parts) == 2 else ""
        # A wnid is accepted too: it is unambiguous and some exports write it instead of the index. ASCII digits
        # only, and few of them: "²" is a digit to str.isdigit() but not to int(), and int() refuses huge strings.
        number = label_text.isascii() and label_text.isdigit() and len(label_text) <= 6
        label = int(label_text) if number else index.get(label_text, -1)
        if not 0 <= label < 1000:
            raise DataError(f"{path}, line {n}: expected 'filename label_index' with a label in 0..999, got "
                            f"{line.strip()!r}; fix the file or pass the right one as {option('labels_file', 'FILE')}.")
        put(parts[0].rsplit("/", 1)[-1], label, f"line {n}")
    return labels


def _discover_flat(root: Path, images: list[Path], labels_file: Path | None) -> tuple[list[tuple[str, int]], Path]:
    if labels_file is None:
        labels_file = _find_labels_file(root)
        if labels_file is None:
            raise DataError(f"{root} holds {len(images)} images directly but no labels file: looked for "
                            f"{', '.join(LABEL_FILE_NAMES)} in {root} and {root.parent}. "
                            f"Pass {option('labels_file', 'FILE')}, "
                            "or sort the images into wnid sub-folders. " + _layouts_help())
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


def images_sha256(relative_paths: Iterable[str]) -> str:
    """The dataset fingerprint's ``sha256``: of the sorted relative image paths, one a line (the order of the
    images does not change it; a record's stored paths give it again).

    Example:
        >>> images_sha256(["b/2.JPEG", "a/1.JPEG"]) == images_sha256(["a/1.JPEG", "b/2.JPEG"])
        True
    """
    return hashlib.sha256("\n".join(sorted(relative_paths)).encode("utf-8")).hexdigest()


def labels_sha256(labels: Iterable[int]) -> str:
    """The dataset fingerprint's ``labels_sha256``: of the labels in sample order, comma-separated (so the same files
    read with another labels file never pass for the same protocol).

    Example:
        >>> labels_sha256([0, 1]) != labels_sha256([1, 0])
        True
    """
    return hashlib.sha256(",".join(str(int(label)) for label in labels).encode("utf-8")).hexdigest()


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
    given_root: Path | None = None  # the root as the caller wrote it (relative stays relative), for headers

    @property
    def shown_root(self) -> Path:
        """The folder as headers show it: as the caller gave it (``../data/val``), else :attr:`root`; the record
        keeps the absolute :attr:`root` beside it."""
        return self.given_root or self.root

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
        digest = images_sha256(rel for rel, _ in self.samples)
        labels = labels_sha256(label for _, label in self.samples)
        return {"n": len(self.samples), "sha256": digest, "labels_sha256": labels, "layout": self.layout,
                "limit": self.limit, "kind": self.kind, "label_space": self.label_space.name}

    def describe_preprocessing(self) -> str:
        """The geometry part of :meth:`describe` (kinds preprocessed otherwise override it)."""
        c = self.config
        return f"resize {c.resize} {c.interpolation} + centre crop {c.crop}"

    def describe(self) -> str:
        """One line for report headers, e.g. ``ImageNet val /data/val: 50000 images, 1000 classes, ...``."""
        n_classes = len(set(self.labels))
        text = f"{self.title} {self.shown_root}: {len(self)} images, {n_classes} classes, {self.layout} layout"
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


def val_folder(root: str | os.PathLike[str]) -> Path:
    """The folder :class:`ImageNetVal` reads for ``root`` (absolute): ``root/val`` when ``root`` is the parent of
    val/ (an ImageNet root holding ``train/`` and ``val/``: no images and no wnid folder of its own), else ``root``.

    Example:
        >>> val_folder("/no/such/folder")
        PosixPath('/no/such/folder')
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.is_dir():
        return root
    dirs, images = FolderWalk(root).scan(root)
    if not images and (root / "val").is_dir() and not any(d.name in _wnid_index() for d in dirs):
        return root / "val"
    return root


class ImageNetVal(ImageSource):
    """ImageNet-style validation images with canonical labels, decoded to the model's eval geometry.

    Items are ``(uint8 tensor [3, crop, crop], label)`` with the canonical ImageNet-1k label (see
    :class:`ImageSource`).

    Layouts (:attr:`layout`):
      * ``"imagefolder"``: ``root/<wnid>/**/*.JPEG`` for all or some of the 1000 wnids. A folder that only
        contains ``val/`` is accepted as the parent of the real root.
      * ``"flat"``: images directly in ``root`` plus ``labels_file`` (or one found in ``root`` or its parent,
        see :data:`LABEL_FILE_NAMES`): Kaggle's ``LOC_val_solution.csv`` or ``filename label_index`` lines (the
        label is the last field; a file name with spaces must keep its image extension).

    Symbolic links are followed, as torchvision's ImageFolder does, also out of ``root`` (a subset made of links
    into a full copy is a normal data folder), but every real folder and image file is reached once: a link
    back to ``root`` or above it (``up -> ..``), to a folder or an image already reached, a broken link and a
    folder that cannot be read are each a :class:`DataError` naming them all, never images counted twice or
    silently left out. Hidden files and folders (``.x``) are skipped.

    Args:
        root: the validation folder.
        config: eval geometry (resize, crop, interpolation); normalization is not applied here.
        labels_file: labels for the flat layout; auto-detected when None.
        limit: if set, a deterministic class-balanced subset of at most this many images.

    Raises:
        DataError: missing or empty folder, unknown class folder, unlabelled images, labels for absent images,
            link loops, broken links, unreadable folders.
    """

    kind = "imagenet-val"
    title = "ImageNet val"

    def __init__(self, root: str | os.PathLike[str], config: DataConfig = DataConfig(), *,
                 labels_file: str | os.PathLike[str] | None = None, limit: int | None = None) -> None:
        # abspath, not resolve(): normalizes "a/../b" for the record but keeps the user's symlinks.
        given = Path(os.path.normpath(Path(root).expanduser()))
        root = Path(os.path.abspath(given))
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist or is not a folder. " + _layouts_help())
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(f"limit must be a positive integer or None, got {limit!r}.")
        if val_folder(root) != root:  # pointed at the parent of val/
            root, given = root / "val", given / "val"
        walk = FolderWalk(root)
        dirs, images = walk.scan(root)
        self.labels_file: Path | None = None
        if dirs:
            if images:
                raise DataError(f"{root} mixes class sub-folders with loose images ({listing([p.name for p in images], 5)});"
                                " keep one layout: move the loose images into their wnid folders or elsewhere.")
            if labels_file is not None:
                raise DataError(f"{option('labels_file', str(labels_file))} was given but {root} has class sub-folders "
                                f"(ImageFolder layout, labelled by folder name); drop {option('labels_file')} or use a "
                                "flat folder.")
            self.layout = "imagefolder"
            samples = _discover_imagefolder(root, dirs, walk)
        elif images:
            walk.check()
            self.layout = "flat"
            given = Path(labels_file).expanduser().absolute() if labels_file is not None else None
            if given is not None and not given.is_file():
                raise DataError(f"labels file {given} does not exist; pass an existing {option('labels_file', 'FILE')} "
                                "or omit it to "
                                f"auto-detect {', '.join(LABEL_FILE_NAMES)} in {root} or {root.parent}.")
            samples, self.labels_file = _discover_flat(root, images, given)
        else:
            walk.check()
            samples = []
        if not samples:
            raise DataError(f"no images found in {root} (image extensions: {', '.join(IMAGE_EXTENSIONS)}). "
                            + _layouts_help())
        samples.sort()
        self.root, self.given_root = root, given
        self.label_space = ImageNet1k()
        self._setup(samples, config, limit)

    def with_config(self, config: DataConfig) -> ImageNetVal:
        """The same images (the folder is not listed again) in another geometry: what a run does with a folder it
        checked before the model, and so its geometry, was known.

        Example:
            >>> val = ImageNetVal("/data/imagenet/val")  # doctest: +SKIP
            >>> val.with_config(DataConfig(resize=160, crop=128))[0][0].shape  # doctest: +SKIP
            torch.Size([3, 128, 128])
        """
        copied = copy.copy(self)
        copied.config, copied.transform, copied.skipped = config, build_transform(config), dict(self.skipped)
        return copied


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
        self.given_root = Path(os.path.normpath(Path(root).expanduser()))
        self.root = Path(os.path.abspath(self.given_root))
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
        text = f"{self.title} {self.shown_root}: {len(self)} images (unlabelled)"
        if self.limit is not None and self.limit < self.n_available:
            text += f", evenly spaced subset (limit {self.limit} of {self.n_available})"
        if self.skipped:
            text += f", {len(self.skipped)} unreadable skipped ({listing(sorted(self.skipped), 3)})"
        return text + f", {self.describe_preprocessing()}, sha256 {self.fingerprint()['sha256'][:12]}"

