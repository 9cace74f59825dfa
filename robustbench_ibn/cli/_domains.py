"""robust-eval's natural-shift flags: ``--domain``, ``--domain-option``, ``--subset-policy``, ``--list-datasets``."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import parse_kwargs

__all__ = ["add_domain_arguments", "domain_option", "domain_specs", "print_datasets"]


def domain_option(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:K=V[,K=V]`` -> (domain name, options); values as :func:`parse_kwargs` reads them.

    Example:
        >>> domain_option("imagenet-c:upsample=true")
        ('imagenet-c', {'upsample': 'true'})
    """
    name, sep, rest = text.partition(":")
    if not sep or not name.strip() or "=" not in rest:
        raise argparse.ArgumentTypeError(f"Expected NAME:KEY=VALUE[,KEY=VALUE] (NAME: the domain's label, or its kind "
                                         f"when it has none; e.g. imagenet-c:upsample=true), but got {text!r}.")
    return name.strip(), parse_kwargs(rest)


def add_domain_arguments(parser: argparse.ArgumentParser) -> None:
    """The natural-shift dataset flags of robust-eval."""
    parser.add_argument("--domain", action="append", default=[], metavar="KIND[:LABEL]=PATH",
                        help="a natural-shift dataset as a domain (repeatable), e.g. imagenet-r=/data/imagenet-r or "
                        "imagenet-v2:v2-top=/data/imagenetv2-top-images (a LABEL names the domain; needed for two of "
                        "one kind); the folder is checked against the kind; an imagenet-c tree gives one domain per "
                        "corruption and severity and an mCE row. Its drop is against clean val (--data), in its label "
                        "space: ImageNet-R, -A and ObjectNet against the val images of their classes. Kinds: "
                        "--list-datasets; see docs/natural-shifts.md (default: none)")
    parser.add_argument("--domain-option", type=domain_option, action="append", default=[],
                        metavar="NAME:K=V[,K=V]", help="options of one domain (repeatable), e.g. "
                        "imagenet-c:upsample=true or imagenet-v2:variant=top-images; NAME is its label, or its kind (default: none)")
    parser.add_argument("--subset-policy", default=None, choices=("subset", "full"),
                        help="ImageNet-R, -A and ObjectNet: 'subset' (default, their official rule: the prediction "
                        "over the set's classes) or 'full' (the 1000-way prediction); recorded")
    parser.add_argument("--list-datasets", nargs="?", const="*", default=None, metavar="PATTERN",
                        help="list the dataset kinds matching PATTERN (fnmatch; default: all) with their layout, labels "
                        "and options, and exit")


def domain_specs(args: argparse.Namespace) -> list[Any]:
    """The :class:`~robustbench_ibn.datasets.DatasetDomain` list of the parsed flags (options merged, not checked)."""
    from ..datasets.domains import with_options

    options: dict[str, dict[str, Any]] = {}
    for name, values in args.domain_option:
        for key, value in values.items():
            if key in options.setdefault(name, {}):
                raise ValueError(f"Expected --domain-option {name}:{key}=... once, but it is given twice.")
            options[name][key] = value
    return with_options(args.domain, options, subset_policy=args.subset_policy)


def print_datasets(pattern: str) -> None:
    """``--list-datasets``: each kind's name, title, layout and options (plug-ins marked)."""
    from ..datasets import DATASETS, dataset_kind, list_datasets
    from ..datasets.domains import describe_options

    rows = []
    for kind in list_datasets(pattern):
        cls = dataset_kind(kind)
        origin = DATASETS.meta(kind).get("origin", "")
        plugin = f"  [{origin}]" if origin and not origin.startswith("robustbench_ibn") else ""
        rows.append((kind, cls.title, f"layout: {cls.layout_help}", f"options: {describe_options(kind)}{plugin}"))
    width = max([len(r[0]) for r in rows] + [4])
    for kind, title, layout, options in rows:
        print(f"{kind:{width}s}  {title}\n{'':{width}s}  {layout}\n{'':{width}s}  {options}")
