"""Natural-shift datasets as image sources: a registry of dataset kinds, each with its layout and label rule.

Kinds: ``folder``, ``imagenet-sketch``, ``stylized-imagenet``, ``imagenet-r``, ``imagenet-a``, ``imagenet-v2``,
``objectnet`` (:mod:`.kinds`) and ``imagenet-c`` (:mod:`.imagenet_c`); the label facts they use are package
data (:mod:`.facts`). Build one with :func:`create_dataset`, which checks the folder against the kind first; a
run's dataset domains (``KIND[:LABEL]=PATH``, what ``evaluate(..., domains=...)`` and ``robust-eval --domain`` take)
are :class:`DatasetDomain` objects, checked by :func:`check_domains` and opened by :func:`open_domains`
(:mod:`.domains`).

Example:
    >>> from robustbench_ibn.datasets import list_datasets
    >>> list_datasets("imagenet-*")
    ['imagenet-a', 'imagenet-c', 'imagenet-r', 'imagenet-sketch', 'imagenet-v2']
"""

from .base import (DATASETS, ENTRY_POINT_GROUP, DatasetKind, Located, check_folder, class_folders, create_dataset,
                   dataset_kind, list_datasets, locate_wnid_folders, matching_kinds, register_dataset)
from .domains import DatasetDomain, check_domains, open_domains, with_options
from .imagenet_c import IMAGE_SIZE, ImageNetC, imagenet_c_sources, imagenet_c_tree
from .kinds import (V2_VARIANTS, ImageFolderDomain, ImageNetA, ImageNetR, ImageNetSketch, ImageNetV2, ObjectNet,
                    StylizedImageNet, objectnet_label_space)

__all__ = [
    "DATASETS",
    "ENTRY_POINT_GROUP",
    "IMAGE_SIZE",
    "V2_VARIANTS",
    "DatasetDomain",
    "DatasetKind",
    "ImageFolderDomain",
    "ImageNetA",
    "ImageNetC",
    "ImageNetR",
    "ImageNetSketch",
    "ImageNetV2",
    "Located",
    "ObjectNet",
    "StylizedImageNet",
    "check_domains",
    "check_folder",
    "class_folders",
    "create_dataset",
    "dataset_kind",
    "imagenet_c_sources",
    "imagenet_c_tree",
    "list_datasets",
    "locate_wnid_folders",
    "matching_kinds",
    "objectnet_label_space",
    "open_domains",
    "register_dataset",
    "with_options",
]
