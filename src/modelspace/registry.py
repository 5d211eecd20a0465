"""One shape for every pluggable piece: a registry from names (and aliases) to declarations.

Attribution methods and label-free baselines are both small classes registered under a name and
configured by keyword parameters (as timm maps model names to constructors); model sources are
loader functions registered under their prefix (`models.spec.SOURCES`, filled with `add`):

    METHODS = Registry("attribution method")

    @METHODS.register("lrp")
    class EpsilonLRP(AttributionMethod):
        name = "lrp_epsilon"
        def __init__(self, epsilon: float = 1e-6): ...

    METHODS.get("lrp", epsilon=0.01)   # -> EpsilonLRP(epsilon=0.01); .id == "lrp_epsilon(epsilon=0.01)"
    METHODS.get("lrp_epsilon(epsilon=0.01)")   # the same: an id names its declaration too

An id is read back as a name and keyword parameters with Python literal values, so that whatever
takes a name (the CLI's ``--methods``, a study's list of estimators) also takes a configured one.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any, Callable, ClassVar, TypeVar

from .errors import InputError

T = TypeVar("T", bound="Declared")


class Declared:
    """A named declaration whose `id` spells out the parameters that change its output."""

    name: ClassVar[str] = ""

    @property
    def params(self) -> dict[str, Any]:
        """Parameters that change the output (part of stored keys and result names)."""
        return {}

    @property
    def id(self) -> str:
        """Canonical identity, e.g. 'saliency' or 'lrp_epsilon(epsilon=1e-06)'."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"{self.name}({inner})"

    def __repr__(self) -> str:
        return self.id


class Registry(dict):
    """name -> declaration class, plus aliases; `get` builds a configured instance."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.aliases: dict[str, str] = {}

    def add(self, name: str, entry: Any) -> Any:
        """Register ``entry`` under ``name``; a name is registered once."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = entry
        return entry

    def register(self, *aliases: str) -> Callable[[type[T]], type[T]]:
        """Class decorator adding a declaration under its `name` (and aliases)."""

        def add(cls: type[T]) -> type[T]:
            self[cls.name] = cls
            self.aliases.update({alias: cls.name for alias in aliases})
            return cls

        return add

    def describe(self) -> dict[str, str]:
        """Every declaration's name with the first line of its docstring, sorted by name."""
        return {name: ((cls.__doc__ or "").strip().splitlines() or [""])[0] for name, cls in sorted(self.items())}

    def get(self, spec: str | Declared, **params: Any) -> Any:  # type: ignore[override]
        """An instance from a name or alias and keyword parameters (or an instance, as is)."""
        if isinstance(spec, Declared):
            if params:
                raise InputError(f"pass parameters either to the {self.kind} object or by name, not both")
            return spec
        if not isinstance(spec, str):
            raise InputError(f"{self.kind}: expected a name, got {type(spec).__name__}")
        if "(" in spec:
            spec, given = _parse_id(spec, self.kind)
            clash = sorted(set(given) & set(params))
            if clash:
                raise InputError(f"{self.kind} {spec!r}: parameter(s) {clash} given both in the id and by keyword")
            params = {**given, **params}
        key = self.aliases.get(spec, spec)
        if key not in self:
            raise InputError(f"unknown {self.kind} {spec!r}; known: {', '.join(sorted(set(self) | set(self.aliases)))}")
        cls = self[key]
        if params:  # checked only when given: inspecting a signature costs more than a small attribution
            allowed = list(inspect.signature(cls).parameters)
            unknown = sorted(set(params) - set(allowed))
            if unknown:  # the user's mistake: an InputError naming it, not a TypeError
                raise InputError(f"{self.kind} {key!r} has no parameter(s) {unknown}; it takes {allowed or 'none'}")
        return cls(**params)


def _parse_id(text: str, kind: str) -> tuple[str, dict[str, Any]]:
    """``"name(a=1,b='x')"`` → ("name", {"a": 1, "b": "x"}): an id (`Declared.id`) read back."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
            raise ValueError("not name(key=value, ...)")
        params = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ValueError("** is not a parameter")
            params[keyword.arg] = ast.literal_eval(keyword.value)
    except (SyntaxError, ValueError) as exc:
        raise InputError(f"{kind} {text!r}: expected a name or name(key=value, ...) with Python literal "
                         f"values ({exc})") from None
    return call.func.id, params
