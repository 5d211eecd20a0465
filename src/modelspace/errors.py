"""Exception types. Each names the file, model or field at fault.

`InputError` (and subclasses) means the user's input is wrong: the CLI exits with code 2.
`StorageError` means the store or an output folder cannot be used (read-only, disk full, locked): the
run stops, exit code 3. Any other `ModelspaceError` is a failure inside a run: exit code 1. `check_int`, `check_float`,
`check_choice` and `check_bool` are the argument checks every module uses, `did_you_mean` the one hint at the closest valid names, and
`printable` what every message and log line goes through before a terminal shows it.
"""

import difflib
import math
import numbers
import re
import sys
from collections.abc import Iterable

# C0 (newlines and tabs included), DEL and C1: what a terminal may act on rather than show.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class ModelspaceError(Exception):
    """Base class of every error modelspace raises on purpose."""


class InputError(ModelspaceError, ValueError):
    """Bad user input: a zoo file, a probe folder, an argument."""


class UnknownKeyError(InputError, KeyError):
    """A key a result mapping does not have; the message says which keys it has.

    A KeyError too, so that ``except KeyError`` and ``dict.get`` idioms keep working.
    """

    def __str__(self) -> str:  # KeyError would show the message's repr, quotes and escapes included
        return str(self.args[0]) if self.args else ""


class ZooError(InputError):
    """A malformed zoo file or model specification (names the model and the field)."""


class ProbeError(InputError):
    """A probe set that cannot be used (names the folder or file)."""


class GroundTruthError(InputError):
    """A ground-truth file that cannot be read (names the file and the row)."""


class ModelLoadError(ModelspaceError):
    """A model that failed to load or to run (names the model)."""


class MissingWeightsError(ModelLoadError):
    """Pretrained weights that are not on this machine and cannot be downloaded now.

    They are not cached, and there is no network or the hub is in offline mode. Fetching them fixes it
    without editing the zoo, so a run does not remember it as a failure (`maps.load_repeatable`).
    """


class AttributionError(ModelspaceError):
    """An attribution that cannot be computed (names the model and the layer)."""


class DegenerateMapsError(AttributionError):
    """All-zero or non-finite attribution maps (names the model and the image count)."""


class StoreError(ModelspaceError):
    """A store that is unreadable or inconsistent (names the file)."""


class ModelRemovedError(StoreError):
    """A model removed from the store while this run computed it.

    Removed by `modelspace remove` or `gc`, in another process: what this run computed since is not
    stored, and it stops computing that model.
    """


class StorageError(StoreError):
    """A store (or an output folder) that cannot be written or read at all (names the path).

    Read-only, disk full or locked.

    Not a failure of the model being computed: every later model would meet it too, so a run stops
    on it (the work already stored is kept) instead of recording it per model.
    """


def check_int(value, name: str, minimum: int = 1, *, optional: bool = False) -> int | None:
    """``value`` as a plain int, or InputError naming ``name`` unless it is an integer >= ``minimum``.

    Parameters
    ----------
    value : object
        The argument to check; bools are refused, numpy integers accepted.
    name : str
        The argument's name, for the message.
    minimum : int, default 1
        The smallest value allowed.
    optional : bool, default False
        Whether None is allowed (and returned as is).

    Returns
    -------
    int or None
        ``value`` as an int; None when it is None and ``optional``.

    Raises
    ------
    InputError
        Not an integer >= ``minimum`` (nor None, when ``optional``).
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        extra = " or None" if optional else ""
        raise InputError(f"{name}: expected an integer >= {minimum}{extra}, got {value!r}")
    return int(value)


def check_float(value, name: str, *, minimum: float | None = 0.0, maximum: float | None = None,
                inclusive: bool = False, zero: bool = False) -> float:
    """``value`` as a finite float, or InputError naming ``name`` unless it is in range.

    Parameters
    ----------
    value : object
        The argument to check; bools are refused, numpy numbers accepted.
    name : str
        The argument's name, for the message (``"rbf_cka: sigma"``).
    minimum : float or None
        The lower bound (None: none); excluded unless ``inclusive``.
    maximum : float or None
        The upper bound, included (None: none).
    inclusive : bool
        Whether ``minimum`` itself is allowed.
    zero : bool
        Whether 0 is allowed besides the range (a switch that turns a term off).

    Returns
    -------
    float
        ``value`` as a float.

    Raises
    ------
    InputError
        Not a finite real number in range.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (zero and value == 0 or (
            (minimum is None or value > minimum or inclusive and value == minimum)
            and (maximum is None or value <= maximum)))
    if not ok:
        if minimum is not None and maximum is not None:
            bound = f"in {'[' if inclusive else '('}{minimum:g}, {maximum:g}]"
        elif minimum is not None:
            bound = f"a finite number {'>=' if inclusive else '>'} {minimum:g}"
        else:
            bound = "a finite number" + (f" <= {maximum:g}" if maximum is not None else "")
        raise InputError(f"{name} must be {bound}{' or 0' if zero else ''}, got {value!r}")
    return value


def check_choice(value, name: str, choices) -> str:
    """``value`` unless it is not one of ``choices``: InputError naming ``name`` and the choices.

    Parameters
    ----------
    value : object
        The argument to check.
    name : str
        The argument's name, for the message.
    choices : sequence
        The allowed values.

    Returns
    -------
    object
        ``value``.

    Raises
    ------
    InputError
        Not one of ``choices``.
    """
    if isinstance(value, bool) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """``value`` as a plain bool, or InputError naming ``name`` unless it is True or False.

    Parameters
    ----------
    value : object
        The argument to check; numpy bools accepted.
    name : str
        The argument's name, for the message.

    Returns
    -------
    bool
        ``value`` as a plain bool.

    Raises
    ------
    InputError
        Not a bool.
    """
    if not isinstance(value, (bool, _np_bool())):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _np_bool() -> type:
    """The bool type of numpy when numpy is imported (it always is in a run), else bool."""
    numpy = sys.modules.get("numpy")
    return numpy.bool_ if numpy is not None else bool


def did_you_mean(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """``"; did you mean 'a', 'b'?"``: the valid names closest to a mistyped ``word`` (difflib), or "".

    Parameters
    ----------
    word : str
        What was written.
    candidates : iterable of str
        The valid names.
    n : int, default 3
        At most this many names, closest first.
    cutoff : float, default 0.6
        Similarity (0..1, `difflib.SequenceMatcher.ratio`) a name needs to be offered.

    Returns
    -------
    str
        The hint, to append to a message; "" when no name is close enough.
    """
    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=cutoff)
    return f"; did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""


def printable(text: str) -> str:
    r"""``text`` with every control character written as its escape (``\x1b``, ``\r``, ``\n``), as `repr` writes it.

    Names and paths come from files a user may not have written: an ANSI sequence in a model name would
    recolour or clear the terminal, and a newline would start a line that reads as one of modelspace's own.
    Every message and log line meant for a terminal goes through this once, where it is written (the
    CLI's log records and error lines, the progress lines), so one line is one record.

    Parameters
    ----------
    text : str
        The text to show.

    Returns
    -------
    str
        ``text``, one line, with no character a terminal would act on.
    """
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
