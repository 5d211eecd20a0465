"""Files that are either whole or absent: atomic writes, checksums, change stamps.

A reader sees the old file or the whole new one (temp file, fsync, rename, fsync of the folder),
and a file's sha256 is kept beside its path, so a missing or corrupt file is noticed, never read.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from ...errors import StorageError


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy serialisation of an array (no pickle).

    Parameters
    ----------
    array : np.ndarray
        Any array of a non-object dtype.

    Returns
    -------
    bytes
        The .npy file's bytes, as `np.load` reads them.
    """
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The uncompressed .npz serialisation of named arrays (no pickle).

    Parameters
    ----------
    arrays : dict of str to np.ndarray
        The arrays by the name they are stored under.

    Returns
    -------
    bytes
        The .npz file's bytes, as `np.load` reads them.
    """
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def sha256(payload: bytes) -> str:
    """Hex sha256 of bytes in memory.

    Parameters
    ----------
    payload : bytes
        The bytes to hash.

    Returns
    -------
    str
        The 64-character lower-case hex digest.
    """
    return hashlib.sha256(payload).hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks.

    Parameters
    ----------
    path : Path
        The file to hash.

    Returns
    -------
    str
        The 64-character lower-case hex digest, equal to `sha256` of the file's bytes.

    Raises
    ------
    OSError
        The file cannot be opened or read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_stamp(path: Path) -> tuple[int, int, int]:
    """What changes when a file is replaced or rewritten: inode, size, modification time.

    Parameters
    ----------
    path : Path
        An existing file.

    Returns
    -------
    tuple of (int, int, int)
        ``(st_ino, st_size, st_mtime_ns)``.

    Raises
    ------
    OSError
        The file does not exist (`FileNotFoundError`) or cannot be stat'ed.
    """
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file beside ``path`` (see `partial_writes`), which is fsynced and
    renamed over ``path``; the folder is then fsynced so that the rename survives a crash. Missing
    parent folders are made.

    Parameters
    ----------
    path : Path
        The file to write or replace.
    payload : bytes
        The file's whole new content.

    Raises
    ------
    StorageError
        The folder or file cannot be written (read-only or full store, missing permission), with the
        path, the cause and the fix in the message; the temporary file is removed.
    """
    for attempt in range(3):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            break
        except FileNotFoundError as exc:  # the folder just made was pruned by a removal in another process
            if attempt == 2:
                raise StorageError(_unwritable(path, exc)) from exc
        except OSError as exc:  # a read-only or full store: the caller stops the run, see StorageError
            raise StorageError(_unwritable(path, exc)) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise StorageError(_unwritable(path, exc)) from exc
        raise
    _fsync_dir(path.parent)


def _unwritable(path: Path, exc: OSError) -> str:
    """The message of a store file that cannot be written: the path, the cause and the fix."""
    return (f"store file {str(path)!r} cannot be written: {exc}. Make the store folder writable or free disk "
            "space (or pass another --store), then run again: the work already stored is kept")


def partial_writes(path: Path) -> list[Path]:
    """Temporary files that interrupted `atomic_write` calls of ``path`` left behind.

    Parameters
    ----------
    path : Path
        The file `atomic_write` was writing.

    Returns
    -------
    list of Path
        The temporary files beside ``path`` (empty when its folder does not exist).
    """
    return list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []


def is_partial_write(path: Path) -> bool:
    """Whether ``path`` is named as `atomic_write` names its temporary files.

    Such a file is a write in progress, or one that was interrupted.

    Parameters
    ----------
    path : Path
        Any path; only its name is looked at.

    Returns
    -------
    bool
        True for a name that starts with "." and ends with ".tmp".
    """
    return path.name.startswith(".") and path.name.endswith(".tmp")


def prune_empty_dirs(folder: Path, stop_at: Path) -> None:
    """Remove ``folder`` and its parents while empty, never ``stop_at`` or above.

    A folder that is not empty, or that another process is writing into, ends the walk quietly.

    Parameters
    ----------
    folder : Path
        The innermost folder to remove.
    stop_at : Path
        The folder (a store's root) that is kept, with everything above it; a ``folder`` that is not
        inside it is left alone.
    """
    stop_at = stop_at.resolve()
    folder = folder.resolve()
    while folder != stop_at and stop_at in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty, or another process is writing into it
        folder = folder.parent


def _fsync_dir(folder: Path) -> None:
    """Persist a rename on POSIX; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
