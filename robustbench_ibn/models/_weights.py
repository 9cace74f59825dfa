"""Weights: official download (hash-checked, torch hub cache), local files, URLs, explicit random init.

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint is data, never code. The file
must hold a state_dict (a mapping of key -> tensor), either flat or under a ``"state_dict"`` or ``"model"``
key (training-script wrappers, e.g. the old IBN-Net Google-Drive ``.pth.tar`` files). A ``module.`` prefix
on every key (``nn.DataParallel``) is stripped. Anything else (EMA weights under ``"state_dict_ema"``,
optimizer state) is deliberately not guessed at: re-save the wanted state_dict as a flat file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

if TYPE_CHECKING:  # _api imports this module; a runtime import would be circular.
    from ._api import ModelInfo

__all__ = ["WeightsError", "WeightsSource", "cached_download", "file_sha256", "load_weights"]

# torch.hub's file name convention ``name-<sha256 prefix>.ext``. torch.hub uses ``[a-f0-9]*``; ``+`` keeps a
# bare ``name-.pth`` from counting as an (empty, always matching) hash.
_HASH_REGEX = re.compile(r"-([a-f0-9]+)\.")
_WRAPPER_KEYS = ("state_dict", "model")
_DP_PREFIX = "module."
_MAX_LISTED = 10
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """Weights could not be obtained or do not fit the model; the message says what to do instead."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights came from; recorded in every result.

    kind is one of "official", "path", "url", "random". location is the URL or file path (None for
    random), sha256 the full hex digest of the file loaded (None for random), seed the init seed (set for
    random only: with a strict load every weight comes from the file, so the seed does not matter there).
    """

    kind: str
    location: str | None = None
    sha256: str | None = None
    seed: int | None = None

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def describe(self) -> str:
        """One line for logs and result tables; random init is spelled out loudly so it is never mistaken."""
        if self.is_random:
            return f"RANDOM INIT (seed {self.seed}) - not pretrained; numbers are meaningless as accuracy"
        label = {"path": "file"}.get(self.kind, self.kind)
        digest = f" (sha256 {self.sha256[:12]}...)" if self.sha256 else ""
        return f"{label} {self.location}{digest}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Full hex SHA-256 of a file, read in chunks so large checkpoints are not held in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_download(url: str, hash_prefix: str | None = None, *, progress: bool = True) -> Path:
    """Download ``url`` into ``<torch hub dir>/checkpoints/<file name>`` unless it is already there.

    Args:
        url: http(s) URL of the file; its last path component is the cache file name.
        hash_prefix: leading hex digits the file's SHA-256 must have; checked for fresh downloads AND for a
            file already in the cache (so a corrupt cache is caught). ``None`` checks nothing.
        progress: show a progress bar on stderr while downloading.

    Returns:
        Path of the cached file.

    Raises:
        WeightsError: download failed, or the (downloaded or cached) file has the wrong hash. A failed
            download never leaves a file in the cache.
    """
    return _fetch(url, hash_prefix, progress=progress)[0]


def load_weights(model: nn.Module, spec: str | os.PathLike[str], *, info: ModelInfo, seed: int) -> WeightsSource:
    """Load weights into ``model`` (strictly) according to ``spec``.

    Args:
        model: the freshly built network (built under ``torch.manual_seed(seed)`` by ``create_model``).
        spec: ``"official"`` (``info.url``, downloaded into the torch hub cache and hash-checked),
            ``"random"`` (keep the seeded init), an ``http(s)://`` URL (cached the same way; hash-checked when
            the file name is ``name-<hex>.ext``) or a local checkpoint path.
        info: the model's metadata (url, hash_prefix, checkpoint_filter, name).
        seed: the init seed, recorded for ``"random"``.

    Returns:
        Where the weights came from, with the SHA-256 of the file loaded.

    Raises:
        WeightsError: no published weights, download/hash failure, unreadable file, or keys/shapes that do
            not match the model. On a mismatch the model may be partially loaded; do not use it.
    """
    spec = os.fspath(spec)
    if spec == "random":
        return WeightsSource(kind="random", seed=seed)
    if spec == "official":
        if info.url is None:
            raise WeightsError(
                f"{info.name} has no published weights; pass --weights PATH for your own checkpoint "
                "or --weights random for an explicit random init"
            )
        # An explicit prefix wins; otherwise the torch.hub file name convention still gives a check.
        path, digest = _fetch(info.url, info.hash_prefix or _hash_prefix_from_name(info.url))
        kind, location = "official", info.url
    elif spec.startswith(("http://", "https://")):
        path, digest = _fetch(spec, _hash_prefix_from_name(spec))
        kind, location = "url", spec
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(
                f"--weights {spec!r}: no such checkpoint file ({path.absolute()}). Expected 'official', "
                "'random', a URL or an existing checkpoint file."
            )
        digest = file_sha256(path)
        kind, location = "path", str(path.resolve())
    _load_file(model, path, info)
    return WeightsSource(kind=kind, location=location, sha256=digest)


# --- download ------------------------------------------------------------------------------------------------


def _hash_prefix_from_name(url: str) -> str | None:
    match = _HASH_REGEX.search(_url_filename(url))
    return match.group(1) if match else None


def _url_filename(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def _fetch(url: str, hash_prefix: str | None, *, progress: bool = True) -> tuple[Path, str]:
    """:func:`cached_download`, also returning the SHA-256 it computed (so the file is hashed once)."""
    filename = _url_filename(url)
    if not filename:
        raise WeightsError(f"cannot derive a file name from URL {url!r}; download it and pass --weights /path/to/file")
    dst = Path(torch.hub.get_dir()) / "checkpoints" / filename
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
    # wrong download never appears under the cache name. (download_url_to_file also writes via a temp file and
    # removes it on failure; its own hash check is not used because its error would not give us the digest.)
    tmp = dst.with_name(f"{filename}.{uuid.uuid4().hex}.download")
    way_out = (
        f"download it elsewhere and pass --weights /path/to/{filename}, or place it at {dst} (the torch hub "
        "cache) where it will be picked up"
    )
    try:
        try:
            torch.hub.download_url_to_file(url, str(tmp), hash_prefix=None, progress=progress)
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError/HTTPError are OSErrors
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
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst, digest


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


# --- loading -------------------------------------------------------------------------------------------------


def _load_file(model: nn.Module, path: Path, info: ModelInfo) -> None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, not a torch file, or a pickle weights_only refuses: all "unreadable"
        raise WeightsError(
            f"cannot read {path} as a checkpoint ({_load_error_cause(e)}): the file is corrupt or truncated, is "
            "not a torch.save file, or holds pickled objects other than tensors (refused: weights_only=True). "
            "Expected a torch.save'd state_dict; re-download the file, or re-save just model.state_dict()."
        ) from e
    state_dict = _extract_state_dict(obj, path)
    if info.checkpoint_filter is not None:
        state_dict = info.checkpoint_filter(state_dict)
    _strict_load(model, state_dict, path, info.name)


def _load_error_cause(e: Exception) -> str:
    """The informative sentence of a torch.load error (weights_only errors bury it under generic advice)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().split("\n\n", 1)[0]
    text = re.split(r"(?<=\.)\s", " ".join(text.split()), maxsplit=1)[0][:300]
    return f"{type(e).__name__}: {text}" if text else f"{type(e).__name__}, e.g. an empty file"


def _extract_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        got = f"a dict with keys {_listing(list(obj))}" if isinstance(obj, Mapping) else type(obj).__name__
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


def _strict_load(model: nn.Module, state_dict: Mapping[str, Any], path: Path, name: str) -> None:
    """``load_state_dict`` that reports missing, unexpected and mis-shaped keys together."""
    expected = model.state_dict()
    misshaped = [
        (k, tuple(expected[k].shape), tuple(v.shape))
        for k, v in state_dict.items()
        if k in expected
        and isinstance(v, torch.Tensor)
        and isinstance(expected[k], torch.Tensor)
        and v.shape != expected[k].shape
    ]
    bad = {k for k, _, _ in misshaped}
    loadable = state_dict
    if bad:  # torch aborts on the first size mismatch; drop them so it still reports missing/unexpected keys
        loadable = OrderedDict((k, v) for k, v in state_dict.items() if k not in bad)
        if hasattr(state_dict, "_metadata"):
            loadable._metadata = state_dict._metadata  # type: ignore[attr-defined]
    # Missing/unexpected come from torch rather than a key diff: module hooks legitimately accept some gaps
    # (BatchNorm fills in num_batches_tracked for files without version metadata, ibn_zoo.md 9.5).
    try:
        result = model.load_state_dict(loadable, strict=False)
    except RuntimeError as e:
        raise WeightsError(f"{path} does not fit {name}: {e}") from e
    missing = [k for k in result.missing_keys if k not in bad]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected or misshaped:
        lines = [
            f"{path} does not fit {name}: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(misshaped)} mis-shaped key(s)."
        ]
        if missing:
            lines.append(f"  missing (in the model, not in the file): {_listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected (in the file, not in the model): {_listing(unexpected)}")
        if misshaped:
            shapes = [f"{k} expected {list(want)} got {list(got)}" for k, want, got in misshaped]
            lines.append(f"  mis-shaped: {_listing(shapes)}")
        lines.append(
            "Expected a checkpoint of exactly this architecture (same keys and shapes; a 'module.' prefix and a "
            "'state_dict'/'model' wrapper are handled). Check the model name, the number of classes, or pass "
            "the right file with --weights PATH."
        )
        raise WeightsError("\n".join(lines))


def _listing(items: list[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
