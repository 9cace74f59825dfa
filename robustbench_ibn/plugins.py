"""Plug-ins: shifts, models and dataset kinds registered by your own files, modules or installed packages.

A plug-in is ordinary Python that calls :func:`~robustbench_ibn.register_transform`,
:func:`~robustbench_ibn.register_model` or :func:`~robustbench_ibn.datasets.register_dataset` when imported.
Three ways in:

- a file: ``robust-eval --plugin my_shifts.py`` (:func:`load_plugin`);
- a module: ``robust-eval --plugin my_package.shifts`` (found on ``sys.path`` or in the current directory);
- an installed package's entry point in the group ``robustbench_ibn.transforms``, ``robustbench_ibn.models`` or
  ``robustbench_ibn.datasets`` (value: the module to import), loaded automatically by the CLI and by
  :func:`~robustbench_ibn.evaluate` (:func:`load_entry_points`; set ``ROBUSTBENCH_IBN_NO_ENTRY_POINTS=1``
  to skip them).

Everything a plug-in registers is marked with where it came from (``--list-*`` shows it), so any later error
about one of its shifts (a wrong first batch, an exception) names the plug-in. A plug-in that fails to import raises
:class:`PluginError` naming the plug-in, the cause and the line, and what it had registered is removed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

from .datasets import DATASETS
from .datasets import ENTRY_POINT_GROUP as DATASETS_GROUP
from .models import MODELS
from .transforms import TRANSFORMS

__all__ = ["ENTRY_POINT_GROUPS", "NO_ENTRY_POINTS_ENV", "PluginError", "load_entry_points", "load_plugin",
           "load_plugins"]

ENTRY_POINT_GROUPS = ("robustbench_ibn.transforms", "robustbench_ibn.models", DATASETS_GROUP)
# Every registry a plug-in may fill: what it registered is marked with its origin, or removed when it fails.
_REGISTRIES = (TRANSFORMS, MODELS, DATASETS)
NO_ENTRY_POINTS_ENV = "ROBUSTBENCH_IBN_NO_ENTRY_POINTS"

# What has been loaded (resolved file path, module name or entry point) -> its module: loading is idempotent.
_LOADED: dict[str, ModuleType] = {}


class PluginError(RuntimeError):
    """A plug-in that cannot be loaded; the message names it and says why."""


def _looks_like_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


# robustbench_ibn itself and its transforms (installed from their own folder): frames there are not the plug-in's.
_PACKAGE_DIRS = tuple(str(Path(f).resolve().parent) + os.sep
                      for f in (__file__, sys.modules[f"{__package__}.transforms"].__file__ or ""))


def _location(err: BaseException) -> str:
    """`` (at my_shifts.py:7)``: the plug-in's innermost frame (outside importlib and robustbench_ibn)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f" (at {err.filename}:{err.lineno})"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<frozen") and not f.filename.startswith(_PACKAGE_DIRS)
              and "importlib" not in f.filename]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _register_from(label: str, importer: Callable[[], ModuleType]) -> ModuleType:
    """Run ``importer``; mark what it registers as coming from ``label``; on failure undo and raise."""
    before = [set(registry.list()) for registry in _REGISTRIES]
    try:
        module = importer()
    except (Exception, SystemExit) as err:
        for registry, names in zip(_REGISTRIES, before):
            for name in set(registry.list()) - names:
                registry.remove(name)
        raise PluginError(f"Could not load {label}: {type(err).__name__}: {err}{_location(err)}") from err
    for registry, names in zip(_REGISTRIES, before):
        for name in set(registry.list()) - names:
            registry.meta(name)["origin"] = label
    return module


def _import_file(path: Path) -> ModuleType:
    resolved = path.resolve()
    # A private module name (stem + path hash), so a plug-in called utils.py cannot shadow a real module.
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"robustbench_ibn_plugin_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {resolved} as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and typing look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(name: str) -> ModuleType:
    # Like ``python -m``: the current directory is searched too (console scripts do not put it on sys.path).
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(cwd)


def load_plugin(spec: str | os.PathLike[str]) -> ModuleType:
    """Import one plug-in: a ``.py`` file path or a dotted module name (what ``--plugin`` takes).

    Loading the same plug-in twice is a no-op. Raises :class:`PluginError` naming the plug-in when the
    file is missing or its import fails (the shifts, models and dataset kinds it had registered are removed again).

    Example:
        >>> from robustbench_ibn.plugins import load_plugin
        >>> load_plugin("no_such_plugin_module")
        Traceback (most recent call last):
        ...
        robustbench_ibn.plugins.PluginError: Could not load plug-in module no_such_plugin_module: ModuleNotFoundError: No module named 'no_such_plugin_module'. Pass a .py file path or an importable module name (package.module).
    """
    text = os.fspath(spec)
    if _looks_like_file(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise PluginError(f"Could not load plug-in file {text}: no such file ({path.absolute()}).")
        key, label = f"file:{path.resolve()}", f"plug-in file {text}"
        if key not in _LOADED:
            _LOADED[key] = _register_from(label, lambda: _import_file(path))
        return _LOADED[key]
    if not all(part.isidentifier() for part in text.split(".")):
        raise PluginError(f"Expected --plugin to be a .py file or a dotted module name, but got {text!r}.")
    key, label = f"module:{text}", f"plug-in module {text}"
    if key not in _LOADED:
        try:
            _LOADED[key] = _register_from(label, lambda: _import_module(text))
        except PluginError as err:
            if isinstance(err.__cause__, ModuleNotFoundError) and err.__cause__.name == text.split(".")[0]:
                raise PluginError(f"{err.args[0].split(' (at ')[0]}. Pass a .py file path or an importable module "
                                  "name (package.module).") from err.__cause__
            raise
    return _LOADED[key]


def load_plugins(specs: Iterable[str | os.PathLike[str]]) -> list[ModuleType]:
    """:func:`load_plugin` for each of ``specs``, in order."""
    return [load_plugin(spec) for spec in specs]


def load_entry_points(groups: Iterable[str] = ENTRY_POINT_GROUPS) -> list[str]:
    """Import every installed package's plug-in entry points in ``groups`` (once; later calls only add new ones).

    A package declares, in its ``pyproject.toml``::

        [project.entry-points."robustbench_ibn.transforms"]
        my_shifts = "my_package.shifts"

    and importing ``my_package.shifts`` registers its shifts (a ``module:attr`` value imports the
    module too; the attribute is not called). Skipped entirely when ``ROBUSTBENCH_IBN_NO_ENTRY_POINTS``
    is set to a non-empty value other than ``0``.

    Returns:
        Labels of the entry points loaded by this call.

    Raises:
        PluginError: an entry point whose import fails, naming the package and the way out.
    """
    if os.environ.get(NO_ENTRY_POINTS_ENV, "") not in ("", "0"):
        return []
    loaded = []
    for group in groups:
        for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.name, e.value)):
            key = f"entry point:{group}:{ep.name}={ep.value}"
            if key in _LOADED:
                continue
            dist = ep.dist.name if getattr(ep, "dist", None) is not None else "an installed package"
            label = f"entry point {ep.name} = {ep.value} ({group}) of {dist}"
            try:
                _register_from(label, lambda ep=ep: _module_of(ep))
            except PluginError as err:
                raise PluginError(f"{err} Fix or uninstall {dist}, or set {NO_ENTRY_POINTS_ENV}=1 to skip "
                                  "installed plug-ins.") from err.__cause__
            _LOADED[key] = sys.modules[ep.module]
            loaded.append(label)
    return loaded


def _module_of(ep: importlib.metadata.EntryPoint) -> ModuleType:
    ep.load()  # imports ep.module (and resolves the attribute, if any)
    return sys.modules[ep.module]
