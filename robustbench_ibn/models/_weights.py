"""Weights: official download (hash-checked, torch hub cache), local files, URLs, explicit random init."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["WeightsSource", "load_weights"]


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights came from; recorded in every result.

    kind is one of "official", "path", "url", "random". location is the URL or file path (None for
    random), sha256 the full hex digest of the file loaded (None for random), seed the init seed.
    """

    kind: str
    location: str | None = None
    sha256: str | None = None
    seed: int | None = None

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def describe(self) -> str:
        raise NotImplementedError  # filled in by the weights implementation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_weights(model: Any, spec: str, *, info: Any, seed: int) -> WeightsSource:
    raise NotImplementedError
