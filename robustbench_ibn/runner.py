"""evaluate(): decode each image once, apply every shift on the device, keep every image's top-5.

The steps live in :mod:`robustbench_ibn.engine`; this is their composition for the runs the command line makes:
one model, ImageNet val under a list of shifts, then natural-shift datasets (``domains``) and, through the API, the
clean images of other sources.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .data import DataConfig, ImageSource
from .datasets import DatasetDomain, check_domains, open_domains
from .engine import RunConfig, build_plan, open_sources, run_config, run_plan
from .models import prepare_model
from .plugins import load_entry_points
from .results import EvalResult
from .transforms import prepare_transforms, resolve_transform_names

__all__ = ["evaluate"]


def evaluate(
    model: str | nn.Module,
    data: str | os.PathLike[str] | ImageSource,
    transforms: str | Sequence[str] = ("rgb+50", "r+50", "std1.5"),
    *,
    weights: str = "official",
    model_kwargs: Mapping[str, Any] | None = None,
    data_config: DataConfig | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    domains: Sequence[str | DatasetDomain] = (),
    sources: Mapping[str, str | os.PathLike[str] | ImageSource] | None = None,
    transform_weights: Mapping[str, str | os.PathLike[str]] | None = None,
    style_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    config: RunConfig | None = None,
    **run: Any,
) -> EvalResult:
    """Evaluate one model on clean images and under appearance shifts.

    Args:
        model: a registered model name, or an ``nn.Module`` expecting normalized input (then give
            ``data_config`` unless the module carries one).
        data: an ImageNet-val folder (see :class:`~robustbench_ibn.data.ImageNetVal`) or an image source built
            with the model's geometry.
        transforms: shift names or a ``--transforms`` string (``"all"``, ``"rgb+50,std2"``); ``clean``
            is always evaluated first as the baseline. A shift acts on the crop or, if its stage is ``"image"``,
            on the decoded image before the model's geometry.
        weights: ``official``, a path, a URL or ``random`` (only for model names).
        model_kwargs: architecture arguments for a registered model.
        data_config: overrides the model's eval geometry and normalization.
        labels_file: labels for a flat image folder.
        limit: evaluate a deterministic class-balanced subset of this many images (of every source).
        domains: natural-shift datasets, each ``"KIND=PATH"``, ``"KIND:LABEL=PATH"`` or a
            :class:`~robustbench_ibn.datasets.DatasetDomain` (with the kind's options, e.g.
            ``DatasetDomain("imagenet-r", path, options={"subset_policy": "full"})``): checked against their kind
            before the model is built, read in the model's geometry and scored in their own label space, one row
            each after the shifts (an ImageNet-C tree: one per corruption and severity, summarised as mCE), their
            drops against clean ImageNet val (``data``, always the baseline). Shifts act on ImageNet val only.
            See docs/natural-shifts.md.
        sources: more image sources by key, already built (an image source in the model's geometry) or an
            ImageNet-val folder; each one's clean images are a domain of the result, its drops measured against
            clean ImageNet val. Dataset kinds go through ``domains``.
        transform_weights: shift name -> weights file or URL for shifts that take weights
            (``{"monet": "style_monet.pth"}``; default: their official files, from the torch hub cache or
            downloaded).
        style_dir: a folder of style images for the shifts that take one (``adain{alpha}``; ``--style-dir``); an
            error when no requested shift does.
        output: write the full record here (:meth:`EvalResult.save`) before the run state is removed, so
            that a failed write (a full disk) loses nothing: the same call then writes it from the state.
        config: how the run executes (:class:`~robustbench_ibn.engine.RunConfig`); ``run`` overrides its fields:
            ``batch_size`` (50), ``workers``, ``device`` (``auto``), ``precision`` (``fp32``, ``bf16``, ``fp16``),
            ``seed`` (random init and stochastic shifts), ``progress``, ``state_dir`` (where finished batches are
            committed so the same call resumes after a crash or kill; removed once the result is complete) and
            ``on_bad_image``: ``"error"`` (the run carries on, saving every finished batch, then raises
            :class:`~robustbench_ibn.data.DataError` listing every undecodable file) or ``"skip"`` (they are left
            out; the source's record lists them as ``skipped``).

    Returns:
        An :class:`~robustbench_ibn.results.EvalResult` holding per-image top-5 predictions.

    Raises:
        Interrupted: Ctrl-C; the finished batches are kept and the same call resumes from them.

    Example:
        >>> result = evaluate("resnet50_ibn_b", "/data/imagenet/val", "rgb+50,std1.5", batch_size=100)  # doctest: +SKIP
        >>> result = evaluate("resnet50", "/data/imagenet/val", "none", domains=["imagenet-r=/data/imagenet-r",
        ...                   "imagenet-c=/data/imagenet-c"])  # doctest: +SKIP
        >>> result.to_frame()[["transform", "top1_err", "top1_drop"]]  # doctest: +SKIP
    """
    started = time.perf_counter()
    config = run_config(config, **run)  # validated before any work
    load_entry_points()  # installed plug-in packages (idempotent; ROBUSTBENCH_IBN_NO_ENTRY_POINTS=1 skips)
    names = resolve_transform_names(transforms)
    specs = check_domains(domains, baseline=data)  # every folder against its kind, before any download or decode
    # Shifts first (generator weights found, downloaded, hashed): one that cannot run stops before any model is built.
    shifts = prepare_transforms(names, weights=transform_weights, style_dir=style_dir, progress=config.progress,
                                seed=config.seed)
    prepared = prepare_model(model, weights, seed=config.seed, model_kwargs=model_kwargs, data_config=data_config)
    opened = open_domains(specs, prepared.data_config, limit=limit)
    extra = {**(sources or {}), **{o.key: o.source for o in opened}}
    if len(extra) < len(sources or {}) + len(opened):
        raise ValueError(f"Expected source names other than the domains' ({', '.join(o.key for o in opened)}), but "
                         f"got {', '.join(sources or {})}.")
    plan = build_plan(open_sources(data, prepared, labels_file=labels_file, limit=limit, extra=extra), shifts,
                      labels={o.key: o.label for o in opened})
    return run_plan(plan, prepared, config, output=output, started=started)
