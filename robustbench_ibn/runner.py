"""evaluate(): decode each image once, apply every shift on the device, keep every image's top-5.

The steps live in :mod:`robustbench_ibn.engine`; this is their composition for the runs the command line makes:
one model, ImageNet val under a list of shifts, then natural-shift datasets (``domains``) and, through the API, the
clean images of other sources.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .data import DataConfig, ImageSource
from .datasets import DatasetDomain, check_domains, open_domains
from .distributed import launch_rank
from .engine import (RunConfig, build_plan, fit_sources, open_sources, output_lock, request_lock, run_config,
                     run_plan)
from .models import check_model_request, prepare_model
from .plugins import load_entry_points
from .results import EvalResult
from .transforms import prepare_transforms, resolve_transform_names

__all__ = ["evaluate", "request_spec"]


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
    keep_state: bool = False,
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
            that a failed write (a full disk) loses nothing: the same call then writes it from the state. While the
            run lasts a lock file ``.NAME.lock`` beside it refuses a second run writing the same file.
        keep_state: leave the run state in place once the result is complete (its folder is the result's
            ``state_dir``), for a caller that writes more outputs from the result (a plot, a leaderboard entry) and
            removes it with :func:`~robustbench_ibn.engine.release_state` once they are written: a failed write
            then costs a rerun that evaluates nothing.
        config: how the run executes (:class:`~robustbench_ibn.engine.RunConfig`); ``run`` overrides its fields:
            ``batch_size`` (50), ``workers``, ``device`` (``auto``), ``precision`` (``fp32``, ``bf16``, ``fp16``),
            ``seed`` (random init and stochastic shifts), ``progress``, ``state_dir`` (where finished batches are
            committed so the same call resumes after a crash or kill; removed once the result is complete) and
            ``on_bad_image``: ``"error"`` (the run carries on, saving every finished batch, then raises
            :class:`~robustbench_ibn.data.DataError` listing every undecodable file) or ``"skip"`` (they are left
            out; the source's record lists them as ``skipped``); ``fast`` (False): BatchNorm folded and the network
            compiled (:func:`~robustbench_ibn.fast.fast_path`), recorded in the protocol and part of its
            fingerprint.

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
    request = request_spec(model, data, names, weights=weights, model_kwargs=model_kwargs, data_config=data_config,
                           labels_file=labels_file, limit=limit, domains=specs, sources=sources,
                           transform_weights=transform_weights, style_dir=style_dir)
    with contextlib.ExitStack() as held:
        # The cheap checks come first, the downloads last: a second identical run and a second writer of the same
        # record are refused at once, then a wrong data folder or layout is named, then the model's name, arguments
        # and weights file; then the shifts' weights are found (downloaded, hashed), then the model is built (its
        # weights downloaded); the folders get the model's geometry after that.
        if request is not None:
            held.enter_context(request_lock(request, config))
        if output is not None and launch_rank() == 0:
            held.enter_context(output_lock(output))
        listed = open_sources(data, labels_file=labels_file, limit=limit, extra=sources)
        if isinstance(model, str):  # its name, arguments and weights file: before any shift downloads its weights
            check_model_request(model, weights, **dict(model_kwargs or {}))
        shifts = prepare_transforms(names, weights=transform_weights, style_dir=style_dir, progress=config.progress,
                                    seed=config.seed)
        prepared = prepare_model(model, weights, seed=config.seed, model_kwargs=model_kwargs, data_config=data_config)
        opened = open_domains(specs, prepared.data_config, limit=limit)
        fitted = fit_sources(listed, prepared)
        if any(o.key in fitted for o in opened):
            raise ValueError(f"Expected source names other than the domains' ({', '.join(o.key for o in opened)}), "
                             f"but got {', '.join(sources or {})}.")
        plan = build_plan({**fitted, **{o.key: o.source for o in opened}}, shifts,
                          labels={o.key: o.label for o in opened})
        return run_plan(plan, prepared, config, output=output, started=started, keep_state=keep_state)


def request_spec(
    model: str | nn.Module,
    data: str | os.PathLike[str] | ImageSource,
    names: Sequence[str],
    *,
    weights: str = "official",
    model_kwargs: Mapping[str, Any] | None = None,
    data_config: DataConfig | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    domains: Sequence[DatasetDomain] = (),
    sources: Mapping[str, str | os.PathLike[str] | ImageSource] | None = None,
    transform_weights: Mapping[str, str | os.PathLike[str]] | None = None,
    style_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """What :func:`evaluate` was asked, as a JSON-able dict (the key of :func:`~robustbench_ibn.engine.request_lock`),
    computed before anything is built; ``None`` for an ``nn.Module`` (no cheap identity: the run state's lock alone
    guards it). Folders count by their absolute path, a given image source by its root and fingerprint.

    Example:
        >>> request_spec("resnet50", "/data/val", ["clean", "std1.5"])["data"]
        '/data/val'
    """
    if not isinstance(model, str):
        return None

    def where(item: str | os.PathLike[str] | ImageSource) -> Any:
        if isinstance(item, ImageSource):
            return {"kind": type(item).__name__, "root": str(item.root), **item.fingerprint()}
        return os.path.abspath(os.path.expanduser(item))

    return {"model": model, "weights": weights, "model_kwargs": dict(model_kwargs or {}),
            "data_config": data_config.to_dict() if data_config is not None else None, "data": where(data),
            "labels_file": where(labels_file) if labels_file is not None else None, "limit": limit,
            "sources": {key: where(item) for key, item in dict(sources or {}).items()}, "transforms": list(names),
            "domains": [{"kind": d.kind, "path": where(d.path), "label": d.label, "options": dict(d.options)}
                        for d in domains],
            "transform_weights": {k: str(v) for k, v in dict(transform_weights or {}).items()},
            "style_dir": where(style_dir) if style_dir is not None else None}
