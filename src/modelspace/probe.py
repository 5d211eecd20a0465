"""The probe set: the unlabelled images every model is attributed on.

Notes
-----
The conventions of a probe set:

- Images are stored as a uint8 tensor of shape (N, 3, S, S): RGB, square, channels first.
  ``ProbeSet.batch`` hands them to models as float32 in [0, 1].
- ``names`` are relative POSIX paths (``"sub/cat.jpg"``) for sets read from a folder and
  ``"image_00000"``, ``"image_00001"``, ... for sets built from an array.
- ``hash`` is a hex sha256 over the tensor's shape and bytes. Names are left out, so the
  same pixels under other file names give the same hash (and re-use the same stored maps).
- ``copies`` counts how often each distinct image occurs, pixel for pixel: what decides whether a
  baseline comparing how representations vary across the images is defined on the set.
- ``from_folder`` walks the folder recursively and orders the files by relative POSIX path.
  It reads the files whose extension is one of ``IMAGE_EXTENSIONS`` (any case); every other
  entry is skipped, without being read, and listed in ``skipped``: a file of another extension
  (``notes.txt``), a hidden file or folder (a name starting with ``.``: ``.DS_Store``, macOS's
  ``._photo.png``, ``.ipynb_checkpoints/``, which would otherwise add copies or junk), and a
  symbolic link to a folder (not followed, so a link loop cannot hang the walk). ``limit`` draws
  a sample of the image files with ``numpy.random.default_rng(seed)``; the sample keeps the
  sorted order.
  Each image is EXIF-rotated (``ImageOps.exif_transpose``), converted to RGB, resized so
  that its shorter side is ``size`` (bilinear) and centre-cropped to ``size`` x ``size``; only the
  cropped window is computed (the pixels of PIL's whole-image resize, bit for bit), so a 1 x 100000
  strip needs no 64 x 6 400 000 intermediate.
  Conversion rules: grayscale (L, LA, 1) is copied to the three channels; palette images
  take their palette colours; CMYK goes through PIL's CMYK -> RGB; an alpha channel is
  dropped, not composited (the RGB stored under a transparent pixel is kept, which is what
  ``Image.convert("RGB")`` and so most training pipelines do); 16-bit images are scaled by
  255 / 65535 (never clipped), float images in [0, 1] by 255, 32-bit integer images holding
  values above 65535 are stretched to their peak. The extension only selects candidate
  files: the format is read from the content, so a PNG named ``.jpg`` is used.
- A file that cannot be used is recorded in ``skipped`` as ``(path, reason)``, sorted by path,
  and the rest still load; the reason starts with one of ``SKIP_REASONS`` (``"empty file"``,
  ``"not an image"`` (by its extension, or by its content), ``"corrupt or truncated"``, ``"too
  large"``, ``"unreadable"``, ``"not a regular file"``, ``"symbolic link loop"``, ``"broken
  symbolic link"``, ``"non-finite pixels"``: a float image holding NaN or infinity, ``"hidden"``,
  ``"symbolic link to a folder"``), then the detail; a skipped folder's path ends with ``/``. "too
  large" means the header declares more than ``MAX_PIXELS`` pixels (PIL's decompression-bomb
  limit): it is refused from the header, before any pixel is decoded. A FIFO, socket or device
  named like an image is refused without reading from it (it could block forever). No file
  left, or none at all, is a ``ProbeError`` naming the folder.
- ``from_array`` takes NCHW or NHWC (3 channels; NCHW wins when both fit) or (N, H, W)
  grayscale, as uint8 0..255 or float in [0, 1]. With ``size`` the images are resized to
  ``size`` x ``size`` (bilinear, antialiased; non-square images are stretched); without
  it they must already be square. Floats become uint8 by ``round(x * 255)``.
- ``save`` / ``load`` use a plain ``.npz`` (no pickle).
"""

from __future__ import annotations

import collections
import errno
import functools
import hashlib
import math
import os
import stat
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from .progress import progress as progress_bar

from modelspace.errors import InputError, ProbeError, check_int

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Floats this far outside [0, 1] are rounding noise, not a wrong value range.
_FLOAT_TOLERANCE = 1e-6
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")

#: Largest image (width x height) read from a probe folder: PIL's own decompression-bomb limit.
#: Larger files are skipped from their header, so a tiny file declaring 10^9 pixels allocates nothing.
MAX_PIXELS = 89_478_485

#: The kinds of reason a probe file is skipped for (each reason starts with one of them).
SKIP_REASONS = (
    "empty file", "not an image", "corrupt or truncated", "too large", "unreadable",
    "not a regular file", "symbolic link loop", "broken symbolic link", "non-finite pixels", "hidden",
    "symbolic link to a folder",
)


class ProbeSet:
    """A set of N square RGB probe images (uint8, N x 3 x S x S) with names.

    Build one with `from_folder` or `from_array` (the module docstring gives their rules).

    Parameters
    ----------
    images : torch.Tensor
        uint8 (N, 3, S, S), RGB, square, channels first.
    names : sequence of str
        One name per image.
    skipped : sequence of (str, str), default ()
        ``(path, reason)`` for each file a folder held that is not among the images.

    Raises
    ------
    ProbeError
        If ``images`` is not a uint8 (N, 3, S, S) tensor, or the names are not one str per image.
    """

    def __init__(
        self,
        images: torch.Tensor,
        names: Sequence[str],
        skipped: Sequence[tuple[str, str]] = (),
    ):
        _check_images(images)
        names = list(names)
        if len(names) != images.shape[0]:
            raise ProbeError(
                f"names: {len(names)} names for {images.shape[0]} images; give one name per image"
            )
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise ProbeError(f"names: every name must be a str, got {type(bad[0]).__name__}")
        self.images = images.contiguous()
        self.names = names
        self.skipped = [(str(path), str(reason)) for path, reason in skipped]
        self._hash: str | None = None
        self._copies: list[int] | None = None

    # ------------------------------------------------------------------ basics
    @property
    def size(self) -> int:
        """Side length S of the square images."""
        return int(self.images.shape[-1])

    @property
    def hash(self) -> str:
        """Hex sha256 over the tensor's shape and bytes (names excluded); computed once."""
        if self._hash is None:
            digest = hashlib.sha256()
            digest.update(repr(tuple(self.images.shape)).encode("ascii"))
            digest.update(self.images.numpy().tobytes())
            self._hash = digest.hexdigest()
        return self._hash

    @property
    def copies(self) -> list[int]:
        """How many times each distinct image occurs (pixel for pixel), most repeated first.

        N ones when every image differs, ``[N]`` when all are one image. Computed once.
        """
        if self._copies is None:
            counts = collections.Counter(hashlib.sha256(image.tobytes()).digest() for image in self.images.numpy())
            self._copies = sorted(counts.values(), reverse=True)
        return list(self._copies)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"ProbeSet(n={len(self)}, size={self.size}, hash={self.hash[:12]}…)"

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start`` .. ``stop - 1`` as the models take them.

        Parameters
        ----------
        start : int
            The first image's index.
        stop : int
            One past the last image's index (cut to N, as a slice is).

        Returns
        -------
        torch.Tensor
            float32 (B, 3, S, S) in [0, 1].
        """
        if not (isinstance(start, int) and isinstance(stop, int) and 0 <= start < stop <= len(self)):
            raise InputError(
                f"start, stop: need 0 <= start < stop <= {len(self)}, got start={start!r}, stop={stop!r}"
            )
        return self.images[start:stop].to(torch.float32).div_(255.0)

    def subset(self, indices: Sequence[int]) -> "ProbeSet":
        """A new probe set with the images at ``indices`` (in that order).

        Parameters
        ----------
        indices : sequence of int
            Positions in this set; repeats allowed.

        Returns
        -------
        ProbeSet
            The images and their names at those positions; no skipped files.
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise InputError("indices: a subset needs at least one index")
        out_of_range = [i for i in idx if not 0 <= i < len(self)]
        if out_of_range:
            raise InputError(f"indices: {out_of_range[0]} is outside 0..{len(self) - 1}")
        images = self.images[torch.tensor(idx, dtype=torch.long)]
        return ProbeSet(images, [self.names[i] for i in idx], self.skipped)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_folder(
        cls,
        folder,
        size: int = 64,
        limit: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> "ProbeSet":
        """Read every image under ``folder`` (see the module docstring for the rules).

        Parameters
        ----------
        folder : str or Path
            The folder, walked recursively.
        size : int, default 64
            S: each image's shorter side is resized to it, then centre-cropped to S x S.
        limit : int, optional
            Read a sample of this many of the image files (drawn with ``seed``, kept in sorted order).
        seed : int, default 0
            The seed of the sample.
        progress : bool, default True
            Show a progress bar over the files.

        Returns
        -------
        ProbeSet
            The images in sorted path order, named by relative POSIX path, with the files skipped and why.

        Raises
        ------
        ProbeError
            If the folder does not exist, holds no image file, or none of its image files can be used.
        InputError
            If ``size`` or ``limit`` is not a positive integer.
        """
        folder = Path(folder)
        _check_size(size)
        if limit is not None:
            check_int(limit, "limit")
        if not folder.is_dir():
            raise ProbeError(f"probe folder {str(folder)!r} does not exist or is not a folder")

        candidates, passed_over = _list_files(folder)
        files = _sample(candidates, limit, seed)
        if not files:
            others = (f"; skipped {len(passed_over)} other entries, e.g. {passed_over[0][0]}: {passed_over[0][1]}"
                      if passed_over else "")
            raise ProbeError(
                f"probe folder {str(folder)!r} holds no image file "
                f"(looked for {', '.join(IMAGE_EXTENSIONS)}){others}"
            )

        arrays, names, unusable = [], [], []
        # The bar counts every entry considered, so its total is the images read plus the skipped.
        with progress_bar(total=len(passed_over) + len(files), desc=f"probe folder {folder}", unit="file",
                          disable=not progress) as bar:
            bar.update(len(passed_over))
            for rel in files:
                try:
                    arrays.append(_load_image(folder / rel, size))
                    names.append(rel)
                except Exception as exc:  # any decoder failure skips the file, never the run
                    unusable.append((rel, _skip_reason(exc)))
                bar.update(1)
            n_skipped = len(passed_over) + len(unusable)
            bar.set_description(f"probe folder {folder} ({len(arrays)} image{'' if len(arrays) == 1 else 's'}, "
                                f"{n_skipped} skipped)")

        if not arrays:
            raise ProbeError(
                f"probe folder {str(folder)!r}: no usable image; all {len(unusable)} image "
                f"file(s) were skipped (first: {unusable[0][0]}: {unusable[0][1]})"
            )
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return cls(images, names, sorted(passed_over + unusable))

    @classmethod
    def from_array(cls, array, size: int | None = None, names=None) -> "ProbeSet":
        """Build a probe set from an in-memory array (see the module docstring).

        Parameters
        ----------
        array : array-like or torch.Tensor
            NCHW or NHWC (3 channels; NCHW wins when both fit) or (N, H, W) grayscale, uint8 0..255 or
            float in [0, 1].
        size : int, optional
            Resize to ``size`` x ``size`` (bilinear, antialiased; non-square images are stretched);
            without it the images must already be square.
        names : sequence of str, optional
            One name per image; default ``"image_00000"``, ``"image_00001"``, ...

        Returns
        -------
        ProbeSet
            The images as uint8 (floats become ``round(x * 255)``).

        Raises
        ------
        ProbeError
            If the array holds no image, has an unusable shape or dtype, values out of range, or
            non-square images without ``size``.
        """
        if size is not None:
            _check_size(size)
        data = _to_numpy(array)
        data = _to_nchw(data)
        if len(data) == 0:
            raise ProbeError("array: holds no image (N == 0)")
        tensor = torch.from_numpy(np.ascontiguousarray(data))

        if size is not None:
            images = _resize_float(_as_unit_float(tensor), size)
            images = _float_to_uint8(images)
        else:
            if tensor.shape[2] != tensor.shape[3]:
                raise ProbeError(
                    f"array: images are {tensor.shape[2]}x{tensor.shape[3]}, not square; "
                    "pass size= to resize them"
                )
            images = tensor if tensor.dtype == torch.uint8 else _float_to_uint8(_as_unit_float(tensor))

        if names is None:
            names = [f"image_{i:05d}" for i in range(len(images))]
        return cls(images, names)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write images, names and skipped files to ``path`` as a plain ``.npz``.

        Parameters
        ----------
        path : str or Path
            The file written.
        """
        path = Path(path)
        skipped = np.array(self.skipped, dtype=str).reshape(-1, 2)
        # Writing through a file object keeps the exact file name (np.savez would add ".npz").
        with open(path, "wb") as fh:
            np.savez(
                fh,
                images=self.images.numpy(),
                names=np.array(self.names, dtype=str),
                skipped=skipped,
            )

    @classmethod
    def load(cls, path) -> "ProbeSet":
        """Read a probe set written by ``save`` (no pickle is ever loaded).

        Parameters
        ----------
        path : str or Path
            A file written by `save`.

        Returns
        -------
        ProbeSet
            The images, names and skipped files saved.

        Raises
        ------
        ProbeError
            If the file does not exist, cannot be read, or lacks a field.
        """
        path = Path(path)
        if not path.is_file():
            raise ProbeError(f"probe file {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {k: data[k] for k in data.files}
        except Exception as exc:
            raise ProbeError(f"probe file {str(path)!r} cannot be read: {type(exc).__name__}: {exc}") from exc
        for field in ("images", "names"):
            if field not in fields:
                raise ProbeError(f"probe file {str(path)!r} lacks the field {field!r}")
        skipped = fields.get("skipped", np.empty((0, 2), dtype=str))
        # What `save` writes: names (N,), skipped (k, 2); anything else is not one of its files.
        if fields["names"].ndim != 1:
            raise ProbeError(f"probe file {str(path)!r}: field 'names' must be a 1-D array of names, "
                             f"got shape {fields['names'].shape}")
        if skipped.ndim != 2 or skipped.shape[1] != 2:
            raise ProbeError(f"probe file {str(path)!r}: field 'skipped' must be a (k, 2) array of "
                             f"(path, reason) rows, got shape {skipped.shape}")
        try:
            return cls(
                torch.from_numpy(np.ascontiguousarray(fields["images"])),
                [str(n) for n in fields["names"].tolist()],
                [tuple(row) for row in skipped.tolist()],
            )
        except ProbeError as exc:
            raise ProbeError(f"probe file {str(path)!r}: {exc}") from exc


# ---------------------------------------------------------------------- validation
def _check_size(size) -> None:
    """Refuse a probe side whose images could not be held: checked before anything is allocated."""
    check_int(size, "size")
    if size * size > MAX_PIXELS:
        raise ProbeError(f"size: {size} x {size} = {size * size} pixels per probe image exceeds the limit of "
                         f"{MAX_PIXELS} (modelspace.probe.MAX_PIXELS); probe images are a few hundred pixels wide")


def _check_images(images) -> None:
    """Raise ProbeError unless ``images`` is a non-empty uint8 (N, 3, S, S) tensor."""
    if not isinstance(images, torch.Tensor):
        raise ProbeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ProbeError(f"images: expected dtype uint8, got {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ProbeError(f"images: expected shape (N, 3, S, S), got {tuple(images.shape)}")
    if images.shape[2] != images.shape[3]:
        raise ProbeError(f"images: expected square images, got {images.shape[2]}x{images.shape[3]}")
    if images.shape[0] == 0 or images.shape[2] == 0:
        raise ProbeError(f"images: empty tensor of shape {tuple(images.shape)}")


# ---------------------------------------------------------------------- folders
def _list_files(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The entries under ``folder``: the image files to read, and those passed over.

    The relative POSIX paths of the image files to read, and ``(path, reason)`` for each entry passed over by its name (see the module docstring), both sorted.
    """
    images, passed_over = [], []
    # followlinks=False: a symlink pointing to an ancestor would otherwise loop forever.
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        rel_dir = Path(dirpath).relative_to(folder)
        for name in list(dirnames):
            path = Path(dirpath) / name
            if name.startswith("."):
                passed_over.append(((rel_dir / name).as_posix() + "/", "hidden: a folder whose name starts with "
                                    "'.', not searched"))
            elif path.is_symlink():
                passed_over.append(((rel_dir / name).as_posix() + "/", "symbolic link to a folder: not followed "
                                    "(a link loop could hang the walk); copy the images in instead"))
            else:
                continue
            dirnames.remove(name)
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if name.startswith("."):
                passed_over.append((rel, "hidden: a name starting with '.' (a system or editor file, "
                                    "e.g. .DS_Store, ._photo.png)"))
            elif name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(rel)
            else:
                suffix = Path(name).suffix
                said = f"its extension {suffix!r} is" if suffix else "it has no extension,"
                passed_over.append((rel, f"not an image: {said} not one of {', '.join(IMAGE_EXTENSIONS)}"))
    return sorted(images), sorted(passed_over)


def _sample(files: list[str], limit: int | None, seed: int) -> list[str]:
    """``limit`` of ``files`` drawn with ``default_rng(seed)``, kept in sorted order."""
    if limit is None or limit >= len(files):
        return files
    chosen = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
    return [files[i] for i in sorted(chosen.tolist())]


class _Unusable(Exception):
    """A probe file refused before decoding; the message is the whole skip reason."""


def _load_image(path: Path, size: int) -> np.ndarray:
    """Decode one file into a uint8 (size, size, 3) RGB array (raises on anything unusable)."""
    # O_NONBLOCK: opening a FIFO named "x.png" for reading would otherwise block forever; the
    # type is then checked on the open descriptor itself, so nothing can be swapped in between.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unusable("not a regular file (a FIFO, socket or device named like an image)")
        if info.st_size == 0:
            raise _Unusable("empty file (0 bytes)")
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit and would then decode: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fh)
        with img:
            width, height = img.size
            if width * height > MAX_PIXELS:  # from the header: no pixel decoded yet
                raise _Unusable(f"too large: {width}x{height} = {width * height} pixels exceeds the "
                                f"decompression-bomb limit of {MAX_PIXELS} (modelspace.probe.MAX_PIXELS)")
            # Lets JPEG decode at a reduced scale that still covers size x size: much faster.
            img.draft(None, (size, size))
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    return np.asarray(_resize_and_crop(rgb, size), dtype=np.uint8)


def _skip_reason(exc: Exception) -> str:
    """A reason starting with one of SKIP_REASONS, then the exception's detail."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _Unusable):
        return str(exc)
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too large: {detail}"
    if isinstance(exc, UnidentifiedImageError):  # its message names a file descriptor: say it plainly
        return "not an image: UnidentifiedImageError: PIL recognises no image format in its content"
    if isinstance(exc, PermissionError):
        return f"unreadable: {detail}"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return f"symbolic link loop: {detail}"
    if isinstance(exc, FileNotFoundError):
        return f"broken symbolic link: {detail} (or the file vanished while reading)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"unreadable: {detail}"
    # Decoder errors: PIL raises OSError("image file is truncated"), SyntaxError, ValueError ...
    return f"corrupt or truncated: {detail}"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; 16-bit and float images are rescaled, not clipped."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        # PIL's own convert clips these to 255 (a 16-bit image turns white), so scale here.
        gray = _rescale_to_uint8(np.asarray(img), img.mode)
        return Image.fromarray(gray).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # palette transparency must go through RGBA first
    return img.convert("RGB")


def _rescale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16-bit, 32-bit integer or float single-channel image to uint8 0..255."""
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():  # NaN would turn black (or any value) without a word: refuse the file
        raise _Unusable(f"non-finite pixels: {int((~finite).sum())} of {values.size} values are NaN or "
                        f"infinite (mode {mode})")
    peak = float(values.max()) if values.size else 0.0
    if mode in _SIXTEEN_BIT_MODES:
        scale = 255.0 / 65535.0
    elif mode == "F":
        scale = 255.0 if peak <= 1.0 else 1.0  # [0, 1] floats, else assume 0..255
    elif peak <= 255.0:
        scale = 1.0  # mode "I" holding 8-bit values
    elif peak <= 65535.0:
        scale = 255.0 / 65535.0  # mode "I" holding 16-bit values (older PIL PNG decoding)
    else:
        scale = 255.0 / peak  # wider integers: stretch to the peak
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def _resize_and_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bilinear), then centre-crop size x size.

    The pixels are those of ``img.resize((new_w, new_h), BILINEAR, reducing_gap=3.0)`` cropped
    to the centre, bit for bit, but only the ``size`` x ``size`` window is computed, from the
    source pixels under it: a 1 x 100000 strip at size 64 would otherwise need a 64 x 6 400 000
    intermediate image (2.1 GB). So the memory of a load follows ``size`` and the decoded file.
    """
    width, height = img.size
    scale = size / min(width, height)
    new_w = max(size, round(width * scale))
    new_h = max(size, round(height * scale))
    left = (new_w - size) // 2
    top = (new_h - size) // 2
    if (new_w, new_h) == (width, height):
        return img.crop((left, top, left + size, top + size))
    if not _window_matches_pil() and new_w * new_h <= MAX_PIXELS:
        # A Pillow whose resampling this module does not reproduce: keep its pixels (bounded memory).
        return _resize_whole(img, size, new_w, new_h, left, top)
    return _resize_window(img, size, new_w, new_h, left, top)


def _resize_whole(img: Image.Image, size: int, new_w: int, new_h: int, left: int, top: int) -> Image.Image:
    """The rule as PIL states it: resize the whole image, then crop (memory new_w x new_h)."""
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return img.crop((left, top, left + size, top + size))


@functools.lru_cache(maxsize=None)
def _window_matches_pil() -> bool:
    """Whether `_resize_window` gives this Pillow's pixels bit for bit.

    Checked once, on shapes that take either pass order and the reduce step.
    """
    rng = np.random.default_rng(0)
    for width, height, size in ((26, 426, 16), (426, 26, 16), (640, 480, 64), (97, 333, 50), (7, 30, 40)):
        img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        args = (size, new_w, new_h, (new_w - size) // 2, (new_h - size) // 2)
        if not np.array_equal(np.asarray(_resize_window(img, *args)), np.asarray(_resize_whole(img, *args))):
            return False
    return True


def _resize_window(img: Image.Image, size: int, new_w: int, new_h: int, left: int, top: int) -> Image.Image:
    """The size x size window at (left, top) of the whole-image resize, computed from the pixels under it."""
    width, height = img.size
    # PIL's resize with reducing_gap=3.0 first reduces by whole factors (block means), then resamples.
    fx = int(width / new_w / 3.0) or 1
    fy = int(height / new_h / 3.0) or 1
    reduced = fx > 1 or fy > 1
    cols = _bilinear_taps(-(-width // fx), width / fx, new_w, left, size)
    rows = _bilinear_taps(-(-height // fy), height / fy, new_h, top, size)
    (x0, x1), (y0, y1) = cols[0], rows[0]
    if reduced:  # blocks aligned with the whole image's, so each block mean is the same
        box = (x0 * fx, y0 * fy, min(width, x1 * fx), min(height, y1 * fy))
        window = img.reduce((fx, fy), box=box)
    else:
        window = img.crop((x0, y0, x1, y1))
    pixels = np.asarray(window.convert("RGB"), dtype=np.uint8)
    # PIL's two passes in PIL's order (each rounds to 8 bits, so the order shows): Pillow 13 runs the
    # vertical pass first when the height shrinks by more than twice the pixels the width does.
    in_w, in_h = -(-width // fx), -(-height // fy)
    passes = [(cols, x0, 1), (rows, y0, 0)]
    if _PIL_VERTICAL_FIRST and in_h - new_h > 0 and in_h - new_h > 2 * (in_w - new_w):
        passes.reverse()
    for (_, weights, starts), origin, axis in passes:
        if weights is not None:
            pixels = _apply_taps(pixels, weights, starts - origin, axis=axis)
    return Image.fromarray(pixels, "RGB")


#: Pillow 13 chose the order of the two passes by the sizes (``ImagingResampleInner``); before, horizontal first.
_PIL_VERTICAL_FIRST = int(PIL.__version__.split(".")[0]) >= 13

#: PIL's fixed-point precision for 8-bit resampling (``PRECISION_BITS`` in Resample.c).
_PRECISION_BITS = 32 - 8 - 2


def _bilinear_taps(in_size: int, in_end: float, out_size: int, first: int, count: int):
    """PIL's bilinear coefficients (``precompute_coeffs`` then ``normalize_coeffs_8bpc``).

    For outputs ``first`` .. ``first + count - 1`` of a resample of ``in_size`` pixels, box [0, in_end), to ``out_size``.

    Returns ``((lo, hi), weights, starts)``: the input range the outputs read, the (count, ksize)
    integer weights (None where PIL skips the pass: same size, whole box) and each output's first
    input index. Computed as PIL does, step by step, so the result is the same to the bit.
    """
    end = float(np.float32(in_end))  # PIL passes the box as C floats
    lo_out = np.arange(first, first + count)
    if out_size == in_size and end == out_size:  # PIL: no pass along this axis
        return (first, first + count), None, lo_out
    scale = end / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    ksize = int(math.ceil(support)) * 2 + 1
    center = (lo_out + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    arg = np.abs(((taps[None, :] + xmin[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    weights = np.where(arg < 1.0, 1.0 - arg, 0.0)
    weights[taps[None, :] >= xmax[:, None]] = 0.0
    total = np.zeros(count)
    for k in range(ksize):  # summed in C's order: the rounding is the same
        total = total + weights[:, k]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    fixed = np.where(weights < 0, np.trunc(-0.5 + weights * (1 << _PRECISION_BITS)),
                     np.trunc(0.5 + weights * (1 << _PRECISION_BITS))).astype(np.int32)
    return (int(xmin.min()), int((xmin + xmax).max())), fixed, xmin


def _apply_taps(pixels: np.ndarray, weights: np.ndarray, starts: np.ndarray, axis: int) -> np.ndarray:
    """One resampling pass of PIL's 8-bit fixed-point arithmetic along ``axis`` (0 rows, 1 columns).

    uint8 in and out, as PIL stores the result of each pass. The sums fit in int32 as in PIL's C: the
    bilinear weights are >= 0 and add up to about 2**22, so 255 * 2**22 + 2**21 < 2**31.
    """
    out = np.full(pixels.shape[:axis] + (len(starts),) + pixels.shape[axis + 1:], 1 << (_PRECISION_BITS - 1),
                  dtype=np.int32)
    limit = pixels.shape[axis] - 1
    for k in range(weights.shape[1]):
        # Taps beyond an output's range have weight 0; clamping their index keeps the read in bounds.
        index = np.minimum(starts + k, limit)
        w = weights[:, k].reshape((-1, 1) if axis == 0 else (1, -1))[..., None]
        out += np.take(pixels, index, axis=axis) * w
    return np.clip(out >> _PRECISION_BITS, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- arrays
def _to_numpy(array) -> np.ndarray:
    """A numpy view of a tensor or array-like, refusing dtypes other than uint8 and float."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.to(torch.float32)  # numpy has no bfloat16
        data = tensor.numpy()
    else:
        data = np.asarray(array)
    if data.dtype != np.uint8 and data.dtype.kind != "f":
        raise ProbeError(
            f"array: dtype {data.dtype} not supported; give uint8 in 0..255 or float in [0, 1]"
        )
    return data


def _to_nchw(data: np.ndarray) -> np.ndarray:
    """Reorder (N, H, W), NHWC or NCHW data into NCHW with 3 channels."""
    if data.ndim == 3:  # grayscale: the same plane in all three channels
        return np.repeat(data[:, None, :, :], 3, axis=1)
    if data.ndim == 4 and data.shape[1] == 3:
        return data
    if data.ndim == 4 and data.shape[3] == 3:
        return data.transpose(0, 3, 1, 2)
    raise ProbeError(
        f"array: shape {data.shape} is not (N, 3, H, W), (N, H, W, 3) or (N, H, W)"
    )


def _as_unit_float(tensor: torch.Tensor) -> torch.Tensor:
    """float32 in [0, 1]; uint8 is divided by 255, floats are range-checked and clipped."""
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32) / 255.0
    tensor = tensor.to(torch.float64)
    low, high = float(tensor.min()), float(tensor.max())
    finite = bool(torch.isfinite(tensor).all())
    if not finite or low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
        raise ProbeError(
            f"array: float values must lie in [0, 1], got range [{low:g}, {high:g}]"
            + ("" if finite else " with non-finite values")
        )
    return tensor.clamp_(0.0, 1.0)


def _resize_float(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of float (N, 3, H, W) images to size x size."""
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(
        images.to(torch.float32), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return out.clamp_(0.0, 1.0)


def _float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """round(x * 255) of images in [0, 1], as uint8."""
    return torch.round(images.to(torch.float64) * 255.0).clamp_(0, 255).to(torch.uint8)
