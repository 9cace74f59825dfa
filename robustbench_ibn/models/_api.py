"""The model registry, per-model metadata and the one front door, :func:`create_model`."""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..data import DataConfig
from ..options import option
from ..registry import Registry
from ..text import listing
from ._classes import apply_class_map
from ._weights import WeightsSource, check_weights, load_weights

__all__ = ["ModelInfo", "MODELS", "Normalized", "PreparedModel", "register_model", "register_resolver", "create_model",
           "list_models", "model_info", "prepare_model"]


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered model and its published weights.

    Attributes:
        name: registered name (``resnet50_ibn_b``).
        data_config: eval geometry and normalization the weights were trained for.
        url: official weights URL, or ``None`` when none were published.
        hash_prefix: leading hex digits of the file's sha256 (torch.hub convention), checked on download.
        ref_top1_err / ref_top5_err: ImageNet-val error (%) reported by the weights' authors.
        ref_source: where the reference errors come from.
        reported: the source key of the reported leaderboard entry (:mod:`robustbench_ibn.reported`, e.g.
            ``"paper-table1"``) that holds the reference errors: :func:`model_info` fills in ``ref_top1_err`` and
            ``ref_top5_err`` from its clean row, and puts its citation before ``ref_source`` (then a note).
        num_params: parameter count of the architecture with 1000 classes.
        paper: citation of the architecture.
        license: licence of the code/weights.
        checkpoint_filter: maps a loaded state_dict to this model's keys (quirks live here, not in the loader).
        tags: short labels shown by ``--list-models`` (``"paper-variant"``, ``"torchvision"``, ...).
        load_official: for weights published through a library's own API (torchvision, timm, torch.hub) rather
            than a plain file URL: ``fn(**kwargs) -> (model, WeightsSource)`` builds the model with them.
    """

    name: str
    data_config: DataConfig = field(default_factory=DataConfig)
    url: str | None = None
    hash_prefix: str | None = None
    ref_top1_err: float | None = None
    ref_top5_err: float | None = None
    ref_source: str = ""
    reported: str | None = None
    num_params: int | None = None
    paper: str = ""
    license: str = ""
    checkpoint_filter: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    tags: tuple[str, ...] = ()
    load_official: Callable[..., tuple[nn.Module, WeightsSource]] | None = None

    @property
    def has_weights(self) -> bool:
        return self.url is not None or self.load_official is not None


MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_INFOS: dict[str, ModelInfo] = {}
# Names outside the registry: "prefix:rest" resolvers (tv:, timm:, hub:) and fallbacks for plain names (any
# torchvision classifier). A resolver returns (builder, info), or None when the name is not one of its models.
Resolver = Callable[[str], tuple[Callable[..., nn.Module], ModelInfo] | None]
_PREFIXES: dict[str, tuple[Resolver, str]] = {}
_FALLBACKS: list[Resolver] = []


def register_model(
    name: str | None = None, *, info: ModelInfo | None = None, override: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register an architecture builder ``fn(**kwargs) -> nn.Module`` (random init, no weights).

    The builder must return the bare network: official state_dict keys, normalized input.
    ``info`` carries its data config and published weights; without it the model has the default
    ImageNet data config and no official weights.
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        MODELS.add(key, fn, override=override)
        _INFOS[key] = info if info is not None else ModelInfo(name=key)
        return fn

    return decorator


def register_resolver(prefix: str | None, resolver: Resolver, usage: str = "") -> None:
    """Let :func:`create_model` build names the registry does not hold.

    Args:
        prefix: names ``"<prefix>:<rest>"`` go to ``resolver(rest)``, which raises ``KeyError`` for an unknown
            rest. ``None``: ``resolver(name)`` is tried for plain unregistered names and returns ``None`` when
            it does not know them.
        resolver: ``fn(name) -> (builder, ModelInfo) | None``.
        usage: how to spell such names, for error messages (``"tv:NAME"``).
    """
    if prefix is None:
        _FALLBACKS.append(resolver)
    else:
        _PREFIXES[prefix] = (resolver, usage or f"{prefix}:NAME")


def _resolve(name: str) -> tuple[Callable[..., nn.Module], ModelInfo]:
    if name in MODELS:
        return MODELS.get(name), _INFOS[MODELS.template_of(name)]
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _PREFIXES:
        found = _PREFIXES[prefix][0](rest)
    else:
        found = next((f for f in (fallback(name) for fallback in _FALLBACKS) if f is not None), None)
    if found is None:
        usages = ", ".join(usage for _, usage in _PREFIXES.values())
        raise KeyError(MODELS.unknown_message(name) + (f" Other backbones: {usages}." if usages else ""))
    return found


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of a registered model, or of an adapter name (``tv:NAME``, ``timm:NAME``, ...).

    Example:
        >>> info = model_info("resnet50_ibn_b")  # its reference errors: the paper's, from the reported entry
        >>> info.ref_top1_err, info.ref_top5_err, info.reported
        (23.64, 6.86, 'paper-table1')
    """
    info = _resolve(name)[1]
    if info.reported is None or info.ref_top1_err is not None:
        return info
    from ..leaderboard import reported_clean_errors  # read once, on first use: the package's own data files

    top1, top5, cited = reported_clean_errors(info.reported, info.name)
    info = replace(info, ref_top1_err=top1, ref_top5_err=top5,
                   ref_source=cited + (f"; {info.ref_source}" if info.ref_source else ""))
    if name in MODELS:
        _INFOS[MODELS.template_of(name)] = info
    return info


def list_models(include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
    """Registered model names, filtered by fnmatch patterns (``list_models("*ibn_b")``)."""
    return MODELS.list(include, exclude)


def create_model(
    name: str, weights: str = "official", *, seed: int = 0, class_map: Sequence[int] | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered model (or an adapter name: ``tv:NAME``, ``timm:NAME``, ``hub:REPO:ENTRY``) with its weights.

    Args:
        name: registered model name, or a backbone from torchvision / timm / torch.hub (see ``adapters``).
        weights: ``"official"`` (the published file, downloaded into the torch hub cache and
            hash-checked), a local path, an ``http(s)://`` URL, or ``"random"`` (explicit, seeded random
            init; every result made with it says so).
        seed: seed of the random init (the architecture is always built under it, so ``random``
            weights are reproducible).
        class_map: for a classifier whose outputs are not the 1000 ImageNet-1k classes, the ImageNet-1k index of
            each output; the model is then wrapped in :class:`~robustbench_ibn.models.ClassMapped`. Without it
            such a model is an error.
        **kwargs: architecture arguments passed to the builder, checked against what it accepts before anything
            is built: its own keyword parameters and, when it passes ``**kwargs`` on, those of the class its return
            annotation names (torchvision's builder convention). Builders whose arguments cannot be known that way
            (``timm:``, ``hub:``) get the kwargs unchecked.

    Returns:
        The bare network in eval mode, expecting normalized input. It carries ``model_name``,
        ``data_config`` (:class:`~robustbench_ibn.data.DataConfig`) and ``weights_source``
        (:class:`WeightsSource`).

    Raises:
        ValueError: an argument the model does not take (the message lists those it takes, the closest name, and
            the registered models that take it), or a value the model refuses.

    Example:
        >>> create_model("resnet18", "random", in_ratio=0.3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Expected model arguments of resnet18 (...) among num_classes, ..., but got 'in_ratio'. It is taken ...
    """
    builder, info = check_model_request(name, weights, **kwargs)
    source: WeightsSource | None = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights == "official" and info.load_official is not None:
            model, source = info.load_official(**kwargs)
        else:
            model = builder(**kwargs)
    if source is None:
        source = load_weights(model, weights, info=info, seed=seed)
    model = apply_class_map(model, class_map, name)  # after loading: checkpoints keep the bare model's keys
    model.model_name = name
    model.data_config = info.data_config
    model.weights_source = source
    return model.eval()


def check_model_request(name: str, weights: str = "official",
                        **kwargs: Any) -> tuple[Callable[..., nn.Module], ModelInfo]:
    """What :func:`create_model` checks before building or downloading anything: the name, the architecture
    arguments (``kwargs``, ``class_map`` aside) and the weights (:func:`~robustbench_ibn.models.check_weights`).
    A run calls it before the shifts' downloads, so a typo is the first thing said. Returns the builder and info.

    Example:
        >>> check_model_request("resnet18", "random", in_grups=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Expected model arguments of resnet18 (...) among ..., but got 'in_grups'. ...
    """
    builder, info = _resolve(name)
    _check_arguments(name, builder, {k: v for k, v in kwargs.items() if k != "class_map"})
    check_weights(weights, info)
    return builder, info


def _builder_arguments(builder: Callable[..., nn.Module]) -> tuple[str, ...] | None:
    """The keyword arguments ``builder`` accepts, or None when they cannot be known.

    Its own keyword parameters; when it also takes ``**kwargs``, the parameters with a default of the
    ``nn.Module`` class its return annotation names (torchvision's convention: ``def resnet18(*, weights=None,
    progress=True, **kwargs) -> ResNet``; parameters without a default are the ones the builder fills). A
    builder that passes ``**kwargs`` to something undeclared (``-> nn.Module``) gives None.
    """
    params = inspect.signature(builder).parameters.values()
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p.name for p in params if p.kind in keywords]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return tuple(named)
    try:
        target = typing.get_type_hints(builder).get("return")
    except Exception:  # an annotation that does not resolve: nothing is known
        return None
    if not (isinstance(target, type) and issubclass(target, nn.Module) and target is not nn.Module):
        return None
    forwarded = [n for n, p in inspect.signature(target).parameters.items()
                 if p.kind in keywords and p.default is not inspect.Parameter.empty]
    return tuple(dict.fromkeys(named + forwarded))


def _check_arguments(name: str, builder: Callable[..., nn.Module], kwargs: Mapping[str, Any]) -> None:
    accepted = _builder_arguments(builder)
    unknown = [key for key in kwargs if accepted is not None and key not in accepted]
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, accepted or (), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    takers = [m for m in list_models() if key in (_builder_arguments(MODELS.get(m)) or ())]
    who = (f" It is taken by {len(takers)} registered model{'s' if len(takers) > 1 else ''}: {listing(takers, 6)}."
           if takers else "")
    raise ValueError(f"Expected model arguments of {name} ({option('model_kwargs')}) among "
                     f"{', '.join(accepted or ()) or 'none'}, but got {', '.join(map(repr, unknown))}.{hint}{who}")
class Normalized(nn.Module):
    """Wrap a network that expects normalized input so it takes [0, 1] pixels (shifts act before this).

    Example:
        >>> net = Normalized(nn.Identity(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        >>> net(torch.full((1, 3, 1, 1), 0.75)).flatten().tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Same arithmetic as torchvision's Normalize (subtract, then divide), so logits match the
        # official pipeline bit for bit in fp32.
        return self.model((images - self.mean) / self.std)


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """A model ready for a run: the bare network, its name, its data config and the weights record results store.

    Attributes:
        net: the network in eval mode, expecting normalized input.
        name: the registered name, or the module's ``model_name`` / class name.
        data_config: its eval geometry and normalization.
        weights: the :class:`WeightsSource` fields plus a one-line ``description``.
        kwargs: the architecture arguments it was built with (part of a run's identity).
    """

    net: nn.Module
    name: str
    data_config: DataConfig
    weights: dict[str, Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_random(self) -> bool:
        return self.weights.get("kind") == "random"

    def wrapped(self, device: torch.device | str = "cpu") -> Normalized:
        """The network behind its normalization, on ``device``, channels-last, in eval mode: it takes [0, 1] pixels."""
        cfg = self.data_config
        return Normalized(self.net, cfg.mean, cfg.std).to(device, memory_format=torch.channels_last).eval()


def prepare_model(
    model: str | nn.Module,
    weights: str = "official",
    *,
    seed: int = 0,
    model_kwargs: Mapping[str, Any] | None = None,
    data_config: DataConfig | None = None,
) -> PreparedModel:
    """A model name or module, ready for a run (:class:`PreparedModel`).

    A name goes through :func:`create_model`; a module is used as it is and needs a data config (its own
    ``data_config`` attribute or ``data_config``). The weights record is what results store: the
    :class:`WeightsSource` fields plus a one-line ``description``.

    Example:
        >>> prepared = prepare_model("resnet18", "random")
        >>> prepared.name, prepared.data_config.crop, prepared.weights["kind"]
        ('resnet18', 224, 'random')
    """
    if isinstance(model, str):
        net = create_model(model, weights, seed=seed, **dict(model_kwargs or {}))
        name = model
    else:
        if model_kwargs:
            raise ValueError("model_kwargs only apply to registered model names, not to an nn.Module.")
        net, name = model, getattr(model, "model_name", type(model).__name__)
    config = data_config or getattr(net, "data_config", None)
    if config is None:
        raise ValueError(
            f"Expected a data config for model {name!r} (its resize, crop, interpolation, mean and std), "
            f"but it has none. Pass data_config=DataConfig(...)."
        )
    source = getattr(net, "weights_source", None)
    record = (
        {**source.to_dict(), "description": source.describe()}
        if source is not None
        else {"kind": "module", "location": None, "sha256": None, "seed": None,
              "description": "user-supplied nn.Module (weights not tracked)"}
    )
    return PreparedModel(net.eval(), name, config, record, dict(model_kwargs or {}))
