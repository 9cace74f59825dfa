"""On-disk cache of stylized crops (the CycleGAN shifts); ``robust-cache`` (:mod:`robustbench_ibn.cli.cache`) inspects it.

Generating a Monet crop costs ~0.25 s on a CPU core pair (about 3 hours for ImageNet val), so every
stylized crop is kept on disk and shared by every model evaluated later. Layout::

    <root>/style/<namespace>/meta.json                 what made the entries (generator sha256, variant)
    <root>/style/<namespace>/<H>x<W>/<k[:2]>/<k>.png   one stylized crop, 8-bit RGB, lossless

* ``root`` is ``$ROBUSTBENCH_IBN_CACHE``, else ``$XDG_CACHE_HOME/robustbench_ibn``, else
  ``~/.cache/robustbench_ibn``.
* ``namespace`` names the generator and the stylization variant, e.g. ``monet-3f0c...e1-crop-round-v1``
  (style, the first 16 hex digits of the generator file's sha256, the variant). Another weights file or
  another definition of the shift never reads these entries.
* ``k`` is :func:`content_key` of the *input* crop: the sha256 of its 8-bit pixels and shape. It is exact
  (two crops share an entry only if every input byte is equal) and independent of file names and folder
  layouts, so the same image under another path or dataset copy reuses its entry.

Entries are written atomically (a private temporary file in the same folder, then ``os.replace``), so an
interrupted run leaves only whole entries and the next run continues where it stopped. Concurrent runs
may both generate an entry; the last ``os.replace`` wins and both contents are the same crop. Each PNG
carries the sha256 of its own pixels; a read that does not match it is treated as a miss, as is an entry
whose header gives another size (checked before decoding, so an oversized "bomb" PNG is never decoded).

The inspection functions (:func:`cache_info`, :func:`verify_cache`, :func:`clear_cache`) take the cache as
untrusted: a broken link or a folder where an entry should be is reported, never followed out of the cache
and never removed recursively; a namespace that is a link is removed as a link, its target left alone.

This module imports nothing from the runner (the transforms use it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from .files import atomic_write_bytes, atomic_write_text, cache_root

__all__ = [
    "StyleCache",
    "clear_cache",
    "content_key",
    "cache_info",
    "style_cache_dir",
    "verify_cache",
]

_META = "meta.json"
_PIXELS_TEXT = "robustbench_ibn.pixels_sha256"
_INPUT_TEXT = "robustbench_ibn.input"
_PNG_LEVEL = 1  # zlib level: 3-4x faster to write than the default 6, about 10% larger on these crops


def style_cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the stylized-crop namespaces (``<root>/style``)."""
    return (Path(root).expanduser() if root is not None else cache_root()) / "style"


def content_key(pixels: np.ndarray) -> str:
    """Exact identity of an input crop: sha256 over its dtype, shape and bytes (C order).

    8-bit crops (the runner's case) hash their bytes; any other array hashes its own dtype's bytes, so two
    inputs share a key only if they are identical.
    """
    arr = np.ascontiguousarray(pixels)
    h = hashlib.sha256(f"{arr.dtype.str}:{'x'.join(map(str, arr.shape))}:".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _pixels_sha(hwc: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(hwc).tobytes()).hexdigest()


# What reading an entry can raise besides FileNotFoundError: a damaged file, a folder in its place, PIL's bomb
# limit (not an OSError), or the size check below.
_ENTRY_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _read_entry(path: Path, height: int, width: int) -> tuple[np.ndarray, dict[str, str]]:
    """An entry's pixels (as stored: an RGB entry is ``[H, W, 3]`` uint8) and text chunks; the header's size is
    checked against ``height`` x ``width`` before any pixel is decoded, so a huge image there costs nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below is stricter
        with Image.open(path) as img:
            if img.size != (width, height):
                raise ValueError(f"its header says {img.size[0]}x{img.size[1]}, expected {width}x{height}")
            img.load()
            return np.array(img), dict(img.text)  # type: ignore[attr-defined]


class StyleCache:
    """One namespace of stylized crops: ``get``/``put`` 8-bit ``[H, W, 3]`` arrays by input key.

    Args:
        namespace: folder name identifying generator and variant (shell-safe; see the module docstring).
        meta: JSON-serializable description written to ``meta.json`` on the first ``put``.
        root: cache root (default :func:`robustbench_ibn.files.cache_root`).
    """

    def __init__(self, namespace: str, meta: Mapping[str, Any], root: str | os.PathLike[str] | None = None) -> None:
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"Expected a plain folder name as cache namespace, but got {namespace!r}.")
        self.dir = style_cache_dir(root) / namespace
        self.meta = dict(meta)
        self._meta_written = False

    def path(self, key: str, height: int, width: int) -> Path:
        return self.dir / f"{height}x{width}" / key[:2] / f"{key}.png"

    def get(self, key: str, height: int, width: int) -> np.ndarray | None:
        """The cached ``[H, W, 3]`` uint8 crop, or None (absent, unreadable, of another size or failing its pixel
        hash: each of these is regenerated)."""
        path = self.path(key, height, width)
        try:
            arr, text = _read_entry(path, height, width)
        except FileNotFoundError:
            return None
        except _ENTRY_ERRORS as e:  # truncated/corrupt file, another size, a decompression bomb: regenerate it
            warnings.warn(f"ignoring unreadable cache entry {path} ({e}); it will be regenerated", stacklevel=2)
            return None
        if arr.shape != (height, width, 3) or arr.dtype != np.uint8 or text.get(_PIXELS_TEXT) != _pixels_sha(arr):
            warnings.warn(f"ignoring cache entry {path}: wrong size or pixel hash; it will be regenerated",
                          stacklevel=2)
            return None
        return arr

    def put(self, key: str, hwc: np.ndarray, source: str = "") -> Path:
        """Store an 8-bit ``[H, W, 3]`` crop atomically; ``source`` (e.g. the image path) is kept as a note."""
        if hwc.dtype != np.uint8 or hwc.ndim != 3 or hwc.shape[2] != 3:
            raise ValueError(f"Expected a uint8 [H, W, 3] array, but got {hwc.dtype} {tuple(hwc.shape)}.")
        if not self._meta_written:
            self._write_meta()
        path = self.path(key, hwc.shape[0], hwc.shape[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        info = PngImagePlugin.PngInfo()
        info.add_text(_PIXELS_TEXT, _pixels_sha(hwc))
        info.add_text(_INPUT_TEXT, key + (f" {source}" if source else ""))
        buf = io.BytesIO()
        image = Image.fromarray(np.ascontiguousarray(hwc), "RGB")
        image.save(buf, format="PNG", pnginfo=info, compress_level=_PNG_LEVEL)
        atomic_write_bytes(path, buf.getvalue(), fsync=False)  # a lost entry is regenerated: no fsync per crop
        return path

    def _write_meta(self) -> None:
        meta_path = self.dir / _META
        if meta_path.is_file():
            try:
                existing = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                existing = None
            if existing == self.meta:
                self._meta_written = True
                return
        atomic_write_text(meta_path, json.dumps(self.meta, indent=1, sort_keys=True) + "\n")
        self._meta_written = True


# --- inspection: info, verify, clear ------------------------------------------------------------------------


@dataclass
class NamespaceInfo:
    """What one cache namespace holds."""

    name: str
    path: Path
    entries: int
    bytes: int
    geometries: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Any] | None = None
    unreadable: int = 0  # entry names that are not readable files (broken links, folders): see verify_cache
    link: str | None = None  # the target, when the namespace folder is a symbolic link


def _namespaces(root: str | os.PathLike[str] | None) -> Iterator[Path]:
    base = style_cache_dir(root)
    if base.is_dir():
        yield from sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def _entries(namespace: Path) -> Iterator[Path]:
    for geometry in sorted(p for p in namespace.iterdir() if p.is_dir()):
        yield from sorted(geometry.glob("*/*.png"))


def cache_info(root: str | os.PathLike[str] | None = None) -> list[NamespaceInfo]:
    """Every namespace with its entry count, size on disk, geometries and ``meta.json``."""
    out = []
    for ns in _namespaces(root):
        geometries: dict[str, int] = {}
        total = count = unreadable = 0
        for entry in _entries(ns):
            if not entry.is_file():  # a broken link or a folder named like an entry
                unreadable += 1
                continue
            count += 1
            total += entry.stat().st_size
            geometries[entry.parent.parent.name] = geometries.get(entry.parent.parent.name, 0) + 1
        try:
            meta = json.loads((ns / _META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = None
        link = os.readlink(ns) if ns.is_symlink() else None
        out.append(NamespaceInfo(ns.name, ns, count, total, geometries, meta, unreadable, link))
    return out


def verify_cache(
    root: str | os.PathLike[str] | None = None, *, delete_bad: bool = False
) -> tuple[int, list[tuple[Path, str]]]:
    """Decode every entry and check its size (from its folder), file name and stored pixel hash.

    Returns ``(number of good entries, [(path, problem), ...])``; with ``delete_bad`` the bad ones (and
    stale temporary files from killed writers) are removed, so the next run regenerates them. Only files and
    links are removed (a link, not its target): a folder where an entry should be is reported and left for
    its owner to remove (its problem says so).
    """
    good, bad = 0, []
    for ns in _namespaces(root):
        for tmp in ns.glob("*/*/.*.tmp"):
            bad.append((tmp, "leftover temporary file of an interrupted write"))
        for entry in _entries(ns):
            problem = _check_entry(entry)
            if problem:
                bad.append((entry, problem))
            else:
                good += 1
    if delete_bad:
        for i, (path, problem) in enumerate(bad):
            if path.is_dir() and not path.is_symlink():
                bad[i] = (path, f"{problem}; not deleted (a folder: remove it yourself if it is not yours to keep)")
            else:
                path.unlink(missing_ok=True)
    return good, bad


def _check_entry(entry: Path) -> str | None:
    if entry.is_symlink():
        return f"a link (to {os.readlink(entry)}), not an entry this cache wrote"
    if entry.is_dir():
        return "a folder, not an entry"
    try:
        height, width = (int(v) for v in entry.parent.parent.name.split("x"))
    except ValueError:
        return f"folder {entry.parent.parent.name!r} is not <H>x<W>"
    try:
        arr, text = _read_entry(entry, height, width)
    except _ENTRY_ERRORS as e:
        return f"unreadable ({e})"
    if arr.shape != (height, width, 3) or arr.dtype != np.uint8:
        return f"expected an 8-bit RGB {height}x{width} image, got {arr.dtype} {arr.shape}"
    if text.get(_PIXELS_TEXT) != _pixels_sha(arr):
        return "pixels do not match their stored sha256"
    if not text.get(_INPUT_TEXT, "").startswith(entry.stem):
        return "file name does not match the input key stored inside"
    return None


def clear_cache(root: str | os.PathLike[str] | None = None, pattern: str | None = None) -> list[NamespaceInfo]:
    """Delete the namespaces whose name starts with ``pattern`` (all when None); returns what was removed.

    Nothing outside the cache is deleted: a namespace that is a link is removed as a link (``link`` in its
    :class:`NamespaceInfo` names the target, left as it is), and links inside a namespace are removed, not
    followed.
    """
    removed = [ns for ns in cache_info(root) if pattern is None or ns.name.startswith(pattern)]
    for ns in removed:
        if ns.link is not None:
            ns.path.unlink()
        else:
            shutil.rmtree(ns.path)
    return removed
