"""Progress bars: the one place they are made.

On a terminal, `progress` is a tqdm bar. Anywhere else (a log file, a pipe, CI), a bar redrawn
hundreds of times is noise, so it is a `LineProgress` instead: nothing while it runs and one line
when it ends, with the count, the time and the rate, e.g.
``modelspace: tiny · saliency+gradient_x_input: 3 shards in 1.2 s (2.5 shards/s)``. A bar that did no
work (every shard already stored) prints nothing. In a Jupyter kernel (whose stderr is not a TTY)
the notebook widget of ``tqdm.auto`` is kept.

A description names models and folders, which may hold control characters: on a terminal and in a
log, bars and lines show them escaped (`errors.printable`), so that a name cannot move the cursor,
recolour the terminal or start a line of its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

from .errors import printable

__all__ = ["LineProgress", "progress"]


def _is_terminal(stream: IO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook(stream: IO) -> bool:
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


def progress(iterable: Iterable | None = None, *, desc: str | None = None, total: int | None = None,
             unit: str = "it", leave: bool = True, disable: bool = False, file: IO | None = None):
    """A progress bar over ``iterable`` (or updated by hand with ``update``), fit for where it is shown.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; None for a bar advanced with ``update(n)``.
    desc : str, optional
        What is counted, shown before the count (escaped: no control characters reach the terminal).
    total : int, optional
        The expected count; default ``len(iterable)`` where it has one.
    unit : str, default "it"
        The counted thing, singular ("shard").
    leave : bool, default True
        Keep a terminal bar on screen when it closes (as for tqdm).
    disable : bool
        No output at all (``progress=False`` of the callers, ``--quiet``).
    file : stream, optional
        Where it goes; default ``sys.stderr`` as it is at the call.

    Returns
    -------
    tqdm or LineProgress
        A tqdm bar when ``file`` is a terminal (or a notebook), else a `LineProgress`; both iterate,
        ``update``, ``close`` and work as context managers.
    """
    file = sys.stderr if file is None else file
    if disable or _is_terminal(file):
        return _Bar(iterable, desc=_printable(desc), total=total, unit=unit, leave=leave, disable=disable, file=file)
    if _in_notebook(file):
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=file)
    return LineProgress(iterable, desc=desc, total=total, unit=unit, file=file)


class _Bar(tqdm):
    """tqdm, its description escaped whenever it is set."""

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(_printable(desc), refresh)

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description_str(_printable(desc), refresh)


class LineProgress:
    """A progress "bar" for logs: one line when it closes (count, seconds, rate), none before.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over.
    desc : str, optional
        What is counted, e.g. the model and the methods.
    total : int, optional
        The expected count; the line says "3 of 4" when it stopped short of it.
    unit : str
        The counted thing, singular ("shard").
    file : stream
        Where the line is written.
    """

    def __init__(self, iterable: Iterable | None = None, *, desc: str | None = None, total: int | None = None,
                 unit: str = "it", file: IO) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else _len(iterable)
        self.unit = unit
        self.file = file
        self.n = 0
        self.start = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done.

        Parameters
        ----------
        n : int, default 1
            How many more.
        """
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Ignore a live status: a log line has none (this keeps tqdm's interface).

        Parameters
        ----------
        *args, **kwargs
            What tqdm's ``set_postfix`` takes; not used.
        """

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change what the line says is counted.

        Parameters
        ----------
        desc : str, optional
            The new description; None for none.
        refresh : bool, default True
            Not used: the line is written when it closes (tqdm's interface).
        """
        self.desc = desc

    def close(self) -> None:
        """Write the one line (once; nothing when nothing was done)."""
        if self.closed:
            return
        self.closed = True
        if self.n == 0:
            return
        elapsed = time.monotonic() - self.start
        units = self.unit if self.n == 1 else self.unit + "s"
        count = f"{self.n} of {self.total} {units}" if self.total is not None and self.n < self.total else f"{self.n} {units}"
        rate = f"{self.n / elapsed:.3g} {self.unit}s/s" if elapsed > 0 else "instant"
        what = f"{_printable(self.desc)}: " if self.desc else ""
        try:
            print(f"modelspace: {what}{count} in {elapsed:.1f} s ({rate})", file=self.file, flush=True)
        except (OSError, ValueError):  # a closed or broken stream must not fail the work it reports on
            pass

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _printable(desc: str | None) -> str | None:
    return None if desc is None else printable(str(desc))


def _len(iterable: Iterable | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
