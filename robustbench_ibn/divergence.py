"""Feature divergence between two image domains, layer by layer (IBN-Net Sec. 4.3, Fig. 2 and 5).

For one layer's output, each channel's spatial mean ``F`` per image is a sample; over the images of domain A
a Gaussian is fitted to it (mean ``mu_A``, variance ``var_A``), likewise for domain B. Per channel

    KL(A||B) = log(sigma_B / sigma_A) + (sigma_A^2 + (mu_A - mu_B)^2) / (2 sigma_B^2) - 1/2
    D        = KL(A||B) + KL(B||A)

and the layer's divergence is the mean of ``D`` over its channels. The paper measures it at the 17 ReLU
outputs on the main path of ResNet-50 (the stem, then every residual block), for an appearance gap
(photo vs Monet: large in shallow layers, cut by IN layers) and a content gap (two halves of the classes:
growing with depth, left intact by IN).

Design:

* **Hooks, not copies.** Forward hooks reduce each hooked output to ``F`` ([B, C], float64) at once, so
  only per-image channel means leave the forward pass.
* **Streaming statistics.** Per domain and layer, :class:`ChannelMoments` keeps ``(n, mean, M2)`` per
  channel in float64 and merges each batch into them (Chan et al.'s parallel update, the numerically
  stable form of running sums of ``F`` and ``F^2``): memory does not grow with the number of images, and
  the result equals the two-pass mean and variance to rounding whatever the batching.
* **Variance.** The unbiased (``n - 1``) variance; ``eps`` (:data:`EPS`, ``1e-8`` in squared feature units) is
  added to both domains' variances so a channel that is constant in a domain (a dead ReLU) gives a finite
  divergence: 0 when it is the same constant in both. :func:`divergence_frame` reports how many channels
  had a variance at or below ``eps`` (``degenerate_channels``), so a reader sees when the guard mattered.
* **Positions.** :func:`resnet_positions` finds the paper's positions from the model structure: the stem's
  activation (``relu``; ``act1`` in timm) and every block of ``layer1``..``layer4``, whose outputs are
  already post-ReLU. Any other backbone takes module names (``layers=``). Each hooked module must run
  exactly once per forward, which also catches a stem activation that is reused elsewhere.
* **Domains.** Two shifts of the same images (each image decoded once, both shifts applied on the device),
  two image folders, or the paper's content split (the classes present, halved by canonical index).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .data import DataConfig, DataError, ImageNetVal, ImageSource, UnlabelledImages
from .engine import (BASELINE_SOURCE, Domain, Plan, Run, RunConfig, bad_images_message, domain_inputs, iterate_batches,
                     note_bad_images, run_config, start_run)
from .env import environment_record
from .files import atomic_write_text
from .models import PreparedModel, prepare_model
from .models.calibrate import calibrate_random_init
from .options import DIVERGENCE_EPS, option
from .plugins import load_entry_points
from .text import random_init_tag, random_init_title, random_weights_banner, significant
from .transforms import Shift, prepare_transforms

__all__ = [
    "EPS",
    "ChannelMoments",
    "FeatureRecorder",
    "divergence_frame",
    "divergence_json",
    "divergence_table",
    "feature_divergence",
    "gaussian_kl",
    "layer_divergence",
    "measure_domains",
    "plot_divergence",
    "resnet_positions",
    "save_divergence",
    "symmetric_kl",
]

SCHEMA_VERSION = 1
EPS = DIVERGENCE_EPS

MODES = ("shifts", "dirs", "content")
UNCALIBRATED = ("Random-init weights without calibration: the result is degenerate. A random network keeps its "
                "initial BatchNorm statistics, so its features grow or collapse with depth, and the divergences "
                "measure that, not the architecture. Add {calibrate} to calibrate each model on clean images first.")
STATISTIC = {
    "feature": "per image and channel, the spatial mean of the layer output",
    "gaussian": "per domain and channel: mean and unbiased variance (n - 1) over images",
    "divergence": "symmetric KL, KL(A||B) + KL(B||A), mean over channels (IBN-Net Sec. 4.3)",
    "forward": "fp32, eval mode; statistics in float64, streamed",
}
"""What every divergence record says it measured (plus the ``eps`` of the run)."""
_STEM_ACTIVATIONS = ("relu", "act1", "act")


# -- the formula ------------------------------------------------------------------------------------
def gaussian_kl(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor) -> torch.Tensor:
    """KL(A||B) between 1-D Gaussians, elementwise: ``log(sigma_B/sigma_A) + (var_A + (mu_A-mu_B)^2)/(2 var_B) - 1/2``.

    Example:
        >>> t = torch.tensor
        >>> round(gaussian_kl(t(0.0), t(1.0), t(1.0), t(4.0)).item(), 6)  # log 2 + 2/8 - 1/2
        0.443147
    """
    return 0.5 * torch.log(var_b / var_a) + (var_a + (mu_a - mu_b) ** 2) / (2 * var_b) - 0.5


def symmetric_kl(
    mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor
) -> torch.Tensor:
    """``D = KL(A||B) + KL(B||A)``, elementwise, in the closed form where the log terms cancel:

    ``D = (var_A - var_B)^2 / (2 var_A var_B) + (mu_A - mu_B)^2 (1/var_A + 1/var_B) / 2``

    (algebraically identical to the sum of :func:`gaussian_kl` both ways, never negative by rounding, and
    exactly 0 for identical Gaussians).

    Example:
        >>> t = torch.tensor
        >>> symmetric_kl(t(0.0), t(1.0), t(1.0), t(4.0)).item()  # 9/8 + 5/8
        1.75
    """
    return (var_a - var_b) ** 2 / (2 * var_a * var_b) + (mu_a - mu_b) ** 2 * (1 / var_a + 1 / var_b) / 2


class ChannelMoments:
    """Streaming per-channel count, mean and sum of squared deviations (M2) of ``[B, C]`` samples, float64.

    Each :meth:`update` merges a batch's own two-pass moments into the running ones (Chan, Golub and LeVeque's
    parallel update), so the memory is ``O(C)`` whatever the number of images and the result equals the
    two-pass statistics of all samples to rounding, for any split into batches.

    Example:
        >>> m = ChannelMoments()
        >>> for chunk in torch.arange(10.0).view(10, 1).split(3):
        ...     m.update(chunk)
        >>> m.n, m.mean.item(), m.variance().item()
        (10, 4.5, 9.166666666666666)
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, values: torch.Tensor) -> None:
        """Add a batch of samples, ``[B, C]`` (any float dtype and device; kept on the CPU in float64)."""
        if values.ndim != 2:
            raise ValueError(f"Expected samples of shape [B, C], but got {tuple(values.shape)}.")
        v = values.detach().to("cpu", torch.float64)
        nb = v.shape[0]
        if nb == 0:
            return
        mean_b = v.mean(0)
        m2_b = ((v - mean_b) ** 2).sum(0)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = nb, mean_b, m2_b
            return
        if mean_b.shape != self.mean.shape:
            raise ValueError(f"Expected {self.mean.numel()} channels, but got a batch with {mean_b.numel()}.")
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * nb / n)
        self.n = n

    @property
    def channels(self) -> int:
        return 0 if self.mean is None else self.mean.numel()

    def variance(self, ddof: int = 1) -> torch.Tensor:
        """Per-channel variance with ``n - ddof`` in the denominator (default: unbiased)."""
        if self.m2 is None or self.n - ddof < 1:
            raise ValueError(f"Expected at least {ddof + 1} samples for a variance, but got {self.n}.")
        return self.m2 / (self.n - ddof)


def layer_divergence(a: ChannelMoments, b: ChannelMoments, eps: float = EPS) -> dict[str, float | int]:
    """One layer's divergence between two domains' statistics.

    Returns:
        ``divergence`` (mean over channels of the symmetric KL), ``kl_ab`` and ``kl_ba`` (the mean one-way
        KLs; they sum to ``divergence``), ``channels`` and ``degenerate_channels`` (variance <= ``eps`` in
        either domain: there the guard, not the data, bounds the value).
    """
    if a.channels != b.channels:
        raise ValueError(f"Expected the same channels in both domains, but got {a.channels} and {b.channels}.")
    if eps < 0 or not math.isfinite(eps):
        raise ValueError(f"Expected eps to be a finite number >= 0, but got {eps}.")
    assert a.mean is not None and b.mean is not None
    var_a, var_b = a.variance(), b.variance()
    degenerate = int(((var_a <= eps) | (var_b <= eps)).sum())
    va, vb = var_a + eps, var_b + eps
    if eps == 0 and degenerate:
        raise ValueError(f"{degenerate} channels have zero variance in a domain; use eps > 0 (default {EPS}).")
    return {
        "channels": a.channels,
        "divergence": float(symmetric_kl(a.mean, va, b.mean, vb).mean()),
        "kl_ab": float(gaussian_kl(a.mean, va, b.mean, vb).mean()),
        "kl_ba": float(gaussian_kl(b.mean, vb, a.mean, va).mean()),
        "degenerate_channels": degenerate,
    }


# -- where to measure -------------------------------------------------------------------------------
def resnet_positions(net: nn.Module) -> list[str]:
    """The paper's positions in a ResNet-style network: the stem's activation, then every residual block.

    Found from the structure, not from the model's name: the first module that has ``layer1``, ``layer2``,
    ... (``nn.Sequential`` of blocks, as torchvision, timm and the IBN-Net zoo build them) and a stem
    activation child (``relu``, or ``act1``/``act`` in timm). The stem activation's output is the post-ReLU
    stem; each block's output is already post-ReLU (the block ends with its ReLU). ResNet-50: 1 + 16 = 17.

    Example:
        >>> from robustbench_ibn import create_model
        >>> positions = resnet_positions(create_model("resnet50_ibn_b", weights="random"))
        >>> len(positions), positions[:3], positions[-1]
        (17, ['relu', 'layer1.0', 'layer1.1'], 'layer4.2')

    Raises:
        ValueError: no such layout; the message says to pass module names instead.
    """
    for prefix, module in net.named_modules():
        stages = []
        while isinstance(getattr(module, f"layer{len(stages) + 1}", None), nn.Sequential):
            stages.append(getattr(module, f"layer{len(stages) + 1}"))
        stem = next((n for n in _STEM_ACTIVATIONS if isinstance(getattr(module, n, None), nn.Module)), None)
        if len(stages) < 2 or stem is None or not all(len(s) for s in stages):
            continue
        p = f"{prefix}." if prefix else ""
        return [p + stem] + [f"{p}layer{i}.{j}" for i, stage in enumerate(stages, 1) for j in range(len(stage))]
    top = ", ".join(name for name, _ in net.named_children()) or "none"
    raise ValueError(
        f"Expected a ResNet-style model (children layer1, layer2, ... of residual blocks and a stem activation "
        f"{'/'.join(_STEM_ACTIVATIONS)}) to find the paper's positions, but {type(net).__name__} has none "
        f"(top-level modules: {top}). Name the modules to measure instead (layers=[...], --layers A,B,...)."
    )


def _check_layers(net: nn.Module, layers: Sequence[str]) -> None:
    import difflib

    names = [n for n, _ in net.named_modules() if n]
    if not layers:
        raise ValueError("Expected at least one layer to measure, but got none.")
    for layer in layers:
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=5)
            hint = f" Close: {', '.join(close)}." if close else f" Some: {', '.join(names[:8])}, ..."
            raise ValueError(f"Expected a module name of {type(net).__name__} to measure, but got {layer!r}.{hint}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"Expected distinct layer names, but got {list(layers)}.")


class FeatureRecorder:
    """Forward hooks that reduce each named module's output to per-image channel means ``F`` ([B, C], float64).

    Channels are dimension 1 (NCHW, or [B, C] for a module without spatial dimensions); the mean runs over
    every later dimension. Use as a context manager (the hooks are removed on exit), run one forward, then
    :meth:`take` the features of that forward: each module must have run exactly once.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str]) -> None:
        _check_layers(net, layers)
        self.layers = list(layers)
        self._modules = dict(net.named_modules())
        self._seen: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        self._handles: list[Any] = []

    def _hook(self, name: str, module: nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim < 2:
            what = type(output).__name__ if not isinstance(output, torch.Tensor) else f"shape {tuple(output.shape)}"
            raise ValueError(f"Expected module {name!r} to output a tensor [B, C, ...], but got {what}.")
        dims = tuple(range(2, output.ndim))
        # The reduction runs in float64 right here: later in-place ops cannot touch it, and only [B, C] is kept.
        self._seen[name].append(output.mean(dim=dims, dtype=torch.float64) if dims else output.to(torch.float64))

    def __enter__(self) -> FeatureRecorder:
        self._handles = [self._modules[name].register_forward_hook(partial(self._hook, name)) for name in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def take(self) -> dict[str, torch.Tensor]:
        """The features of the last forward, per layer; resets for the next one."""
        out = {}
        for name, seen in self._seen.items():
            if len(seen) != 1:
                self._seen = {n: [] for n in self.layers}
                why = "did not run" if not seen else f"ran {len(seen)} times"
                raise ValueError(
                    f"Expected module {name!r} to run exactly once per forward, but it {why}; measure a module "
                    "that runs once on the main path (a shared activation module such as a ResNet block's relu "
                    "runs several times)."
                )
            out[name] = seen[0]
        self._seen = {n: [] for n in self.layers}
        return out


def measure_domains(
    forward: Callable[[torch.Tensor], Any],
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | int]],
    layers: Sequence[str] | None = None,
    n_domains: int = 2,
) -> list[dict[str, ChannelMoments]]:
    """Streaming per-domain statistics of ``net``'s layers over ``batches``.

    Args:
        forward: what runs a batch (``net`` itself, or a wrapper around it such as :class:`Normalized`).
        net: the module whose submodules ``layers`` are hooked.
        batches: ``(inputs, domain)`` pairs; ``domain`` is one domain index for the whole batch, or a tensor
            ``[B]`` of indices (one forward then serves images of both domains, e.g. the content split).
        layers: module names of ``net``; default: :func:`resnet_positions`.
        n_domains: number of domains.

    Returns:
        Per domain, ``{layer: ChannelMoments}``.
    """
    layers = list(layers) if layers is not None else resnet_positions(net)
    stats = [{layer: ChannelMoments() for layer in layers} for _ in range(n_domains)]
    with FeatureRecorder(net, layers) as recorder, torch.inference_mode():
        for inputs, domain in batches:
            forward(inputs)
            features = recorder.take()
            if isinstance(domain, torch.Tensor):
                domain = domain.to("cpu")
                for d in range(n_domains):
                    rows = (domain == d).nonzero().flatten()
                    if len(rows):
                        for layer, f in features.items():
                            stats[d][layer].update(f[rows.to(f.device)])
            else:
                if not 0 <= domain < n_domains:
                    raise ValueError(f"Expected a domain index in [0, {n_domains}), but got {domain}.")
                for layer, f in features.items():
                    stats[domain][layer].update(f)
    return stats


def divergence_frame(
    stats: Sequence[Mapping[str, ChannelMoments]], model: str = "model", eps: float = EPS
) -> pd.DataFrame:
    """One row per layer: ``model, layer_index`` (1-based, as in the paper's figures), ``layer, channels,
    divergence, kl_ab, kl_ba, degenerate_channels, n_a, n_b``."""
    if len(stats) != 2:
        raise ValueError(f"Expected statistics of exactly 2 domains, but got {len(stats)}.")
    a, b = stats
    rows = []
    for i, layer in enumerate(a, 1):
        for side, moments in (("A", a[layer]), ("B", b[layer])):
            if moments.n < 2:
                raise ValueError(f"Expected at least 2 images in domain {side} to fit a Gaussian, but got {moments.n}.")
        rows.append({"model": model, "layer_index": i, "layer": layer, **layer_divergence(a[layer], b[layer], eps),
                     "n_a": a[layer].n, "n_b": b[layer].n})
    columns = ["model", "layer_index", "layer", "channels", "divergence", "kl_ab", "kl_ba", "degenerate_channels",
               "n_a", "n_b"]
    return pd.DataFrame(rows, columns=columns)


# -- data -------------------------------------------------------------------------------------------
def _open_folder(root: str | os.PathLike[str], config: DataConfig, limit: int | None) -> ImageSource:
    """An ImageNet-labelled folder when it is one (class-balanced ``limit``), any image folder otherwise."""
    try:
        return ImageNetVal(root, config, limit=limit)
    except DataError:
        if not Path(root).is_dir():
            raise
        return UnlabelledImages(root, config, limit=limit)


def _calibration_images(dataset: ImageSource, count: int) -> tuple[torch.Tensor, list[int]]:
    """``count`` evenly spaced images of ``dataset`` (all when fewer) as float [N, 3, H, W] in [0, 1]."""
    n = len(dataset)
    index = sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))
    return torch.stack([dataset[i][0] for i in index]).float().div(255), index


# -- the whole analysis -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Domains:
    """What the two domains are, independent of the model (decided once, before any model is built)."""

    mode: str
    names: tuple[str, str]
    labels: tuple[str, str]
    shifts: Mapping[str, Shift] | None = None
    dirs: tuple[str, str] | None = None

    def plan(self, config: DataConfig, data: Any, labels_file: Any, limit: int | None) -> Plan:
        """The engine's plan for one model geometry: the sources, and the two domains (one for the content split)."""
        if self.mode == "dirs":
            assert self.dirs is not None
            folders = {"A": _open_folder(self.dirs[0], config, limit), "B": _open_folder(self.dirs[1], config, limit)}
            names = self.names if self.names[0] != self.names[1] else ("A", "B")  # one folder on both sides
            return Plan(folders, tuple(Domain(n, lab, k) for n, lab, k in zip(names, self.labels, "AB")),
                        baseline="A")
        source = {BASELINE_SOURCE: ImageNetVal(data, config, labels_file=labels_file, limit=limit)}
        if self.mode == "content":
            return Plan(source, (Domain("clean", "origin", BASELINE_SOURCE),))
        assert self.shifts is not None
        return Plan(source, tuple(Domain(n, lab, BASELINE_SOURCE, None if n == "clean" else self.shifts[n])
                                  for n, lab in zip(self.names, self.labels)))


def _as_pair(value: str | Sequence[str], what: str) -> tuple[str, str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if len(items) != 2:
        raise ValueError(f"Expected exactly two {what} (A,B), but got {len(items)}: {items}.")
    return items[0], items[1]


def _content_halves(labels: Sequence[int]) -> tuple[list[int], list[int]]:
    """The classes present, sorted by canonical index, split into a first and a second half."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"Expected images of at least 2 classes for the content split, but got {len(classes)}.")
    half = len(classes) // 2
    return classes[:half], classes[half:]


def _span(classes: Sequence[int]) -> str:
    return f"{len(classes)} classes, canonical {classes[0]}-{classes[-1]}"


def feature_divergence(
    models: str | nn.Module | Sequence[str | nn.Module],
    data: str | os.PathLike[str] | None = None,
    domains: str | Sequence[str] | None = None,
    *,
    domain_dirs: str | Sequence[str | os.PathLike[str]] | None = None,
    content_split: bool = False,
    layers: Sequence[str] | None = None,
    weights: str = "official",
    model_kwargs: Mapping[str, Any] | None = None,
    data_config: DataConfig | None = None,
    calibrate: int | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    eps: float = EPS,
    transform_weights: Mapping[str, str | os.PathLike[str]] | None = None,
    style_dir: str | os.PathLike[str] | None = None,
    config: RunConfig | None = None,
    **run: Any,
) -> pd.DataFrame:
    """Per-layer feature divergence between two domains, for one or several models (IBN-Net Fig. 2/5).

    Exactly one way of defining the domains:

    * ``domains="clean,monet"``: two shifts of the same images of ``data``; each image is decoded once and
      both shifts are applied to it on the device (an image-stage shift gets its own decode).
    * ``domain_dirs=("DIR_A", "DIR_B")``: two image folders (ImageNet-labelled or any images; ``limit`` applies
      to each).
    * ``content_split=True``: the clean images of ``data``, the first half of the classes present (by canonical
      index) against the second half; ImageNet val gives the paper's classes 0-499 vs 500-999.

    The images go through the evaluation engine (:mod:`robustbench_ibn.engine`): the same batch iterator, shift
    application and first-batch checks, and environment record as :func:`~robustbench_ibn.evaluate`.

    Args:
        models: registered names (``"resnet50"``, ``"resnet50_ibn_b"``, ``"tv:..."``) or ``nn.Module``s taking
            normalized input (give ``data_config`` unless they carry one).
        data: the image folder for ``domains`` and ``content_split``.
        layers: module names to measure (every model must have them); default: :func:`resnet_positions`.
        weights: ``official``, a path, a URL or ``random`` (for names).
        model_kwargs: architecture arguments for named models.
        data_config: overrides each model's geometry and normalization.
        calibrate: with random weights, calibrate the BatchNorm statistics and the classifier
            (:func:`~robustbench_ibn.models.calibrate.calibrate_random_init`) on this many evenly spaced clean
            images (of ``data``, or of the first folder), so a random-init analysis is not degenerate.
        labels_file, limit: as in :func:`~robustbench_ibn.evaluate` (``limit``: class-balanced subset).
        eps: added to every per-channel variance (see :data:`EPS`).
        transform_weights: weights of shifts that need them (``{"monet": "style_monet.pth"}``).
        style_dir: a folder of style images for ``domains`` shifts that take one (``adain{alpha}``); an error
            when neither domain does, or with ``domain_dirs`` / ``content_split``.
        config: how the run executes (:class:`~robustbench_ibn.engine.RunConfig`, fp32 only; batch size 32 unless
            given); ``run`` overrides its fields (``batch_size``, ``workers``, ``device``, ``seed``: random init
            and stochastic shifts, ``progress``, ``on_bad_image``).

    Returns:
        A DataFrame, one row per model and layer (:func:`divergence_frame`'s columns); ``frame.attrs`` holds
        the JSON-serializable description of the run (domains, data, weights, calibration, statistic).
    """
    started = time.perf_counter()
    config = run_config(config or RunConfig(batch_size=32), **run)
    model_list = [models] if isinstance(models, (str, nn.Module)) else list(models)
    _check_arguments(model_list, config, data, domains, domain_dirs, content_split, calibrate, eps)
    if weights == "random" and calibrate is None:  # said before the work, and again in the table's header
        warnings.warn(UNCALIBRATED.format(calibrate=option("calibrate", 64)), stacklevel=2)
    load_entry_points()
    spec = _decide_domains(domains, domain_dirs, transform_weights, style_dir, config)  # a shift that cannot run stops
    frames, model_records, plans = [], [], {}
    domain_records: list[dict[str, Any]] = []
    for model in model_list:
        prepared = prepare_model(model, weights, seed=config.seed, model_kwargs=model_kwargs, data_config=data_config)
        if any(record["name"] == prepared.name for record in model_records):
            raise ValueError(f"Expected distinct models, but got {prepared.name!r} twice (rename a module's model_name).")
        cfg = prepared.data_config
        geometry = (cfg.resize, cfg.crop, cfg.interpolation)
        if geometry not in plans:  # models of one geometry share the sources (found and labelled once)
            plans[geometry] = spec.plan(cfg, data, labels_file, limit)
        plan = plans[geometry]
        calibration = _calibrate(prepared, plan.sources[plan.baseline], calibrate)
        measured = list(layers) if layers is not None else resnet_positions(prepared.net)
        engine_run = start_run(plan, prepared, config, shard=False, state=False)
        stats, records = _measure(engine_run, spec, measured)
        frames.append(divergence_frame(stats, prepared.name, eps))
        domain_records = domain_records or records
        model_records.append({
            "name": prepared.name, "weights": prepared.weights, "weights_description": _weights_line(prepared.weights),
            "calibration": calibration, "layers": "given" if layers is not None else "ResNet positions (structure)",
            "data_config": cfg.to_dict(),
        })
        del engine_run, prepared
    result = pd.concat(frames, ignore_index=True)
    result.attrs = {
        "schema_version": SCHEMA_VERSION,
        "kind": "feature_divergence",
        "mode": spec.mode,
        "domains": domain_records,
        "data": [s.describe() for s in next(iter(plans.values())).sources.values()],
        "models": model_records,
        "statistic": {**STATISTIC, "eps": eps},
        "environment": environment_record(config.device, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                          duration_s=round(time.perf_counter() - started, 3),
                                          batch_size=config.batch_size, seed=config.seed),
    }
    return result


def _check_arguments(model_list: Sequence[Any], config: RunConfig, data: Any, domains: Any, domain_dirs: Any,
                     content_split: bool, calibrate: int | None, eps: float) -> None:
    if not model_list:
        raise ValueError("Expected at least one model, but got none.")
    named = [m for m in model_list if isinstance(m, str)]
    if len(set(named)) != len(named):
        raise ValueError(f"Expected distinct models, but got {named}.")
    given = [domains is not None, domain_dirs is not None, bool(content_split)]
    if sum(given) != 1:
        raise ValueError("Expected exactly one way of defining the two domains: domains='A,B' (two shifts of the "
                         "same images), domain_dirs=(DIR_A, DIR_B) or content_split=True, but got "
                         f"{sum(given) or 'none'}.")
    if calibrate is not None and (isinstance(calibrate, bool) or calibrate < 2):
        raise ValueError(f"Expected calibrate to be a number of images >= 2, but got {calibrate!r}.")
    if config.precision != "fp32":
        raise ValueError(f"Expected precision fp32 for the feature divergence (float64 statistics of fp32 features), "
                         f"but got {config.precision!r}.")
    if config.fast:
        raise ValueError("Expected the exact path for the feature divergence (it reads the features of the network's "
                         "own layers, which the fast path folds and compiles away), but got fast=True. Leave fast "
                         "out.")
    if eps < 0 or not math.isfinite(eps):
        raise ValueError(f"Expected eps to be a finite number >= 0, but got {eps}.")
    if domain_dirs is None and data is None:
        raise ValueError("Expected an image folder (data=...) for shifted domains or the content split.")
    if domain_dirs is not None and data is not None:
        raise ValueError("Expected no data=... with domain_dirs: the two folders are the data.")


def _decide_domains(domains: Any, domain_dirs: Any, transform_weights: Any, style_dir: Any,
                    config: RunConfig) -> _Domains:
    if style_dir is not None and domains is None:
        raise ValueError("Expected style_dir (--style-dir) only with domains='A,B' (--domains) naming a shift that "
                         "uses style images, e.g. clean,adain1, but the domains are folders or the content split.")
    if domains is not None:
        names = _as_pair(domains, "shift names")
        shifts = prepare_transforms(list(dict.fromkeys(names)), weights=transform_weights, style_dir=style_dir,
                                    progress=config.progress, seed=config.seed)
        return _Domains("shifts", names, (shifts[names[0]].label or names[0], shifts[names[1]].label or names[1]),
                        shifts=shifts)
    if domain_dirs is not None:
        dirs = _as_pair([os.fspath(d) for d in domain_dirs] if not isinstance(domain_dirs, str) else domain_dirs,
                        "domain folders")
        short = (Path(dirs[0]).name, Path(dirs[1]).name)
        names = short if all(short) and short[0] != short[1] else dirs
        return _Domains("dirs", names, names, dirs=dirs)
    return _Domains("content", ("classes-first-half", "classes-second-half"), ("classes 1st half", "classes 2nd half"))


def _calibrate(prepared: PreparedModel, source: ImageSource, count: int | None) -> dict[str, Any] | None:
    """Calibrate a random-init model on ``count`` clean images of ``source`` (on the CPU, before the device)."""
    if count is None:
        return None
    if not prepared.is_random:
        raise ValueError(
            f"Expected random weights for calibrate (it re-estimates BatchNorm statistics and rescales the "
            f"classifier of a random-init model), but {prepared.name!r} has {prepared.weights.get('kind')} weights, "
            "whose statistics are part of the trained network. Drop calibrate or use weights='random'."
        )
    images, index = _calibration_images(source, count)
    calibrate_random_init(prepared.net, images, prepared.data_config.mean, prepared.data_config.std)
    return {"images": len(index), "source": f"clean images of {source.shown_root}, evenly spaced",
            "method": "robustbench_ibn.models.calibrate.calibrate_random_init"}


def _measure(run: Run, spec: _Domains, layers: Sequence[str]) -> tuple[list[dict[str, ChannelMoments]],
                                                                         list[dict[str, Any]]]:
    """Stream the plan's images through the engine into per-domain statistics; and the domains' records."""
    halves = _content_halves(next(iter(run.plan.sources.values())).labels) if spec.mode == "content" else None
    counts, bad = [0, 0], {}  # type: ignore[var-annotated]
    index = {d.name: i for i, d in enumerate(run.plan.domains)}
    total = sum(len(run.source(p)) * len(p.domains) for p in run.passes)

    def batches(bar: tqdm) -> Iterator[tuple[torch.Tensor, torch.Tensor | int]]:
        second = torch.tensor(halves[1]) if halves is not None else None
        for unit, loaded in iterate_batches(run, run.units):
            note_bad_images(run, run.passes[unit.pass_index], loaded, bad)
            labels = loaded.labels[loaded.ok]
            for domain, x in domain_inputs(run, unit, loaded):
                split = torch.isin(labels, second).long() if second is not None else None
                if split is not None:
                    counts[0], counts[1] = counts[0] + int((split == 0).sum()), counts[1] + int((split == 1).sum())
                else:
                    counts[index[domain.name]] += len(x)
                yield x, split if split is not None else index[domain.name]
                bar.update(len(x))

    with tqdm(total=total, unit="img", desc=f"{run.model.name}: divergence", disable=not run.config.progress,
              dynamic_ncols=True) as bar:
        stats = measure_domains(run.net, run.model.net, batches(bar), layers)
    if any(bad.values()) and run.config.on_bad_image == "error":
        raise DataError(bad_images_message({run.plan.sources[k].root: f for k, f in bad.items()},
                                           sum(len(run.plan.sources[k]) for k in bad), None))
    root = next(iter(run.plan.sources.values())).root
    if spec.mode == "content":
        assert halves is not None
        records = [{"name": n, "label": lab, "n": c, "classes": h, "description": f"clean images of {_span(h)} of {root}"}
                   for n, lab, c, h in zip(spec.names, spec.labels, counts, halves)]
    elif spec.mode == "shifts":
        records = [{**d.record(), "n": c, "description": f"{d.name} of the images of {root}"}
                   for d, c in zip(run.plan.domains, counts)]
    else:
        records = [{"name": d.name, "label": d.label, "n": c, "description": run.plan.sources[d.source].describe()}
                   for d, c in zip(run.plan.domains, counts)]
    if any(bad.values()):  # on_bad_image="skip": the counts above are of the images measured
        records = [{**r, "skipped": sorted(f for files in bad.values() for f in files)} for r in records]
    return stats, records


def _weights_line(record: Mapping[str, Any]) -> str:
    if record.get("kind") == "random":
        return random_weights_banner(record.get("seed"), what="the divergences describe the architecture at init, "
                                                              "not a trained network")
    return str(record.get("description", "user-supplied nn.Module"))


# -- presentation -----------------------------------------------------------------------------------
def _model_columns(frame: pd.DataFrame) -> dict[str, str]:
    """Model name -> column title (random-init models are marked, as in the Table 1 reports)."""
    records = {m["name"]: m for m in frame.attrs.get("models", [])}
    titles = {}
    for name in dict.fromkeys(frame["model"]):
        record = records.get(name, {})
        tag = ""
        if record.get("weights", {}).get("kind") == "random":
            tag = random_init_tag(calibrated=bool(record.get("calibration")))
        titles[name] = name + tag
    return titles


def _header(frame: pd.DataFrame) -> list[str]:
    attrs = frame.attrs
    if not attrs:
        return []
    models = attrs["models"]
    lines = ["models: " + ", ".join(m["name"] for m in models)]
    weights = dict.fromkeys(m["weights_description"] for m in models)
    lines.append("weights: " + "; ".join(weights) + (" (every model)" if len(models) > 1 and len(weights) == 1 else ""))
    calibrated = [m for m in models if m.get("calibration")]
    if any(m.get("weights", {}).get("kind") == "random" and not m.get("calibration") for m in models):
        lines.append("calibration: none. " + UNCALIBRATED.format(calibrate="--calibrate (calibrate=64 in Python)"))
    if calibrated:
        c = calibrated[0]["calibration"]
        lines.append(f"calibration: BatchNorm statistics and classifier of the random-init models calibrated on "
                     f"{c['images']} {c['source']} (calibrate_random_init), so the features are not degenerate")
    lines.append("data: " + " | ".join(attrs["data"]))
    lines.append("domains: " + _domains_line(attrs))
    lines.append(f"statistic: per channel the spatial mean per image; per domain a Gaussian (mean, unbiased "
                 f"variance + eps {attrs['statistic']['eps']:g}); symmetric KL, mean over channels; float64")
    return lines


def _domains_line(attrs: Mapping[str, Any]) -> str:
    a, b = attrs["domains"]
    if attrs["mode"] == "shifts":
        return (f"A = {a['label']} ({a['name']}), B = {b['label']} ({b['name']}): the same {a['n']} images, each "
                "decoded once, both shifts applied on the device")
    if attrs["mode"] == "content":
        return (f"A = the first half of the classes present ({_span(a['classes'])}: {a['n']} images), B = the second "
                f"half ({_span(b['classes'])}: {b['n']} images); clean images (content gap)")
    return f"A = {a['label']} ({a['n']} images), B = {b['label']} ({b['n']} images)"


def divergence_table(frame: pd.DataFrame, *, header: bool = True, fmt: str = "markdown") -> str:
    """One row per layer position, one column per model (4 significant digits), with the run header: ``markdown``,
    or ``latex`` (a booktabs ``tabular``, the header as ``%`` comments)."""
    from tabulate import tabulate

    if fmt not in ("markdown", "latex"):
        raise ValueError(f"Expected fmt to be 'markdown' or 'latex', but got {fmt!r}.")
    titles = _model_columns(frame)
    wide = frame.pivot(index="layer_index", columns="model", values="divergence")
    names = frame.groupby("layer_index")["layer"].agg(lambda s: " / ".join(dict.fromkeys(s)))
    rows = [[i, names[i], *[significant(wide.at[i, m]) for m in titles]] for i in wide.index]
    degenerate = int(frame["degenerate_channels"].sum())
    lines = _header(frame) + ["cells: symmetric KL divergence between the domains, mean over channels"] \
        if header and frame.attrs else []
    note = (f"note: {degenerate} channel(s) over all layers and models had a variance <= eps in a domain "
            "(a constant channel); there the eps guard, not the data, bounds the divergence.") if degenerate else ""
    if fmt == "latex":
        from .report import latex_tabular

        table = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=["layer", *titles.values()])
        out = [f"% {line}" for line in lines] + [r"% needs \usepackage{booktabs}"] + latex_tabular(table, "\\#")
        return "\n".join(out + ([f"% {note}"] if note else []))
    table = tabulate(rows, headers=["#", "layer", *titles.values()], tablefmt="github", disable_numparse=True,
                     colalign=("right", "left", *("right",) * len(titles)))
    return "\n\n".join([p for p in ("\n".join(lines), table, note) if p])


def divergence_json(frame: pd.DataFrame) -> dict[str, Any]:
    """The record: the run description (``frame.attrs``) and the rows."""
    return {**frame.attrs, "rows": json.loads(frame.to_json(orient="records"))}


def save_divergence(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write :func:`divergence_json` atomically; returns the path."""
    atomic_write_text(path, json.dumps(divergence_json(frame), indent=1) + "\n")
    return Path(path)


def plot_divergence(frame: pd.DataFrame, path: str | os.PathLike[str], *, log: bool = False) -> Path:
    """IBN-Net Fig. 2/5 as lines: divergence against layer position, one line per model.

    For ResNet positions the stages are shaded and labelled (stem, layer1..layer4). ``log``: a log y axis
    (zeros are not drawn on it).
    """
    from .plots import new_figure, save_figure

    titles = _model_columns(frame)
    layers = frame.drop_duplicates("layer_index").sort_values("layer_index")
    n = len(layers)
    figure = new_figure(max(5.0, 1.6 + 0.32 * n), 3.4)
    ax = figure.subplots()
    # ResNet positions: "relu" (stem), "layer2.3" -> stage "layer2"; shade every other stage and name it.
    stages = [str(layer).split(".")[-2] if "." in str(layer) else "stem" for layer in layers["layer"]]
    if len(set(stages)) > 1:
        runs: list[list[int]] = []
        for k, stage in enumerate(stages):
            if runs and stages[runs[-1][0]] == stage:
                runs[-1].append(k)
            else:
                runs.append([k])
        for j, run in enumerate(runs):
            lo, hi = run[0] + 0.5, run[-1] + 1.5
            if j % 2 == 0:
                ax.axvspan(lo, hi, color="0.93", linewidth=0)
            ax.text((lo + hi) / 2, 1.01, stages[run[0]], transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="0.35")
    for i, (name, title) in enumerate(titles.items()):
        rows = frame[frame["model"] == name].sort_values("layer_index")
        ax.plot(rows["layer_index"], rows["divergence"], marker="o", markersize=3.5, linewidth=1.4,
                color=f"C{i % 10}", label=title)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlim(0.5, n + 0.5)
    ax.set_xticks(list(layers["layer_index"]))
    ax.set_xlabel("layer position (stem, then each residual block)" if "stem" in stages else "layer position")
    ax.set_ylabel("feature divergence\n(symmetric KL, mean over channels)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    title = "Feature divergence"
    if frame.attrs.get("domains"):
        a, b = frame.attrs["domains"]
        title += f": {a['label']} vs {b['label']}"
    if any(m.get("weights", {}).get("kind") == "random" for m in frame.attrs.get("models", [])):
        title += random_init_title()
    figure.suptitle(title, fontsize=9)
    return save_figure(figure, path)
