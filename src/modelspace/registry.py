"""One shape for every pluggable piece: a registry from names (and aliases) to declarations.

Attribution methods and label-free baselines are both small classes registered under a name and
configured by keyword parameters (as timm maps model names to constructors); model sources are
loader functions registered under their prefix (`models.spec.SOURCES`, filled with `add`)::

    METHODS = Registry("attribution method")

    @METHODS.register("lrp")
    @dataclass(frozen=True)
    class EpsilonLRP(AttributionMethod):
        name = "lrp_epsilon"
        epsilon: float = 1e-6

    METHODS.get("lrp", epsilon=0.01)   # -> EpsilonLRP(epsilon=0.01); .id == "lrp_epsilon(epsilon=0.01)"
    METHODS.get("lrp_epsilon(epsilon=0.01)")   # the same: an id names its declaration too

A declaration is a frozen dataclass, an immutable value: its fields are its parameters, its `params`
and its id (`identity.EstimatorId`) are derived from them. An id is read back (`identity`) as a name
and keyword parameters with Python literal values, so that whatever takes a name (the CLI's
``--methods``, a study's list of estimators) also takes a configured one.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, ClassVar, TypeVar

from .errors import InputError
from .identity import EstimatorId

T = TypeVar("T", bound="Declared")

ALWAYS = "always"
"""`param`'s `shown`: the value is part of the id whatever it is."""
UNLESS_DEFAULT = "unless_default"
"""`param`'s `shown`: the value is part of the id only when it is not the default (so that adding a
parameter keeps the ids written before it)."""


def param(default: Any, *, shown: str | Callable[[Any], bool] = ALWAYS) -> Any:
    """A field of a declaration (a frozen dataclass) and whether its value is part of the id.

    Parameters
    ----------
    default : object
        The default value (immutable: a number, a str, a tuple).
    shown : str or callable
        `ALWAYS`, `UNLESS_DEFAULT`, or ``shown(declaration) -> bool`` (a parameter that matters for
        some values of the others only).

    Returns
    -------
    dataclasses.Field
        A field with ``default``, whose metadata carries ``shown`` for `Declared.params`.
    """
    return dataclasses.field(default=default, metadata={"shown": shown})


class Declared:
    """A named declaration whose `id` spells out the parameters that change its output.

    Concrete declarations are frozen dataclasses: their fields are their parameters, and `params`
    (and so the id) are derived from them (`param` says which are shown). A field whose value is
    itself a declaration (a wrapped method) is shown by its id.

    A subclass's own fields, checked in its ``__post_init__`` (`errors.check_int` and siblings),
    are its parameters; this base takes none.
    """

    name: ClassVar[str] = ""

    @property
    def params(self) -> dict[str, Any]:
        """Parameters that change the output (part of stored keys and result names)."""
        if not dataclasses.is_dataclass(self):
            return {}
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = f.metadata.get("shown", ALWAYS)
            if shown == UNLESS_DEFAULT:
                # a wrapped declaration's default is its name
                if value == f.default or isinstance(value, Declared) and value.id == f.default:
                    continue
            elif callable(shown) and not shown(self):
                continue
            out[f.name] = value
        return out

    def version(self) -> tuple[str, int]:
        """What the store key's version counts and its value.

        Returns
        -------
        tuple of (str, int)
            The version tag ("rules" or "prepare") and the version: ("rules", 0), none, by default.
        """
        return "rules", 0

    @property
    def ident(self) -> EstimatorId:
        """The identity: name, parameters (a wrapped declaration by its own identity) and version."""
        tag, version = self.version()
        params = {k: v.ident if isinstance(v, Declared) else v for k, v in self.params.items()}
        return EstimatorId.of(self.name, params, version=version, version_tag=tag)

    @property
    def id(self) -> str:
        """Canonical identity, e.g. 'saliency' or 'lrp_epsilon(epsilon=1e-06)'."""
        return self.ident.text

    def __repr__(self) -> str:
        return self.id

    def _set(self, name: str, value: Any) -> None:
        """Set a field of a frozen declaration to its checked value (in ``__post_init__`` only)."""
        object.__setattr__(self, name, value)


class Registry(dict):
    """name -> declaration class, plus aliases; `get` builds a configured instance.

    Parameters
    ----------
    kind : str
        What it registers, e.g. "attribution method": named in its error messages.

    Attributes
    ----------
    aliases : dict of str to str
        Alias -> registered name.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.aliases: dict[str, str] = {}

    def add(self, name: str, entry: Any) -> Any:
        """Register ``entry`` under ``name``; a name is registered once.

        Parameters
        ----------
        name : str
            The name to register it under.
        entry : object
            What the name stands for (a loader function, a class).

        Returns
        -------
        object
            ``entry``, as is.

        Raises
        ------
        ValueError
            ``name`` is registered already (a programming error, not the user's).
        """
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = entry
        return entry

    def register(self, *aliases: str) -> Callable[[type[T]], type[T]]:
        """Class decorator adding a declaration under its `name` (and aliases).

        Parameters
        ----------
        *aliases : str
            Other names that `get` and `resolve` take for it.

        Returns
        -------
        callable
            The decorator: it registers the class and returns it unchanged.
        """

        def add(cls: type[T]) -> type[T]:
            self[cls.name] = cls
            self.aliases.update({alias: cls.name for alias in aliases})
            return cls

        return add

    def describe(self) -> dict[str, str]:
        """Every declaration's name with the first line of its docstring, sorted by name.

        Returns
        -------
        dict of str to str
            Registered name -> the summary line of its class's docstring ("" for none).
        """
        return {name: ((cls.__doc__ or "").strip().splitlines() or [""])[0] for name, cls in sorted(self.items())}

    def resolve(self, spec: str) -> EstimatorId:
        """The identity a name, alias or id stands for, as written (its parameters not checked).

        Parameters
        ----------
        spec : str
            A name, an alias or an id.

        Returns
        -------
        EstimatorId
            Its name an alias resolved to the registered name, its parameters those of the id.

        Raises
        ------
        InputError
            Not a name or an id.
        """
        return EstimatorId.parse(spec, self.aliases, what=self.kind)

    def get(self, spec: str | Declared, **params: Any) -> Any:  # type: ignore[override]
        """An instance from a name, alias or id and keyword parameters (or an instance, as is).

        Parameters
        ----------
        spec : str or Declared
            A name, an alias, an id (``'lrp_epsilon(epsilon=0.01)'``) or a declaration.
        **params
            Parameters beside those of the id (not the same ones twice).

        Returns
        -------
        Declared
            The configured declaration (``spec`` itself when it is one).

        Raises
        ------
        InputError
            Not a str or a declaration, an unknown name, a malformed id, a parameter given twice (in the id
            and by keyword, or beside a declaration), a parameter the declaration does not take or a bad value.
        """
        if isinstance(spec, Declared):
            if params:
                raise InputError(f"pass parameters either to the {self.kind} object or by name, not both")
            return spec
        if not isinstance(spec, str):
            raise InputError(f"{self.kind}: expected a name, got {type(spec).__name__}")
        ident = self.resolve(spec)
        clash = sorted(set(ident.kwargs) & set(params))
        if clash:
            raise InputError(f"{self.kind} {spec!r}: parameter(s) {clash} given both in the id and by keyword")
        params = {**ident.kwargs, **params}
        key = ident.name
        if key not in self:
            shown = EstimatorId.parse(spec, what=self.kind).name
            raise InputError(f"unknown {self.kind} {shown!r}; known: {', '.join(sorted(set(self) | set(self.aliases)))}")
        cls = self[key]
        if params:  # checked only when given: inspecting a signature costs more than a small attribution
            allowed = list(inspect.signature(cls).parameters)
            unknown = sorted(set(params) - set(allowed))
            if unknown:  # the user's mistake: an InputError naming it, not a TypeError
                raise InputError(f"{self.kind} {key!r} has no parameter(s) {unknown}; it takes {allowed or 'none'}")
        return cls(**params)
