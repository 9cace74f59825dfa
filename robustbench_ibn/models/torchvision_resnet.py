"""Plain ResNet baselines built by torchvision itself, so torchvision's published weights load with strict keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torchvision
from torch import nn
from torchvision.transforms import InterpolationMode

from ..data import DataConfig
from ._api import ModelInfo, register_model

__all__: list[str] = []

_PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
_WEIGHTS_TAG = "IMAGENET1K_V1"


def _hash_prefix(url: str) -> str:
    """The hex hash in a torch.hub file name (``.../resnet50-0676ba61.pth`` -> ``"0676ba61"``)."""
    match = re.search(r"-([0-9a-f]{8,})\.pth$", url)
    if match is None:
        raise ValueError(f"Expected a torch.hub file name '<name>-<hex hash>.pth' ending the URL, but got {url!r}.")
    return match.group(1)


def _data_config(weights: torchvision.models.WeightsEnum) -> DataConfig:
    """Eval geometry of the weights' own preset (V1: resize 256, crop 224, bilinear); ImageNet mean/std."""
    preset = weights.transforms()
    interpolation = preset.interpolation
    if isinstance(interpolation, InterpolationMode):
        interpolation = interpolation.value
    return DataConfig(
        resize=int(preset.resize_size[0]),
        crop=int(preset.crop_size[0]),
        interpolation=str(interpolation),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
    )


def _info(name: str, weights: torchvision.models.WeightsEnum) -> ModelInfo:
    meta = weights.meta
    metrics = meta["_metrics"]["ImageNet-1K"]
    return ModelInfo(
        name=name,
        data_config=_data_config(weights),
        url=weights.url,
        hash_prefix=_hash_prefix(weights.url),
        ref_top1_err=round(100.0 - metrics["acc@1"], 2),
        ref_top5_err=round(100.0 - metrics["acc@5"], 2),
        ref_source=f"torchvision {_WEIGHTS_TAG}",
        num_params=meta["num_params"],
        paper=_PAPER,
        license="BSD-3-Clause (torchvision)",
    )


def _register(name: str) -> None:
    tv_builder: Callable[..., nn.Module] = getattr(torchvision.models, name)
    weights = getattr(torchvision.models, f"ResNet{name.removeprefix('resnet')}_Weights")[_WEIGHTS_TAG]

    def builder(**kwargs: Any) -> torchvision.models.ResNet:  # the class create_model checks kwargs against
        # weights=None: the architecture only; weights are loaded (and hash-checked) by the weights module.
        return tv_builder(weights=None, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"torchvision {name} (random init; official weights: {weights.url})."
    register_model(name, info=_info(name, weights))(builder)


for _name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
    _register(_name)
