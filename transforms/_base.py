"""The shift contract, the transform registry and the name resolution shared by every shift."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..registry import Registry

__all__ = [
    "Shift",
    "TRANSFORMS",
    "TABLE1",
    "TransformError",
    "register_transform",
    "create_transform",
    "list_transforms",
    "resolve_transform_names",
    "check_shift_output",
]

# Table 1's rows in the paper's order; ``--transforms all`` means exactly these.
TABLE1: tuple[str, ...] = ("rgb+50", "r+50", "std1.5", "monet")


class TransformError(ValueError):
    """A transform name, list or plug-in that cannot be used as asked."""


class Shift(nn.Module):
    """An appearance shift: float ``[B, 3, H, W]`` batches in [0, 1] in, same shape/dtype/device out.

    Shifts act on the network-input crop in pixel space, before normalization (DESIGN.md protocol).
    Subclasses implement :meth:`forward` (usually one call of a pure function) and describe themselves
    so every result records exactly what was applied.

    Attributes:
        name: registry name it was created under (``rgb+50``), set by :func:`create_transform`.
        label: display label as in the paper (``RGB+50``).
        version: bumped whenever the definition changes numbers; part of the protocol fingerprint.
        value_range: the range the output is declared to stay in (``None``: unbounded, e.g. std×1.5).
    """

    label: str = ""
    version: int = 1
    value_range: tuple[float, float] | None = (0.0, 1.0)

    def __init__(self) -> None:
        super().__init__()
        self.name = ""

    def params(self) -> dict[str, Any]:
        """The parameters that define the shift (JSON-serializable)."""
        return {}

    def describe(self) -> str:
        """One sentence saying what the shift does, for the protocol record."""
        return (self.__doc__ or type(self).__name__).strip().splitlines()[0]

    def apply_batch(self, images: torch.Tensor, keys: Sequence[str]) -> torch.Tensor:
        """What the runner calls: the shift of a batch whose images are identified by ``keys``.

        ``keys`` are the images' relative paths. Deterministic shifts ignore them; a shift that caches its
        output (an expensive generator) or draws random numbers (seeded per image, so results do not
        depend on batch size, worker or rank count) overrides this.
        """
        return self(images)

    def for_model(self, mean: Sequence[float], std: Sequence[float]) -> Shift:
        """This shift bound to a model's normalization (only shifts defined relative to it override this)."""
        return self

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "version": self.version,
            "params": self.params(),
            "description": self.describe(),
            "value_range": list(self.value_range) if self.value_range is not None else None,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items())


TRANSFORMS: Registry[Callable[..., Shift]] = Registry("transform")


def register_transform(
    name: str | None = None, *, override: bool = False
) -> Callable[[Callable[..., Shift]], Callable[..., Shift]]:
    """Register a shift builder. ``name`` may be a family with one numeric placeholder: ``"rgb+{k}"``."""
    return TRANSFORMS.register(name, override=override)


def create_transform(name: str, **kwargs: Any) -> Shift:
    """Build the shift registered under ``name`` (family members like ``rgb+80`` or ``std2`` included)."""
    try:
        builder = TRANSFORMS.get(name)
    except KeyError as err:
        raise TransformError(err.args[0]) from None
    shift = builder(**kwargs)
    if not isinstance(shift, Shift):
        raise TransformError(
            f"Expected transform {name!r} to build a robustbench_ibn.transforms.Shift, but got {type(shift).__name__}."
        )
    shift.name = name
    return shift


def list_transforms(
    include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> list[str]:
    """Registered shift names and family templates, filtered by fnmatch patterns."""
    return TRANSFORMS.list(include, exclude)


def resolve_transform_names(spec: str | Sequence[str]) -> list[str]:
    """Expand a ``--transforms`` value into the ordered list of shifts to run, ``clean`` first.

    ``all`` is Table 1's set. Unknown names and missing pieces raise *before* any work is done.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = ["clean"]
    for item in (i.strip() for i in items):
        if not item:
            continue
        expanded = list(TABLE1) if item == "all" else [item]
        for name in expanded:
            if name not in TRANSFORMS:
                if name in TABLE1:
                    available = ",".join(n for n in TABLE1 if n in TRANSFORMS)
                    raise TransformError(
                        f"Table 1's {name!r} shift is not available in this installation, so "
                        f"'--transforms all' cannot run completely. Run the other rows with "
                        f"'--transforms {available}'."
                    )
                raise TransformError(TRANSFORMS.unknown_message(name))
            if name not in names:
                names.append(name)
    return names


def check_images(images: torch.Tensor, where: str) -> None:
    """Validate a shift's input: float [B, 3, H, W]."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise TransformError(
            f"Expected {where} input to be a float tensor [B, 3, H, W], but got {tuple(images.shape)} {images.dtype}."
        )


def check_shift_output(shift: Shift, images: torch.Tensor, out: object) -> None:
    """Check a shift's output on a batch (the runner does this on the first batch of every shift).

    A shift must return a tensor of the input's shape, floating dtype and device, with finite values
    inside its declared ``value_range``; a failure names the shift and what was expected.
    """
    where = f"transform {shift.name!r} ({type(shift).__module__}.{type(shift).__name__})"
    if not isinstance(out, torch.Tensor):
        raise TransformError(f"Expected {where} to return a torch.Tensor, but got {type(out).__name__}.")
    if out.shape != images.shape:
        raise TransformError(f"Expected {where} to keep the batch shape {tuple(images.shape)}, but got {tuple(out.shape)}.")
    if not out.is_floating_point():
        raise TransformError(f"Expected {where} to return a floating-point tensor, but got {out.dtype}.")
    if out.device != images.device:
        raise TransformError(f"Expected {where} to return a tensor on {images.device}, but got {out.device}.")
    if not torch.isfinite(out).all():
        raise TransformError(f"Expected {where} to return finite values, but got NaN or Inf.")
    if shift.value_range is not None:
        low, high = shift.value_range
        got_low, got_high = out.min().item(), out.max().item()
        if got_low < low or got_high > high:
            raise TransformError(
                f"Expected {where} to stay in its declared range [{low}, {high}], but got [{got_low:.4g}, {got_high:.4g}]."
            )
