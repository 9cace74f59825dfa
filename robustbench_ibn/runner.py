"""evaluate(): decode each image once, apply every shift on the device, keep every image's top-5.

The loop is deliberately plain: workers decode to uint8 crops, the device converts to [0, 1], runs each
shift, normalizes inside :class:`Normalized`, and stores top-5 class indices per image and shift.
Nothing but those predictions accumulates, so memory stays flat as the dataset grows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .data import DataConfig, DataError, ImageNetVal
from .distributed import all_gather, init_from_env
from .env import device_name, resolve_device, software_versions
from .models import prepare_model
from .results import EvalResult, protocol_fingerprint
from .state import Batch, RunState, batch_grid, default_state_root, run_key
from .plugins import load_entry_points
from .transforms import (
    Shift,
    TransformError,
    check_shift_output,
    prepare_transforms,
    resolve_transform_names,
    shift_context,
)

__all__ = ["BAD_IMAGE_POLICIES", "Interrupted", "Normalized", "evaluate", "resolve_device"]

PRECISIONS = ("fp32", "bf16", "fp16")
BAD_IMAGE_POLICIES = ("error", "skip")
NUM_CLASSES = 1000
TOPK = 5


class Normalized(nn.Module):
    """Wrap a network that expects normalized input so it takes [0, 1] pixels (shifts act before this)."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Same arithmetic as torchvision's Normalize (subtract, then divide), so logits match the
        # official pipeline bit for bit in fp32.
        return self.model((images - self.mean) / self.std)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :func:`evaluate`: the message says how many images are saved, where, how to resume."""


class _Decoded(Dataset):
    """The dataset's items plus why an image could not be decoded (``""`` when it could): the run decides.

    Decoding happens in the loader's workers; a :class:`DataError` there would stop the whole run at the first
    bad file. Returned instead (with a blank crop), it lets the run name every bad file, or leave them out.
    """

    def __init__(self, dataset: ImageNetVal) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, str]:
        try:
            crop, label = self.dataset[i]
        except DataError as err:
            reason = getattr(err, "reason", str(err))
            size = self.dataset.config.crop
            return torch.zeros(3, size, size, dtype=torch.uint8), self.dataset.samples[i][1], i, reason
        return crop, label, i, ""


def _dataset_record(dataset: ImageNetVal) -> dict[str, Any]:
    """What a result records of its images: the fingerprint, where they are, and a one-line description."""
    return {**dataset.fingerprint(), "root": str(Path(dataset.root)), "description": dataset.describe()}


def _saved_images(state: RunState, batches: Sequence[Batch]) -> int:
    done = state.done()
    return sum(b.stop - b.start for b in batches if b.k in done)


def _bad_images_message(root: Path, bad: Mapping[str, str], n: int, state_dir: Path) -> str:
    lines = [f"{len(bad)} of the {n} images cannot be decoded:"]
    lines += [f"  {root / rel}: {reason}" for rel, reason in sorted(bad.items())]
    lines.append(
        f"The other images are evaluated and their batches saved in {state_dir}. Replace these files with good "
        f"copies and run the same command again (only the batches holding them are evaluated again), or run it "
        f"with --on-bad-image skip (on_bad_image='skip') to leave them out: the result then records which."
    )
    return "\n".join(lines)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision not in PRECISIONS:
        raise ValueError(f"Expected precision to be one of {PRECISIONS}, but got {precision!r}.")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast is CUDA-only here; use --precision bf16 on CPU.")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _classify(model: nn.Module, images: torch.Tensor, where: str) -> np.ndarray:
    """Top-5 class indices (int16: any ImageNet index fits; predictions are all a run keeps).

    A CUDA out-of-memory error retries the batch in halves, and says so, rather than losing the run;
    each image's prediction does not depend on its batch-mates.
    """
    try:
        logits = model(images.contiguous(memory_format=torch.channels_last))
    except torch.cuda.OutOfMemoryError:
        if images.shape[0] == 1:
            raise
        half = images.shape[0] // 2
        print(f"CUDA out of memory with {images.shape[0]} images ({where}); retrying in batches of {half}. "
              f"Pass a smaller --batch-size to avoid this.", file=sys.stderr)
        torch.cuda.empty_cache()
        return np.concatenate([_classify(model, images[:half], where), _classify(model, images[half:], where)])
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise ValueError(
            f"Expected {where} to output [B, {NUM_CLASSES}] ImageNet-1k logits, but got {tuple(logits.shape)}. "
            f"Give a model with an ImageNet-1k classifier (or a class_map)."
        )
    if not torch.isfinite(logits).all():
        raise RuntimeError(
            f"{where}: the logits hold NaN or Inf, so no prediction is meaningful. Check the weights, or use "
            f"--precision fp32 if a reduced precision overflowed."
        )
    return logits.float().topk(TOPK, dim=1).indices.cpu().numpy().astype(np.int16)


def evaluate(
    model: str | nn.Module,
    data: str | os.PathLike[str] | ImageNetVal,
    transforms: str | Sequence[str] = ("rgb+50", "r+50", "std1.5"),
    *,
    weights: str = "official",
    model_kwargs: Mapping[str, Any] | None = None,
    data_config: DataConfig | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int = 50,
    workers: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    seed: int = 0,
    progress: bool = True,
    state_dir: str | os.PathLike[str] | None = None,
    transform_weights: Mapping[str, str | os.PathLike[str]] | None = None,
    on_bad_image: str = "error",
    output: str | os.PathLike[str] | None = None,
) -> EvalResult:
    """Evaluate one model on clean images and under appearance shifts.

    Args:
        model: a registered model name, or an ``nn.Module`` expecting normalized input (then give
            ``data_config`` unless the module carries one).
        data: an ImageNet-val folder (see :class:`~robustbench_ibn.data.ImageNetVal`) or a dataset.
        transforms: shift names or a ``--transforms`` string (``"all"``, ``"rgb+50,std2"``); ``clean``
            is always evaluated first as the baseline.
        weights: ``official``, a path, a URL or ``random`` (only for model names).
        model_kwargs: architecture arguments for a registered model.
        data_config: overrides the model's eval geometry and normalization.
        labels_file: labels for a flat image folder.
        limit: evaluate a deterministic class-balanced subset of this many images.
        batch_size: images per batch (each batch is shifted and classified once per transform).
        workers: DataLoader decode workers (default: the number of CPU cores, at most 8).
        device: ``auto``, ``cpu``, ``cuda`` or a torch device.
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (CUDA autocast).
        seed: random-init seed (and the seed of any stochastic shift).
        progress: show a tqdm bar on stderr.
        state_dir: where finished batches are committed as the run goes, so that the same call resumes
            after a crash or kill (default: ``$ROBUSTBENCH_IBN_CACHE/runs`` or
            ``~/.cache/robustbench_ibn/runs``); removed once the result is complete.
        transform_weights: shift name -> weights file or URL for shifts that take weights
            (``{"monet": "style_monet.pth"}``; default: their official files, from the torch hub cache or
            downloaded).
        on_bad_image: what an image that cannot be decoded (truncated, not an image, unreadable) does.
            ``"error"``: the run carries on, saving every finished batch, then raises :class:`DataError`
            listing every such file (replace them and call again: only their batches are evaluated again).
            ``"skip"``: they are left out; the result's dataset record lists them (``skipped``) and its
            ``n``, fingerprint and description are those of the images evaluated.
        output: write the full record here (:meth:`EvalResult.save`) before the run state is removed, so
            that a failed write (a full disk) loses nothing: the same call then writes it from the state.

    Returns:
        An :class:`~robustbench_ibn.results.EvalResult` holding per-image top-5 predictions.

    Raises:
        Interrupted: Ctrl-C; the finished batches are kept and the same call resumes from them.
    """
    started = time.perf_counter()
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"Expected on_bad_image to be one of {BAD_IMAGE_POLICIES}, but got {on_bad_image!r}.")
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1, but got {batch_size}.")
    dev = resolve_device(device)
    autocast = _autocast(dev, precision)  # validates precision before any work
    load_entry_points()  # installed plug-in packages (idempotent; ROBUSTBENCH_IBN_NO_ENTRY_POINTS=1 skips)
    names = resolve_transform_names(transforms)
    # Shifts are built and set up first (generator weights found, downloaded, hashed): a shift that cannot
    # run stops the call before any model is built or image decoded.
    prepared = prepare_transforms(names, weights=transform_weights, progress=progress)
    net, name, config, weights_record = prepare_model(model, weights, seed=seed, model_kwargs=model_kwargs,
                                                     data_config=data_config)
    # bind: the model's normalization (std×F) and the run seed (stochastic shifts seed per image from it).
    shifts: dict[str, Shift] = {n: s.bind(config.mean, config.std, seed=seed) for n, s in prepared.items()}
    if isinstance(data, ImageNetVal):
        dataset = data
        if (dataset.config.resize, dataset.config.crop, dataset.config.interpolation) != (
            config.resize, config.crop, config.interpolation
        ):
            raise ValueError(
                f"Expected the dataset's geometry to be model {name!r}'s (resize {config.resize}, crop {config.crop}, "
                f"{config.interpolation}), but got {dataset.config}. Build ImageNetVal with the model's data_config."
            )
    else:
        dataset = ImageNetVal(data, config, labels_file=labels_file, limit=limit)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers

    rank, world, dev = init_from_env(dev)
    wrapped = Normalized(net, config.mean, config.std).to(dev, memory_format=torch.channels_last).eval()
    n = len(dataset)
    dataset_record = _dataset_record(dataset)
    protocol: dict[str, Any] = {
        "geometry": {k: getattr(config, k) for k in ("resize", "crop", "interpolation")},
        "normalization": {"mean": list(config.mean), "std": list(config.std), "inside_model": True},
        "shift_stage": "on the preprocessed crop, in [0, 1] pixel space, before normalization",
        "transforms": [s.definition() for s in shifts.values()],
        "precision": precision,
        "memory_format": "channels_last",
        "topk": TOPK,
    }
    protocol["fingerprint"] = protocol_fingerprint(protocol, dataset_record)

    # The run's state is keyed by everything that determines its predictions, batch size included
    # (the batch grid), so the same command finds and resumes it; any change starts afresh.
    key = run_key({"model": name, "weights": weights_record, "model_kwargs": dict(model_kwargs or {}),
                   "dataset": dataset_record, "protocol": protocol, "batch_size": batch_size})
    state = RunState(Path(state_dir or default_state_root()) / key, list(shifts), rank=rank)
    batches = batch_grid(n, batch_size, rank, world)
    my_images = sum(b.stop - b.start for b in batches)
    loader_s = compute_s = 0.0
    checked: set[str] = set()
    bad: dict[str, str] = {}  # this rank's images that could not be decoded: relative path -> reason
    with state:
        done = state.done()
        if on_bad_image == "error":  # batches of an interrupted "skip" run left images out: evaluate them again
            done -= {b.k for b, _, preds in state.iter_done(batches) if (next(iter(preds.values())) < 0).any()}
        todo = [b for b in batches if b.k not in done]
        resumed = sum(b.stop - b.start for b in batches if b.k in done)
        if resumed and progress:
            print(f"{name}: resuming, {resumed} of {my_images} images already done "
                  f"(state in {state.directory})", file=sys.stderr)
        loader = DataLoader(_Decoded(dataset), batch_sampler=[b.indices for b in todo], num_workers=workers,
                            pin_memory=dev.type == "cuda")
        bar = tqdm(total=my_images, initial=resumed, unit="img",
                   desc=f"{name} x {len(shifts)} domains", disable=not progress or rank != 0, dynamic_ncols=True)
        try:
            with torch.inference_mode(), autocast, bar:
                tick = time.perf_counter()
                for batch, (images, targets, index, errors) in zip(todo, loader):
                    fetched = time.perf_counter()
                    loader_s += fetched - tick
                    keys = [dataset.samples[i][0] for i in index.tolist()]
                    ok = [j for j, error in enumerate(errors) if not error]
                    for j in (j for j, error in enumerate(errors) if error):
                        if on_bad_image == "skip":
                            note = f"{name}: skipping {dataset.root / keys[j]}, which cannot be decoded: {errors[j]}"
                        else:
                            note = f"{name}: cannot decode {dataset.root / keys[j]}: {errors[j]}"
                            if not bad:
                                note += (". Carrying on to find every unreadable image (finished batches are saved), "
                                         "then stopping with the list; Ctrl-C stops now, --on-bad-image skip leaves "
                                         "such images out.")
                        tqdm.write(note, file=sys.stderr)
                        bad[keys[j]] = errors[j]
                    # Unreadable images keep -1 (no prediction) in their rows; the others are classified as usual.
                    top5 = {s: np.full((len(keys), TOPK), -1, dtype=np.int16) for s in shifts}
                    if ok:
                        x = images if len(ok) == len(keys) else images[ok]
                        x = x.to(dev, non_blocking=True).float().div_(255)
                        ok_keys = [keys[j] for j in ok]
                        for shift_name, shift in shifts.items():
                            try:
                                shifted = shift.apply_batch(x, ok_keys)
                            except TransformError:
                                raise
                            except Exception as err:  # a plug-in's bug: say which shift, where it lives, which images
                                raise TransformError(
                                    f"{shift_context(shift)} raised {type(err).__name__} on the batch starting with "
                                    f"{ok_keys[0]!r}: {err}"
                                ) from err
                            if shift_name not in checked:  # plug-ins are checked on their first batch
                                check_shift_output(shift, x, shifted)
                                checked.add(shift_name)
                            where = (f"model {name!r} under shift {shift_name!r} on the batch starting with "
                                     f"{ok_keys[0]!r}")
                            top5[shift_name][ok] = _classify(wrapped, shifted, where)
                    # With "error" a batch holding an unreadable image is not saved: once the file is replaced, the
                    # same command evaluates just that batch again.
                    if len(ok) == len(keys) or on_bad_image == "skip":
                        try:
                            state.commit(batch, targets.numpy(), top5)
                        except OSError as err:
                            raise RuntimeError(
                                f"cannot save batch {batch.k} (images {batch.start}-{batch.stop - 1}) in "
                                f"{state.directory}: {err}. The {_saved_images(state, batches)} images saved before "
                                f"are kept: free some space and run the same command again to resume."
                            ) from err
                    tick = time.perf_counter()
                    compute_s += tick - fetched
                    bar.update(len(keys))
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: {_saved_images(state, batches)} of {my_images} images "
                f"saved in {state.directory}; run the same command again to resume."
            ) from None
        mine = [(b.start, labels_, preds) for b, labels_, preds in state.iter_done(batches)]

    labels = np.full(n, -1, dtype=np.int64)
    predictions = {s: np.full((n, TOPK), -1, dtype=np.int64) for s in shifts}
    gathered = all_gather((mine, bad))
    bad = {}
    for part, part_bad in gathered:
        bad.update(part_bad)
        for start, labels_, preds in part:
            labels[start:start + len(labels_)] = labels_
            for s in shifts:
                predictions[s][start:start + len(labels_)] = preds[s]
    if bad and on_bad_image == "error":
        raise DataError(_bad_images_message(dataset.root, bad, n, state.directory))
    missing = int((labels < 0).sum())
    if missing:  # a loader that drops images must never produce numbers over a silent subset
        raise RuntimeError(f"Expected predictions for all {n} images, but {missing} were never evaluated.")
    skipped_rows = np.flatnonzero(next(iter(predictions.values()))[:, 0] < 0)  # only with on_bad_image="skip"
    if len(skipped_rows):
        if len(skipped_rows) == n:
            raise DataError(f"none of the {n} images in {dataset.root} can be decoded, e.g. "
                            f"{dataset.root / dataset.samples[0][0]}: {bad.get(dataset.samples[0][0], '?')}.")
        reasons = {dataset.samples[i][0]: bad.get(dataset.samples[i][0], "could not be decoded (earlier, interrupted "
                   "part of this run)") for i in skipped_rows.tolist()}
        keep = np.setdiff1d(np.arange(n), skipped_rows)
        dataset = dataset.without(reasons)
        labels = labels[keep]
        predictions = {s: p[keep] for s, p in predictions.items()}
        n = len(dataset)
        dataset_record = _dataset_record(dataset)
        dataset_record["skipped"] = [{"image": rel, "error": reason} for rel, reason in sorted(reasons.items())]
        protocol["fingerprint"] = protocol_fingerprint(protocol, dataset_record)

    environment = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
        "loader_wait_s": round(loader_s, 3),
        "compute_s": round(compute_s, 3),
        "device": device_name(dev),
        "batch_size": batch_size,
        "workers": workers,
        "seed": seed,
        "versions": software_versions(),
    }
    result = EvalResult(
        model=name,
        weights=weights_record,
        dataset=dataset_record,
        protocol=protocol,
        environment=environment,
        labels=labels,
        predictions=predictions,
        images=[path for path, _ in dataset.samples],
    )
    if rank == 0:
        if output is not None:
            try:
                result.save(output)
            except OSError as err:
                raise RuntimeError(
                    f"cannot write the record {output}: {err}. Nothing computed is lost: every batch is kept in "
                    f"{state.directory}. Free some space (or fix the path) and run the same command again: it writes "
                    f"the record from the saved batches without evaluating anything."
                ) from err
        state.clear()  # the result now holds every prediction; the state is no longer needed
    return result
