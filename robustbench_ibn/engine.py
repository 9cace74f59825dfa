"""The evaluation engine: one model, a list of domains over one or more image sources, per-image top-5.

A **domain** is an image source (ImageNet val is the baseline source ``"val"``; another dataset or folder),
an optional shift and the stage it acts at: ``"crop"`` (the preprocessed network-input crop, batched on the
device) or ``"image"`` (the whole decoded image, before the source's preprocessing and the model's geometry).
A :class:`Plan` holds the sources and the domains in evaluation order; the engine runs it in **passes**:

* one pass per source without an image-stage shift: each image is decoded once (in the loader's workers)
  and every crop-stage domain of that source, clean included, is applied to the same batch on the device;
* one pass per image-stage domain: workers decode and run :meth:`Shift.prepare_image`; the main process
  moves the batch to the device, runs :meth:`Shift.apply_batch`, checks the output (all of it on the first batch, finiteness on every batch), turns each
  image back into a PIL image, applies the source's preprocessing and classifies the crops.

Each pass follows a fixed batch grid over its source; a (pass, batch) :class:`~robustbench_ibn.state.Unit` is
what a rank evaluates, commits to the run state and, under torchrun, is sharded over ranks. Only per-image
top-5 predictions (and whether an image's allowed logits were all equal) accumulate, so memory stays flat.

The steps (:func:`start_run`, :func:`run_passes`, :func:`gather`, :func:`settle_bad_images`,
:func:`finalize`, :func:`write_result`) are composed by :func:`run_plan`; :func:`iterate_batches` and
:func:`domain_inputs` are the batch iterator and shift application the feature-divergence analysis shares.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import center_crop
from tqdm import tqdm

from .checks import MAX_SEED
from .data import DataError, ImageNetVal, ImageSource
from .distributed import all_gather, init_from_env, launch_rank
from .env import bf16_note, environment_record, resolve_device
from .fast import FastPath, batch_dependent, fast_path
from .labels import LabelSpace
from .models import Normalized, PreparedModel
from .options import BAD_IMAGE_POLICIES, PRECISIONS, option
from .references import ReferenceSource, reference_label, reference_name
from .results import (BASELINE_DOMAIN, BASELINE_SOURCE, PROTOCOL_CHANGES, PROTOCOL_VERSION, STAGES, TOPK, EvalResult,
                      SourceResult, protocol_fingerprint)
from .state import FileLock, RunState, Unit, default_state_root, file_stamp, run_key, unit_grid
from .text import listing
from .transforms import Shift, TransformError, check_shift_output, shift_context

__all__ = [
    "BAD_IMAGE_POLICIES",
    "BASELINE_SOURCE",
    "PRECISIONS",
    "STAGES",
    "Domain",
    "Interrupted",
    "Loaded",
    "Normalized",
    "Outcome",
    "Pass",
    "Plan",
    "PreparedModel",
    "Run",
    "RunConfig",
    "bad_images_message",
    "build_plan",
    "classify",
    "domain_inputs",
    "finalize",
    "fit_sources",
    "gather",
    "geometry_source",
    "image_stamp",
    "iterate_batches",
    "logits_of",
    "note_bad_images",
    "open_sources",
    "output_lock",
    "release_state",
    "request_lock",
    "reusable_units",
    "run_config",
    "run_passes",
    "run_plan",
    "settle_bad_images",
    "start_run",
    "top5",
    "write_result",
]

NUM_CLASSES = 1000


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a run: the message says how many images are saved, where, how to resume."""


# -- what a run is ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunConfig:
    """How a run executes (not what it measures): shared by :func:`~robustbench_ibn.evaluate` and the
    feature-divergence analysis. Validated on construction; ``device`` is resolved (``auto`` -> CUDA when
    available) and ``workers`` defaults to the CPU count, at most 8.

    Attributes:
        batch_size: images per batch (each batch is shifted and classified once per domain).
        workers: DataLoader decode processes (0 decodes in the main process).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a torch device.
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (CUDA autocast).
        seed: random-init seed and the seed of any stochastic shift.
        progress: progress bars and notes on stderr.
        state_dir: where finished batches are committed so a killed run resumes (default
            ``<cache root>/runs``).
        on_bad_image: ``"error"`` (carry on, then raise listing every undecodable file) or ``"skip"``.
        fast: the fast path (:func:`~robustbench_ibn.fast.fast_path`): BatchNorm folded into the preceding
            convolutions and the network compiled with ``torch.compile`` (eager, with a warning saying why, when
            that fails). It changes float rounding, so the result's protocol records it and its fingerprint differs
            from the exact path's. Default: the exact path.

    Example:
        >>> RunConfig(batch_size=8, device="cpu", workers=0).batch_size
        8
        >>> RunConfig(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: Expected batch_size >= 1, but got 0.
    """

    batch_size: int = 50
    workers: int | None = None
    device: str | torch.device = "auto"
    precision: str = "fp32"
    seed: int = 0
    progress: bool = True
    state_dir: str | os.PathLike[str] | None = None
    on_bad_image: str = "error"
    fast: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.fast, bool):
            raise ValueError(f"Expected fast to be True or False, but got {self.fast!r}.")
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"Expected on_bad_image to be one of {BAD_IMAGE_POLICIES}, but got {self.on_bad_image!r}.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"Expected batch_size >= 1, but got {self.batch_size}.")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 0):
            raise ValueError(f"Expected workers to be an integer >= 0 or None, but got {self.workers!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"Expected precision to be one of {PRECISIONS}, but got {self.precision!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"Expected seed to be an integer in 0..{MAX_SEED}, but got {self.seed!r}.")
        device = resolve_device(self.device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ValueError(f"fp16 autocast is CUDA-only here; use {option('precision', 'bf16')} on CPU.")
        note = bf16_note(self.precision, device)
        if note is not None:
            warnings.warn(note, stacklevel=3)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "workers", min(8, os.cpu_count() or 1) if self.workers is None else self.workers)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """The precision's autocast context on ``device`` (nothing for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)


def run_config(config: RunConfig | None = None, **fields: Any) -> RunConfig:
    """``config`` (default :class:`RunConfig`) with ``fields`` replaced: how ``evaluate(..., batch_size=4)`` builds it.

    Example:
        >>> run_config(RunConfig(device="cpu"), batch_size=4, workers=0).batch_size
        4
    """
    return replace(config or RunConfig(), **fields)


@dataclass(frozen=True, eq=False)
class Domain:
    """One row of the results: images of ``source`` under ``shift`` (``None``: the clean images).

    Attributes:
        name: unique within the run (the key of its predictions).
        label: display label (``origin``, ``RGB+50``).
        source: the key of its image source in the :class:`Plan`.
        shift: the shift, or ``None`` for the source's clean images.
        reference: the domain its drop is measured against (``clean``, or its label space's reference domain,
            :mod:`robustbench_ibn.references`; a reference domain names itself). :class:`Plan` sets it.
        restricts: for a reference domain, the domain whose logits it restricts (``clean``): it has no pass of its
            own, its predictions come from that domain's forward pass.
    """

    name: str
    label: str
    source: str
    shift: Shift | None = None
    reference: str = BASELINE_DOMAIN
    restricts: str | None = None

    @property
    def stage(self) -> str:
        """``"image"`` or ``"crop"`` (the shift's stage; clean images are crop-stage: nothing to do)."""
        return self.shift.stage if self.shift is not None else "crop"

    @property
    def paired(self) -> bool:
        """Its images are the baseline's (ImageNet val), so flip rates against clean are defined."""
        return self.source == BASELINE_SOURCE

    def record(self) -> dict[str, Any]:
        """What a result records of the domain."""
        record = {"name": self.name, "label": self.label, "source": self.source, "stage": self.stage,
                  "shift": self.shift.definition() if self.shift is not None else None, "paired": self.paired,
                  "reference": self.reference}
        return record if self.restricts is None else {**record, "restricts": self.restricts}


@dataclass(frozen=True, eq=False)
class Pass:
    """One decode of a source: its crop-stage domains together, or one image-stage domain."""

    index: int
    source: str
    domains: tuple[Domain, ...]
    derived: tuple[Domain, ...] = ()  # reference domains computed from the logits of one of ``domains``

    @property
    def names(self) -> list[str]:
        """The domains whose predictions its units hold: its own, then the derived ones."""
        return [d.name for d in (*self.domains, *self.derived)]

    @property
    def image_shift(self) -> Shift | None:
        first = self.domains[0]
        return first.shift if first.stage == "image" else None

    def describe(self) -> str:
        return f"{self.source}" + (f" under {self.domains[0].name}" if self.image_shift is not None else "")


@dataclass(frozen=True, eq=False)
class Plan:
    """The image sources of a run (by key) and its domains, in evaluation order.

    Every label space of its sources other than the 1000 classes (ImageNet-R's 200, ObjectNet's mapping) gets its
    reference domain (:mod:`robustbench_ibn.references`), added here: a source of the val images of those classes
    and a domain computed from the clean pass's logits, placed before the first domain it is the reference of.
    Each domain's ``reference`` is set accordingly (``clean`` for the rest).

    Example:
        >>> Plan({}, (Domain("clean", "origin", "val"),))
        Traceback (most recent call last):
        ...
        ValueError: Expected the baseline source 'val' among the sources, but got [].
    """

    sources: Mapping[str, ImageSource]
    domains: tuple[Domain, ...]
    baseline: str = BASELINE_SOURCE

    def __post_init__(self) -> None:
        if self.baseline not in self.sources:
            raise ValueError(f"Expected the baseline source {self.baseline!r} among the sources, but got "
                             f"{list(self.sources)}.")
        names = [d.name for d in self.domains]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"Expected at least one domain and unique domain names, but got {names}.")
        for d in self.domains:
            if d.source not in self.sources:
                raise ValueError(f"Expected domain {d.name!r} to use one of the sources {list(self.sources)}, but "
                                 f"got {d.source!r}.")
            if d.stage not in STAGES:
                raise TransformError(f"Expected {shift_context(d.shift)} to declare a stage in {STAGES}, but got "  # type: ignore[arg-type]
                                     f"{d.stage!r}.")
        sources, domains = _with_references(self.sources, self.domains, self.baseline)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "domains", domains)

    def passes(self) -> list[Pass]:
        """Per source (in order): the pass of its crop-stage domains, then one pass per image-stage domain; the
        reference domains ride on the pass of the domain they restrict."""
        groups: list[tuple[str, tuple[Domain, ...]]] = []
        own = [d for d in self.domains if d.restricts is None]
        for key in self.sources:
            mine = [d for d in own if d.source == key]
            crops = tuple(d for d in mine if d.stage == "crop")
            groups += ([(key, crops)] if crops else []) + [(key, (d,)) for d in mine if d.stage == "image"]
        derived = [d for d in self.domains if d.restricts is not None]
        return [Pass(i, key, domains, tuple(r for r in derived if r.restricts in {d.name for d in domains}))
                for i, (key, domains) in enumerate(groups)]


def _with_references(sources: Mapping[str, ImageSource], domains: Sequence[Domain], baseline: str
                     ) -> tuple[dict[str, ImageSource], tuple[Domain, ...]]:
    """``sources`` and ``domains`` with the reference source and domain of every label space that needs one, and
    every domain's ``reference`` set (see :class:`Plan`); a plan that has them already is returned as it is."""
    sources = dict(sources)
    clean = next((d for d in domains if d.name == BASELINE_DOMAIN and d.source == baseline and d.shift is None), None)
    have = {d.name: d for d in domains if d.restricts is not None}
    out: list[Domain] = []
    for d in domains:
        if d.restricts is not None:
            if clean is None or d.restricts != clean.name or not isinstance(sources[d.source], ReferenceSource):
                raise ValueError(f"Expected reference domain {d.name!r} to restrict the clean domain's logits on a "
                                 f"reference source, but it restricts {d.restricts!r}.")
            continue  # placed again below, before the first domain it is the reference of
        space = sources[d.source].label_space
        name = reference_name(space) if d.source != baseline else None
        if name is None or clean is None:  # no clean pass to restrict: nothing to measure a drop against but clean
            out.append(replace(d, reference=BASELINE_DOMAIN))
            continue
        if name in {o.name for o in domains if o.restricts is None}:
            raise ValueError(f"Expected domain names other than {name!r}, the reference domain of label space "
                             f"{space.name!r}; give domain {name!r} another name.")
        if name not in sources:
            sources[name] = ReferenceSource(sources[baseline], space, parent_key=baseline, parent_domain=clean.name)
        elif not isinstance(sources[name], ReferenceSource) or sources[name].label_space != space:
            raise ValueError(f"Expected source {name!r} to be the reference of label space {space!r} (the val images "
                             f"of its classes), but got {sources[name].label_space!r}; give the source another name.")
        if name not in {o.name for o in out}:
            out.append(have.get(name) or Domain(name, reference_label(space), name, None, name, clean.name))
        out.append(replace(d, reference=name))
    return sources, tuple(out)


def open_sources(
    data: str | os.PathLike[str] | ImageSource,
    model: PreparedModel | None = None,
    *,
    labels_file: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    extra: Mapping[str, str | os.PathLike[str] | ImageSource] | None = None,
) -> dict[str, ImageSource]:
    """The run's image sources: ImageNet val (``data``) as ``"val"``, then ``extra`` by key, in the model's geometry.

    A folder becomes an :class:`~robustbench_ibn.data.ImageNetVal` (``labels_file`` for the baseline's flat layout;
    ``limit``: a class-balanced subset of each); a given :class:`~robustbench_ibn.data.ImageSource` must have been
    built with the model's geometry. Without ``model`` the folders are listed and checked in the default geometry,
    before anything is downloaded or built, and :func:`fit_sources` gives them the model's once it is known (the
    folders are not listed twice, no image is decoded before).
    """
    sources: dict[str, ImageSource] = {}
    for key, item in [(BASELINE_SOURCE, data), *dict(extra or {}).items()]:
        if key in sources:
            raise ValueError(f"Expected unique source keys, but {key!r} is given twice ({BASELINE_SOURCE!r} is "
                             "ImageNet val's).")
        if isinstance(item, ImageSource):
            sources[key] = item
        else:
            sources[key] = ImageNetVal(item, labels_file=labels_file if key == BASELINE_SOURCE else None, limit=limit)
            _LISTED_HERE.add(sources[key])
    return sources if model is None else fit_sources(sources, model)


# The sources open_sources() listed itself, in the default geometry: fit_sources() may give them another. A source
# built by the caller keeps the geometry it was built with, and must match the model's.
_LISTED_HERE: weakref.WeakSet[ImageSource] = weakref.WeakSet()


def fit_sources(sources: Mapping[str, ImageSource], model: PreparedModel) -> dict[str, ImageSource]:
    """``sources`` (from :func:`open_sources`) in ``model``'s geometry; one built elsewhere must have it already."""
    cfg = model.data_config
    fitted: dict[str, ImageSource] = {}
    for key, source in sources.items():
        geometry = (source.config.resize, source.config.crop, source.config.interpolation)
        if geometry == (cfg.resize, cfg.crop, cfg.interpolation):
            fitted[key] = source
        elif source in _LISTED_HERE and isinstance(source, ImageNetVal):
            fitted[key] = source.with_config(cfg)
        else:
            raise ValueError(
                f"Expected the dataset's geometry to be model {model.name!r}'s (resize {cfg.resize}, crop "
                f"{cfg.crop}, {cfg.interpolation}), but got {source.config}. Build ImageNetVal with the model's "
                f"data_config.")
    return fitted


def build_plan(sources: Mapping[str, ImageSource], shifts: Mapping[str, Shift],
               labels: Mapping[str, str] | None = None) -> Plan:
    """Today's runs: every shift on ImageNet val (``clean`` first, no shift), then each other source's clean images.

    ``shifts`` are the prepared shifts by name (:func:`~robustbench_ibn.transforms.prepare_transforms`); a shift's
    own stage decides whether it acts on the crop or on the decoded image. ``labels``: display labels of the other
    sources' domains by key (default: the key). Shifts act on ImageNet val only: on a natural-shift dataset they
    would multiply its passes (ImageNet-C's 95 sets) for a question the paper does not ask; a :class:`Plan` of
    one's own puts a shift on any source.
    """
    names = {d for d in shifts} & {k for k in sources if k != BASELINE_SOURCE}
    if names:
        raise ValueError(f"Expected domain names other than the shifts' names, but {', '.join(sorted(names))} is both "
                         "a shift and a source; give the source another name (a label).")
    sources = dict(sources)
    domains = []
    for name, shift in shifts.items():
        key = BASELINE_SOURCE
        if name != BASELINE_DOMAIN and shift.crop_geometry is not None:
            key, source = geometry_source(sources[BASELINE_SOURCE], shift)
            sources.setdefault(key, source)
        domains.append(Domain(name, shift.label or name, key, None if name == BASELINE_DOMAIN else shift))
    domains += [Domain(key, (labels or {}).get(key, key), key) for key in sources
                if key != BASELINE_SOURCE and not any(d.source == key for d in domains)]
    return Plan(sources, tuple(domains))


def geometry_source(val: ImageSource, shift: Shift) -> tuple[str, ImageSource]:
    """The key and source of the crops a shift with a :attr:`~Shift.crop_geometry` acts on: ``val`` itself when the
    model's geometry is the shift's, else the same images decoded in the shift's geometry (``val@256-224-bilinear``),
    whose shifted crops the engine centre-crops to the model's crop (:func:`domain_inputs`). What the released
    ImageNet-C files give a model of another geometry: they are 224-px crops, centre-cropped to its crop.

    Raises:
        TransformError: a model crop larger than the shift's (the files' path refuses it too), or a source that
            cannot be decoded in another geometry.

    Example:
        >>> from robustbench_ibn.data import DataConfig
        >>> from robustbench_ibn.transforms import create_transform
        >>> val = ImageNetVal("../shared/data/imagenet-sample/val").with_config(DataConfig(interpolation="bicubic"))  # doctest: +SKIP
        >>> key, source = geometry_source(val, create_transform("imagenet-c.fog.3"))  # doctest: +SKIP
        >>> key, source.config.interpolation  # doctest: +SKIP
        ('val@256-224-bilinear', 'bilinear')
    """
    resize, crop, interpolation = shift.crop_geometry  # type: ignore[misc]
    c = val.config
    if (c.resize, c.crop, c.interpolation) == (resize, crop, interpolation):
        return BASELINE_SOURCE, val
    if c.crop > crop:
        raise TransformError(
            f"{shift_context(shift)} is defined on the {crop}-px crop (resize {resize} {interpolation} + centre crop "
            f"{crop}, as its released files were made), but the model's crop is {c.crop} px: a crop of the {crop}-px "
            f"image cannot be {c.crop} px, and the released files' path refuses such a model too. Evaluate it with a "
            f"model whose crop is at most {crop}.")
    if not isinstance(val, ImageNetVal):
        raise TransformError(f"{shift_context(shift)} needs ImageNet val decoded in its own geometry (resize {resize} "
                             f"{interpolation} + centre crop {crop}), but the given source is a "
                             f"{type(val).__name__}; pass an ImageNet-val folder.")
    return (f"{BASELINE_SOURCE}@{resize}-{crop}-{interpolation}",
            val.with_config(replace(c, resize=resize, crop=crop, interpolation=interpolation)))


# -- the run ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class Run:
    """A plan being executed by this process: its passes, this rank's units, the model on the device, the state."""

    plan: Plan
    model: PreparedModel
    config: RunConfig
    passes: list[Pass]
    units: list[Unit]
    net: nn.Module
    device: torch.device
    rank: int = 0
    world: int = 1
    state: RunState | None = None
    started: float = field(default_factory=time.perf_counter)
    checked: set[str] = field(default_factory=set)  # domains whose shift output was checked (first batch)
    loader_s: float = 0.0
    compute_s: float = 0.0
    fast: FastPath | None = None  # what the fast path built, when config.fast

    def source(self, pass_: Pass) -> ImageSource:
        return self.plan.sources[pass_.source]


def start_run(plan: Plan, model: PreparedModel, config: RunConfig, *, shard: bool = True, state: bool = True,
              started: float | None = None) -> Run:
    """Join torchrun's process group (``shard``), put the model on the device, lay out this rank's units and the
    run state (``state``), keyed by everything that determines the predictions so the same call resumes it."""
    rank, world, device = init_from_env(config.device) if shard else (0, 1, config.device)
    passes = plan.passes()
    units = unit_grid([len(plan.sources[p.source]) for p in passes], config.batch_size, rank, world)
    run = Run(plan, model, config, passes, units, model.wrapped(device), device, rank, world)
    if config.fast:
        size = min(config.batch_size, max(len(plan.sources[p.source]) for p in passes))  # the same on every rank
        run.fast = _fast_path(run.net, model, config, device, size)
        run.net = run.fast.module
    for domain in plan.domains:  # a plug-in shift with parameters or buffers computes where the images are
        if domain.shift is not None:
            _check_geometry(domain, plan.sources[domain.source], model)
            domain.shift.to(device)
    if started is not None:
        run.started = started
    if state:
        # Batch size is part of the key (the batch grid); any change of model, data or domains starts afresh.
        key = run_key({"model": model.name, "weights": model.weights, "model_kwargs": model.kwargs,
                       "data_config": model.data_config.to_dict(), "domains": [d.record() for d in plan.domains],
                       "sources": {k: _source_record(s) for k, s in plan.sources.items()},
                       "precision": config.precision, "protocol_version": PROTOCOL_VERSION,
                       "batch_size": config.batch_size, **_fast_key(run)})
        root = Path(config.state_dir) if config.state_dir is not None else default_state_root()
        run.state = RunState(root / key, [p.names for p in passes], rank=rank)
    return run


def _check_geometry(domain: Domain, source: ImageSource, model: PreparedModel) -> None:
    """A shift defined on a crop of its own (:attr:`~Shift.crop_geometry`) gets that crop, and a model crop it can
    be centre-cropped to; anything else would measure another thing under the shift's name."""
    wanted = domain.shift.crop_geometry if domain.shift is not None else None
    if wanted is None:
        return
    got = (source.config.resize, source.config.crop, source.config.interpolation)
    if got != tuple(wanted) or model.data_config.crop > wanted[1]:
        raise TransformError(f"Expected {shift_context(domain.shift)} on crops of resize {wanted[0]} {wanted[2]} + "  # type: ignore[arg-type]
                             f"centre crop {wanted[1]} for a model crop of at most {wanted[1]}, but its source "
                             f"{domain.source!r} has resize {got[0]} {got[2]} + crop {got[1]} and model "
                             f"{model.name!r} crops {model.data_config.crop}. evaluate() (build_plan) decodes that geometry "
                             f"for it; elsewhere (a Plan of your own, the feature-divergence analysis) use a model of "
                             f"that geometry.")


def _fast_key(run: Run) -> dict[str, Any]:
    """The fast path's part of the run-state key and the fingerprint: nothing for the exact path, so their keys are
    those of runs made before the fast path existed."""
    return {"fast": run.fast.fingerprint()} if run.fast is not None else {}


def _fast_path(net: nn.Module, model: PreparedModel, config: RunConfig, device: torch.device,
               size: int) -> FastPath:
    """The fast path of ``net``, compiled in the run's own context on a batch of ``size`` crops; under torchrun,
    eager on every rank when one rank could not compile."""
    crop = model.data_config.crop
    example = torch.rand(size, 3, crop, crop, generator=torch.Generator().manual_seed(config.seed))
    example = example.to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), config.autocast(device):
        path = fast_path(net, example)
    outcomes = all_gather((path.compiled.compiled, path.compiled.message))
    failed = [(rank, message) for rank, (ok, message) in enumerate(outcomes) if not ok]
    if failed and path.compiled.compiled:
        rank, message = failed[0]
        path = path.without_compile(f"rank {rank} could not compile, so every rank runs the folded network eager "
                                    f"(all batches of a result round alike): {message}")
    return path


# -- decoding: the batch iterator -------------------------------------------------------------------
class _PassItems(Dataset):
    """What the loader's workers hand over for one pass: ``(pixels, label, index, why it cannot be decoded, stamp)``.

    ``pixels`` is the preprocessed crop (no image-stage shift) or the shift's :meth:`~Shift.prepare_image` of the
    decoded image; ``None`` with the reason (``""`` when fine) for an undecodable file, so the run can name
    every bad file, or leave them out, instead of stopping at the first. ``stamp`` is the file's
    :func:`~robustbench_ibn.state.file_stamp`, taken *before* it is read: a file changed while it is decoded then
    gets a stamp that no longer matches, so a resumed run evaluates it again (taken after, the new stamp would
    vouch for predictions of the old content).
    """

    def __init__(self, source: ImageSource, shift: Shift | None) -> None:
        self.source, self.shift = source, shift

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, int, str, tuple[int, int, int]]:
        label = self.source.samples[i][1]
        stamp = image_stamp(self.source, i)
        try:
            image = self.source.load(i)
        except DataError as err:
            return None, label, i, getattr(err, "reason", str(err)), stamp
        pixels = self.source.preprocess(image) if self.shift is None else self.shift.prepare_image(image)
        return pixels, label, i, "", stamp


def image_stamp(source: ImageSource, i: int) -> tuple[int, int, int]:
    """The :func:`~robustbench_ibn.state.file_stamp` of image ``i``'s file: what ties a saved batch to the files."""
    return file_stamp(source.root / source.samples[i][0])


def _collate(items: list[tuple[torch.Tensor | None, int, int, str, tuple[int, int, int]]]
             ) -> tuple[Any, torch.Tensor, list[int], list[str], np.ndarray]:
    pixels = [p for p, *_ in items if p is not None]
    same = pixels and all(p.shape == pixels[0].shape for p in pixels)
    # Equal sizes stack in the worker (one shared-memory tensor); decoded images of several sizes stay a list.
    return (torch.stack(pixels) if same else pixels, torch.tensor([item[1] for item in items]),
            [item[2] for item in items], [item[3] for item in items],
            np.array([item[4] for item in items], dtype=np.int64).reshape(len(items), 3))


@dataclass
class Loaded:
    """One decoded batch: the images' keys (relative paths) and labels, the decodable images' pixels, the errors,
    and the files' stamps as they were before decoding (``[n, 3]``, :func:`image_stamp`)."""

    keys: list[str]
    labels: torch.Tensor
    pixels: torch.Tensor | list[torch.Tensor]
    errors: list[str]
    stamps: np.ndarray

    @property
    def ok(self) -> list[int]:
        """Positions of the images that could be decoded (the rows of ``pixels``)."""
        return [j for j, error in enumerate(self.errors) if not error]


def iterate_batches(run: Run, units: Sequence[Unit]) -> Iterator[tuple[Unit, Loaded]]:
    """Decode ``units`` (in order, pass by pass) in the loader's workers: one :class:`Loaded` per unit."""
    for p, group in groupby(units, key=lambda u: u.pass_index):
        todo = list(group)
        pass_ = run.passes[p]
        source = run.source(pass_)
        loader = DataLoader(_PassItems(source, pass_.image_shift), batch_sampler=[u.batch.indices for u in todo],
                            num_workers=run.config.workers, pin_memory=run.device.type == "cuda",
                            collate_fn=_collate)
        for unit, (pixels, labels, index, errors, stamps) in zip(todo, loader):
            yield unit, Loaded([source.samples[i][0] for i in index], labels, pixels, errors, stamps)


# -- shifts on the device ---------------------------------------------------------------------------
def _apply_shift(run: Run, domain: Domain, x: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
    """``domain``'s shift of ``x``; a plug-in's exception names the shift, its first output is checked."""
    assert domain.shift is not None
    try:
        out = domain.shift.apply_batch(x, keys)
    except TransformError:
        raise
    except Exception as err:  # a plug-in's bug: say which shift, where it lives, which images
        raise TransformError(f"{shift_context(domain.shift)} raised {type(err).__name__} on the batch starting with "
                             f"{keys[0]!r}: {err}") from err
    if domain.name not in run.checked:  # plug-ins are checked on their first batch
        check_shift_output(domain.shift, x, out)
        run.checked.add(domain.name)
    elif not bool(torch.isfinite(out).all()):
        # Every later batch too (one reduction, little next to the forward pass): at the image stage a NaN becomes a
        # black 8-bit pixel that no later check would see, and a later batch of an expensive generator can overflow.
        raise TransformError(f"Expected {shift_context(domain.shift)} to return finite values, but got NaN or Inf on "
                             f"the batch starting with {keys[0]!r}.")
    return out


def _image_stage_crops(run: Run, domain: Domain, source: ImageSource, images: Sequence[torch.Tensor],
                       keys: Sequence[str]) -> torch.Tensor:
    """Image stage: shift the decoded images on the device (one batch per image size), round to 8 bits, back to
    PIL, then the source's preprocessing (the model's geometry): the crops as float [B, 3, crop, crop] in [0, 1]."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for j, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(j)
    crops: list[torch.Tensor | None] = [None] * len(images)
    for rows in by_size.values():
        x = torch.stack([images[j] for j in rows]).to(run.device, non_blocking=True).float().div_(255)
        shifted = _apply_shift(run, domain, x, [keys[j] for j in rows])
        eight_bit = shifted.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for j, pixels in zip(rows, eight_bit):
            crops[j] = source.preprocess(Image.fromarray(pixels, "RGB"))
    return torch.stack(crops).to(run.device, non_blocking=True).float().div_(255)  # type: ignore[arg-type]


def domain_inputs(run: Run, unit: Unit, loaded: Loaded) -> Iterator[tuple[Domain, torch.Tensor]]:
    """The network input of every domain of the unit's pass, for the batch's decodable images, one at a time:
    float ``[B_ok, 3, crop, crop]`` in [0, 1] on the device (normalization happens inside the model)."""
    pass_ = run.passes[unit.pass_index]
    keys = [loaded.keys[j] for j in loaded.ok]
    if not keys:
        return
    if pass_.image_shift is None:
        x = loaded.pixels.to(run.device, non_blocking=True).float().div_(255)  # type: ignore[union-attr]
        for domain in pass_.domains:  # one decode serves every crop-stage domain
            # Each shift gets a copy: one that modifies its input in place (x.add_(...)) must not shift the images
            # of the domains after it. A copy of the batch costs little next to the forward pass it feeds.
            if domain.shift is None:
                yield domain, x
                continue
            out = _apply_shift(run, domain, x.clone(), keys)
            crop = run.model.data_config.crop
            # A shift on a crop of its own geometry (ImageNet-C's 224 px): the model's centre crop of it, as
            # torchvision's CenterCrop takes it of a released file.
            yield domain, out if out.shape[-1] == crop else center_crop(out, [crop, crop])
    else:
        yield pass_.domains[0], _image_stage_crops(run, pass_.domains[0], run.source(pass_), list(loaded.pixels), keys)


# -- classification ---------------------------------------------------------------------------------
def classify(net: nn.Module, images: torch.Tensor, where: str, space: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    """Top-5 ImageNet indices (int16) of the classes ``space`` allows, and whether an image's allowed logits are all
    equal (then its "prediction" is top-k's tie-break, not the model's choice).

    Logits must be ``[B, 1000]``; NaN and +Inf stop the run (naming ``where``), ``-Inf`` is allowed (a class the
    model does not predict, e.g. an unmapped class of a :class:`~robustbench_ibn.models.ClassMapped` model) as long
    as every image has a finite logit. A CUDA out-of-memory error retries the batch in halves, and says so: each
    image's prediction does not depend on its batch-mates, unless :func:`~robustbench_ibn.fast.batch_dependent` finds
    modules that make it so (then the error is raised).
    """
    return top5(logits_of(net, images, where), where, space)


def logits_of(net: nn.Module, images: torch.Tensor, where: str) -> torch.Tensor:
    """The checked float logits ``[B, 1000]`` of :func:`classify` (its forward pass, out-of-memory retry and checks
    of the raw logits), so one forward pass can serve several label spaces (a reference domain, see :func:`top5`)."""
    try:
        logits = net(images.contiguous(memory_format=torch.channels_last))
    except torch.cuda.OutOfMemoryError:
        if images.shape[0] == 1:
            raise
        dependent = batch_dependent(net)
        if dependent:  # halves would normalize with other batch statistics: other predictions
            raise RuntimeError(f"CUDA out of memory with {images.shape[0]} images ({where}), and not retried in "
                               "halves: an image's output depends on the other images of its batch "
                               f"({listing(dependent, 3)}). Pass a smaller {option('batch_size')} (part of what "
                               "such a model's predictions depend on).") from None
        half = images.shape[0] // 2
        print(f"CUDA out of memory with {images.shape[0]} images ({where}); retrying in batches of {half}. "
              f"Pass a smaller {option('batch_size')} to avoid this.", file=sys.stderr)
        torch.cuda.empty_cache()
        return torch.cat([logits_of(net, images[:half], where), logits_of(net, images[half:], where)])
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise ValueError(
            f"Expected {where} to output [B, {NUM_CLASSES}] ImageNet-1k logits, but got {tuple(logits.shape)}. "
            f"Give a model with an ImageNet-1k classifier (or a class_map)."
        )
    logits = logits.float()
    if torch.isnan(logits).any() or torch.isposinf(logits).any():
        raise RuntimeError(
            f"{where}: the logits hold NaN or Inf, so no prediction is meaningful. Check the weights, or use "
            f"{option('precision', 'fp32')} if a reduced precision overflowed (-Inf alone is allowed: a class the model "
            f"never predicts)."
        )
    return logits


def top5(logits: torch.Tensor, where: str, space: LabelSpace) -> tuple[np.ndarray, np.ndarray]:
    """:func:`classify`'s top-5 (int16) and tied flags from checked logits (:func:`logits_of`), in ``space``."""
    allowed = space.restrict(logits)
    for values, what in ((logits, "logit"), (allowed, f"logit among the classes of label space {space.name!r}")):
        empty = int((~torch.isfinite(values).any(dim=1)).sum())
        if empty:
            raise RuntimeError(f"{where}: {empty} image(s) have no finite {what} (all -Inf), so they have no "
                               f"prediction. Check the model's class map and the dataset's label space.")
    finite = torch.isfinite(allowed)
    high = allowed.masked_fill(~finite, float("-inf")).amax(dim=1)
    low = allowed.masked_fill(~finite, float("inf")).amin(dim=1)
    tied = (finite.sum(dim=1) >= 2) & (high == low)
    top5 = allowed.topk(TOPK, dim=1).indices
    return top5.cpu().numpy().astype(np.int16), tied.cpu().numpy()


def _classify_unit(run: Run, unit: Unit, loaded: Loaded, bar: tqdm | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every domain's top-5 and tied flags for one unit; undecodable images keep -1 (no prediction). With many
    domains (ImageNet-C's 75 sets) ``bar``'s postfix names the one being computed, so a long batch shows progress."""
    pass_ = run.passes[unit.pass_index]
    n, ok = unit.size, loaded.ok
    predictions = {name: np.full((n, TOPK), -1, dtype=np.int16) for name in pass_.names}
    tied = {name: np.zeros(n, dtype=bool) for name in pass_.names}
    space = run.source(pass_).label_space
    for k, (domain, x) in enumerate(domain_inputs(run, unit, loaded)):
        if bar is not None and len(pass_.domains) > 1:
            bar.set_postfix_str(f"{pass_.describe()}: {domain.name} ({k + 1}/{len(pass_.domains)})")
        how = f"under shift {domain.name!r}" if domain.paired else f"on domain {domain.name!r}"
        where = f"model {run.model.name!r} {how} on the batch starting with {loaded.keys[ok[0]]!r}"
        logits = logits_of(run.net, x, where)
        predictions[domain.name][ok], tied[domain.name][ok] = top5(logits, where, space)
        # A reference domain: the same logits, for the images of its classes, in its label space. Its rows here are
        # the pass's (the parent's images); gather() keeps those of its own images.
        for ref in (r for r in pass_.derived if r.restricts == domain.name):
            reference = run.plan.sources[ref.source]
            assert isinstance(reference, ReferenceSource)
            member = reference.member[[unit.batch.start + j for j in ok]]
            if member.any():
                rows = np.asarray(ok)[member]
                predictions[ref.name][rows], tied[ref.name][rows] = top5(
                    logits[torch.as_tensor(np.flatnonzero(member), device=logits.device)],
                    f"{where} (reference {ref.name!r})", reference.label_space)
    return predictions, tied


# -- the passes -------------------------------------------------------------------------------------
def _saved_images(run: Run) -> int:
    assert run.state is not None
    done = run.state.done()
    return sum(u.size for u in run.units if (u.pass_index, u.batch.k) in done)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def reusable_units(run: Run) -> set[tuple[int, int]]:
    """``(pass, batch k)`` of this rank's committed units that a resumed run may use as they are.

    A unit is evaluated again (its chunk removed, and the reason said on stderr) when its chunk cannot be read
    (truncated, garbage), when one of its image files changed since it was saved (another stamp, see
    :func:`image_stamp`: the saved predictions are of the old content), or, with ``on_bad_image="error"``, when an
    interrupted ``skip`` run left some of its images out. Reading every chunk and stat-ing every file costs
    about 1.5 s for 50,000 images in batches of 50 (1.1 s for the 1000 chunks, 0.25 s for the stats, measured on
    a shared 2-core machine).
    """
    state = run.state
    assert state is not None
    done = state.done()
    keep: set[tuple[int, int]] = set()
    unreadable: list[str] = []
    changed: list[str] = []
    for unit in (u for u in run.units if (u.pass_index, u.batch.k) in done):
        key = (unit.pass_index, unit.batch.k)
        try:
            chunk = state.load(unit)
        except RuntimeError as err:
            unreadable.append(str(err))
            state.discard(unit)
            continue
        source = run.source(run.passes[unit.pass_index])
        now = np.array([image_stamp(source, i) for i in unit.batch.indices], dtype=np.int64)
        moved = [source.samples[i][0] for i, same in zip(unit.batch.indices, (now == chunk.stamps).all(axis=1))
                 if not same]
        if moved:
            changed.append(moved[0])
            state.discard(unit)
        elif run.config.on_bad_image == "skip" or not any((p < 0).any() for p in chunk.predictions.values()):
            keep.add(key)
    name = run.model.name
    if unreadable:
        tqdm.write(f"{name}: {_plural(len(unreadable), 'saved batch cannot', 'saved batches cannot')} be read "
                   f"({listing(unreadable, 3)}): evaluating {'it' if len(unreadable) == 1 else 'them'} again",
                   file=sys.stderr)
    if changed:
        tqdm.write(f"{name}: {_plural(len(changed), 'saved batch holds', 'saved batches hold')} images changed since "
                   f"{'it was' if len(changed) == 1 else 'they were'} saved ({listing(changed, 3)}): evaluating "
                   f"{'it' if len(changed) == 1 else 'them'} again", file=sys.stderr)
    return keep


def note_bad_images(run: Run, pass_: Pass, loaded: Loaded, bad: dict[str, dict[str, str]]) -> None:
    """Say on stderr which images of the batch cannot be decoded, and keep them (source -> path -> reason)."""
    root = run.source(pass_).root
    for key, error in ((k, e) for k, e in zip(loaded.keys, loaded.errors) if e):
        if key in bad.get(pass_.source, {}):
            continue  # already named by an earlier pass over the same source
        if run.config.on_bad_image == "skip":
            note = f"{run.model.name}: skipping {root / key}, which cannot be decoded: {error}"
        else:
            note = f"{run.model.name}: cannot decode {root / key}: {error}"
            if not any(bad.values()):
                saved = " (finished batches are saved)" if run.state is not None else ""
                note += (f". Carrying on to find every unreadable image{saved}, then stopping with the list; Ctrl-C "
                         f"stops now, {option('on_bad_image', 'skip')} leaves such images out.")
        tqdm.write(note, file=sys.stderr)
        bad.setdefault(pass_.source, {})[key] = error


def run_passes(run: Run) -> dict[str, dict[str, str]]:
    """Evaluate this rank's units not yet in the run state, committing each as it finishes.

    Returns:
        The images that could not be decoded: source key -> relative path -> reason.

    Raises:
        Interrupted: Ctrl-C; the finished units are kept and the same call resumes from them.
    """
    state = run.state
    assert state is not None
    done = reusable_units(run)
    todo = [u for u in run.units if (u.pass_index, u.batch.k) not in done]
    mine = sum(u.size for u in run.units)
    resumed = mine - sum(u.size for u in todo)
    name = run.model.name
    if resumed:  # information, not progress: printed with --no-progress too
        print(f"{name}: resuming, {resumed} of {mine} images already done (state in {state.directory})",
              file=sys.stderr)
    bad: dict[str, dict[str, str]] = {}
    bar = tqdm(total=mine, initial=resumed, unit="img", desc=f"{name} x {len(run.plan.domains)} domains",
               disable=not run.config.progress or run.rank != 0, dynamic_ncols=True)
    try:
        with torch.inference_mode(), run.config.autocast(run.device), bar:
            tick = time.perf_counter()
            for unit, loaded in iterate_batches(run, todo):
                fetched = time.perf_counter()
                run.loader_s += fetched - tick
                pass_ = run.passes[unit.pass_index]
                if len(run.passes) > 1:  # which source (ImageNet-C: which of its sets) is being decoded
                    bar.set_postfix_str(pass_.describe(), refresh=False)
                note_bad_images(run, pass_, loaded, bad)
                predictions, tied = _classify_unit(run, unit, loaded, bar)
                # With "error" a unit holding an unreadable image is not saved: once the file is replaced, the same
                # command evaluates just that unit again.
                if all(not e for e in loaded.errors) or run.config.on_bad_image == "skip":
                    try:
                        state.commit(unit, predictions, tied, loaded.stamps)
                    except OSError as err:
                        of = f" of pass {unit.pass_index} ({pass_.describe()})" if len(run.passes) > 1 else ""
                        raise RuntimeError(
                            f"cannot save batch {unit.batch.k}{of} (images {unit.batch.start}-{unit.batch.stop - 1}) "
                            f"in {state.directory}: {err}. The {_saved_images(run)} images saved before are kept: "
                            f"free some space and run the same command again to resume."
                        ) from err
                tick = time.perf_counter()
                run.compute_s += tick - fetched
                bar.update(unit.size)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {_saved_images(run)} of {mine} images saved in {state.directory}; run the "
                          f"same command again to resume.") from None
    return bad


@dataclass
class Outcome:
    """Every rank's predictions put together: per domain ``[n_source, 5]`` (-1: no prediction) and tied flags."""

    predictions: dict[str, np.ndarray]
    tied: dict[str, np.ndarray]
    bad: dict[str, dict[str, str]]
    sources: dict[str, ImageSource]
    covered: list[np.ndarray]  # per pass: which images some rank committed


def gather(run: Run, bad: Mapping[str, Mapping[str, str]]) -> Outcome:
    """This rank's committed units and undecodable images, exchanged with every rank (torchrun) and assembled."""
    assert run.state is not None
    mine = [(u.pass_index, u.batch.start, chunk.predictions, chunk.tied) for u, chunk in run.state.iter_done(run.units)]
    sizes = {key: len(source) for key, source in run.plan.sources.items()}
    rows_of = {d.name: sizes[d.source] for d in run.plan.domains}
    rows_of.update({d.name: sizes[p.source] for p in run.passes for d in p.derived})  # the pass's rows, at first
    predictions = {d.name: np.full((rows_of[d.name], TOPK), -1, dtype=np.int64) for d in run.plan.domains}
    tied = {d.name: np.zeros(rows_of[d.name], dtype=bool) for d in run.plan.domains}
    covered = [np.zeros(sizes[p.source], dtype=bool) for p in run.passes]
    merged: dict[str, dict[str, str]] = {}
    for part, part_bad in all_gather((mine, {k: dict(v) for k, v in bad.items()})):
        for key, files in part_bad.items():
            merged.setdefault(key, {}).update(files)
        for p, start, preds, ties in part:
            for name in preds:
                stop = start + len(preds[name])
                predictions[name][start:stop], tied[name][start:stop] = preds[name], ties[name]
                covered[p][start:stop] = True
    for d in (d for p in run.passes for d in p.derived):  # a reference domain keeps the rows of its own images
        indices = run.plan.sources[d.source].indices  # type: ignore[attr-defined]
        predictions[d.name], tied[d.name] = predictions[d.name][indices], tied[d.name][indices]
    return Outcome(predictions, tied, merged, dict(run.plan.sources), covered)


def bad_images_message(bad: Mapping[Path, Mapping[str, str]], n: int, state_dir: Path | None) -> str:
    """The list of undecodable images (folder -> relative path -> reason) and what to do about them."""
    count = sum(len(files) for files in bad.values())
    lines = [f"{count} of the {n} images cannot be decoded:"]
    lines += [f"  {root / rel}: {reason}" for root, files in bad.items() for rel, reason in sorted(files.items())]
    if state_dir is not None:
        lines.append(
            f"The other images are evaluated and their batches saved in {state_dir}. Replace these files with good "
            f"copies and run the same command again (only the batches holding them are evaluated again), or run it "
            f"with {option('on_bad_image', 'skip')} to leave them out: the result then records which.")
    else:
        lines.append(f"Replace these files with good copies, or run with {option('on_bad_image', 'skip')} to leave "
                     "them out: the result then records which.")
    return "\n".join(lines)


def settle_bad_images(run: Run, outcome: Outcome) -> Outcome:
    """Undecodable images: raise listing every one (``error``), or leave them out of their source (``skip``); and
    make sure every other image was evaluated.

    A skipped image's source is replaced by :meth:`ImageSource.without` (its fingerprint and description are those
    of the images evaluated, and it lists the skipped ones); its rows leave every domain of that source.
    """
    state_dir = run.state.directory if run.state is not None else None
    if any(outcome.bad.values()) and run.config.on_bad_image == "error":
        n = sum(len(run.plan.sources[k]) for k, files in outcome.bad.items() if files)
        raise DataError(bad_images_message({run.plan.sources[k].root: files for k, files in outcome.bad.items()},
                                           n, state_dir))
    for pass_, seen in zip(run.passes, outcome.covered):
        if not seen.all():  # a loader that drops images must never produce numbers over a silent subset
            raise RuntimeError(f"Expected predictions for all {len(seen)} images of pass {pass_.describe()}, but "
                               f"{int((~seen).sum())} were never evaluated.")
    for key, source in run.plan.sources.items():
        members = [d.name for d in run.plan.domains if d.source == key]
        missing = np.any([outcome.predictions[m][:, 0] < 0 for m in members], axis=0)
        if not missing.any():
            continue
        bad = outcome.bad.get(getattr(source, "parent_key", key), {})  # a reference's images are its parent's
        first = source.samples[0][0]
        if missing.all():
            raise DataError(f"none of the {len(source)} images in {source.root} can be decoded, e.g. "
                            f"{source.root / first}: {bad.get(first, '?')}.")
        reasons = {source.samples[i][0]: bad.get(source.samples[i][0], "could not be decoded (earlier, interrupted "
                   "part of this run)") for i in np.flatnonzero(missing).tolist()}
        outcome.sources[key] = source.without(reasons)
        for m in members:
            outcome.predictions[m], outcome.tied[m] = outcome.predictions[m][~missing], outcome.tied[m][~missing]
    return outcome


def _source_record(source: ImageSource) -> dict[str, Any]:
    """What a result records of an image source: its fingerprint, label space, where it is, a description."""
    record = {**source.fingerprint(), "label_space": source.label_space.to_dict(), "root": str(Path(source.root)),
              "description": source.describe()}
    if isinstance(source, ReferenceSource):
        record.update(source.record_extra())
    if source.skipped:
        record["skipped"] = [{"image": rel, "error": reason} for rel, reason in sorted(source.skipped.items())]
    return record


def finalize(run: Run, outcome: Outcome) -> EvalResult:
    """The :class:`~robustbench_ibn.results.EvalResult`: records of the sources, domains, protocol and environment;
    a warning for every domain where some images got equal logits for every allowed class."""
    sources = {key: SourceResult(_source_record(s), np.asarray(s.labels, dtype=np.int64), [r for r, _ in s.samples])
               for key, s in outcome.sources.items()}
    domains = [d.record() for d in run.plan.domains]
    protocol: dict[str, Any] = {"version": PROTOCOL_VERSION, "changes": PROTOCOL_CHANGES[PROTOCOL_VERSION],
                                "precision": run.config.precision, "memory_format": "channels_last", "topk": TOPK}
    if run.fast is not None:
        protocol["fast"] = run.fast.record()
    protocol["fingerprint"] = protocol_fingerprint({k: s.record for k, s in sources.items()}, domains,
                                                   run.config.precision, **_fast_key(run))
    environment = environment_record(
        run.device, date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - run.started, 3), loader_wait_s=round(run.loader_s, 3),
        compute_s=round(run.compute_s, 3), batch_size=run.config.batch_size, workers=run.config.workers,
        seed=run.config.seed, **({"compile_s": round(run.fast.compiled.seconds, 3)} if run.fast is not None else {}))
    tied = {name: int(flags.sum()) for name, flags in outcome.tied.items()}
    for name, count in tied.items():
        if count and run.rank == 0:
            warnings.warn(f"{run.model.name}: {count} of {len(outcome.tied[name])} images of domain {name!r} got equal "
                          f"logits for every allowed class (a constant or zero output?): their top-5 is top-k's tie-break, "
                          f"not the model's choice. The record counts them (tied).", RuntimeWarning,
                          stacklevel=2)
    data_config = {k: list(v) if isinstance(v, tuple) else v for k, v in run.model.data_config.to_dict().items()}
    return EvalResult(model=run.model.name, weights=run.model.weights, data_config=data_config,
                      sources=sources, domains=domains, protocol=protocol, environment=environment,
                      predictions=outcome.predictions, tied=tied)


def write_result(run: Run, result: EvalResult, output: str | os.PathLike[str] | None, *,
                 keep_state: bool = False) -> None:
    """On rank 0: write the record to ``output`` (if any), then remove the run state it no longer needs, unless
    ``keep_state`` (the caller writes more outputs from the result, then calls :func:`release_state`).

    The record is written before the state is removed, so a failed write (a full disk) loses nothing: the same call
    then writes it from the state.
    """
    if run.rank != 0:
        return
    directory = run.state.directory if run.state is not None else None
    if output is not None:
        try:
            result.save(output)
        except OSError as err:
            raise RuntimeError(
                f"cannot write the record {output}: {err}. Nothing computed is lost: every batch is kept in "
                f"{directory}. Free some space (or fix the path) and run the same command again: it writes "
                f"the record from the saved batches without evaluating anything."
            ) from err
    if run.state is not None:
        if keep_state:
            result.state_dir = run.state.directory
        else:
            run.state.clear()


def release_state(result: EvalResult) -> None:
    """Remove the run state a ``keep_state`` run left (:attr:`EvalResult.state_dir`), once every output is written."""
    if result.state_dir is not None:
        RunState(result.state_dir, []).clear()
        result.state_dir = None


def request_lock(request: Mapping[str, Any], config: RunConfig) -> FileLock:
    """A lock on a run *request* (what :func:`~robustbench_ibn.evaluate` was asked, before anything is built or
    downloaded; :func:`robustbench_ibn.runner.request_spec`), held for the whole run.

    The run state's own lock is keyed by what the set-up builds (weights and data hashes, shift definitions), so a
    second identical run would be refused only after its set-up (downloads, hashing, building the model); this one
    refuses it at once. Keyed like the state (batch size, precision, seed) and per torchrun rank; the state's lock
    still guards requests that differ in words but not in what they build (``official`` weights and the same file).
    """
    root = Path(config.state_dir) if config.state_dir is not None else default_state_root()
    key = run_key({"request": request, "batch_size": config.batch_size, "precision": config.precision,
                   "seed": config.seed, **({"fast": True} if config.fast else {})})
    path = root / f".request-{key}-rank{launch_rank()}.lock"
    return FileLock(path, busy=f"Another run of the same command is running right now (it holds {path}). Wait for it "
                               f"to finish (its result will be identical), or give this one another --state-dir.")


def output_lock(output: str | os.PathLike[str]) -> FileLock:
    """A lock on a result record's path (``.NAME.lock`` beside it, removed with the lock), held from the start of the
    run until the record is written: a second run writing the same file is refused at once, rather than both
    succeeding and the last one silently winning. Runs one after the other still overwrite it."""
    output = Path(output)
    path = output.parent / f".{output.name}.lock"
    return FileLock(path, busy=f"Another run is writing {output} right now (it holds {path}). Wait for it to finish, "
                               f"or give this one another --output.")


def run_plan(plan: Plan, model: PreparedModel, config: RunConfig, *, output: str | os.PathLike[str] | None = None,
             started: float | None = None, keep_state: bool = False) -> EvalResult:
    """Evaluate ``model`` on every domain of ``plan``: the engine's steps, in order (what
    :func:`robustbench_ibn.evaluate` runs once it has built the plan; give it a :class:`Plan` of your own to
    evaluate domains of other sources, e.g. a shift of another dataset). ``keep_state``: see :func:`write_result`."""
    run = start_run(plan, model, config, started=started)
    assert run.state is not None
    with run.state:
        bad = run_passes(run)
        outcome = gather(run, bad)
    result = finalize(run, settle_bad_images(run, outcome))
    write_result(run, result, output, keep_state=keep_state)
    return result
