"""What a stored map is called: entry keys, units of work, and the identity every stored file is bound to.

An entry key's method part is an `identity.EstimatorId.store_key`. An entry (`EntryKey`: model × probe set × method × probe size) is stored as shards of consecutive
probe images; a `WorkUnit` is one shard of one entry, the independent, JSON-serialisable grain of
work that an executor runs anywhere against a shared store. Each stored file's checksum covers its
identity (`unit_identity`: whose maps, which part, what its rows hold) and its bytes
(`bound_checksum`), so that a manifest row serves only the unit it names.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from ...errors import InputError, check_int

# Keys become folder names: keep them to characters that are safe on every filesystem.
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_safe_key(value) -> bool:
    """Whether ``value`` is a str usable as a folder name (as every key is).

    Parameters
    ----------
    value : object
        The candidate key.

    Returns
    -------
    bool
        True for a str of letters, digits, '_', '.' and '-' that starts with a letter or digit.
    """
    return isinstance(value, str) and _SAFE_KEY.match(value) is not None


def check_safe_key(value, name: str) -> None:
    """Raise InputError unless ``value`` is a str usable as a folder name.

    Parameters
    ----------
    value : object
        The candidate key (`is_safe_key`).
    name : str
        The argument's name, for the message.

    Raises
    ------
    InputError
        ``value`` is not a safe key.
    """
    if not is_safe_key(value):
        raise InputError(
            f"{name}: expected letters, digits, '_', '.' or '-' (starting with a letter or digit), "
            f"got {value!r}"
        )


@dataclass(frozen=True)
class EntryKey:
    """Identity of one stored entry: model × probe set × method key × probe size.

    Parameters
    ----------
    model_key : str
        The loaded model's identity (`models.sources.model_key`, a hex sha256): a safe key.
    probe_hash : str
        The probe set's hash (`probe.ProbeSet.hash`, a hex sha256): a safe key.
    method : str
        The store key of the method's maps (`identity.EstimatorId.store_key`), or of a baseline's
        prepared forms (`identity.EstimatorId.prepared_key`); a non-empty str.
    probe_size : int
        The side length S of the square probe images, in pixels (>= 1; kept a plain int).

    Raises
    ------
    InputError
        A key that is not safe, an empty method or a probe size that is not an integer >= 1.
    """

    model_key: str
    probe_hash: str
    method: str
    probe_size: int

    def __post_init__(self):
        check_safe_key(self.model_key, "model_key")
        check_safe_key(self.probe_hash, "probe_hash")
        if not isinstance(self.method, str) or not self.method.strip():
            raise InputError(f"method: expected a non-empty str, got {self.method!r}")
        # numpy integers would break JSON and SQLite binding: keep plain ints.
        object.__setattr__(self, "probe_size", check_int(self.probe_size, "probe_size", minimum=1))

    def describe(self) -> str:
        """A short human description for error messages.

        Returns
        -------
        str
            The model key, the method, the probe hash's first 12 characters and the probe size.
        """
        return (f"model {self.model_key!r} (method {self.method!r}, probe {self.probe_hash[:12]}, "
                f"size {self.probe_size})")


@dataclass(frozen=True)
class WorkUnit:
    """One model × one shard of the probe set: the serialisable unit of work.

    A distributed executor such as Ray ships `to_dict()` to other processes or nodes.

    Parameters
    ----------
    key : EntryKey
        The entry the shard belongs to.
    model_name : str
        The model's name in the space (what the executor loads).
    shard : int
        The shard's number within the entry, from 0.
    start : int
        The shard's first probe image (>= 0).
    stop : int
        One past its last probe image (> ``start``).

    Raises
    ------
    InputError
        A key that is not an `EntryKey`, a name that is not a str, or an index out of range.
    """

    key: EntryKey
    model_name: str
    shard: int
    start: int
    stop: int

    def __post_init__(self):
        if not isinstance(self.key, EntryKey):
            raise InputError(f"key: expected an EntryKey, got {type(self.key).__name__}")
        if not isinstance(self.model_name, str):
            raise InputError(f"model_name: expected a str, got {self.model_name!r}")
        object.__setattr__(self, "shard", check_int(self.shard, "shard", minimum=0))
        object.__setattr__(self, "start", check_int(self.start, "start", minimum=0))
        object.__setattr__(self, "stop", check_int(self.stop, "stop", minimum=self.start + 1))

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (plain str / int values only).

        Returns
        -------
        dict
            ``key`` (the entry key's fields as a dict), ``model_name``, ``shard``, ``start`` and ``stop``.
        """
        return {"key": asdict(self.key), "model_name": self.model_name, "shard": self.shard,
                "start": self.start, "stop": self.stop}

    @classmethod
    def from_dict(cls, d) -> "WorkUnit":
        """Rebuild a unit from `to_dict`'s output.

        Parameters
        ----------
        d : dict
            What `to_dict` returned (after a JSON round trip, say).

        Returns
        -------
        WorkUnit
            The unit, its fields checked again.

        Raises
        ------
        InputError
            Not a dict, a missing field (named), a ``key`` that is not a dict, or a bad value.
        """
        if not isinstance(d, dict):
            raise InputError(f"work unit: expected a dict, got {type(d).__name__}")
        fields = ("key", "model_name", "shard", "start", "stop")
        missing = [f for f in fields if f not in d]
        key = d.get("key")
        if not missing and isinstance(key, dict):
            missing = [f"key.{f}" for f in ("model_key", "probe_hash", "method", "probe_size") if f not in key]
        if missing:
            raise InputError(f"work unit: field {missing[0]!r} is missing")
        if not isinstance(key, dict):
            raise InputError(f"work unit: field 'key' must be a dict, got {type(key).__name__}")
        return cls(
            key=EntryKey(key["model_key"], key["probe_hash"], key["method"], key["probe_size"]),
            model_name=d["model_name"],
            shard=d["shard"],
            start=d["start"],
            stop=d["stop"],
        )


def plan_units(key: EntryKey, model_name: str, n_images: int, shard_size: int = 256) -> list[WorkUnit]:
    """Split images 0 .. n_images - 1 into consecutive shards of ``shard_size`` (the last may be shorter).

    Parameters
    ----------
    key : EntryKey
        The entry to split.
    model_name : str
        The model's name in the space.
    n_images : int
        The number of probe images (>= 1).
    shard_size : int, default 256
        Images per shard (>= 1).

    Returns
    -------
    list of WorkUnit
        The shards in order, numbered from 0.

    Raises
    ------
    InputError
        ``n_images`` or ``shard_size`` not an integer >= 1.
    """
    check_int(n_images, "n_images", minimum=1)
    check_int(shard_size, "shard_size", minimum=1)
    return [
        WorkUnit(key, model_name, shard, start, min(start + shard_size, n_images))
        for shard, start in enumerate(range(0, n_images, shard_size))
    ]


#: What a stored file holds: a shard of maps, an entry's sketch, a model's prepared baseline form.
UNIT_KINDS = ("shard", "sketch", "prepared")


def unit_identity(kind: str, key: EntryKey, **fields: int) -> dict:
    """The identity of one stored file: its kind, its entry's key, and the fields that tell it apart.

    The integer fields tell its part and content apart: a shard's number, image range, values per map
    and counts of zero and non-finite maps; a sketch's dim and seed.

    Parameters
    ----------
    kind : str
        One of `UNIT_KINDS`.
    key : EntryKey
        The entry the file belongs to.
    **fields : int
        The kind's own fields (each an integer >= 0).

    Returns
    -------
    dict
        ``kind``, the entry key's fields and ``fields``: what `bound_checksum` binds a file to.

    Raises
    ------
    InputError
        An unknown kind, or a field that is not an integer >= 0.
    """
    if kind not in UNIT_KINDS:
        raise InputError(f"kind: expected one of {', '.join(UNIT_KINDS)}, got {kind!r}")
    return {"kind": kind, **asdict(key), **{name: check_int(value, name, minimum=0) for name, value in fields.items()}}


def identity_key(identity: dict) -> EntryKey:
    """The entry key of a `unit_identity` record.

    Parameters
    ----------
    identity : dict
        A `unit_identity` record (read back from a manifest, say).

    Returns
    -------
    EntryKey
        The entry the file belongs to.

    Raises
    ------
    InputError
        A missing field (named), or a field `EntryKey` refuses.
    """
    missing = [f for f in ("model_key", "probe_hash", "method", "probe_size") if f not in identity]
    if missing:
        raise InputError(f"identity: field {missing[0]!r} is missing")
    return EntryKey(identity["model_key"], identity["probe_hash"], identity["method"], identity["probe_size"])


def bound_checksum(identity: dict, sha256: str) -> str:
    """The checksum binding a file to its identity.

    A row whose fields or file belong to another unit, or whose counts were edited, does not match it.

    Parameters
    ----------
    identity : dict
        The file's `unit_identity`.
    sha256 : str
        The hex sha256 of the file's bytes.

    Returns
    -------
    str
        The hex sha256 over the canonical JSON of ``identity`` (sorted keys, no blanks, ASCII), a
        newline and ``sha256``.
    """
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{text}\n{sha256}".encode("ascii")).hexdigest()
