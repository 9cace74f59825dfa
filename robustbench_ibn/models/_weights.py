"""Model weights: official (hash-checked, torch hub cache), local files, URLs, explicit random init.

Files are obtained and read by :mod:`robustbench_ibn.hub` (``weights_only=True``: a checkpoint is data, never
code; wrappers such as the old IBN-Net ``.pth.tar`` files' ``"state_dict"`` are unwrapped there). This module
loads them strictly into a model and records where they came from.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..hub import WeightsError, fetch, file_sha256, hash_prefix_from_name, read_state_dict
from ..options import option
from ..text import listing, random_weights_mark

if TYPE_CHECKING:  # _api imports this module; a runtime import would be circular.
    from ._api import ModelInfo

__all__ = ["WeightsSource", "load_weights"]



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
            return random_weights_mark(self.seed)
        label = {"path": "file"}.get(self.kind, self.kind)
        digest = f" (sha256 {self.sha256[:12]}...)" if self.sha256 else ""
        return f"{label} {self.location}{digest}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_weights(spec: str | os.PathLike[str], info: ModelInfo) -> None:
    """What :func:`load_weights` checks before downloading or reading anything: ``official`` for a model that has
    published weights, a local checkpoint that exists.

    Raises:
        WeightsError: the message says what to pass instead.

    Example:
        >>> from robustbench_ibn.models import model_info
        >>> check_weights("/no/such.pth", model_info("resnet18"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        robustbench_ibn.hub.WeightsError: weights='/no/such.pth': no such checkpoint file (/no/such.pth). ...
    """
    spec = os.fspath(spec)
    if spec == "official" and not info.has_weights:
        raise WeightsError(f"{info.name} has no published weights; pass {option('weights', 'PATH')} for your own "
                           f"checkpoint or {option('weights', 'random')} for an explicit random init")
    if spec not in ("official", "random") and not spec.startswith(("http://", "https://")):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(f"{option('weights', spec)}: no such checkpoint file ({path.absolute()}). Expected "
                               "'official', 'random', a URL or an existing checkpoint file.")


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
    check_weights(spec, info)
    if spec == "random":
        return WeightsSource(kind="random", seed=seed)
    if spec == "official":
        assert info.url is not None  # check_weights: it has weights, and create_model loads load_official's itself
        # An explicit prefix wins; otherwise the torch.hub file name convention still gives a check.
        path, digest = fetch(info.url, info.hash_prefix or hash_prefix_from_name(info.url))
        kind, location = "official", info.url
    elif spec.startswith(("http://", "https://")):
        path, digest = fetch(spec, hash_prefix_from_name(spec))
        kind, location = "url", spec
    else:
        path = Path(spec).expanduser()
        digest = file_sha256(path)
        kind, location = "path", str(path.resolve())
    _load_file(model, path, info)
    return WeightsSource(kind=kind, location=location, sha256=digest)


# --- loading -------------------------------------------------------------------------------------------------


def _load_file(model: nn.Module, path: Path, info: ModelInfo) -> None:
    state_dict = read_state_dict(path)
    if info.checkpoint_filter is not None:
        state_dict = info.checkpoint_filter(state_dict)
    _strict_load(model, state_dict, path, info.name)


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
            lines.append(f"  missing (in the model, not in the file): {listing(missing)}")
        if unexpected:
            lines.append(f"  unexpected (in the file, not in the model): {listing(unexpected)}")
        if misshaped:
            shapes = [f"{k} expected {list(want)} got {list(got)}" for k, want, got in misshaped]
            lines.append(f"  mis-shaped: {listing(shapes)}")
        lines.append(
            "Expected a checkpoint of exactly this architecture (same keys and shapes; a 'module.' prefix and a "
            "'state_dict'/'model' wrapper are handled). Check the model name, the number of classes, or pass "
            f"the right file with {option('weights', 'PATH')}."
        )
        raise WeightsError("\n".join(lines))
