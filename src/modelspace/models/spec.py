"""Model specifications: `ModelSpec`, the registry of source prefixes, and `spec_from_dict`.

`ModelSpec` is one zoo entry, checked; `spec_from_dict` builds it from one zoo-file entry, with its
relative paths resolved. Zoo files: `zoo`.

Fields: ``name`` and ``source`` are required; ``task``, ``encoder``, ``input_size``, ``normalize`` /
``mean`` + ``std``, ``interpolation`` ("bilinear" or "bicubic"), ``constructor`` (``checkpoint:`` only),
``kwargs``, ``pretrained`` (``timm:`` / ``torchvision:`` / ``taskonomy:``, default true), ``weights``
(``taskonomy:`` only: the weights file, or a folder of the published files) and ``trust_checkpoint``
(default false) are optional. Any other key is an error, so typos do not pass silently.

Names: ``name`` and ``task`` are kept in Unicode normal form NFC (`normalise_name`): ``café`` typed as
one code point or as ``e`` and a combining accent is one name, as it looks one. Two zoo entries whose
names are equal once normalised are refused (`zoo.load_zoo`).

Preprocessing (``input_size``, ``mean`` / ``std``, ``interpolation``): a field the entry sets wins; a
field it leaves unset (None) comes from the model's own configuration, which its loader reads (timm's
pretrained_cfg, torchvision's weights transforms, a Hugging Face image processor or config), then from
`DEFAULTS` (224×224, ImageNet statistics, bilinear). `resolve_preprocessing` is that one rule.

Sources: ``python:pkg.module:callable``, ``checkpoint:PATH`` (with ``constructor``, or a trusted file that
pickles the whole module), ``torchscript:PATH``, ``hf:DIR_OR_HUB_ID``, ``timm:NAME``, ``torchvision:NAME``,
``taskonomy:TASK``.

Paths: a relative ``checkpoint:`` / ``torchscript:`` path, or ``weights`` path, is taken relative to the
zoo file's folder (not the working directory), so a zoo file and its weights can move together, and it
must stay inside that folder: ``weights/a.pt`` is fine, ``../other/a.pt`` (which climbs out of it) is a
ZooError naming the model and the field. To use a file elsewhere, write its absolute path (or ``~/...``):
an absolute path says plainly where it points, a relative one cannot quietly leave the zoo's folder. The
check is on the written path (``..`` components), not on symbolic links the user placed inside the
folder. An ``hf:`` reference follows the same rule when it is a relative path with ``..``; otherwise it
is resolved against the zoo file's folder when that folder exists, else kept as a hub id (local cache
only).

Imports: a ``python:`` source or constructor is imported with the zoo file's folder first on
``sys.path`` (only while it is imported), so ``python:mynets:tiny`` finds ``mynets.py`` beside the zoo
file; the rule and its caching are stated in `sources.zoo_imports`.

Security: a zoo file is read as plain data (TOML, or YAML with ``yaml.safe_load``: Python tags such as
``!!python/object/apply`` are refused, never executed). Loading its models is another matter: a
``python:`` source or ``constructor`` imports and calls the code it names, a ``torchscript:`` file is a
program, and a ``checkpoint:`` file is read with ``torch.load(weights_only=True)`` (tensors and plain
containers only; a pickle that would construct other objects is refused) unless ``trust_checkpoint =
true`` or the CLI's ``--trust-checkpoints`` says the file is trusted. Treat a zoo file from someone else
like code: read its sources before running it.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from modelspace.errors import ZooError
from modelspace.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Named normalisations accepted by ``normalize`` in a zoo file.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

#: Sources whose reference is a local file path (resolved against the zoo file's folder).
_PATH_SOURCES = ("checkpoint", "torchscript")
#: Sources that read pretrained weights, which ``pretrained = false`` replaces by random ones.
PRETRAINED_SOURCES = ("timm", "torchvision", "taskonomy")
#: Sources that take a ``weights`` field (a local file or folder of weights they would otherwise download).
WEIGHTS_SOURCES = ("taskonomy",)
_PYTHON_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_FILE_KEYS = {
    "name", "source", "task", "encoder", "input_size", "mean", "std", "normalize", "interpolation",
    "constructor", "kwargs", "pretrained", "trust_checkpoint", "weights",
}

#: The resize modes T_i offers (`transforms.InputTransform`).
INTERPOLATIONS = ("bilinear", "bicubic")

#: Preprocessing of a model whose zoo entry and own configuration say nothing.
DEFAULTS: dict[str, Any] = {"input_size": (224, 224), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                            "interpolation": "bilinear"}
#: The preprocessing fields: resolved by `resolve_preprocessing`, recorded with where each came from.
PREPROCESSING = ("input_size", "mean", "std", "interpolation")


class FrozenMapping(tuple):
    """A mapping kept as a sorted tuple of ``(key, value)`` pairs, so a spec holding it stays hashable."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"FrozenMapping({dict(self)!r})"


#: Most values (scalars, lists, tables, each counted once per place it appears) a spec's kwargs may hold,
#: and the deepest nesting: a YAML alias bomb (629 bytes, aliases nine deep) would otherwise expand into
#: billions of values while being frozen and written as JSON.
MAX_KWARGS_VALUES = 10_000
MAX_KWARGS_DEPTH = 32


def _kwargs_too_large(value: Any) -> str | None:
    """Why ``value`` is too large to freeze (see MAX_KWARGS_VALUES / MAX_KWARGS_DEPTH), or None.

    Walks the value as `_freeze` would expand it, aliases (one object in several places) counted at every
    place, and stops at the first bound passed: it never does more than MAX_KWARGS_VALUES steps.
    """
    count, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_KWARGS_VALUES:
            return (f"holds more than {MAX_KWARGS_VALUES} values once expanded (a YAML anchor/alias bomb?); "
                    "pass large data through a file the constructor reads")
        if depth > MAX_KWARGS_DEPTH:
            return f"is nested more than {MAX_KWARGS_DEPTH} levels deep"
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
    return None


def _freeze(value: Any) -> Any:
    """Turn lists and mappings into tuples / FrozenMappings (recursively) so they can be hashed."""
    if isinstance(value, Mapping):
        return FrozenMapping(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)) and not isinstance(value, FrozenMapping):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Inverse of `_freeze`: FrozenMappings become dicts, tuples become lists."""
    if isinstance(value, FrozenMapping):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class _Where:
    """Formats error messages that name the zoo file, the model and the field."""

    def __init__(self, where: str, name: Any = None, index: int | None = None):
        self.where = where
        if isinstance(name, str) and name:
            self.model = f"model {name!r}"
        elif index is not None:
            self.model = f"model #{index}"
        else:
            self.model = "model (unnamed)"

    def error(self, fld: str, message: str) -> ZooError:
        return ZooError(f"{self.where}: {self.model}: field {fld!r}: {message}")


def normalise_name(name: str) -> str:
    r"""A model name or task label in Unicode normal form NFC, the one spelling modelspace keeps.

    Names that look alike are equal (``"cafe\u0301"`` and ``"caf\xe9"`` are both ``"café"``).

    Parameters
    ----------
    name : str
        A model name or task label as written.

    Returns
    -------
    str
        The name in NFC.
    """
    return unicodedata.normalize("NFC", name)


def _check_str(value: Any, fld: str, at: _Where, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise at.error(fld, f"expected a non-empty string, got {value!r}")
    return value


def _check_size(value: Any, at: _Where) -> tuple[int, int] | None:
    """`input_size`: an int (square) or [height, width] of positive ints; None: from the model."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
    if not ok:
        raise at.error("input_size", f"expected a positive int or [height, width] of positive ints, got {value!r}")
    return (int(value[0]), int(value[1]))


def _check_triple(value: Any, fld: str, at: _Where, positive: bool) -> tuple[float, float, float] | None:
    """`mean` / `std`: three finite numbers (one per RGB channel); std must be > 0; None: from the model."""
    if value is None:
        return None
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
    if not ok:
        raise at.error(fld, f"expected a list of 3 finite numbers (R, G, B), got {value!r}")
    if positive and any(v <= 0 for v in value):
        raise at.error(fld, f"every value must be > 0 (it divides the image), got {list(value)!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _check_interpolation(value: Any, at: _Where) -> str | None:
    if value is not None and value not in INTERPOLATIONS:
        raise at.error("interpolation", f"expected one of {list(INTERPOLATIONS)}, got {value!r}")
    return value


def _check_bool(value: Any, fld: str, at: _Where) -> bool:
    if not isinstance(value, bool):
        raise at.error(fld, f"expected true or false, got {value!r}")
    return value


def _check_kwargs(value: Any, at: _Where) -> FrozenMapping:
    if isinstance(value, FrozenMapping):
        return value
    if isinstance(value, tuple):  # already sorted pairs, e.g. ModelSpec(kwargs=(("a", 1),))
        try:
            value = dict(value)
        except (TypeError, ValueError):
            raise at.error("kwargs", f"expected a table of keyword arguments, got {value!r}") from None
    if not isinstance(value, Mapping):
        raise at.error("kwargs", f"expected a table of keyword arguments, got {value!r}")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise at.error("kwargs", f"keyword {key!r} is not a valid Python identifier")
    too_large = _kwargs_too_large(value)
    if too_large:
        raise at.error("kwargs", too_large)
    frozen = _freeze(value)
    try:
        hash(frozen)
    except TypeError:
        raise at.error("kwargs", f"values must be numbers, strings, booleans, lists or tables, got {value!r}") from None
    return frozen


#: Source prefix -> loader ``loader(spec, ref) -> (nn.Module, default_encoder)``; the loaders live in
#: `sources` and register here, so that a spec is checked against every prefix known at the time.
SOURCES = Registry("model source")
#: Source prefix -> ``check(spec, ref)``: raises ZooError when the reference names nothing that exists
#: (`sources.check_sources`, before any model loads).
SOURCE_CHECKS: dict[str, Callable] = {}
#: Source prefix -> ``downloads(spec, ref) -> list of URLs`` the loader would fetch, not being cached
#: (`sources.offline_needed`).
SOURCE_DOWNLOADS: dict[str, Callable] = {}


def register_source(prefix: str, check: Callable | None = None, downloads: Callable | None = None) -> Callable:
    """Decorator registering ``loader(spec, ref) -> (nn.Module, default_encoder)`` for ``prefix:...`` sources.

    Parameters
    ----------
    prefix : str
        The source prefix, an identifier.
    check : callable, optional
        ``check(spec, ref)``, cheap and offline: raises ZooError (naming the field, with the closest
        valid names) when ``ref`` names no model, file or callable, so that a typo fails before any
        model loads.
    downloads : callable, optional
        ``downloads(spec, ref) -> list[str]``: the URLs the loader would fetch because they are not in
        the local cache (empty when it fetches nothing), so that a run probes the network once.

    Returns
    -------
    callable
        The decorator: it registers the loader (replacing one registered before under ``prefix``,
        with its hooks) and returns it unchanged.

    Raises
    ------
    ValueError
        ``prefix`` is not an identifier.
    """
    if not isinstance(prefix, str) or not prefix.isidentifier():
        raise ValueError(f"source prefix must be an identifier, got {prefix!r}")

    def add(loader: Callable) -> Callable:
        SOURCES.add(prefix, loader)
        for hooks, hook in ((SOURCE_CHECKS, check), (SOURCE_DOWNLOADS, downloads)):
            hooks.pop(prefix, None)
            if hook is not None:
                hooks[prefix] = hook
        return loader

    return add


def list_sources() -> list[str]:
    """The registered source prefixes, sorted.

    Returns
    -------
    list of str
        E.g. ``["checkpoint", "hf", "python", ...]``.
    """
    return sorted(SOURCES)


def split_source(source: str) -> tuple[str, str]:
    """Split ``"prefix:reference"`` into its two parts (the reference may itself contain ':').

    Parameters
    ----------
    source : str
        A zoo entry's ``source``.

    Returns
    -------
    tuple of (str, str)
        ``(prefix, reference)``, split at the first colon; ``("", source)`` when there is none.
    """
    prefix, sep, ref = source.partition(":")
    return (prefix, ref) if sep else ("", source)


def _check_source(source: Any, at: _Where) -> str:
    _check_str(source, "source", at, optional=False)
    prefix, ref = split_source(source)
    known = list_sources()
    if prefix not in known:
        raise at.error("source", f"unknown source {source!r}: expected one of "
                                 + ", ".join(f"'{p}:...'" for p in known))
    if not ref.strip():
        raise at.error("source", f"{prefix!r} needs a reference after the colon, got {source!r}")
    if prefix == "python" and not _PYTHON_REF.match(ref):
        raise at.error("source", f"expected 'python:package.module:callable', got {source!r}")
    return source


def _check_constructor(value: Any, source: str, trust: bool, at: _Where) -> str | None:
    prefix = split_source(source)[0]
    if value is None:
        if prefix == "checkpoint" and not trust:
            raise at.error("constructor", "a 'checkpoint:' source needs a constructor "
                                          "('python:package.module:callable' that builds the module), or "
                                          "trust_checkpoint = true for a trusted file that pickles the whole module")
        return None
    if prefix != "checkpoint":
        raise at.error("constructor", f"only used with 'checkpoint:' sources, not {prefix!r}")
    c_prefix, ref = split_source(value) if isinstance(value, str) else ("", "")
    if c_prefix != "python" or not _PYTHON_REF.match(ref):
        raise at.error("constructor", f"expected 'python:package.module:callable', got {value!r}")
    return value


def _check_weights(value: Any, source: str, pretrained: bool, at: _Where) -> str | None:
    """`weights`: a path, for the sources that take one, and not beside ``pretrained = false``."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    _check_str(value, "weights", at)
    prefix = split_source(source)[0]
    if prefix not in WEIGHTS_SOURCES:
        raise at.error("weights", f"only used with {', '.join(repr(p + ':') for p in WEIGHTS_SOURCES)} sources, "
                                  f"not {prefix!r}")
    if not pretrained:
        raise at.error("weights", "names weights, but pretrained = false asks for random ones; drop one of the two")
    return value


def _validate(values: dict[str, Any], at: _Where) -> dict[str, Any]:
    """Check and coerce every ModelSpec field; returns the cleaned values."""
    out = dict(values)
    out["name"] = normalise_name(_check_str(values.get("name"), "name", at, optional=False))
    out["source"] = _check_source(values.get("source"), at)
    task = _check_str(values.get("task"), "task", at)
    out["task"] = None if task is None else normalise_name(task)
    out["encoder"] = _check_str(values.get("encoder"), "encoder", at)
    out["input_size"] = _check_size(values.get("input_size"), at)
    out["mean"] = _check_triple(values.get("mean"), "mean", at, positive=False)
    out["std"] = _check_triple(values.get("std"), "std", at, positive=True)
    if (out["mean"] is None) != (out["std"] is None):
        raise at.error("std" if out["std"] is None else "mean", "mean and std must be given together")
    out["interpolation"] = _check_interpolation(values.get("interpolation"), at)
    out["pretrained"] = _check_bool(values.get("pretrained", True), "pretrained", at)
    out["trust_checkpoint"] = _check_bool(values.get("trust_checkpoint", False), "trust_checkpoint", at)
    out["constructor"] = _check_constructor(values.get("constructor"), out["source"], out["trust_checkpoint"], at)
    out["kwargs"] = _check_kwargs(values.get("kwargs", ()), at)
    out["weights"] = _check_weights(values.get("weights"), out["source"], out["pretrained"], at)
    zoo_dir = values.get("zoo_dir")
    if zoo_dir is not None and not isinstance(zoo_dir, (str, os.PathLike)):
        raise at.error("zoo_dir", f"expected a folder path, got {type(zoo_dir).__name__}")
    out["zoo_dir"] = os.fspath(zoo_dir) if zoo_dir is not None else None
    return out


@dataclass(frozen=True, eq=True)
class ModelSpec:
    """One zoo entry: where a model comes from, which module is its encoder, how images are prepared.

    Values are checked on construction (`ZooError` naming the model and the field). ``input_size`` may be
    given as an int, ``mean`` / ``std`` / ``input_size`` as lists, and ``kwargs`` as a dict: they are stored
    as tuples so the spec stays hashable; ``kwargs_dict()`` gives the keyword arguments back as a dict.
    A preprocessing field left None comes from the model (see the module docstring); `load_model`
    gives the resolved spec, every field set, as ``LoadedModel.spec``.

    Parameters
    ----------
    name : str
        The model's name (kept in NFC, `normalise_name`).
    source : str
        Where the model comes from, ``"prefix:reference"`` with a registered prefix (see the module
        docstring).
    task : str, optional
        The task label a ground truth knows the model by; None: ``name`` (`label`).
    encoder : str, optional
        The dotted name of the module whose output is R; None: the loader's default (or the whole output).
    input_size : int or tuple of (int, int), optional
        (height, width) in pixels of the model input; an int is square. None: from the model, then
        `DEFAULTS`.
    mean, std : tuple of 3 float, optional
        Per-channel normalisation (RGB); given together, std > 0. None: from the model, then ImageNet's.
    interpolation : {"bilinear", "bicubic"}, optional
        How T_i resizes the probe images. None: from the model, then bilinear.
    constructor : str, optional
        ``"python:package.module:callable"`` building the module whose state dict a ``checkpoint:`` file
        holds (``checkpoint:`` only; required there unless ``trust_checkpoint``).
    kwargs : dict or tuple, default ()
        Keyword arguments of the factory or constructor (numbers, strings, booleans, lists, tables),
        stored as sorted pairs.
    pretrained : bool, default True
        False asks ``timm:``, ``torchvision:`` and ``taskonomy:`` sources for random weights.
    trust_checkpoint : bool, default False
        Let a ``checkpoint:`` file unpickle a whole module (runs code from the file: trusted files only).
    weights : str, optional
        ``taskonomy:`` only: the weights file, or a folder of the published files.
    zoo_dir : str, optional
        The zoo file's folder (set by `spec_from_dict`): where ``python:`` sources and constructors are
        also imported from (`sources.zoo_imports`). Where the spec was read, not what the model is: left
        out of `to_dict`, equality and so of the model's key.
    origin : str, optional
        Where the entry was read, for messages (set by `spec_from_dict`), e.g. ``"zoo.toml: model 'a' (#1)"``;
        left out of equality like ``zoo_dir``.

    Raises
    ------
    ZooError
        A field of the wrong type or value; the message names the model and the field.
    """

    name: str
    source: str
    task: str | None = None
    encoder: str | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None
    constructor: str | None = None
    kwargs: tuple = field(default=())
    pretrained: bool = True
    trust_checkpoint: bool = False
    weights: str | None = None
    #: The zoo file's folder (set by `spec_from_dict`): where ``python:`` sources and constructors are
    #: also imported from (`sources.zoo_imports`). Where the spec was read, not what the model is: left
    #: out of `to_dict`, equality and so of the model's key.
    zoo_dir: str | None = field(default=None, compare=False, repr=False)
    #: Where the entry was read, for messages (set by `spec_from_dict`), e.g. ``"zoo.toml: model 'a' (#1)"``.
    origin: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        clean = _validate(values, _Where("ModelSpec", values.get("name")))
        for key, value in clean.items():
            object.__setattr__(self, key, value)  # frozen dataclass: coercion must bypass __setattr__

    @property
    def where(self) -> str:
        """The entry as messages name it: its zoo file and number when read from one, else its name."""
        return self.origin or f"model {self.name!r}"

    @property
    def label(self) -> str:
        """The task label used to match a ground truth: ``task`` when given, else ``name``."""
        return self.task or self.name

    @property
    def prefix(self) -> str:
        """The source kind, e.g. ``"checkpoint"``."""
        return split_source(self.source)[0]

    @property
    def ref(self) -> str:
        """The source reference after the prefix, e.g. a path or a hub id."""
        return split_source(self.source)[1]

    def kwargs_dict(self) -> dict[str, Any]:
        """The keyword arguments for the factory / constructor, as a fresh dict.

        Returns
        -------
        dict
            Keyword → value, with lists and dicts where the spec stores tuples.
        """
        return {k: _thaw(v) for k, v in self.kwargs}

    def to_dict(self) -> dict[str, Any]:
        """A canonical JSON-able dict of every field but ``zoo_dir`` and ``origin``.

        The model's identity hash is taken over the resolved spec's (`sources.model_key`). ``weights``
        is there only when set, so that an entry without it keeps the JSON it had before the field existed.

        Returns
        -------
        dict
            Field → value (None: unset), lists for tuples, ``kwargs`` as a dict.
        """
        return {
            "name": self.name,
            "source": self.source,
            "task": self.task,
            "encoder": self.encoder,
            "input_size": _thaw(self.input_size),
            "mean": _thaw(self.mean),
            "std": _thaw(self.std),
            "interpolation": self.interpolation,
            "constructor": self.constructor,
            "kwargs": self.kwargs_dict(),
            "pretrained": self.pretrained,
            "trust_checkpoint": self.trust_checkpoint,
            **({"weights": self.weights} if self.weights is not None else {}),
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces) of `to_dict`.

        Returns
        -------
        str
            The JSON text; equal specs give equal text.
        """
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)


def _normalisation(d: Mapping[str, Any], at: _Where) -> dict[str, Any]:
    """Turn ``normalize`` or ``mean`` + ``std`` into mean/std values."""
    has_mean, has_std = "mean" in d, "std" in d
    if "normalize" in d:
        if has_mean or has_std:
            raise at.error("normalize", "give either normalize or mean + std, not both")
        key = d["normalize"]
        if key not in NORMALIZATIONS:
            raise at.error("normalize", f"expected one of {sorted(NORMALIZATIONS)}, got {key!r}")
        mean, std = NORMALIZATIONS[key]
        return {"mean": mean, "std": std}
    if has_mean != has_std:
        missing = "std" if has_mean else "mean"
        raise at.error(missing, "mean and std must be given together")
    return {"mean": d["mean"], "std": d["std"]} if has_mean else {}


def _inside(base_dir: Path, path: Path, source: str, at: _Where, fld: str = "source") -> Path:
    """``base_dir / path`` normalised, refused when its ``..`` components climb out of ``base_dir``."""
    joined = Path(os.path.normpath(base_dir / path))
    if joined != base_dir and base_dir not in joined.parents:
        raise at.error(fld, f"relative path {str(path)!r} in {source!r} leads outside the zoo file's folder "
                            f"{str(base_dir)!r}; write an absolute path to use a file there")
    return joined


def _resolve_source_path(source: Any, base_dir: Path | None, at: _Where | None = None) -> Any:
    """Make a relative file reference relative to the zoo file's folder (see the module docstring)."""
    if base_dir is None or not isinstance(source, str):
        return source
    at = at or _Where("zoo")
    base_dir = Path(os.path.normpath(base_dir))
    prefix, ref = split_source(source)
    if prefix in _PATH_SOURCES and ref.strip():
        path = Path(ref).expanduser()
        return f"{prefix}:{path if path.is_absolute() else _inside(base_dir, path, source, at)}"
    if prefix == "hf" and ref.strip():
        path = Path(ref).expanduser()
        if not path.is_absolute() and ".." in path.parts:
            return f"hf:{_inside(base_dir, path, source, at)}"
        local = path if path.is_absolute() else base_dir / path
        if local.is_dir():
            return f"hf:{local}"
    return source


def spec_from_dict(d: Mapping, where: str, base_dir: Path | None = None, *, index: int | None = None) -> ModelSpec:
    """Build a ModelSpec from one zoo entry.

    ``normalize`` is turned into ``mean`` and ``std``, and relative ``checkpoint:``, ``torchscript:``,
    ``hf:`` and ``weights`` paths are resolved against ``base_dir`` (see the module docstring).

    Parameters
    ----------
    d : mapping
        The entry's fields, as the zoo file gives them.
    where : str
        Names the zoo file (or other origin) in error messages and in the spec's ``origin``.
    base_dir : Path, optional
        The folder relative file paths are resolved against (the zoo file's); None leaves them as written.
    index : int, optional
        The entry's 1-based number, naming an unnamed entry ("model #3").

    Returns
    -------
    ModelSpec
        The checked spec, with ``zoo_dir`` and ``origin`` set.

    Raises
    ------
    ZooError
        Not a table, a required field missing, an unknown field, ``normalize`` beside ``mean`` / ``std``,
        a relative path that climbs out of ``base_dir``, or an invalid field value; the message names
        ``where``, the model and the field.
    """
    at = _Where(where, d.get("name") if isinstance(d, Mapping) else None, index)
    if not isinstance(d, Mapping):
        raise ZooError(f"{where}: {at.model}: expected a table of fields, got {type(d).__name__}")
    for required in ("name", "source"):
        if required not in d:
            raise at.error(required, "required field is missing")
    unknown = sorted(set(d) - _FILE_KEYS, key=str)
    if unknown:
        raise at.error(str(unknown[0]), f"unknown field; known fields are {sorted(_FILE_KEYS)}")
    values = {k: v for k, v in d.items() if k not in ("normalize", "mean", "std")}
    values.update(_normalisation(d, at))
    values["source"] = _resolve_source_path(d.get("source"), base_dir, at)
    if isinstance(d.get("weights"), str) and d["weights"].strip() and base_dir is not None:
        path = Path(d["weights"]).expanduser()
        values["weights"] = str(path if path.is_absolute() else _inside(Path(os.path.normpath(base_dir)), path,
                                                                         d["weights"], at, "weights"))
    values = _validate(values, at)  # errors here name the file; ModelSpec re-checks the clean values
    if base_dir is not None:
        values["zoo_dir"] = os.path.normpath(base_dir)
    values["origin"] = f"{where}: model {values['name']!r}" + (f" (#{index})" if index is not None else "")
    return ModelSpec(**values)


# ------------------------------------------------------------------------------------- preprocessing


def resolve_preprocessing(spec: ModelSpec, stated: Mapping[str, tuple[Any, str]]) -> tuple[ModelSpec, dict]:
    """The preprocessing a model gets, and where each field came from: the one place of the rule.

    Parameters
    ----------
    spec : ModelSpec
        The zoo entry; a preprocessing field it sets wins.
    stated : mapping
        What the model's own configuration says, read by its loader: field → (value, where it was
        read), e.g. ``{"interpolation": ("bicubic", "timm pretrained_cfg")}``. Fields: `PREPROCESSING`
        and ``crop_pct`` (recorded only: T_i resizes the whole probe image, see `transforms`).

    Returns
    -------
    resolved : ModelSpec
        ``spec`` with every preprocessing field set.
    record : dict
        The values used and, under ``"from"``, per field ``"zoo"``, the configuration it was read
        from, or ``"default"``: plain JSON data for results.json, the store and the report.

    Raises
    ------
    ZooError
        A stated value that is not a valid field value; the message names the configuration, the
        model and the field.
    """
    values, origins = {}, {}
    for fld in PREPROCESSING:
        value, origin = getattr(spec, fld), "zoo"
        if value is None and fld in stated:
            value, origin = stated[fld]
            at = _Where(origin, spec.name)
            if fld == "interpolation" and value not in INTERPOLATIONS:
                value, origin = DEFAULTS[fld], f"default ({origin} says {value!r}, which T_i does not offer)"
            elif fld == "input_size":
                value = _check_size(_thaw(value), at)
            elif fld in ("mean", "std"):
                value = _check_triple(_thaw(value), fld, at, positive=fld == "std")
        if value is None:
            value, origin = DEFAULTS[fld], "default"
        values[fld], origins[fld] = value, origin
    record = {fld: _thaw(values[fld]) for fld in PREPROCESSING}
    if "crop_pct" in stated:
        record["crop_pct"], origins["crop_pct"] = stated["crop_pct"]
    record["from"] = origins
    return replace(spec, **values), record


def describe_preprocessing(record: Mapping[str, Any] | None) -> str:
    """One short line of a `resolve_preprocessing` record.

    Parameters
    ----------
    record : mapping or None
        The record (``LoadedModel.preprocessing``, or as stored in results.json).

    Returns
    -------
    str
        E.g. ``"224×224 bicubic imagenet crop_pct 0.9 (timm pretrained_cfg; input_size: zoo)"``: the most
        frequent origin first, then the fields from elsewhere; ``""`` for an empty or missing record.
    """
    if not record:
        return ""
    named = {(tuple(m), tuple(s)): k for k, (m, s) in NORMALIZATIONS.items()}
    mean, std = tuple(record.get("mean") or ()), tuple(record.get("std") or ())
    size = record.get("input_size") or ["?", "?"]
    parts = [f"{size[0]}×{size[1]}", str(record.get("interpolation", "")),
             named.get((mean, std), f"mean {list(mean)} std {list(std)}")]
    if record.get("crop_pct") is not None:
        parts.append(f"crop_pct {record['crop_pct']}")
    origins = dict(record.get("from") or {})
    if not origins:
        return " ".join(parts)
    counts = list(origins.values())
    main = max(dict.fromkeys(counts), key=counts.count)  # the most frequent origin, first seen on ties
    others = [f"{fld}: {origin}" for fld, origin in origins.items() if origin != main]
    return " ".join(parts) + f" ({'; '.join([main, *others])})"
