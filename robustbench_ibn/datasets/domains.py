"""Dataset domains of a run: ``KIND[:LABEL]=PATH`` specs, checked before any work, opened with the model's geometry.

A :class:`DatasetDomain` names a registered dataset kind, its folder, an optional label (the domain's name, needed
to tell two sets of one kind apart) and the kind's options. :func:`check_domains` parses and checks a list of them
(known kinds and options, each folder of its kind, unique names, no folder twice) before the model is built;
:func:`open_domains` then builds their image sources in the model's geometry. An ImageNet-C tree becomes one
source per (corruption, severity), named ``<name>/<corruption>/<severity>`` (``imagenet-c/fog/3``).

This is what ``evaluate(..., domains=[...])`` and ``robust-eval --domain`` use.

Example:
    >>> DatasetDomain.parse("imagenet-v2:v2-top=/data/imagenetv2-top-images")
    DatasetDomain(kind='imagenet-v2', path='/data/imagenetv2-top-images', label='v2-top', options={})
    >>> DatasetDomain.parse("imagenet-r=/data/imagenet-r").name
    'imagenet-r'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from ..data import DataConfig, DataError, ImageSource, val_folder
from ..labels import POLICIES
from ..results import BASELINE_DOMAIN, BASELINE_SOURCE
from .base import absolute, check_folder, create_dataset, dataset_kind
from .imagenet_c import ImageNetC, imagenet_c_sources
from .kinds import V2_VARIANTS

__all__ = ["IMAGENET_C_TREE_OPTIONS", "SUBSET_POLICY", "DatasetDomain", "Opened", "check_domains", "describe_options",
           "kinds_taking", "open_domains", "read_folder", "with_options"]

SUBSET_POLICY = "subset_policy"
# Options of a whole ImageNet-C tree (one <corruption>/<severity> folder takes the kind's own options).
IMAGENET_C_TREE_OPTIONS = {
    "upsample": "true | false: resize the 224-px files to a model crop larger than 224 (not the official protocol)",
    "corruptions": "only these corruptions of the tree, e.g. [fog,snow] (default: all present)",
    "severities": "only these severities, e.g. [1,2] (default: all present)",
}
# A label is a domain name: it keys records, run states and report rows, so it stays shell- and file-safe
# ("/" is reserved for the ImageNet-C sets of a tree).
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SPEC = re.compile(r"(?P<kind>[^:=]+)(?::(?P<label>[^=]*))?=(?P<path>.*)", re.DOTALL)
_RESERVED = (BASELINE_DOMAIN, BASELINE_SOURCE)


@dataclass(frozen=True)
class DatasetDomain:
    """One natural-shift dataset in a run: ``kind`` at ``path``, named ``label`` (default: the kind), ``options``.

    Attributes:
        kind: a registered dataset kind (:func:`~robustbench_ibn.datasets.list_datasets`).
        path: the dataset's folder (an ImageNet-C tree, or one of its ``<corruption>/<severity>`` folders).
        label: the domain's name in the record and the reports; required to give two sets of one kind.
        options: the kind's options (``{"subset_policy": "full"}``, ``{"variant": "top-images"}``,
            ``{"upsample": True}`` for an ImageNet-C tree).
    """

    kind: str
    path: str
    label: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The domain's name: its label, else its kind."""
        return self.label or self.kind

    @classmethod
    def parse(cls, text: str) -> DatasetDomain:
        """``KIND=PATH`` or ``KIND:LABEL=PATH`` (what ``--domain`` takes); the kind is checked to be registered.

        Raises:
            ValueError: not of that form, or a label that is not a plain name.
            KeyError: an unknown kind (with the closest registered names).
        """
        match = _SPEC.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None or not match["path"].strip() or not match["kind"].strip():
            raise ValueError(f"Expected a domain as KIND=PATH or KIND:LABEL=PATH (e.g. imagenet-r=/data/imagenet-r), "
                             f"but got {text!r}. The kinds: robust-eval --list-datasets.")
        label = match["label"]
        domain = cls(match["kind"].strip(), match["path"].strip(), None if label is None else label.strip())
        domain.check_name()
        dataset_kind(domain.kind)  # KeyError with the closest kinds
        return domain

    def check_name(self) -> None:
        """Raise ``ValueError`` when the label is not a plain name, or is one the run reserves."""
        if self.label is not None and not _LABEL.fullmatch(self.label):
            raise ValueError(f"Expected the label of domain {self.kind}:{self.label}={self.path} to be a name of "
                             f"letters, digits and . _ + - (it names the domain in records and reports), but got "
                             f"{self.label!r}.")
        if self.name in _RESERVED:
            raise ValueError(f"Expected a domain name other than {' and '.join(map(repr, _RESERVED))} (ImageNet val's "
                             f"baseline), but domain {self.kind}={self.path} is named {self.name!r}; give it another "
                             "label (KIND:LABEL=PATH).")

    @property
    def is_imagenet_c_tree(self) -> bool:
        """An ImageNet-C domain given as a tree (not one ``<corruption>/<severity>`` folder)."""
        return self.kind == ImageNetC.kind and ImageNetC._leaf(absolute(self.path)) is None

    def option_help(self) -> dict[str, str]:
        """The options this domain takes (one ImageNet-C set's folder names its corruption and severity: upsample)."""
        if self.kind == ImageNetC.kind:
            return dict(IMAGENET_C_TREE_OPTIONS) if self.is_imagenet_c_tree else {"upsample": IMAGENET_C_TREE_OPTIONS[
                "upsample"]}
        return dict(dataset_kind(self.kind).option_help)


def kinds_taking(option: str) -> list[str]:
    """The registered dataset kinds that take ``option``.

    Example:
        >>> kinds_taking("subset_policy")
        ['imagenet-a', 'imagenet-r', 'objectnet']
    """
    from .base import list_datasets

    return [k for k in list_datasets() if option in dataset_kind(k).option_help]


def with_options(domains: Sequence[str | DatasetDomain], options: Mapping[str, Mapping[str, Any]] | None = None, *,
                 subset_policy: str | None = None) -> list[DatasetDomain]:
    """``domains`` (parsed) with more options: ``options`` by domain name (``--domain-option NAME:K=V``), and
    ``subset_policy`` for every domain whose kind takes one (``--subset-policy``: ImageNet-R, -A, ObjectNet).

    Raises:
        ValueError: options for a name that is not a domain, an option given twice with two values, or
            ``subset_policy`` without a domain that takes it.

    Example:
        >>> [d.options for d in with_options(["imagenet-r=/r", "imagenet-v2=/v2"], subset_policy="full")]
        [{'subset_policy': 'full'}, {}]
    """
    parsed = [d if isinstance(d, DatasetDomain) else DatasetDomain.parse(d) for d in domains]
    names = [d.name for d in parsed]
    unknown = sorted(set(options or {}) - set(names))
    if unknown:
        raise ValueError(f"Expected --domain-option for one of the domains ({', '.join(names) or 'none given'}), but "
                         f"got {', '.join(unknown)}. Name a domain by its label, or by its kind when it has none.")
    takers = kinds_taking(SUBSET_POLICY)
    if subset_policy is not None and not any(d.kind in takers for d in parsed):
        raise ValueError(f"Expected a domain of a kind with a subset policy ({', '.join(takers)}) for "
                         f"--subset-policy {subset_policy}, but got {', '.join(names) or 'no domain'}.")
    out = []
    for d in parsed:
        merged = dict(d.options)
        extra = dict((options or {}).get(d.name, {}))
        if subset_policy is not None and d.kind in takers:
            extra = {SUBSET_POLICY: subset_policy, **extra} if SUBSET_POLICY not in extra else extra
            if extra[SUBSET_POLICY] != subset_policy:
                raise ValueError(f"Expected one subset policy for domain {d.name}, but --subset-policy says "
                                 f"{subset_policy} and its option says {extra[SUBSET_POLICY]}.")
        for key, value in extra.items():
            if key in merged and merged[key] != value:
                raise ValueError(f"Expected option {key} of domain {d.name} once, but got {merged[key]!r} and "
                                 f"{value!r}.")
            merged[key] = value
        out.append(replace(d, options=merged))
    return out


def read_folder(domain: DatasetDomain) -> Path:
    """The folder ``domain``'s kind reads its images from (absolute, links kept): its path, or the release's container
    inside it (``X/sketch`` for ``imagenet-sketch=X``, ``ROOT/val`` for ``stylized-imagenet=ROOT``); the path itself
    when it is not a folder of that kind (:func:`check_domains` then says why).

    Example:
        >>> str(read_folder(DatasetDomain("imagenet-sketch", "/no/such/folder")))
        '/no/such/folder'
    """
    path = absolute(domain.path)
    try:
        return dataset_kind(domain.kind).locate(path).root
    except DataError:
        return path


def _real(folder: Path) -> str:
    return os.path.realpath(folder).rstrip(os.sep) + os.sep


def _overlap(a: Path, b: Path) -> bool:
    """One folder is the other or holds it, once links are resolved: the same images would be read twice."""
    return _real(a).startswith(_real(b)) or _real(b).startswith(_real(a))


def _overlap_error(a: DatasetDomain, folder_a: Path, b: DatasetDomain, folder_b: Path) -> ValueError:
    """Domains ``a`` and ``b`` read one folder, or one reads a folder inside the other's."""
    how = "".join(f"; {d.kind}={d.path} reads {f}" for d, f in ((a, folder_a), (b, folder_b))
                  if f != absolute(d.path))
    if _real(folder_a) == _real(folder_b):
        what = f"{folder_b} is given twice (as {a.name} and {b.name}{how})"
    else:
        (outer, o), (inner, i) = sorted([(folder_a, a.name), (folder_b, b.name)], key=lambda t: len(_real(t[0])))
        what = f"{inner} (domain {i}) lies inside {outer} (domain {o}{how})"
    return ValueError(f"Expected each dataset folder once, but {what}: the same images would be scored as two "
                      "datasets. Remove one --domain.")


def check_domains(domains: Sequence[str | DatasetDomain], *,
                  baseline: str | os.PathLike[str] | ImageSource | None = None) -> list[DatasetDomain]:
    """Parse and check dataset domains before any work: kinds, options, names, and each folder against its kind.

    Folders are listed, not their images (that happens in :func:`open_domains`), so this is quick.

    Args:
        domains: ``KIND[:LABEL]=PATH`` strings or :class:`DatasetDomain` objects.
        baseline: ImageNet val's folder (or source), which no domain may repeat.

    Raises:
        KeyError: an unknown kind.
        ValueError: an option the kind does not take; two domains of one kind without labels; one name twice;
            one folder twice, or one inside another (or ImageNet val's folder as a domain), compared as the folders
            the kinds read (``imagenet-sketch=X`` reads ``X/sketch``) with links resolved.
        DataError: a folder that is not of its kind (naming the kind it looks like), or an empty one.

    Example:
        >>> check_domains(["imagenet-r=/a", "imagenet-r=/b"])
        Traceback (most recent call last):
        ...
        ValueError: Expected a label for each of the 2 imagenet-r domains (KIND:LABEL=PATH, e.g. imagenet-r:one=/a), but got /a and /b without one.
    """
    parsed = [d if isinstance(d, DatasetDomain) else DatasetDomain.parse(d) for d in domains]
    by_kind: dict[str, list[DatasetDomain]] = {}
    for d in parsed:
        d.check_name()
        dataset_kind(d.kind)
        by_kind.setdefault(d.kind, []).append(d)
    for kind, members in by_kind.items():
        bare = [d for d in members if d.label is None]
        if len(members) > 1 and bare:
            paths = " and ".join(d.path for d in bare)
            raise ValueError(f"Expected a label for each of the {len(members)} {kind} domains (KIND:LABEL=PATH, e.g. "
                             f"{kind}:one={members[0].path}), but got {paths} without one.")
    seen: dict[str, DatasetDomain] = {}
    for d in parsed:
        if d.name in seen:
            raise ValueError(f"Expected unique domain names, but {d.name!r} names both {seen[d.name].kind}="
                             f"{seen[d.name].path} and {d.kind}={d.path}; give them different labels.")
        seen[d.name] = d
    # The folders the kinds read, not the paths as typed: ROOT (Stylized-ImageNet's val/ inside it) and ROOT/val
    # are one folder, and an ImageNet-C tree holds each of its <corruption>/<severity> folders.
    folders = [read_folder(d) for d in parsed]
    for i, (d, folder) in enumerate(zip(parsed, folders)):
        twice = next((j for j in range(i) if _overlap(folders[j], folder)), None)
        if twice is not None:
            raise _overlap_error(parsed[twice], folders[twice], d, folder)
    if baseline is not None:
        val = baseline.root if isinstance(baseline, ImageSource) else val_folder(baseline)
        for d, folder in zip(parsed, folders):
            if _overlap(val, folder):
                how = f" ({d.kind}={d.path} reads {folder})" if folder != absolute(d.path) else ""
                where = "is that folder" if _real(val) == _real(folder) else "overlaps it"
                raise ValueError(f"Expected a domain folder other than ImageNet val's ({val}), but domain {d.name} "
                                 f"{where}{how}: val's images would be scored as another dataset, and clean val is "
                                 "the baseline of every run already. Remove that --domain.")
    checked = []
    for d in parsed:
        takes = d.option_help()
        unknown = sorted(set(d.options) - set(takes))
        if unknown:
            listed = ", ".join(f"{k} ({v})" for k, v in takes.items()) or "no options"
            raise ValueError(f"Expected options of domain {d.name} ({d.kind}), but got {', '.join(unknown)}; it takes "
                             f"{listed}.")
        check_folder(d.kind, d.path)
        checked.append(replace(d, options=_typed(d)))
    return checked


def _typed(d: DatasetDomain) -> dict[str, Any]:
    """The options as the kinds take them: ``upsample`` a bool (``bool("false")`` would be True), an ImageNet-C
    tree's ``corruptions``/``severities`` lists."""
    options = dict(d.options)
    if "upsample" in options:
        options["upsample"] = _flag(options["upsample"], f"option upsample of domain {d.name}")
    if "corruptions" in options:
        options["corruptions"] = _names(options["corruptions"], str, f"option corruptions of domain {d.name}")
    if "severities" in options:
        options["severities"] = _names(options["severities"], int, f"option severities of domain {d.name}")
    for key, allowed in ((SUBSET_POLICY, POLICIES), ("variant", tuple(V2_VARIANTS))):
        if key in options and options[key] not in allowed:
            raise ValueError(f"Expected option {key} of domain {d.name} to be one of {', '.join(allowed)}, but got "
                             f"{options[key]!r}.")
    return options


def _flag(value: Any, what: str) -> bool:
    """``True``/``False`` or their spellings on a command line; anything else raises (``bool("false")`` is True)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"Expected {what} to be true or false, but got {value!r}.")


def _names(value: Any, kind: type, what: str) -> list[Any]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, kind) and not isinstance(v, bool) for v in items):
        raise ValueError(f"Expected {what} to be a {kind.__name__} or a list of them, but got {value!r}.")
    return items


class Opened(NamedTuple):
    """One image source of a dataset domain: its key (the domain's name), display label and source."""

    key: str
    label: str
    source: ImageSource


def open_domains(domains: Sequence[DatasetDomain], config: DataConfig, *, limit: int | None = None) -> list[Opened]:
    """The image sources of checked ``domains`` (:func:`check_domains`) in the model's geometry ``config``.

    Each domain is one source named by the domain (its label or kind) and shown by its label or its dataset's title
    (``ImageNet-V2 matched-frequency``); an ImageNet-C tree is one source per (corruption, severity), named
    ``<name>/<corruption>/<severity>`` and shown as ``ImageNet-C fog 3`` (``<label> fog 3`` with a label).

    Raises:
        DataError: no images, or (ImageNet-C) a model crop above 224 without ``upsample``.
    """
    opened: list[Opened] = []
    for d in domains:
        options = _typed(d)
        if d.is_imagenet_c_tree:
            sources = imagenet_c_sources(d.path, config, limit=limit, **options)
            for (corruption, severity), source in sources.items():
                label = f"{d.label} {corruption} {severity}" if d.label else source.title
                opened.append(Opened(f"{d.name}/{corruption}/{severity}", label, source))
        else:
            source = create_dataset(d.kind, d.path, config, limit=limit, **options)
            opened.append(Opened(d.name, d.label or source.title, source))
    return opened


def describe_options(kind: str) -> str:
    """The options of a kind as ``--list-datasets`` shows them (an ImageNet-C tree's too)."""
    takes = dict(IMAGENET_C_TREE_OPTIONS) if kind == ImageNetC.kind else dict(dataset_kind(kind).option_help)
    return "; ".join(f"{k}: {v}" for k, v in takes.items()) or "-"

