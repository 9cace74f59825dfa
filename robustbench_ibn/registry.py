"""One small generic registry, shared by models and transforms.

A registry maps names to builder functions. Names may be *families* with one numeric placeholder,
e.g. ``"rgb+{k}"``: ``get("rgb+50")`` then returns the builder with ``k=50`` bound. Registration is
append-only (a duplicate raises unless ``override=True``) and unknown names raise with the closest
registered names, so a typo never silently evaluates something else.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "natural_key"]

F = TypeVar("F", bound=Callable[..., Any])

# A family placeholder matches an unsigned decimal number; its sign, if any, is part of the template
# ("rgb-{k}") so that names stay unambiguous and shell-safe.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # ASCII digits: "rgb+٣" is not another spelling of rgb+3
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def natural_key(name: str) -> list[Any]:
    """Sort key that orders ``resnet18 < resnet50 < resnet101`` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _parse_number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


class Registry(Generic[F]):
    """Name -> builder mapping with fnmatch listing, numeric families and did-you-mean errors.

    Args:
        kind: what the registry holds ("model", "transform"); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, F] = {}
        self._families: dict[str, tuple[re.Pattern[str], str]] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    # -- registration -------------------------------------------------------------------------
    def register(
        self, name: str | None = None, *, override: bool = False, meta: Mapping[str, Any] | None = None
    ) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name`` (default: the function's ``__name__``)."""

        def decorator(fn: F) -> F:
            self.add(name or fn.__name__, fn, override=override, meta=meta)
            return fn

        return decorator

    def add(self, name: str, fn: F, *, override: bool = False, meta: Mapping[str, Any] | None = None) -> None:
        """Register ``fn`` under ``name``; a name with one ``{param}`` placeholder is a family.

        ``meta`` is free-form metadata kept with the entry (see :meth:`meta`); by default it records the
        module the builder was defined in as ``origin``.
        """
        if not name or name != name.strip() or any(c.isspace() for c in name) or "," in name:
            raise ValueError(f"Expected a {self.kind} name without spaces or commas, but got {name!r}.")
        if name in self._entries and not override:
            raise ValueError(
                f"A {self.kind} is already registered under the name {name!r}. "
                f"Pick another name, or pass override=True to replace it on purpose."
            )
        params = _PLACEHOLDER.findall(name)
        if len(params) > 1:
            raise ValueError(f"Expected at most one {{param}} placeholder in {self.kind} name {name!r}.")
        if params:
            literal = [re.escape(part) for part in _PLACEHOLDER.split(name)[::2]]
            pattern = re.compile(literal[0] + f"({_NUMBER})" + literal[1] + r"\Z")
            self._families[name] = (pattern, params[0])
        self._entries[name] = fn
        self._meta[name] = {"origin": getattr(fn, "__module__", None) or "", **dict(meta or {})}

    def remove(self, name: str) -> None:
        del self._entries[name]
        self._families.pop(name, None)
        self._meta.pop(name, None)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Registry[F]]:
        """Restore the registry's content on exit (for tests that register temporary entries)."""
        entries, families = dict(self._entries), dict(self._families)
        meta = {name: dict(m) for name, m in self._meta.items()}
        try:
            yield self
        finally:
            self._entries, self._families, self._meta = entries, families, meta

    # -- lookup -------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._resolve(name) is not None

    def _resolve(self, name: str) -> Callable[..., Any] | None:
        if name in self._entries and name not in self._families:
            return self._entries[name]
        for template, (pattern, param) in self._families.items():
            match = pattern.match(name)
            if match:
                return functools.partial(self._entries[template], **{param: _parse_number(match.group(1))})
        return None

    def get(self, name: str) -> Callable[..., Any]:
        """The builder for ``name`` (family parameters bound); unknown names raise ``KeyError``."""
        builder = self._resolve(name)
        if builder is None:
            raise KeyError(self.unknown_message(name))
        return builder

    def template_of(self, name: str) -> str:
        """The registered name (or family template) that ``name`` resolves to (a template resolves to itself)."""
        if name in self._entries:
            return name
        for template, (pattern, _) in self._families.items():
            if pattern.match(name):
                return template
        raise KeyError(self.unknown_message(name))

    def parse(self, name: str) -> tuple[str, dict[str, int | float]]:
        """``"rgb+80"`` -> ``("rgb+{k}", {"k": 80})``: the template and the family parameter it binds."""
        template = self.template_of(name)
        if template not in self._families or name == template:
            return template, {}
        pattern, param = self._families[template]
        match = pattern.match(name)
        assert match is not None  # template_of matched it
        return template, {param: _parse_number(match.group(1))}

    def family_param(self, name: str) -> str | None:
        """The placeholder name of ``name``'s family (``"k"`` for ``rgb+{k}`` and ``rgb+80``), else ``None``."""
        family = self._families.get(self.template_of(name))
        return family[1] if family else None

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata of ``name``'s entry (of its family for a member), as stored: updates stick."""
        return self._meta[self.template_of(name)]

    def create(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def unknown_message(self, name: str) -> str:
        # Families are compared with their placeholder filled by the number the user typed, so "rbg+50" suggests
        # "rgb+50" rather than the bare template; without a number, by their name without the placeholder, so
        # "adian" suggests the template "adain{alpha}".
        # The number as typed: digits first (in "imagenet-c.fog.3" it is "3", not ".3"), a bare ".5" otherwise.
        number = re.search(r"[0-9]+(?:\.[0-9]+)?", name) or re.search(_NUMBER, name)
        candidates = {}  # what is compared -> what is suggested
        for n in self._entries:
            if n in self._families:
                filled = _PLACEHOLDER.sub(number.group(0) if number else "", n)
                candidates[filled] = filled if number else n
            else:
                candidates[n] = n
        close = [candidates[c] for c in difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)]
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (
            f"Unknown {self.kind} {name!r}.{hint} "
            f"List the registered {self.kind}s with `robust-eval --list-{self.kind}s`."
        )

    def list(self, include: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None) -> list[str]:
        """Registered names (family templates included) filtered by fnmatch patterns, naturally sorted."""

        def as_list(patterns: str | Iterable[str] | None) -> list[str]:
            if patterns is None:
                return []
            return [patterns] if isinstance(patterns, str) else list(patterns)

        names = list(self._entries)
        inc, exc = as_list(include), as_list(exclude)
        if inc:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in inc)]
        if exc:
            names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
        return sorted(names, key=natural_key)

    def __len__(self) -> int:
        return len(self._entries)
