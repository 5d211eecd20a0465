"""Configuration values that carry their own command-line options.

A frozen dataclass declares each field that the command line may set with `option`: its default and
its help, once. `add_options` gives a parser the fields' options (``--batch-size`` for
``batch_size``, unless the field names another flag), each help ending with the dataclass's default,
and `from_args` builds the value from the parsed arguments, so that the CLI and the API cannot drift
apart. Values are checked by the dataclass itself, with messages naming the field.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Iterable, TypeVar

__all__ = ["add_options", "from_args", "option", "option_flag"]

T = TypeVar("T")


def option(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None,
           scale: float | None = None, type: Any = None, choices: Iterable[str] | None = None) -> Any:
    """A dataclass field with a default and the command-line option that sets it.

    Parameters
    ----------
    default : object
        The field's default, immutable (the one place it is written).
    help : str
        What the option does; `add_options` appends the default unless it is None (then `help`
        says what None means) or a flag's False.
    flag : str or None
        The option's name; None: ``--`` and the field's name with hyphens.
    metavar : str or None
        The placeholder of the option's value in ``--help``.
    scale : float or None
        The field's value is the option's times this (``--pass-memory`` in MB for bytes); the
        default shown is divided by it.
    type : callable or None
        The option's type; None: the type of `default` (needed when `default` is None).
    choices : iterable of str or None
        The values the option accepts.

    Returns
    -------
    dataclasses.Field
        The field, its option described in its metadata.
    """
    meta = {"help": help, "flag": flag, "metavar": metavar, "scale": scale, "type": type,
            "choices": None if choices is None else tuple(choices)}
    return dataclasses.field(default=default, metadata={"option": meta})


def _options(cls: type) -> list[tuple[dataclasses.Field, dict]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def option_flag(cls: type, name: str) -> str:
    """The command-line flag of field `name` of `cls`.

    Parameters
    ----------
    cls : type
        A dataclass whose fields are declared with `option`.
    name : str
        The field's name.

    Returns
    -------
    str
        Its flag, e.g. ``"--batch-size"``.

    Raises
    ------
    KeyError
        `cls` has no such field with an option.
    """
    for f, meta in _options(cls):
        if f.name == name:
            return meta["flag"] or "--" + f.name.replace("_", "-")
    raise KeyError(f"{cls.__name__} has no option {name!r}")


def add_options(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                exclude: Iterable[str] = ()) -> None:
    """Add to `parser` an option per field of `cls` declared with `option`.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser (or argument group) to add to.
    cls : type
        A dataclass whose fields are declared with `option`.
    prefix : str
        Put before each option's help (e.g. "with --executor ray: ").
    exclude : iterable of str
        Names of fields to leave out (e.g. those a base class's options added already).
    """
    skip = set(exclude)
    for f, meta in _options(cls):
        if f.name in skip:
            continue
        flag = option_flag(cls, f.name)
        text = prefix + meta["help"]
        if isinstance(f.default, bool):
            parser.add_argument(flag, action="store_false" if f.default else "store_true", help=text)
            continue
        kwargs: dict[str, Any] = {"type": meta["type"] or type(f.default), "default": None, "help": text}
        if f.default is not None:
            shown = f.default / meta["scale"] if meta["scale"] else f.default
            kwargs["default"] = shown
            kwargs["help"] = f"{text} (default {shown:g})" if isinstance(shown, float) else f"{text} (default {shown})"
        for key in ("metavar", "choices"):
            if meta[key] is not None:
                kwargs[key] = meta[key]
        parser.add_argument(flag, **kwargs)


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """The value of `cls` that parsed arguments describe (its options added by `add_options`).

    Parameters
    ----------
    cls : type
        A dataclass whose fields are declared with `option`.
    args : argparse.Namespace
        The parsed arguments; a field whose option is not among them keeps its default.
    **given
        Fields set otherwise, which take precedence.

    Returns
    -------
    object
        ``cls(...)``, checked by its constructor.

    Raises
    ------
    InputError
        A value the dataclass refuses (the message names the field).
    """
    values = {}
    for f, meta in _options(cls):
        dest = option_flag(cls, f.name).lstrip("-").replace("-", "_")
        if f.name in given or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if value is not None and meta["scale"]:
            value = int(value * meta["scale"])
        values[f.name] = value
    return cls(**{**values, **given})
