"""Dataset kinds: the :class:`DatasetKind` base class, folder discovery and the registry of kinds.

A dataset kind is an :class:`~robustbench_ibn.data.ImageSource` subclass that knows its folder layout, its
label space, its preprocessing and how to recognise a folder of its kind (:meth:`DatasetKind.recognize`).
Kinds are registered by name (:func:`register_dataset`) and built through one front door,
:func:`create_dataset`, which checks the folder against the kind first and, when it does not fit, says which
kind it looks like.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

from ..data import DataConfig, DataError, FolderWalk, ImageSource, _is_image, _visible_dirs, wnid_to_index
from ..labels import ImageNet1k, LabelSpace
from ..registry import Registry
from ..text import listing

__all__ = ["DATASETS", "ENTRY_POINT_GROUP", "DatasetKind", "Located", "check_folder", "create_dataset", "dataset_kind",
           "list_datasets", "matching_kinds", "register_dataset"]

# Installed packages add dataset kinds through this entry-point group (value: the module to import).
ENTRY_POINT_GROUP = "robustbench_ibn.datasets"


class Located(NamedTuple):
    """What a kind found in a folder, before any image is listed.

    Attributes:
        root: the folder the images are read from (``root/sketch`` for the ImageNet-Sketch release, ...).
        folders: each class folder with its label in the kind's label space; ``None``: its images are excluded.
        layout: the layout's name, recorded (``"imagefolder"``, ``"index-folders"``, ...).
        distinctive: the folder has this kind's own signature (index folders, the 200 ImageNet-R classes, ...),
            not just any wnid folder: only such kinds are suggested when a folder is given as another kind.
    """

    root: Path
    folders: list[tuple[Path, int | None]]
    layout: str
    distinctive: bool


def absolute(root: str | os.PathLike[str]) -> Path:
    """``root`` made absolute without resolving links (the record keeps the user's path)."""
    return Path(os.path.abspath(Path(root).expanduser()))


def class_folders(cls: type[DatasetKind], root: Path) -> tuple[Path, list[Path]]:
    """The visible sub-folders of ``root`` (or of its container sub-folder, see :attr:`DatasetKind.nested`).

    Raises:
        DataError: ``root`` is missing or not a folder, holds loose images, or holds nothing at all.
    """
    if not root.is_dir():
        raise DataError(f"{cls.title} folder {root} does not exist or is not a folder; expected {cls.layout_help}.")
    dirs = _visible_dirs(root)
    if cls.nested and (root / cls.nested[0]).is_dir() and all(d.name in cls.nested for d in dirs):
        root = root / cls.nested[0]  # an archive's container (sketch/, val/, images/): its classes are inside
        dirs = _visible_dirs(root)
    images = [p.name for p in sorted(root.iterdir()) if _is_image(p)]
    if images:
        where = "beside its class folders" if dirs else "and no class folders"
        raise DataError(f"{root} holds {len(images)} loose images ({listing(images, 3)}) {where}: an empty or mixed "
                        f"domain; {cls.title} expects {cls.layout_help}. Move the images into their class folders.")
    if not dirs:
        raise DataError(f"{root} has no class folders: an empty domain; {cls.title} expects {cls.layout_help}.")
    return root, dirs


def locate_wnid_folders(cls: type[DatasetKind], root: Path, allowed: Iterable[str] | None = None) -> Located:
    """Wnid class folders labelled by their canonical ImageNet-1k index; ``allowed``: the only wnids accepted.

    Raises:
        DataError: a folder that is not an ImageNet-1k wnid, or (with ``allowed``) one outside the kind's classes.
    """
    root, dirs = class_folders(cls, root)
    index = wnid_to_index()
    unknown = [d.name for d in dirs if d.name not in index]
    if unknown:
        raise DataError(f"{root}: {len(unknown)} of its {len(dirs)} folders are not ImageNet-1k wnids "
                        f"({listing(unknown, 5)}); {cls.title} expects {cls.layout_help} (named like n01440764).")
    if allowed is not None:
        allowed = frozenset(allowed)
        outside = [d.name for d in dirs if d.name not in allowed]
        if outside:
            whole = (f" With {len(dirs)} ImageNet-1k classes it is an ImageNet-1k folder (val, -Sketch, -V2, "
                     "Stylized), not a subset." if len(dirs) > len(allowed) else "")
            raise DataError(f"{root}: {len(outside)} of its {len(dirs)} wnid folders are not among the {len(allowed)} "
                            f"{cls.title} classes ({listing(outside, 5)}).{whole} {cls.title} expects "
                            f"{cls.layout_help}; remove the other folders or use the kind the folder belongs to.")
    return Located(root, [(d, index[d.name]) for d in dirs], "imagefolder", allowed is not None)


def list_images(root: Path, folders: list[tuple[Path, int | None]]) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Every image under each folder (recursively, links followed, hidden entries skipped), as ``(path relative to
    root, label)`` sorted by path, and the image count of each excluded (label ``None``) folder.

    Raises:
        DataError: link loops, a folder or image reached twice, broken links, unreadable folders (all named; see
            :class:`~robustbench_ibn.data.FolderWalk`).
    """
    samples: list[tuple[str, int]] = []
    excluded: dict[str, int] = {}
    walk = FolderWalk(root)
    for folder, label in folders:
        images = walk.images_under(folder)
        if label is None:
            excluded[folder.name] = excluded.get(folder.name, 0) + len(images)
        else:
            samples.extend((p.relative_to(root).as_posix(), label) for p in images)
    walk.check()
    return sorted(samples), excluded


class DatasetKind(ImageSource):
    """An :class:`~robustbench_ibn.data.ImageSource` of one registered dataset kind.

    Subclasses set :attr:`kind`, :attr:`title`, :attr:`layout_help`, :attr:`option_help` (and :attr:`nested`),
    implement :meth:`locate`, and call :meth:`_build` from ``__init__(root, config, *, limit, **options)``.

    Attributes:
        options: the kind's options as used (e.g. ``{"subset_policy": "subset"}``), recorded in
            :meth:`fingerprint` and :meth:`describe`.
        excluded: image count per class folder whose images are not part of the domain (ObjectNet's
            non-overlapping classes).
    """

    kind: ClassVar[str] = ""  # type: ignore[misc]
    title = ""
    layout_help: ClassVar[str] = ""
    option_help: ClassVar[dict[str, str]] = {}
    # Container folders of a release: (the one holding the classes, the others that may stand beside it).
    nested: ClassVar[tuple[str, ...]] = ()

    options: dict[str, Any]
    excluded: dict[str, int]

    @classmethod
    def locate(cls, root: Path) -> Located:
        """The folder's class folders and labels; raises :class:`DataError` (naming the folder and the expected
        layout) when the folder is not of this kind. Lists folders only, never images."""
        raise NotImplementedError

    @classmethod
    def recognize(cls, root: str | os.PathLike[str]) -> str | None:
        """Why ``root`` is NOT a folder of this kind (one sentence naming the folder and the layout), or None.

        Example:
            >>> from robustbench_ibn.datasets import dataset_kind
            >>> dataset_kind("imagenet-r").recognize("/no/such/folder")[:60]
            'ImageNet-R folder /no/such/folder does not exist or is not a'
        """
        try:
            cls.locate(absolute(root))
        except DataError as err:
            return str(err)
        return None

    @classmethod
    def distinctive(cls, root: str | os.PathLike[str]) -> bool:
        """True when ``root`` has this kind's own signature (see :attr:`Located.distinctive`)."""
        try:
            return cls.locate(absolute(root)).distinctive
        except DataError:
            return False

    def _build(self, root: str | os.PathLike[str], config: DataConfig, limit: int | None, label_space: LabelSpace,
               options: dict[str, Any]) -> None:
        """Locate, list and label the images, then :meth:`_setup`; an empty domain raises :class:`DataError`."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise DataError(f"limit must be a positive integer or None, got {limit!r}.")
        located = self.locate(absolute(root))
        samples, self.excluded = list_images(located.root, located.folders)
        if not samples:
            held = (f"; its {sum(self.excluded.values())} images are all in excluded classes "
                    f"({listing(sorted(self.excluded), 5)})" if self.excluded else "")
            raise DataError(f"no images in {located.root} ({len(located.folders)} class folders{held}): an empty "
                            f"domain. {self.title} expects {self.layout_help}.")
        self.root, self.layout = located.root, located.layout
        self.label_space, self.options = label_space, options
        self._setup(samples, config, limit)

    def notes(self) -> list[str]:
        """What a report header says about this domain beyond :meth:`ImageSource.describe` (label rule, options)."""
        notes = [] if isinstance(self.label_space, ImageNet1k) else [f"labels {self.label_space.describe()}"]
        return notes + [f"{key} {value}" for key, value in self.options.items() if key != "subset_policy"]

    def describe(self) -> str:
        return "; ".join([super().describe(), *self.notes()])

    def fingerprint(self) -> dict[str, Any]:
        """:meth:`ImageSource.fingerprint` plus the label policy, the kind's options and the excluded images."""
        return {**super().fingerprint(), "label_policy": self.label_space.policy, "options": dict(self.options),
                "excluded_images": sum(self.excluded.values())}


# -- the registry -----------------------------------------------------------------------------------
DATASETS: Registry[Callable[..., DatasetKind]] = Registry("dataset")

K = TypeVar("K", bound=type[DatasetKind])


def register_dataset(cls: K | None = None, *, override: bool = False) -> Any:
    """Class decorator registering a :class:`DatasetKind` subclass under its :attr:`~DatasetKind.kind`.

    Example:
        >>> from robustbench_ibn.datasets import DATASETS, DatasetKind, locate_wnid_folders
        >>> with DATASETS.snapshot():
        ...     @register_dataset
        ...     class MySet(DatasetKind):
        ...         kind, title, layout_help = "my-set", "My set", "wnid folders"
        ...         locate = classmethod(locate_wnid_folders)
        ...     "my-set" in list_datasets("my-*")
        True
    """

    def decorator(kind_cls: K) -> K:
        if not (isinstance(kind_cls, type) and issubclass(kind_cls, DatasetKind)):
            raise TypeError(f"Expected a DatasetKind subclass to register as a dataset kind, but got {kind_cls!r}.")
        if not (kind_cls.kind and kind_cls.title and kind_cls.layout_help):
            raise ValueError(f"Expected {kind_cls.__name__} to set kind, title and layout_help, but got "
                             f"{kind_cls.kind!r}, {kind_cls.title!r}, {kind_cls.layout_help!r}.")
        DATASETS.add(kind_cls.kind, kind_cls, override=override)
        return kind_cls

    return decorator(cls) if cls is not None else decorator


def list_datasets(include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
    """Registered dataset kinds, filtered by fnmatch patterns, naturally sorted.

    Example:
        >>> list_datasets("imagenet-[ra]")
        ['imagenet-a', 'imagenet-r']
    """
    return DATASETS.list(include, exclude)


def dataset_kind(kind: str) -> type[DatasetKind]:
    """The class of dataset kind ``kind``; an unknown kind raises ``KeyError`` with the closest names.

    Example:
        >>> dataset_kind("imagenet-v2").title
        'ImageNet-V2'
    """
    return DATASETS.get(kind)  # type: ignore[return-value]


def matching_kinds(root: str | os.PathLike[str]) -> list[str]:
    """The registered kinds whose own signature ``root`` has (index folders, a corruption tree, the R classes ...).

    A folder of plain wnid folders matches none: it fits every wnid kind equally.

    Example:
        >>> matching_kinds("/no/such/folder")
        []
    """
    return [k for k in list_datasets() if dataset_kind(k).distinctive(root)]


def _article(title: str) -> str:
    return "an" if title[:1] in "AEIOU" else "a"


def create_dataset(kind: str, root: str | os.PathLike[str], config: DataConfig = DataConfig(), *,
                   limit: int | None = None, **options: Any) -> DatasetKind:
    """Build the image source of dataset kind ``kind`` from ``root``, after checking the folder is of that kind.

    Args:
        kind: a registered kind (:func:`list_datasets`).
        root: the dataset's folder.
        config: the model's eval geometry.
        limit: a deterministic class-balanced subset of at most this many images.
        options: the kind's options (:attr:`DatasetKind.option_help`), e.g. ``subset_policy="full"``.

    Raises:
        KeyError: unknown kind.
        ValueError: an option the kind does not take.
        DataError: the folder is not of this kind (and which kind it looks like), or holds no images.

    Example:
        >>> create_dataset("imagenet-r", "/data/imagenet-r", subset_policy="full")  # doctest: +SKIP
        >>> create_dataset("imagenet-r", "/no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        robustbench_ibn.data.DataError: ImageNet-R folder /no/such/folder does not exist or is not a folder; ...
    """
    cls = dataset_kind(kind)
    unknown = sorted(set(options) - set(cls.option_help))
    if unknown:
        takes = ", ".join(f"{k} ({v})" for k, v in cls.option_help.items()) or "no options"
        raise ValueError(f"Expected options of dataset kind {kind!r}, but got {', '.join(unknown)}; it takes {takes}.")
    check_folder(kind, root)
    return cls(root, config, limit=limit, **options)


def check_folder(kind: str, root: str | os.PathLike[str]) -> None:
    """Check that ``root`` is a folder of dataset kind ``kind`` (folders only, no image is listed).

    Raises:
        KeyError: unknown kind.
        DataError: why it is not (:meth:`DatasetKind.recognize`), and which kind it looks like when it has another
            kind's signature.

    Example:
        >>> check_folder("imagenet-v2", "/no/such/folder")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        robustbench_ibn.data.DataError: ImageNet-V2 folder /no/such/folder does not exist or is not a folder; ...
    """
    cls = dataset_kind(kind)
    reason = cls.recognize(root)
    if reason is None:
        return
    path = absolute(root)
    others = [dataset_kind(k) for k in matching_kinds(path) if k != kind]
    if others:
        other = others[0]
        raise DataError(f"{path} looks like {_article(other.title)} {other.title} folder ({other.layout_help}), "
                        f"not {cls.title} ({cls.layout_help}); use --domain {other.kind}={path}. {reason}")
    raise DataError(reason)
