"""The shift contract, the transform registry and the name resolution shared by every shift."""

from __future__ import annotations

import decimal
import difflib
import hashlib
import inspect
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..options import option
from ..registry import Registry
from ..text import positional

__all__ = [
    "Shift",
    "TRANSFORMS",
    "TABLE1",
    "GROUPS",
    "TransformError",
    "TransformSpec",
    "transform_spec",
    "transform_takes",
    "shift_context",
    "register_transform",
    "create_transform",
    "list_transforms",
    "resolve_transform_names",
    "expand_transform_range",
    "prepare_transforms",
    "check_shift_output",
]

# Table 1's rows in the paper's order; ``--transforms all`` means exactly these. Monet is the official CycleGAN test
# pipeline (the whole image squashed to 256x256, truncated to 8 bits, then the model's resize and crop), as the
# authors most likely made their Monet set with the official tool; protocol 3 (results.PROTOCOL_CHANGES).
TABLE1: tuple[str, ...] = ("rgb+50", "r+50", "std1.5", "monet-official")
# Names that --transforms expands into several shifts (as ``all`` into TABLE1), filled by the modules that register
# the members: ``imagenet-c`` is its 75 benchmark sets (transforms/imagenet_c.py).
GROUPS: dict[str, tuple[str, ...]] = {}
_PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*\}")  # a family template's parameter, as the registry writes it


class TransformError(ValueError):
    """A transform name, list or plug-in that cannot be used as asked."""


class Shift(nn.Module):
    """An appearance shift: float ``[B, 3, H, W]`` batches in [0, 1] in, same shape/dtype/device out.

    Shifts act in pixel space, before normalization (DESIGN.md protocol), at one of two stages
    (:attr:`stage`): ``"crop"`` (the default) on the network-input crop, batched on the device; ``"image"`` on
    the whole decoded image, before the model's resize and crop. Subclasses implement :meth:`forward`
    (usually one call of a pure function) and describe themselves so every result records exactly what
    was applied.

    An image-stage shift runs in two steps: :meth:`prepare_image` (in the data loader's workers, on the CPU)
    turns the decoded PIL image into the uint8 ``[3, h, w]`` input of :meth:`apply_batch` (on the device;
    images of one size are batched), whose output must hold 8-bit values (``k / 255``); the engine then
    applies the dataset's preprocessing and the model's geometry to it, as to an image file.

    Attributes:
        name: registry name it was created under (``rgb+50``), set by :func:`create_transform`.
        label: display label as in the paper (``RGB+50``).
        version: bumped whenever the definition changes numbers; part of the protocol fingerprint.
        value_range: the range the output is declared to stay in (``None``: unbounded, e.g. std×1.5).
        stage: ``"crop"`` or ``"image"`` (see above); recorded in the protocol.
        stochastic: ``True`` for a shift that draws random numbers; it must draw them from
            :meth:`generator_for` (one generator per image key) so that a run replays bit for bit.
        seed: the run seed (set by :meth:`seeded`; ``evaluate(seed=...)``, ``--seed``).
        origin: where the shift comes from: its module, or the plug-in file / module / entry point that
            registered it (set by :func:`create_transform`; named in every error about the shift).
        severity: for a family member, ``{"family": "rgb+{k}", "param": "k", "value": 50, "identity": 0}``
            (set by :func:`create_transform`), so sweeps and reports can group members by family.
        crop_geometry: ``None`` (a crop-stage shift acts on the model's own crop), or the ``(resize, crop,
            interpolation)`` of the crop the shift is defined on (ImageNet-C's ``(256, 224, "bilinear")``): for a
            model of another geometry the engine decodes that crop for it and centre-crops the shifted images to the
            model's crop (a larger model crop is refused).
    """

    label: str = ""
    version: int = 1
    stage: str = "crop"
    value_range: tuple[float, float] | None = (0.0, 1.0)
    stochastic: bool = False
    seed: int = 0
    origin: str = ""
    severity: dict[str, Any] | None = None
    crop_geometry: tuple[int, int, str] | None = None

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

    def prepare_image(self, image: Any) -> torch.Tensor:
        """Image stage only: a decoded RGB PIL image -> the uint8 ``[3, h, w]`` tensor :meth:`apply_batch` gets.

        Runs in the loader's workers. The default passes the image on unchanged; a shift with a fixed input
        size (the official CycleGAN pipeline squashes to 256x256) resizes here so its inputs batch.
        """
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(image)

    def prepare(self, *, progress: bool = True) -> None:
        """Acquire what the shift needs (weights, downloads) before any model is built or image decoded.

        The runner calls this once per shift at set-up (:func:`prepare_transforms`). Shifts that need
        nothing keep this no-op; one that cannot run raises :class:`TransformError` saying what to do, so
        a run stops before doing any work. ``progress``: show download/long-work progress on stderr.
        """

    def seeded(self, seed: int) -> Shift:
        """This shift with the run ``seed`` (what the engine calls; stochastic shifts seed per image from it).

        Example:
            >>> from robustbench_ibn.transforms import create_transform
            >>> create_transform("noise20").seeded(3).definition()["stochastic"]["seed"]
            3
        """
        self.seed = int(seed)
        return self

    def generator_for(self, key: str, device: torch.device | str | None = None) -> torch.Generator:
        """A ``torch.Generator`` seeded from (run seed, shift name, parameters, image ``key``).

        A stochastic shift draws each image's random numbers from its own generator, so the pixels an
        image gets do not depend on batch size, batch order, worker or rank count. Generators live on
        ``device`` (CPU by default): the same key gives the same numbers on one device type, but CPU
        and CUDA generators produce different streams.

        Example:
            >>> from robustbench_ibn.transforms import create_transform
            >>> noise = create_transform("noise20")
            >>> a = torch.rand(3, generator=noise.generator_for("n01440764/a.JPEG"))
            >>> b = torch.rand(3, generator=noise.generator_for("n01440764/a.JPEG"))
            >>> torch.equal(a, b)
            True
        """
        identity = [int(self.seed), *self.random_identity(), str(key)]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).digest()
        generator = torch.Generator(device=device if device is not None else "cpu")
        generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
        return generator

    def random_identity(self) -> list[Any]:
        """What, besides the run seed and the image key, seeds :meth:`generator_for`: the name and parameters."""
        return [self.name or type(self).__qualname__, self.params()]

    def generators(self, keys: Sequence[str], device: torch.device | str | None = None) -> list[torch.Generator]:
        """One :meth:`generator_for` per image key, in order."""
        return [self.generator_for(key, device) for key in keys]

    def definition(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "version": self.version,
            "params": self.params(),
            "description": self.describe(),
            "value_range": list(self.value_range) if self.value_range is not None else None,
            "stage": self.stage,
            "severity": self.severity,
            "origin": self.origin or type(self).__module__,
        }
        if self.stochastic:
            record["stochastic"] = {"seed": int(self.seed), "per_image": "seeded from (seed, name, params, image path)"}
        return record

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items())


TRANSFORMS: Registry[Callable[..., Shift]] = Registry("transform")


@dataclass(frozen=True)
class TransformSpec:
    """What a registered shift or family declares about itself (see :func:`register_transform`).

    Attributes:
        name: registered name or family template (``rgb+{k}``).
        param: the family's parameter (its placeholder, ``k``); ``None`` for a single shift.
        identity: the parameter value at which the shift changes nothing (``rgb+0``, ``std1``); ``None``
            when there is none (JPEG is lossy at every quality).
        example: a representative parameter value (listings, docs and the catalogue tests use it).
        param_help: what the parameter means, e.g. ``"offset K on the 0-255 scale"``.
        origin: the module that registered it, or the plug-in file / module / entry point.
    """

    name: str
    param: str | None = None
    identity: float | None = None
    example: float | None = None
    param_help: str = ""
    origin: str = ""

    @property
    def is_family(self) -> bool:
        return self.param is not None

    def member(self, value: float) -> str:
        """The registry name of the family member with parameter ``value``: ``member(80) == "rgb+80"``."""
        if self.param is None:
            raise TransformError(f"Expected a family to take a parameter value, but {self.name!r} is a single shift.")
        return self.name.replace("{" + self.param + "}", positional(value))

    @property
    def example_name(self) -> str | None:
        """A concrete name to build: the example member of a family, the name itself otherwise."""
        if self.param is None:
            return self.name
        return self.member(self.example) if self.example is not None else None


def transform_spec(name: str) -> TransformSpec:
    """The :class:`TransformSpec` of a registered name, family template or family member."""
    try:
        template = TRANSFORMS.template_of(name)
    except KeyError as err:
        raise TransformError(err.args[0]) from None
    meta = TRANSFORMS.meta(template)
    return TransformSpec(
        name=template,
        param=TRANSFORMS.family_param(template),
        identity=meta.get("identity"),
        example=meta.get("example"),
        param_help=meta.get("param_help", ""),
        origin=meta.get("origin", ""),
    )


def register_transform(
    name: str | None = None,
    *,
    identity: float | None = None,
    example: float | None = None,
    param_help: str = "",
    weights_key: str | None = None,
    values: Sequence[float] | None = None,
    override: bool = False,
) -> Callable[[Callable[..., Shift]], Callable[..., Shift]]:
    """Register a shift builder. ``name`` may be a family with one numeric placeholder: ``"rgb+{k}"``.

    A family declares its parameter (the severity) so sweeps, reports, listings and the catalogue tests
    treat it like the built-in ones: ``identity`` is the value that changes nothing (``0`` for an
    offset, ``1`` for a factor; leave ``None`` if there is none), ``example`` a representative value,
    ``param_help`` what the value means. ``weights_key`` names another shift whose ``--transform-weights``
    entry also serves this one when it has none of its own (``monet-official`` runs ``monet``'s generator file).
    ``values``: the only parameter values a family takes (ImageNet-C's severities 1-5), checked when ``--transforms``
    is resolved; ``None``: any number.

    Example:
        >>> from robustbench_ibn.transforms import TRANSFORMS, create_transform
        >>> from robustbench_ibn.transforms.photometric import ChannelOffset
        >>> with TRANSFORMS.snapshot():
        ...     @register_transform("bluecast+{k}", identity=0, example=20, param_help="K/255 added to blue")
        ...     def bluecast(k):
        ...         return ChannelOffset("b", k)
        ...     create_transform("bluecast+20").severity["value"]
        20
    """

    def decorator(fn: Callable[..., Shift]) -> Callable[..., Shift]:
        key = name or fn.__name__
        described = {"identity": identity, "example": example}
        if "{" not in key and (identity is not None or example is not None or param_help):
            raise ValueError(
                f"Expected identity/example/param_help only for a family name with a {{param}} placeholder, "
                f"but {key!r} is a single shift."
            )
        for what, value in described.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"Expected {what} of {key!r} to be a number >= 0 (names carry no sign), but got {value!r}.")
        TRANSFORMS.add(key, fn, override=override,
                       meta={**described, "param_help": param_help, "weights_key": weights_key,
                             "values": None if values is None else tuple(values)})
        return fn

    return decorator


def shift_context(shift: Shift) -> str:
    """``transform 'mycast+30' (plug-in file my_shifts.py, class MyCast)``: how errors name a shift."""
    cls = type(shift)
    origin = shift.origin or cls.__module__
    where = f"{origin}.{cls.__qualname__}" if origin == cls.__module__ else f"{origin}, class {cls.__qualname__}"
    return f"transform {shift.name or cls.__qualname__!r} ({where})"


def create_transform(name: str, **kwargs: Any) -> Shift:
    """Build the shift registered under ``name`` (family members like ``rgb+80`` or ``std2`` included)."""
    try:
        builder = TRANSFORMS.get(name)
    except KeyError as err:
        raise TransformError(err.args[0]) from None
    spec = transform_spec(name)
    try:
        shift = builder(**kwargs)
    except TransformError:
        raise
    except Exception as err:
        raise TransformError(
            f"Could not build transform {name!r} (registered by {spec.origin}): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(shift, Shift):
        raise TransformError(
            f"Expected transform {name!r} to build a robustbench_ibn.transforms.Shift, but got {type(shift).__name__} "
            f"(registered by {spec.origin})."
        )
    shift.name = name
    shift.origin = spec.origin
    if spec.param is not None:
        _, values = TRANSFORMS.parse(name)
        shift.severity = {"family": spec.name, "param": spec.param, "value": values[spec.param],
                          "identity": spec.identity}
    return shift


def list_transforms(
    include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> list[str]:
    """Registered shift names and family templates, filtered by fnmatch patterns."""
    return TRANSFORMS.list(include, exclude)


_RANGE = re.compile(r"(?P<prefix>.*?)(?P<start>\d+(?:\.\d*)?|\.\d+):(?P<stop>\d+(?:\.\d*)?|\.\d+)"
                    r":(?P<step>\d+(?:\.\d*)?|\.\d+)(?P<suffix>.*)\Z", re.ASCII | re.DOTALL)
MAX_RANGE_MEMBERS = 1000
_WHOLE_RANGE = re.compile(r"(?P<prefix>.*?)(?<![0-9])(?P<start>\d+(?:\.\d+)?):(?P<stop>\d+(?:\.\d+)?)"
                          r":(?P<step>\d+(?:\.\d+)?)(?P<suffix>.*)\Z", re.ASCII | re.DOTALL)


def _range_member(match: re.Match[str]) -> bool:
    """Whether a range's first member, as ``match`` reads the range, is a family member."""
    first = f"{match['prefix']}{format(decimal.Decimal(match['start']).normalize(), 'f')}{match['suffix']}"
    return first in TRANSFORMS and TRANSFORMS.family_param(first) is not None


def expand_transform_range(item: str) -> list[str]:
    """``rgb+10:100:10`` -> ``["rgb+10", "rgb+20", ..., "rgb+100"]``: a severity sweep over a family.

    ``START:STOP:STEP`` replaces the family's number; STOP is included and must be START plus a whole
    number of STEPs. Decimal arithmetic, so ``std1.2:2.0:0.2`` gives exactly std1.2, std1.4, ..., std2.

    Example:
        >>> expand_transform_range("std1.2:2.0:0.4")
        ['std1.2', 'std1.6', 'std2']
    """
    usage = "a family name with START:STOP:STEP in place of its number, e.g. rgb+10:100:10 or std1.2:2.0:0.2"
    match = _RANGE.match(item.strip())
    # "imagenet-c.fog.1:3:1" reads as "imagenet-c.fog" + ".1" first; the whole-number reading wins when only it
    # names a family ("imagenet-c.fog." + "1", suffix ".memory" kept whole).
    whole = _WHOLE_RANGE.match(item.strip())
    if whole is not None and _range_member(whole) and (match is None or not _range_member(match)):
        match = whole
    if match is None:
        raise TransformError(f"Expected a severity range ({usage}), but got {item!r}.")
    start, stop, step = (decimal.Decimal(match[k]) for k in ("start", "stop", "step"))
    if step <= 0:
        raise TransformError(f"Expected a range step > 0 in {item!r}, but got {match['step']}.")
    if start > stop:
        raise TransformError(f"Expected a range START <= STOP in {item!r}, but got {match['start']} > {match['stop']}.")
    # Exact arithmetic whatever the numbers' lengths (the default 28 digits would round, and divmod would raise
    # DivisionImpossible on a huge quotient): enough digits for the difference, the whole quotient and the members.
    with decimal.localcontext() as ctx:
        ctx.prec = 2 * sum(len(match[k]) for k in ("start", "stop", "step")) + 10
        count, rest = divmod(stop - start, step)
        if rest != 0:
            raise TransformError(
                f"Expected STOP - START to be a whole number of STEPs in {item!r} (STOP is included), but "
                f"{match['stop']} - {match['start']} is not a multiple of {match['step']}."
            )
        if count + 1 > MAX_RANGE_MEMBERS:
            raise TransformError(f"Expected at most {MAX_RANGE_MEMBERS} shifts in range {item!r}, but got "
                                 f"{int(count) + 1}.")

        def member(value: decimal.Decimal) -> str:
            text = format(value.normalize(), "f")
            return f"{match['prefix']}{text}{match['suffix']}"

        first = member(start)
        if first not in TRANSFORMS or TRANSFORMS.family_param(first) is None:
            raise TransformError(
                f"Expected a range over a family with a numeric parameter ({usage}), but {first!r} from {item!r} is "
                f"not a family member. {TRANSFORMS.unknown_message(first) if first not in TRANSFORMS else ''}".rstrip()
            )
        return [member(start + i * step) for i in range(int(count) + 1)]


def resolve_transform_names(spec: str | Sequence[str]) -> list[str]:
    """Expand a ``--transforms`` value into the ordered list of shifts to run, ``clean`` first.

    ``all`` is Table 1's set, ``none`` no shift (``clean`` only), a name of :data:`GROUPS` its members (``imagenet-c``:
    the 75 benchmark sets of ImageNet-C); ``FAMILY START:STOP:STEP`` (``rgb+10:100:10``) is a severity sweep
    (:func:`expand_transform_range`). Unknown names and missing pieces raise *before* any work is done.

    Example:
        >>> resolve_transform_names("imagenet-c.fog")[1:3]
        ['imagenet-c.fog.1', 'imagenet-c.fog.2']
        >>> len(resolve_transform_names("imagenet-c")), len(resolve_transform_names("imagenet-c-extra.memory"))
        (76, 21)
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    if not any(item.strip() for item in items):  # "" or ",,": never silently the clean images alone
        raise TransformError(f"Expected at least one shift in --transforms, but got {spec!r}. To evaluate the clean "
                             "images only, pass --transforms clean.")
    if [i.strip() for i in items] == ["none"]:  # clean only: a run of dataset domains, measured against clean val
        return ["clean"]
    names: list[str] = ["clean"]
    members: dict[tuple[str, float], str] = {}  # (family, value as its builder gets it) -> the name first given
    for item in (i.strip() for i in items):
        if not item:
            continue
        expanded = (list(TABLE1) if item == "all" else list(GROUPS[item]) if item in GROUPS
                    else expand_transform_range(item) if ":" in item else [item])
        for name in expanded:
            if name not in TRANSFORMS:
                if name in TABLE1:
                    available = ",".join(n for n in TABLE1 if n in TRANSFORMS)
                    raise TransformError(
                        f"Table 1's {name!r} shift is not available in this installation, so "
                        f"{option('transforms', 'all')} cannot run completely. Run the other rows with "
                        f"{option('transforms', available)}."
                    )
                raise TransformError(_unknown_message(name))
            if name in names:
                continue
            template, values = TRANSFORMS.parse(name)
            if values:  # rgb+50 and rgb+50.0 build the same shift: two rows of it would be refused by every report
                param, value = next(iter(values.items()))
                allowed = TRANSFORMS.meta(template).get("values")
                if allowed is not None and (value not in allowed or isinstance(value, float)):
                    family = transform_spec(template)
                    raise TransformError(f"Expected {param} of {template} to be one of "
                                         f"{', '.join(positional(v) for v in allowed)}, but got {value!r} in "
                                         f"{name!r}. Use one of {family.member(allowed[0])} .. "
                                         f"{family.member(allowed[-1])}.")
                first = members.setdefault((template, value), name)  # 50 == 50.0, and hash alike
                if first != name:
                    raise TransformError(f"Expected each shift once, but {first!r} and {name!r} are the same shift "
                                         f"({template} with {param}={value:g}): give it once.")
            names.append(name)
    return names


def _unknown_message(name: str) -> str:
    """The registry's did-you-mean, with the closest group names (``imagenet-c.fog``) when they are closer."""
    message = TRANSFORMS.unknown_message(name)
    close = ", ".join(difflib.get_close_matches(name, list(GROUPS), n=2, cutoff=0.8))
    if not close or name[-1:].isdigit():  # a member's name: the registry's members are the closer names
        return message
    if "Did you mean: " in message:
        return message.replace("Did you mean: ", f"Did you mean: {close}, ", 1)
    return message.replace(f"{name!r}.", f"{name!r}. Did you mean: {close}?", 1)


def transform_takes(name: str, argument: str) -> bool:
    """Whether the builder of shift ``name`` (a name, a family member, or a family template with an example) has a
    parameter called ``argument``: how ``style_dir`` (``--style-dir``) finds the shifts it is for.

    Example:
        >>> transform_takes("adain0.5", "style_dir"), transform_takes("rgb+50", "style_dir")
        (True, False)
    """
    spec = transform_spec(name)  # an unknown name raises here
    example = spec.example_name if name == spec.name else name
    if example is None:  # a family template without an example member: nothing to inspect
        return False
    return argument in inspect.signature(TRANSFORMS.get(example)).parameters


def _weights_key(name: str, weights: Mapping[str, Any]) -> str | None:
    """The ``weights`` entry that serves ``name``: its own, its family's (the template without the placeholder),
    or that of the shift it declares it shares weights with (``register_transform(weights_key=...)``)."""
    template = TRANSFORMS.template_of(name)
    for key in (name, _PLACEHOLDER.sub("", template), TRANSFORMS.meta(template).get("weights_key")):
        if key is not None and key in weights:
            return key
    return None


def prepare_transforms(
    names: Sequence[str], *, weights: Mapping[str, str | os.PathLike[str]] | None = None,
    style_dir: str | os.PathLike[str] | None = None, progress: bool = True, seed: int = 0,
) -> dict[str, Shift]:
    """Build the shifts ``names`` and run their set-up (:meth:`Shift.prepare`): the run's first step.

    Args:
        names: resolved shift names (:func:`resolve_transform_names`).
        weights: shift name -> local file or URL, for shifts whose builder takes ``weights``
            (``--transform-weights monet=PATH``). A family's key is its template without the placeholder
            (``adain`` for ``adain{alpha}``: one entry serves ``adain1`` and ``adain0.5``), and a shift may declare
            the key it shares (``monet`` serves ``monet-official`` too); an entry for the shift itself wins.
            Entries for shifts not in ``names`` are unused.
        style_dir: a folder of style images (``--style-dir``), passed to every shift in ``names`` whose builder
            takes ``style_dir`` (``adain{alpha}``); giving it when none does is an error.
        progress: passed to :meth:`Shift.prepare`.
        seed: the run seed every shift gets (:meth:`Shift.seeded`).

    Raises:
        TransformError: an unknown name in ``weights``, weights for a shift that takes none, a style folder that no
            shift in ``names`` uses, or a shift whose set-up fails (for a Table 1 row, the message also says how to
            run the other rows).

    Example:
        >>> sorted(prepare_transforms(["clean", "rgb+50"], progress=False))
        ['clean', 'rgb+50']
        >>> prepare_transforms(["clean", "rgb+50"], style_dir="paintings/")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        robustbench_ibn.transforms._base.TransformError: Expected style_dir= only with a shift that ...
    """
    weights = dict(weights or {})
    families = {_PLACEHOLDER.sub("", t): t for t in TRANSFORMS.list() if TRANSFORMS.family_param(t)}
    for key in weights:
        if key not in TRANSFORMS and key not in families:
            raise TransformError(f"{option('transform_weights')}: {TRANSFORMS.unknown_message(key)}")
        example = key if key in TRANSFORMS else transform_spec(families[key]).example_name
        if example is None:  # a family without an example member: its builder is checked when it is built
            continue
        parameters = inspect.signature(TRANSFORMS.get(example)).parameters
        if "weights" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            raise TransformError(f"Expected {option('transform_weights')} only for shifts that take weights, but "
                                 f"{key!r} takes none.")
    styled = {name for name in names if transform_takes(name, "style_dir")}
    if style_dir is not None and not styled:
        users = [t for t in TRANSFORMS.list() if transform_takes(t, "style_dir")]
        way_out = f", or add such a shift, e.g. {option('transforms', transform_spec(users[0]).example_name)}." if users else "."
        raise TransformError(f"Expected {option('style_dir')} only with a shift that uses style images "
                             f"({', '.join(users) or 'none is registered'}), but none of {', '.join(names)} does. "
                             f"Drop it{way_out}")
    shifts: dict[str, Shift] = {}
    for name in names:
        key = _weights_key(name, weights)
        kwargs: dict[str, Any] = {"weights": weights[key]} if key is not None else {}
        if name in styled and style_dir is not None:
            kwargs["style_dir"] = style_dir
        shift = create_transform(name, **kwargs)
        try:
            shift.prepare(progress=progress)
        except TransformError as err:
            others = [n for n in TABLE1 if n != name and n in TRANSFORMS]
            if name in TABLE1 and others:
                raise TransformError(f"{err} Or run the other Table 1 rows with "
                                     f"{option('transforms', ','.join(others))}.") from err
            raise
        except Exception as err:
            if shift.origin.startswith("robustbench_ibn"):
                raise
            # A plug-in's set-up failed: name it (its module or file) rather than surface a bare traceback.
            raise TransformError(f"{shift_context(shift)} failed in prepare(): {type(err).__name__}: {err}") from err
        shifts[name] = shift.seeded(seed)
    return shifts


EIGHT_BIT_TOLERANCE = 1e-3
"""How far (in 1/255 steps) an image-stage output may lie from 8-bit values: float rounding, not a real value."""


def check_images(images: torch.Tensor, where: str) -> None:
    """Validate a shift's input: float [B, 3, H, W]."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise TransformError(
            f"Expected {where} input to be a float tensor [B, 3, H, W], but got {tuple(images.shape)} {images.dtype}."
        )


def check_shift_output(shift: Shift, images: torch.Tensor, out: object) -> None:
    """Check a shift's output on a batch (the engine does this on the first batch of every shift).

    A shift must return a tensor of the input's shape, floating dtype and device, with finite values
    inside its declared ``value_range``; an image-stage shift's output must also hold 8-bit values
    (``k / 255``), since it becomes an image again. A failure names the shift and what was expected.
    """
    where = shift_context(shift)
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
    if shift.stage == "image":
        scaled = out.detach().float() * 255
        worst = (scaled - scaled.round()).abs().max().item()
        if worst > EIGHT_BIT_TOLERANCE or scaled.min().item() < 0 or scaled.max().item() > 255:
            raise TransformError(
                f"Expected {where} (an image-stage shift) to return 8-bit values k/255 in [0, 1], since its output "
                f"is an image again, but got values {worst:.3g}/255 away from the nearest step. Round the output: "
                f"out.mul(255).round().div(255)."
            )
