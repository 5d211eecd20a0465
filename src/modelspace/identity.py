"""What an estimator is called: the one place its id is written and read.

An estimator (an attribution method, a baseline, a label-based score) is named by its `EstimatorId`:
its name, the parameters that change its output, the version of its rules (or of its prepared
form) and the precision its maps were computed in. From it come every text that names it:

    text         'lrp_epsilon(epsilon=1e-06)'                  the canonical id: results, tables, CLI
    store_key    'lrp_epsilon(epsilon=1e-06)#rules2@bf16'      its maps' key in a store
    prepared_key 'prepared:dds(debiased=True,kernel=...)'      a baseline's prepared forms' key
    stem         'lrp_epsilon'                                 its output files' name part (`stem`)
    label        'lrp_epsilon'                                 its name in a table (`label`)
    folder       'lrp_epsilon_epsilon_1e-06_rules2-cc4ba5ad'   a store key as a folder (`store_folder`)

An id is read back (`EstimatorId.parse`) as a name and keyword parameters with Python literal
values, so that whatever takes a name (the CLI's ``--methods``, a study's list) also takes a
configured one; the suffixes ``#rulesN``, ``#prepareN`` and ``@precision`` of a store key are read
back too. Every text here is the one earlier versions wrote, so stores and results folders written
by them keep opening: their keys are these texts.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")
"""The precisions a store key can carry; fp32 is the unmarked one."""
VERSION_TAGS = ("rules", "prepare")
"""What a version counts: an attribution method's rules, a baseline's prepared form."""
PREPARED = "prepared:"
"""Marks the store key of a baseline's prepared forms (beside the maps of methods)."""

_SUFFIX = re.compile(r"^(?P<id>.*?)(?:#(?P<tag>rules|prepare)(?P<version>\d+))?(?:@(?P<precision>[a-z0-9]+))?$",
                     re.DOTALL)


@dataclass(frozen=True)
class EstimatorId:
    """The identity of one configured estimator.

    Parameters
    ----------
    name : str
        The registered name (never an alias), e.g. ``"lrp_epsilon"``.
    params : tuple of (str, object) pairs
        The parameters that change the output, sorted by name (`of` sorts them); a value is a
        Python literal, or the `EstimatorId` of an estimator the parameter wraps.
    version : int
        The version of the rules (or of the prepared form) that computed it: 0 for none. It is part
        of the store key, not of the id.
    version_tag : str
        What the version counts: "rules" (an attribution method) or "prepare" (a baseline).
    precision : str
        "fp32", "bf16" or "fp16": the precision of its maps, part of the store key.

    Raises
    ------
    InputError
        An unknown version tag or precision.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    version: int = 0
    version_tag: str = "rules"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.version_tag not in VERSION_TAGS:
            raise InputError(f"version_tag: expected one of {', '.join(VERSION_TAGS)}, got {self.version_tag!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.version:  # without a version its tag says nothing: one identity, whichever it is
            object.__setattr__(self, "version_tag", "rules")

    @classmethod
    def of(cls, name: str, params: Mapping[str, Any] | None = None, **fields: Any) -> "EstimatorId":
        """The id of ``name`` with ``params`` (a mapping, sorted here).

        Parameters
        ----------
        name : str
            The registered name.
        params : mapping, optional
            Parameter name → value.
        **fields
            `version`, `version_tag`, `precision`.

        Returns
        -------
        EstimatorId
            Its parameters sorted by name.
        """
        return cls(name, tuple(sorted((params or {}).items())), **fields)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The parameters as a dict (a wrapped estimator's as its `EstimatorId`)."""
        return dict(self.params)

    @property
    def text(self) -> str:
        """The canonical id: ``name`` or ``name(key=value,...)``, values as `repr` writes them."""
        return self._written(store=False)

    def __str__(self) -> str:
        return self.text

    @property
    def store_key(self) -> str:
        """The key of its maps in a store.

        The id (a wrapped method's by its own store key), then ``#rulesN`` (or ``#prepareN``) when it
        has a version, then ``@precision`` unless fp32.
        """
        key = self._written(store=True)
        if self.version:
            key = f"{key}#{self.version_tag}{self.version}"
        return key if self.precision == "fp32" else f"{key}@{self.precision}"

    @property
    def prepared_key(self) -> str:
        """The key of a baseline's prepared forms in a store: `store_key` marked `PREPARED`."""
        return PREPARED + self.store_key

    def at(self, precision: str) -> "EstimatorId":
        """The same estimator with its maps at ``precision`` ("fp32", "bf16" or "fp16").

        Parameters
        ----------
        precision : str
            The runtime's precision.

        Returns
        -------
        EstimatorId
            A copy, its precision changed.

        Raises
        ------
        InputError
            An unknown precision.
        """
        return replace(self, precision=precision)

    def label(self, among: Iterable[str | "EstimatorId"] = ()) -> str:
        """`label` of this id among ``among``.

        Parameters
        ----------
        among : iterable of str or EstimatorId
            The estimators shown together.

        Returns
        -------
        str
            The bare name, or the whole id.
        """
        return label(self, among)

    def stem(self, among: Iterable[str | "EstimatorId"] = ()) -> str:
        """`stem` of this id among ``among``.

        Parameters
        ----------
        among : iterable of str or EstimatorId
            The estimators shown together.

        Returns
        -------
        str
            The file-name part.
        """
        return stem(self, among)

    def _written(self, store: bool) -> str:
        if not self.params:
            return self.name
        parts = []
        for key, value in self.params:
            if isinstance(value, EstimatorId):
                value = value.store_key if store else value.text
            parts.append(f"{key}={value!r}")
        return f"{self.name}({','.join(parts)})"

    @classmethod
    def parse(cls, text: str, aliases: Mapping[str, str] | None = None, what: str = "estimator") -> "EstimatorId":
        """An id, or a store key, read back: ``"name(a=1,b='x')#rules2@bf16"`` → its `EstimatorId`.

        Parameters
        ----------
        text : str
            A name, an alias, an id or a store key.
        aliases : mapping of str to str, optional
            Alias → registered name: the name is resolved through it.
        what : str
            What is named, for the message ("attribution method", "baseline").

        Returns
        -------
        EstimatorId
            A wrapped estimator's id stays the text it was written as, in `params`.

        Raises
        ------
        InputError
            Not ``name`` or ``name(key=value, ...)`` with Python literal values.
        """
        if not isinstance(text, str):
            raise InputError(f"{what}: expected a name, got {type(text).__name__}")
        found = _SUFFIX.match(text.strip())
        body = found["id"]
        if body.startswith(PREPARED):
            body = body[len(PREPARED):]
        name, params = _call(body, what, text)
        name = (aliases or {}).get(name, name)
        precision = found["precision"] or "fp32"
        if precision not in PRECISIONS:
            raise InputError(f"{what} {text!r}: unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        return cls.of(name, params, version=int(found["version"] or 0), version_tag=found["tag"] or "rules",
                      precision=precision)


def _call(body: str, what: str, text: str) -> tuple[str, dict[str, Any]]:
    """``"name(a=1,b='x')"`` → ("name", {"a": 1, "b": "x"})."""
    if "(" not in body:  # a bare name, whatever its characters: the registry says whether it knows it
        return body.strip(), {}
    try:
        call = ast.parse(body, mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
            raise ValueError("not name(key=value, ...)")
        params = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ValueError("** is not a parameter")
            params[keyword.arg] = ast.literal_eval(keyword.value)
    except (SyntaxError, ValueError) as exc:
        raise InputError(f"{what} {text!r}: expected a name or name(key=value, ...) with Python literal "
                         f"values ({exc})") from None
    return call.func.id, params


def name_of(estimator: str | EstimatorId) -> str:
    """The bare name of an id (``'lrp_epsilon(epsilon=0.01)'`` → ``'lrp_epsilon'``).

    Parameters
    ----------
    estimator : str or EstimatorId
        An id, an `EstimatorId`, or a text that is not an id (a table's row label).

    Returns
    -------
    str
        The name; for a text that is not an id, what precedes its first "(".
    """
    if isinstance(estimator, EstimatorId):
        return estimator.name
    try:
        return EstimatorId.parse(estimator).name
    except InputError:  # a row label such as "logme(regression=False) n=10": what precedes its parameters
        return estimator.partition("(")[0]


def has_params(estimator: str) -> bool:
    """Whether an id names parameters (``'lrp_epsilon(epsilon=0.01)'``), not a bare name or alias.

    Parameters
    ----------
    estimator : str
        A name, an alias or an id.

    Returns
    -------
    bool
        True when it has parameters.

    Raises
    ------
    InputError
        Not an id.
    """
    return bool(EstimatorId.parse(estimator).params)


def same_estimator(a: str | EstimatorId, b: str | EstimatorId) -> bool:
    """Whether two ids name the same estimator, whatever their parameters (the same name).

    Parameters
    ----------
    a : str or EstimatorId
        One id.
    b : str or EstimatorId
        The other.

    Returns
    -------
    bool
        True when they are equal or have the same name.
    """
    return str(a) == str(b) or name_of(a) == name_of(b)


def find(name: str, ids: Iterable[str], aliases: Mapping[str, str] | None = None) -> str | None:
    """The id among ``ids`` that ``name`` stands for.

    Itself, else the first of the same name (an alias resolved through ``aliases``).

    Parameters
    ----------
    name : str
        An id, a name or an alias.
    ids : iterable of str
        The ids to find it among.
    aliases : mapping of str to str, optional
        Alias → registered name.

    Returns
    -------
    str or None
        The id found; None when there is none.
    """
    ids = list(ids)
    if name in ids:
        return name
    try:
        wanted = EstimatorId.parse(name, aliases).name
    except InputError:
        return None
    return next((i for i in ids if name_of(i) == wanted), None)


def label(estimator: str | EstimatorId, among: Iterable[str | EstimatorId] = ()) -> str:
    """An estimator's name in a table or a file.

    The bare name, or the whole id when two of ``among`` (itself among them) have its name.

    Parameters
    ----------
    estimator : str or EstimatorId
        An id, or a text that is not one (shown as it is).
    among : iterable of str or EstimatorId
        The estimators shown together.

    Returns
    -------
    str
        The bare name, or the whole id.
    """
    name = name_of(estimator)
    return str(estimator) if sum(name_of(e) == name for e in among) > 1 else name


def stem(estimator: str | EstimatorId, among: Iterable[str | EstimatorId] = ()) -> str:
    """The part of an estimator's output files' names (``affinity_<stem>.csv``).

    Its `label`, with every character but letters, digits, '.', '_' and '-' written as '_'.

    Parameters
    ----------
    estimator : str or EstimatorId
        An id.
    among : iterable of str or EstimatorId
        The estimators of the same output folder.

    Returns
    -------
    str
        The file-name part.
    """
    return _safe(label(estimator, among), collapse=False)


def store_folder(key: str) -> str:
    """A filesystem-safe folder name for a store key.

    Parameters
    ----------
    key : str
        A `EstimatorId.store_key` (or `prepared_key`).

    Returns
    -------
    str
        Its readable part, and a hash of the whole key that keeps distinct keys apart.
    """
    readable = _safe(key, collapse=True)[:48] or "method"
    return f"{readable}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}"


def _safe(text: str, collapse: bool) -> str:
    """``text`` with the characters a file name should not hold written as '_'.

    Store folders (``collapse``) write a run of them as one '_' and strip '.', '_' and '-' at the ends;
    output files write each as '_' and strip '_'. Both are what earlier versions named their files, so
    the files they wrote are found.
    """
    if collapse:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text).strip("_")
