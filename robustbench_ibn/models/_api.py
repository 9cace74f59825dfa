"""The model registry, per-model metadata and the one front door, :func:`create_model`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data import DataConfig
from ..registry import Registry
from ._weights import WeightsSource, load_weights

__all__ = ["ModelInfo", "MODELS", "register_model", "create_model", "list_models", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered model and its published weights.

    Attributes:
        name: registered name (``resnet50_ibn_b``).
        data_config: eval geometry and normalization the weights were trained for.
        url: official weights URL, or ``None`` when none were published.
        hash_prefix: leading hex digits of the file's sha256 (torch.hub convention), checked on download.
        ref_top1_err / ref_top5_err: ImageNet-val error (%) reported by the weights' authors.
        ref_source: where the reference errors come from.
        num_params: parameter count of the architecture with 1000 classes.
        paper: citation of the architecture.
        license: licence of the code/weights.
        checkpoint_filter: maps a loaded state_dict to this model's keys (quirks live here, not in the loader).
    """

    name: str
    data_config: DataConfig = field(default_factory=DataConfig)
    url: str | None = None
    hash_prefix: str | None = None
    ref_top1_err: float | None = None
    ref_top5_err: float | None = None
    ref_source: str = ""
    num_params: int | None = None
    paper: str = ""
    license: str = ""
    checkpoint_filter: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None

    @property
    def has_weights(self) -> bool:
        return self.url is not None


MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_INFOS: dict[str, ModelInfo] = {}


def register_model(
    name: str | None = None, *, info: ModelInfo | None = None, override: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register an architecture builder ``fn(**kwargs) -> nn.Module`` (random init, no weights).

    The builder must return the bare network: official state_dict keys, normalized input.
    ``info`` carries its data config and published weights; without it the model has the default
    ImageNet data config and no official weights.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        MODELS.add(key, fn, override=override)
        _INFOS[key] = info if info is not None else ModelInfo(name=key)
        return fn

    return decorator


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model."""
    return _INFOS[MODELS.template_of(name)]


def list_models(include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
    """Registered model names, filtered by fnmatch patterns (``list_models("*ibn_b")``)."""
    return MODELS.list(include, exclude)


def create_model(name: str, weights: str = "official", *, seed: int = 0, **kwargs: Any) -> nn.Module:
    """Build a registered model and load its weights.

    Args:
        name: registered model name.
        weights: ``"official"`` (the published file, downloaded into the torch hub cache and
            hash-checked), a local path, an ``http(s)://`` URL, or ``"random"`` (explicit, seeded random
            init; every result made with it says so).
        seed: seed of the random init (the architecture is always built under it, so ``random``
            weights are reproducible).
        **kwargs: architecture arguments passed to the builder.

    Returns:
        The bare network in eval mode, expecting normalized input. It carries ``model_name``,
        ``data_config`` (:class:`~robustbench_ibn.data.DataConfig`) and ``weights_source``
        (:class:`WeightsSource`).
    """
    builder = MODELS.get(name)
    info = model_info(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(**kwargs)
    source: WeightsSource = load_weights(model, weights, info=info, seed=seed)
    model.model_name = name
    model.data_config = info.data_config
    model.weights_source = source
    return model.eval()
