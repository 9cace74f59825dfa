"""ImageNet-C: one image source per (corruption, severity), and the tree that holds them.

Layout: ``<root>/<corruption>/<severity>/<wnid>/<file>.JPEG`` (what the official test reads), or with the
family level of the public archives, ``<root>/<family>/<corruption>/...`` (``noise``, ``blur``, ``weather``,
``digital``, ``extra``). The files are 224 x 224, made by resize 256, centre crop 224, corruption, JPEG.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from .. import corruption as corruption_module  # a module import: it imports facts from this package
from ..data import DataConfig, DataError, _visible_dirs
from ..labels import ImageNet1k
from ..text import listing
from .base import DatasetKind, Located, absolute, locate_wnid_folders, register_dataset
from .facts import imagenet_c_facts

__all__ = ["IMAGE_SIZE", "ImageNetC", "imagenet_c_sources", "imagenet_c_tree"]

IMAGE_SIZE = 224  # every ImageNet-C file
_LAYOUT = "<corruption>/<severity>/<wnid>/ of 224-px images, optionally under <family>/"


def _tree_error(root: Path, problem: str) -> DataError:
    return DataError(f"{root}: {problem}. An ImageNet-C tree is {_LAYOUT}, with the 19 corruptions "
                     f"({', '.join(imagenet_c_facts().corruptions)}) and severities 1..5.")


def _corruption_folders(root: Path) -> dict[str, Path]:
    facts = imagenet_c_facts()
    dirs = _visible_dirs(root)
    if root.name in facts.corruptions and dirs and all(d.name.isdigit() for d in dirs):
        return {root.name: root}  # one corruption's folder
    found: dict[str, Path] = {}
    unknown: list[str] = []
    for d in dirs:
        if d.name in facts.corruptions:
            children = [d]
        elif d.name in set(facts.families.values()):
            children = _visible_dirs(d)
            unknown += [f"{d.name}/{c.name}" for c in children if c.name not in facts.corruptions]
        else:
            children = []
            unknown.append(d.name)
        for c in children:
            if c.name in facts.corruptions:
                if c.name in found:
                    raise _tree_error(root, f"corruption {c.name} is there twice ({found[c.name]} and {c})")
                found[c.name] = c
    if unknown:
        raise _tree_error(root, f"{listing(unknown, 5)} {'is' if len(unknown) == 1 else 'are'} neither ImageNet-C "
                                f"corruptions nor family folders ({', '.join(sorted(set(facts.families.values())))})")
    if not found:
        raise _tree_error(root, "no corruption folders: an empty domain")
    return {c: found[c] for c in facts.corruptions if c in found}  # canonical order


def _severity_folders(root: Path, corruptions: list[str] | None,
                      severities: list[int] | None) -> dict[str, dict[int, Path]]:
    """Corruption -> severity -> folder, names validated (what :func:`imagenet_c_tree` checks but consistency)."""
    facts = imagenet_c_facts()
    if not root.is_dir():
        raise DataError(f"ImageNet-C tree {root} does not exist or is not a folder.")
    found = _corruption_folders(root)
    if corruptions is not None:
        bad = [c for c in corruptions if c not in found]
        if bad:
            raise _tree_error(root, f"{listing(bad, 5)} requested but not in the tree (it holds "
                                    f"{listing([c for c in facts.corruptions if c in found], 19)})")
        found = {c: found[c] for c in corruptions}
    levels: dict[str, dict[int, Path]] = {}
    for name, folder in found.items():
        dirs = _visible_dirs(folder)
        bad = [d.name for d in dirs if d.name not in {str(s) for s in facts.severities}]
        if bad or not dirs:
            what = f"severity folders {listing(bad, 5)} are not 1..5" if bad else "no severity folders 1..5"
            raise _tree_error(root, f"{folder.relative_to(root) if folder != root else folder.name}: {what}")
        levels[name] = {int(d.name): d for d in dirs}
        if severities is not None:
            missing = [s for s in severities if s not in levels[name]]
            if missing:
                raise _tree_error(root, f"{name} has no severity {listing(missing)} (it has "
                                        f"{corruption_module.severity_span(levels[name])})")
            levels[name] = {s: levels[name][s] for s in severities}
    return levels


def imagenet_c_tree(root: str | os.PathLike[str], *, corruptions: list[str] | None = None,
                    severities: list[int] | None = None) -> dict[tuple[str, int], Path]:
    """The ``(corruption, severity) -> folder`` map of an ImageNet-C tree, in canonical order, names validated.

    A partial tree (some corruptions, or the same severities missing in all of them) is returned as it is;
    :func:`~robustbench_ibn.corruption.coverage` of its keys says what is missing
    (``coverage(tree).summary()``). ``root`` may also be one corruption's
    folder.

    Args:
        root: the tree.
        corruptions, severities: use only these (each must be present).

    Raises:
        DataError: an unknown corruption or family name, a severity folder not in 1..5, a corruption without
            severities, corruptions whose severities differ (a missing severity: CE would average other levels), or
            a requested corruption or severity that is not there.

    Example:
        >>> imagenet_c_tree("/no/such/tree")
        Traceback (most recent call last):
        ...
        robustbench_ibn.data.DataError: ImageNet-C tree /no/such/tree does not exist or is not a folder.
    """
    root = absolute(root)
    levels = _severity_folders(root, corruptions, severities)
    spans = {name: tuple(sorted(sev)) for name, sev in levels.items()}
    if len(set(spans.values())) > 1:
        everywhere = set.intersection(*(set(s) for s in spans.values()))
        detail = "; ".join(f"{name} {corruption_module.severity_span(s)}" for name, s in spans.items())
        choose = (f"complete the tree or choose severities={sorted(everywhere)}" if everywhere
                  else "complete the tree")
        raise _tree_error(root, f"severities differ between corruptions ({detail}): a missing severity would make CE "
                                f"average other levels for some corruptions; {choose}")
    return {(c, s): path for c, by_severity in levels.items() for s, path in sorted(by_severity.items())}


@register_dataset
class ImageNetC(DatasetKind):
    """One ImageNet-C set: the 50,000 val images under one corruption at one severity, labelled by wnid folder.

    Preprocessing is the official test's: no resize (the files are already 224 px), centre crop to the model's
    crop size. A model whose crop is smaller than 224 gets the centre of each file, as ``CenterCrop(crop)`` in
    the official test would give. A crop larger than 224 is refused (cropping would pad with black), unless
    ``upsample=True``: then each file's shorter side is resized to the crop first, which is not the official
    protocol, and the record says so (imagenet-testbed resizes 224 -> 256 -> 224 and gets +1.5 mCE for ResNet-50).

    Args:
        root: the tree (with ``corruption`` and ``severity``) or the folder ``<tree>/<corruption>/<severity>``.
        config: the model's eval geometry (only ``crop`` and, with ``upsample``, ``interpolation`` are used).
        corruption: one of the 19 names; severity: 1..5.
        upsample: resize the files to a crop larger than 224 (see above).
        limit: a class-balanced subset; every (corruption, severity) of a tree then picks the same file names.
    """

    kind = "imagenet-c"
    title = "ImageNet-C"
    layout_help = _LAYOUT
    option_help = {"corruption": "one of the 19 corruptions (with severity; default: from the folder path)",
                   "severity": "1..5",
                   "upsample": "resize the 224-px files to a larger model crop (not the official protocol)"}

    @classmethod
    def locate(cls, root: Path) -> Located:
        return locate_wnid_folders(cls, root)

    @classmethod
    def _leaf(cls, root: Path) -> tuple[str, int] | None:
        """(corruption, severity) when ``root`` is named ``.../<corruption>/<severity>``."""
        names = imagenet_c_facts()
        if root.parent.name in names.corruptions and root.name in {str(s) for s in names.severities}:
            return root.parent.name, int(root.name)
        return None

    @classmethod
    def recognize(cls, root: str | os.PathLike[str]) -> str | None:
        """None for an ImageNet-C tree and for one ``<corruption>/<severity>`` folder of it; else why not."""
        path = absolute(root)
        if cls._leaf(path) is not None:
            return super().recognize(path)
        try:
            _severity_folders(path, None, None)  # any tree with valid names; gaps are refused where they matter
        except DataError as err:
            return str(err)
        return None

    @classmethod
    def distinctive(cls, root: str | os.PathLike[str]) -> bool:
        return cls.recognize(root) is None

    def __init__(self, root: str | os.PathLike[str], config: DataConfig = DataConfig(), *,
                 corruption: str | None = None, severity: int | None = None, upsample: bool = False,
                 limit: int | None = None) -> None:
        path = absolute(root)
        if corruption is None and severity is None:
            leaf = self._leaf(path)
            if leaf is None:
                raise DataError(f"{path} is not a <corruption>/<severity> folder of ImageNet-C: pass corruption= and "
                                "severity= to read one set of a tree (imagenet_c_sources builds them all).")
            corruption, severity = leaf
        elif corruption is None or severity is None or isinstance(severity, bool) or not isinstance(severity, int):
            raise DataError(f"Expected both corruption and an int severity 1..5 for ImageNet-C, but got "
                            f"corruption={corruption!r}, severity={severity!r}.")
        else:
            path = imagenet_c_tree(path, corruptions=[corruption], severities=[severity])[corruption, severity]
        if config.crop > IMAGE_SIZE and not upsample:
            raise DataError(f"the model's crop is {config.crop} px but ImageNet-C's files are {IMAGE_SIZE} px and the "
                            f"official test does not resize them ({path}). Evaluate ImageNet-C with a model whose crop "
                            f"is at most {IMAGE_SIZE}, or pass upsample=True to resize the files to {config.crop} "
                            "(not the official protocol; recorded; robust-eval: --domain-option NAME:upsample=true, "
                            "NAME being the domain's label or imagenet-c).")
        self._build(path, config, limit, ImageNet1k(),
                    {"corruption": corruption, "severity": severity, "upsample": bool(upsample)})
        self.title = f"ImageNet-C {corruption} {severity}"
        size = config.crop
        steps = [T.Resize(size, interpolation=InterpolationMode(config.interpolation.lower()))] if upsample else []
        self.transform = T.Compose([*steps, T.CenterCrop(size), T.PILToTensor()])

    def load(self, i: int) -> Image.Image:
        """Decode file ``i``; a file smaller than the crop (not an ImageNet-C file) raises :class:`DataError`."""
        image = super().load(i)
        if min(image.size) < self.config.crop and not self.options["upsample"]:
            raise DataError(f"{self.root / self.samples[i][0]} is {image.size[0]}x{image.size[1]}, smaller than the "
                            f"crop {self.config.crop}: ImageNet-C files are {IMAGE_SIZE}x{IMAGE_SIZE} and are not "
                            "resized. Replace the file with the one from the ImageNet-C archive.")
        return image

    def describe_preprocessing(self) -> str:
        if self.options["upsample"]:
            return (f"resize {self.config.crop} {self.config.interpolation} + centre crop {self.config.crop} "
                    "(upsampled: NOT the official ImageNet-C protocol)")
        return f"no resize ({IMAGE_SIZE}-px files, the official ImageNet-C test) + centre crop {self.config.crop}"

    def notes(self) -> list[str]:
        return [f"corruption {self.options['corruption']}, severity {self.options['severity']}"]


def imagenet_c_sources(root: str | os.PathLike[str], config: DataConfig = DataConfig(), *,
                       corruptions: list[str] | None = None, severities: list[int] | None = None,
                       upsample: bool = False, limit: int | None = None) -> dict[tuple[str, int], ImageNetC]:
    """One :class:`ImageNetC` per ``(corruption, severity)`` of the tree at ``root`` (95 for a full tree).

    Example:
        >>> imagenet_c_sources("/no/such/tree")
        Traceback (most recent call last):
        ...
        robustbench_ibn.data.DataError: ImageNet-C tree /no/such/tree does not exist or is not a folder.
    """
    tree = imagenet_c_tree(root, corruptions=corruptions, severities=severities)
    return {key: ImageNetC(path, config, upsample=upsample, limit=limit) for key, path in tree.items()}
