"""Downloads, hashes and safe loading of checkpoint files: the helpers every weights user shares.

Models (:mod:`robustbench_ibn.models`), backbone adapters and the shifts that carry networks (the CycleGAN
generators) all obtain files the same way:

* :func:`fetch` / :func:`cached_download`: an ``http(s)`` URL into the torch hub cache
  (``<torch hub dir>/checkpoints``, see :func:`cache_path`: keyed by URL unless the file name carries the
  sha256 prefix that is checked), hash-checked against a sha256 prefix when one is known, else checked to be a
  checkpoint ``torch.load`` reads. A failed, rejected, timed-out or terminated download never leaves a file in
  the cache. A server that stops answering fails after ``$ROBUSTBENCH_IBN_DOWNLOAD_TIMEOUT`` seconds (60).
* :func:`file_sha256`: the digest recorded in every result.
* :func:`read_state_dict`: ``torch.load(..., weights_only=True)`` (a checkpoint is data, never code), then the
  state_dict itself: flat, or under a ``"state_dict"`` / ``"model"`` key (training-script wrappers), with a
  ``module.`` prefix on every key (``nn.DataParallel``) stripped. Anything else (EMA weights, optimizer
  state) is deliberately not guessed at.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import re
import sys
import urllib.error
import urllib.request
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present
from tqdm import tqdm

from .files import sigterm_raises
from .options import option
from .text import listing

__all__ = [
    "DOWNLOAD_TIMEOUT_ENV",
    "WeightsError",
    "cache_path",
    "cached_download",
    "check_finite_state",
    "download_timeout",
    "extract_state_dict",
    "fetch",
    "file_sha256",
    "hash_prefix_from_name",
    "read_state_dict",
    "url_filename",
]

# torch.hub's file name convention ``name-<sha256 prefix>.ext``. torch.hub uses ``[a-f0-9]*``; ``+`` keeps a
# bare ``name-.pth`` from counting as an (empty, always matching) hash.
_HASH_REGEX = re.compile(r"-([a-f0-9]+)\.")
_WRAPPER_KEYS = ("state_dict", "model")
_DP_PREFIX = "module."
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_ENV = "ROBUSTBENCH_IBN_DOWNLOAD_TIMEOUT"
_DEFAULT_TIMEOUT = 60.0


class WeightsError(RuntimeError):
    """Weights could not be obtained or do not fit the model; the message says what to do instead."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Full hex SHA-256 of a file, read in chunks so large checkpoints are not held in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_download(url: str, hash_prefix: str | None = None, *, progress: bool = True,
                    cache_name: str | None = None) -> Path:
    """Download the checkpoint ``url`` into the torch hub cache (at :func:`cache_path`) unless it is already there.

    Args:
        url: http(s) URL of the file.
        hash_prefix: leading hex digits the file's SHA-256 must have; checked for fresh downloads AND for a
            file already in the cache (so a corrupt cache is caught). ``None``: a fresh download must be a file
            ``torch.load(weights_only=True)`` reads (a page, a text or a pickle of code is refused).
        progress: show a progress bar on stderr while downloading.
        cache_name: keep it as ``checkpoints/<cache_name>`` (see :func:`cache_path`).

    Returns:
        Path of the cached file.

    Raises:
        WeightsError: download failed, timed out or was refused, or the (downloaded or cached) file has the wrong
            hash. A failed download never leaves a file in the cache.
    """
    return fetch(url, hash_prefix, progress=progress, cache_name=cache_name)[0]


def cache_path(url: str, hash_prefix: str | None = None, *, cache_name: str | None = None) -> Path:
    """Where :func:`fetch` keeps ``url`` in the torch hub cache.

    * ``<hub>/checkpoints/<file name>``, torch.hub's own place, when the file name carries the sha256 prefix
      that is checked (``resnet50-0676ba61.pth`` with ``hash_prefix="0676ba61"``): the name then identifies the
      content, every hit is hash-checked, and torchvision's loader (or a copy put there by hand) finds it.
    * ``<hub>/checkpoints/<cache_name>`` when the caller names the file: an official file of a known URL without
      a hash in its name (the CycleGAN generators), so a copy put there by hand is found.
    * otherwise ``<hub>/checkpoints/by-url/<16 hex digits of sha256(url)>/<file name>``: two URLs whose files
      have the same name (``.../checkpoint.pth``) never share a cache file.

    Example:
        >>> hub = Path(torch.hub.get_dir())
        >>> cache_path("https://example.org/a/checkpoint.pth").relative_to(hub).as_posix()
        'checkpoints/by-url/f2773f3132267e41/checkpoint.pth'
        >>> url = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
        >>> cache_path(url, "0676ba61").relative_to(hub).as_posix()
        'checkpoints/resnet50-0676ba61.pth'
    """
    filename = url_filename(url)
    if not filename or filename in (".", ".."):
        raise WeightsError(f"cannot derive a file name from URL {url!r}; download it and pass "
                           f"{option('weights', '/path/to/file')}")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    named = hash_prefix_from_name(url)
    if cache_name is not None:
        return folder / cache_name
    if hash_prefix and named and (named.startswith(hash_prefix) or hash_prefix.startswith(named)):
        return folder / filename
    return folder / "by-url" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16] / filename


def download_timeout() -> float:
    """Seconds a download waits for the server to connect or to send the next bytes (not for the whole file):
    ``$ROBUSTBENCH_IBN_DOWNLOAD_TIMEOUT``, else 60."""
    text = os.environ.get(DOWNLOAD_TIMEOUT_ENV, "").strip()
    if not text:
        return _DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise WeightsError(f"Expected {DOWNLOAD_TIMEOUT_ENV} to be a number of seconds > 0, but got {text!r}.")
    return value


def hash_prefix_from_name(url: str) -> str | None:
    """The sha256 prefix in a torch.hub-style file name (``resnet50-0676ba61.pth`` -> ``"0676ba61"``), or None.

    Example:
        >>> hash_prefix_from_name("https://download.pytorch.org/models/resnet50-0676ba61.pth")
        '0676ba61'
    """
    match = _HASH_REGEX.search(url_filename(url))
    return match.group(1) if match else None


def url_filename(url: str) -> str:
    """The last path component of a URL (query and fragment dropped): the name the file is cached under."""
    return os.path.basename(urlparse(url).path)


def fetch(url: str, hash_prefix: str | None, *, progress: bool = True,
          cache_name: str | None = None) -> tuple[Path, str]:
    """:func:`cached_download`, also returning the SHA-256 it computed (so the file is hashed once)."""
    dst = cache_path(url, hash_prefix, cache_name=cache_name)
    filename = dst.name
    if dst.is_file():
        digest = file_sha256(dst)
        if hash_prefix and not digest.startswith(hash_prefix):
            raise WeightsError(
                f"cached file {dst} (for {url}) is corrupt or not the expected file: its sha256 is {digest}, "
                f"expected a digest starting with {hash_prefix!r}. Delete it (rm {dst}) to download it again."
            )
        return dst, digest

    dst.parent.mkdir(parents=True, exist_ok=True)
    # Download to a private name beside dst and move it into place only once verified: an interrupted or
    # wrong download never appears under the cache name.
    tmp = dst.with_name(f"{filename}.{uuid.uuid4().hex}.download")
    way_out = (
        f"download it elsewhere and pass {option('weights', f'/path/to/{filename}')}, or place it at {dst} (the torch "
        "hub cache) where it will be picked up"
    )
    # A SIGTERM while downloading unwinds through the finally below (no temporary file left), see sigterm_raises.
    with sigterm_raises():
        try:
            digest = _download_checked(url, tmp, hash_prefix, progress, way_out)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
            if not dst.exists() and dst.parent.parent.name == "by-url":  # no empty per-URL folders left either
                for folder in (dst.parent, dst.parent.parent):
                    with contextlib.suppress(OSError):
                        folder.rmdir()
    return dst, digest


def _download_checked(url: str, tmp: Path, hash_prefix: str | None, progress: bool, way_out: str) -> str:
    """Download ``url`` to ``tmp`` and check it is the file wanted; its sha256. Raises WeightsError otherwise."""
    timeout = download_timeout()
    try:
        _download(url, tmp, progress=progress, timeout=timeout)
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, HTTPError, timeouts; ValueError: bad URL
        if isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError):
            raise WeightsError(
                f"no answer from {url} within {timeout:g} s ({DOWNLOAD_TIMEOUT_ENV}): the server does not respond. "
                f"Check the network and retry, raise the limit (e.g. {DOWNLOAD_TIMEOUT_ENV}=300), or {way_out}."
            ) from e
        raise WeightsError(f"could not download {url}: {e}. If this machine is offline, {way_out}.") from e
    digest = file_sha256(tmp)
    # Without a hash to check, a login/error page or a cut-off archive would otherwise sit in the cache and
    # fail every later run; with one, this says why the hash differs.
    problem = _not_a_file_download(tmp)
    if problem and (not hash_prefix or not digest.startswith(hash_prefix)):
        raise WeightsError(
            f"{url} sent {problem}, not the file{f' (sha256 {digest})' if hash_prefix else ''}. It was discarded "
            f"(nothing cached). Check the URL (it may need a login or have moved), or {way_out}."
        )
    if hash_prefix and not digest.startswith(hash_prefix):
        raise WeightsError(
            f"hash mismatch for {url}: expected a sha256 starting with {hash_prefix!r}, got {digest}. The "
            f"file was discarded (nothing cached). Retry, or {way_out} once you have checked it."
        )
    if not hash_prefix:  # nothing vouches for the content: it must at least be a checkpoint torch can read
        try:
            torch.load(tmp, map_location="cpu", weights_only=True)
        except Exception as e:  # as read_state_dict: any failure means "not a readable checkpoint"
            raise WeightsError(
                f"{url} sent a file that is not a readable checkpoint ({_load_error_cause(e)}). It was discarded "
                f"(nothing cached). Check the URL, or {way_out}."
            ) from e
    return digest


def _download(url: str, path: Path, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``path``; ``timeout`` bounds the wait for the connection and for each read."""
    request = urllib.request.Request(url, headers={"User-Agent": "robustbench-ibn"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as f:
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        done = 0
        with tqdm(total=total, disable=not progress, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                  desc=url_filename(url)) as bar:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
    if total is not None and done != total:
        raise http.client.IncompleteRead(b"", total - done)  # the server closed the connection early


def _not_a_file_download(path: Path) -> str | None:
    """What a download obviously is instead of a file (an HTML page, a cut-off zip archive), or None."""
    with open(path, "rb") as f:
        head = f.read(1024)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
            text.startswith(b"<") and b"<html" in text):
        return "an HTML page"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):  # torch.save files are zip archives
        return "an incomplete zip archive (the download was cut off)"
    return None


def _load_error_cause(e: Exception) -> str:
    """The informative sentence of a torch.load error (weights_only errors bury it under generic advice)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().split("\n\n", 1)[0]
    text = re.split(r"(?<=\.)\s", " ".join(text.split()), maxsplit=1)[0][:300]
    return f"{type(e).__name__}: {text}" if text else f"{type(e).__name__}, e.g. an empty file"


def extract_state_dict(obj: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state_dict inside a loaded checkpoint object: flat, or under ``"state_dict"`` / ``"model"``, with a
    ``module.`` prefix on every key stripped (``path`` only names the file in errors).

    Example:
        >>> sd = extract_state_dict({"state_dict": {"module.fc.weight": torch.zeros(1)}}, "ckpt.pth")
        >>> list(sd)
        ['fc.weight']
    """
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        got = f"a dict with keys {listing(list(obj))}" if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(
            f"{path} holds no state_dict: expected a dict of tensors (flat or under "
            f"{' / '.join(repr(k) for k in _WRAPPER_KEYS)}), got {got}."
        )
    if all(isinstance(k, str) and k.startswith(_DP_PREFIX) for k in obj):
        if not isinstance(obj, dict):
            obj = OrderedDict(obj)
        # In place, and also renames the _metadata entries, which carry the BatchNorm/InstanceNorm versions.
        consume_prefix_in_state_dict_if_present(obj, _DP_PREFIX)
    return obj


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state_dict stored in a checkpoint file, read safely (``weights_only=True``) and unwrapped.

    Raises:
        WeightsError: the file is unreadable, not a torch file, holds pickled objects other than tensors, or
            holds no state_dict; the message names the file and the way out.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, not a torch file, or a pickle weights_only refuses: all "unreadable"
        raise WeightsError(
            f"cannot read {path} as a checkpoint ({_load_error_cause(e)}): the file is corrupt or truncated, is "
            "not a torch.save file, or holds pickled objects other than tensors (refused: weights_only=True). "
            "Expected a torch.save'd state_dict; re-download the file, or re-save just model.state_dict()."
        ) from e
    state = extract_state_dict(obj, path)
    check_finite_state(state, path)
    return state


def check_finite_state(state: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise :class:`WeightsError` when a floating-point tensor of ``state`` holds NaN or Inf (naming the keys).

    A network with such weights gives NaN outputs: NaN logits stop a run, but a style network's NaN pixels become
    black 8-bit images, and a ``-inf`` bias a class that is never predicted; no published checkpoint holds any.

    Example:
        >>> check_finite_state({"w": torch.tensor([1.0, float("nan")])}, "w.pth")
        Traceback (most recent call last):
        ...
        robustbench_ibn.hub.WeightsError: w.pth holds NaN or Inf in 1 of its tensors (w: 1 of 2 values): a network with these weights computes NaN or Inf. Expected finite weights; re-download the file, or re-train or re-export the network.
    """
    # A NaN or Inf makes the sum non-finite: one cheap reduction per tensor, values counted only then (or when
    # the sum of finite values overflowed).
    bad = [f"{key}: {n} of {value.numel()} values" for key, value in state.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value.sum())
           and (n := value.numel() - int(torch.isfinite(value).sum()))]
    if bad:
        raise WeightsError(f"{path} holds NaN or Inf in {len(bad)} of its tensors ({listing(bad, 5)}): a network with "
                           "these weights computes NaN or Inf. Expected finite weights; re-download the file, or "
                           "re-train or re-export the network.")
