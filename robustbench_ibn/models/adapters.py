"""Backbones the user brings: torchvision classifiers, timm models and torch.hub entries, by name.

:func:`~robustbench_ibn.models.create_model` (and ``robust-eval --model``) resolves these names:

- ``tv:NAME``, or a plain torchvision classification model name that is not registered here
  (``efficientnet_b0``; ``resnet50`` is the registered baseline): torchvision's architecture, its data config
  from the ``DEFAULT`` weights' ``transforms()`` (resize, crop, interpolation, mean, std). ``--weights official``
  loads those weights through torchvision's own loader after our hash-checked download into the torch hub cache.
- ``timm:NAME`` (``timm:resnet50.a1_in1k``) when timm is installed: the data config comes from timm's pretrained
  config resolved as timm's own validation does (test size when given; resize = floor(crop / crop_pct));
  ``--weights official`` is ``timm.create_model(NAME, pretrained=True)``.
- ``hub:OWNER/REPO[:REF]:ENTRY`` or ``hub:/local/dir:ENTRY``: ``torch.hub.load`` of the entry with the model
  kwargs. Naming the repo is trusting it (its hubconf.py runs, ``trust_repo=True``). ``--weights official`` keeps
  what the entry returns (pass e.g. ``pretrained=True`` in the model kwargs); ``random`` re-initialises every
  module under the seed so no pretrained weight survives. The data config is the default ImageNet one.

Any other ``nn.Module``: register a builder with :func:`~robustbench_ibn.models.register_model` and a
``ModelInfo(data_config=...)``, or pass the module to ``evaluate(module, data, data_config=DataConfig(...))``.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import typing
import urllib.error
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from ..data import DataConfig
from ._api import ModelInfo, register_resolver
from ..hub import fetch, hash_prefix_from_name
from ._weights import WeightsSource
from .torchvision_resnet import _data_config as _tv_data_config

__all__ = ["data_config_from_timm", "describe_adapters", "torchvision_models"]

Resolved = tuple[Callable[..., nn.Module], ModelInfo]
_GITHUB_REPO = re.compile(r"[\w.-]+/[\w.-]+(?::[\w./-]+)?")


def _unknown(kind: str, name: str, known: list[str], listing: str) -> KeyError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(f"Unknown {kind} model {name!r}.{hint} {listing} lists them.")


# --- torchvision -----------------------------------------------------------------------------------------------


@functools.cache
def torchvision_models() -> tuple[str, ...]:
    """torchvision's ImageNet classification models (no detection, segmentation, video or quantized ones)."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.cache  # one ModelInfo per name, however often it is looked up
def _torchvision(name: str) -> Resolved:
    if name not in torchvision_models():
        raise _unknown("torchvision", name, list(torchvision_models()),
                       "torchvision.models.list_models(module=torchvision.models)")
    tv_builder = torchvision.models.get_model_builder(name)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    hash_prefix = hash_prefix_from_name(weights.url)

    def builder(**kwargs: Any) -> nn.Module:
        return tv_builder(weights=None, **kwargs)

    # torchvision's builders name the class they build: create_model checks the model kwargs against it.
    builder.__annotations__["return"] = typing.get_type_hints(tv_builder).get("return", nn.Module)

    def load_official(**kwargs: Any) -> tuple[nn.Module, WeightsSource]:
        # Our download first (hash-checked, clear offline message), into the torch hub cache where torchvision's
        # loader then finds it: torchvision's own loader applies its per-model key fixes (e.g. old DenseNet files).
        _, digest = fetch(weights.url, hash_prefix)
        return tv_builder(weights=weights, **kwargs), WeightsSource(kind="official", location=weights.url,
                                                                    sha256=digest)

    meta = weights.meta
    metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
    info = ModelInfo(
        name=f"tv:{name}",
        data_config=_tv_data_config(weights),
        url=weights.url,
        hash_prefix=hash_prefix,
        ref_top1_err=round(100.0 - metrics["acc@1"], 2) if "acc@1" in metrics else None,
        ref_top5_err=round(100.0 - metrics["acc@5"], 2) if "acc@5" in metrics else None,
        ref_source=f"torchvision {weights} (recipe {meta.get('recipe', '-')})",
        num_params=meta.get("num_params"),
        paper=f"see the torchvision.models.{name} documentation",
        license="BSD-3-Clause (torchvision code); weights: see the torchvision documentation",
        tags=("torchvision",),
        load_official=load_official,
    )
    return builder, info


def _torchvision_fallback(name: str) -> Resolved | None:
    return _torchvision(name) if name in torchvision_models() else None


# --- timm ------------------------------------------------------------------------------------------------------


def data_config_from_timm(config: Mapping[str, Any]) -> DataConfig:
    """A :class:`DataConfig` from a timm data config (``timm.data.resolve_data_config`` output).

    timm's eval transform resizes the shorter side to ``floor(crop / crop_pct)`` and centre-crops ``crop``; only
    that ``crop_mode="center"`` pipeline is the benchmark's geometry, so other modes are refused, not approximated.
    """
    size = tuple(config.get("input_size", (3, 224, 224)))[-2:]
    if len(size) != 2 or size[0] != size[1]:
        raise ValueError(f"Expected a square timm input_size, but got {config.get('input_size')!r}; give an explicit "
                         "DataConfig through the Python API (evaluate(module, data, data_config=...)).")
    crop_mode = config.get("crop_mode") or "center"
    if crop_mode != "center":
        raise ValueError(f"Expected timm crop_mode 'center' (resize shorter side + centre crop), but got "
                         f"{crop_mode!r}; give an explicit DataConfig through the Python API.")
    crop = int(size[0])
    crop_pct = float(config.get("crop_pct") or 0.875)
    return DataConfig(
        resize=math.floor(crop / crop_pct),
        crop=crop,
        interpolation=str(config.get("interpolation") or "bicubic"),
        mean=tuple(float(v) for v in config.get("mean", DataConfig.mean)),
        std=tuple(float(v) for v in config.get("std", DataConfig.std)),
    )


@functools.cache  # one ModelInfo per name, however often it is looked up
def _timm(name: str) -> Resolved:
    try:
        import timm
        import timm.data
    except ImportError as e:
        raise ValueError(f"timm:{name} needs timm, which is not installed here; pip install timm, or use a "
                         "torchvision model (tv:NAME).") from e
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models(), "timm.list_models()")
    pretrained = timm.models.get_pretrained_cfg(name)
    cfg: dict[str, Any] = pretrained.to_dict() if hasattr(pretrained, "to_dict") else dict(pretrained or {})
    # As timm's validate.py: the test-time size and crop when the weights define them.
    data = timm.data.resolve_data_config(pretrained_cfg=cfg, use_test_size=True)
    where = cfg.get("hf_hub_id") or cfg.get("url") or "timm"

    def builder(**kwargs: Any) -> nn.Module:
        return timm.create_model(name, pretrained=False, **kwargs)

    def load_official(**kwargs: Any) -> tuple[nn.Module, WeightsSource]:
        return timm.create_model(name, pretrained=True, **kwargs), WeightsSource(kind="official",
                                                                                 location=f"timm {name} ({where})")

    info = ModelInfo(
        name=f"timm:{name}",
        data_config=data_config_from_timm(data),
        ref_source=f"timm pretrained config of {name}",
        paper=str(cfg.get("paper_name") or cfg.get("paper_ids") or ""),
        license=str(cfg.get("license") or ""),
        tags=("timm",),
        load_official=load_official,
    )
    return builder, info


# --- torch.hub -------------------------------------------------------------------------------------------------


def _hub(spec: str) -> Resolved:
    repo, sep, entry = spec.rpartition(":")
    if not sep or not repo or not entry:
        raise KeyError(f"Expected hub:OWNER/REPO[:REF]:ENTRY or hub:/local/dir:ENTRY, but got 'hub:{spec}'.")
    local = Path(repo).expanduser()
    source = "local" if local.is_dir() else "github"
    if source == "github" and (repo.startswith((".", "/", "~")) or not _GITHUB_REPO.fullmatch(repo)):
        raise KeyError(f"hub:{spec}: {repo!r} is neither a local directory (with a hubconf.py) nor a GitHub "
                       "OWNER/REPO[:REF].")
    repo_or_dir = str(local) if source == "local" else repo

    def load(**kwargs: Any) -> nn.Module:
        try:
            model = torch.hub.load(repo_or_dir, entry, source=source, trust_repo=True, verbose=False, **kwargs)
        except (urllib.error.URLError, RuntimeError) as err:
            if source == "local" or not _unreachable(err):
                raise
            github = repo.split(":")[0]
            raise RuntimeError(
                f"hub:{spec}: cannot fetch {repo} from GitHub ({err}). torch.hub needs the network the first time "
                f"it loads a repository, then keeps it in {torch.hub.get_dir()}. Check the spelling of OWNER/REPO; "
                f"on a machine with a network, load it once to fill that cache, or clone it "
                f"(git clone https://github.com/{github}) and use hub:/path/to/{github.split('/')[-1]}:{entry}."
            ) from err
        if not isinstance(model, nn.Module):
            raise ValueError(f"Expected hub entry {entry!r} of {repo_or_dir} to return an nn.Module, but got "
                             f"{type(model).__name__}.")
        return model

    def builder(**kwargs: Any) -> nn.Module:
        # Random init (or the base a checkpoint is loaded into): re-initialise everything under the caller's seed,
        # so weights the entry may have loaded by default never pass as "random".
        model = load(**kwargs)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        return model

    def load_official(**kwargs: Any) -> tuple[nn.Module, WeightsSource]:
        given = f" {kwargs}" if kwargs else ""
        return load(**kwargs), WeightsSource(kind="hub", location=f"{repo_or_dir}:{entry}{given} (as the entry "
                                             "returns them)")

    info = ModelInfo(name=f"hub:{spec}", ref_source="torch.hub entry", tags=("torch.hub",), load_official=load_official)
    return builder, info


def _unreachable(err: Exception) -> bool:
    """Whether torch.hub failed to reach GitHub (offline, unknown repository), not the entry's own code."""
    return isinstance(err, urllib.error.URLError) or "no internet connection" in str(err)


def describe_adapters() -> str:
    """One line on the names outside the registry, for ``--list-models``."""
    try:
        import timm  # noqa: F401
        timm_state = "installed"
    except ImportError:
        timm_state = "not installed"
    return (f"tv:NAME or a plain name ({len(torchvision_models())} torchvision classifiers, e.g. tv:efficientnet_b0), "
            f"timm:NAME (timm {timm_state}), hub:OWNER/REPO:ENTRY or hub:/local/dir:ENTRY (docs/models.md: Bring "
            "your own backbone)")


register_resolver("tv", _torchvision, "tv:NAME (any torchvision classifier)")
register_resolver("timm", _timm, "timm:NAME (timm installed)")
register_resolver("hub", _hub, "hub:OWNER/REPO:ENTRY or hub:/local/dir:ENTRY")
register_resolver(None, _torchvision_fallback)
