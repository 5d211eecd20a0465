"""Bad probe files. Every kind is made for real on disk; each is either used
(converted, pixels checked) or skipped with a named reason, and the run goes on."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.runs import subprocess_env
from modelspace.cli import main
from modelspace.errors import ProbeError
from modelspace.probe import MAX_PIXELS, SKIP_REASONS, ProbeSet

SIZE = 8


def noise(h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **kw)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring width x height, with a few bytes of pixel data:
    what a decompression bomb looks like from its header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def reason_of(probe: ProbeSet, name: str) -> str:
    reasons = dict(probe.skipped)
    assert name in reasons, f"{name} was not skipped: {probe.skipped}"
    return reasons[name]


@pytest.fixture
def alarm():
    """Turn a hang into a failure (a FIFO read blocks forever) instead of a stuck test run."""
    def on_alarm(*_):
        raise TimeoutError("probe loading hung")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- skipped kinds

def test_every_unusable_kind_is_skipped_with_its_reason_and_the_rest_load(tmp_path, alarm):
    folder = tmp_path / "probe"
    folder.mkdir()
    good = Image.fromarray(noise())
    good.save(folder / "good.png")
    jpeg, png = encoded(good, "JPEG", quality=90), encoded(good, "PNG")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "text.png").write_text("just some text, not pixels\n" * 20)
    (folder / "html.webp").write_bytes(b"<html><body>404 not found</body></html>")
    (folder / "bomb.png").write_bytes(png_header_only(20000, 20000))   # 4e8 px: PIL's hard limit
    (folder / "bomb_soft.png").write_bytes(png_header_only(10000, 10000))  # 1e8 px: PIL only warns
    os.mkfifo(folder / "fifo.png")  # open() for reading would block forever
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    os.symlink("nowhere.png", folder / "dangling.png")
    (folder / "folder.png").mkdir()  # a directory named like an image is not a file at all

    probe = ProbeSet.from_folder(folder, size=SIZE, progress=False)

    assert probe.names == ["good.png"]
    expected = {
        "zero.jpg": "empty file",
        "truncated.jpg": "corrupt or truncated",
        "truncated.png": "corrupt or truncated",
        "text.png": "not an image",
        "html.webp": "not an image",
        "bomb.png": "too large",
        "bomb_soft.png": "too large",
        "fifo.png": "not a regular file",
        "loop_a.png": "symbolic link loop",
        "loop_b.png": "symbolic link loop",
        "dangling.png": "broken symbolic link",
    }
    assert sorted(p for p, _ in probe.skipped) == sorted(expected)
    for name, kind in expected.items():
        reason = reason_of(probe, name)
        assert reason.startswith(kind), (name, reason)
        assert any(reason.startswith(k) for k in SKIP_REASONS)
    assert str(MAX_PIXELS) in reason_of(probe, "bomb_soft.png") or "89478485" in reason_of(probe, "bomb_soft.png")
    # The bombs were refused from their 100-byte headers, not by decoding and failing on missing data.
    assert "truncated" not in reason_of(probe, "bomb.png") + reason_of(probe, "bomb_soft.png")


def test_a_file_declaring_more_pixels_than_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    """Lowering the limit shows the check is on the header's size: a perfectly valid 40x30 image is
    refused as 'too large' (a decode would have succeeded)."""
    Image.fromarray(noise(30, 40)).save(tmp_path / "ok.png")
    Image.fromarray(noise(10, 10)).save(tmp_path / "small.png")
    monkeypatch.setattr("modelspace.probe.MAX_PIXELS", 1000)
    probe = ProbeSet.from_folder(tmp_path, size=SIZE, progress=False)
    assert probe.names == ["small.png"]
    assert reason_of(probe, "ok.png").startswith("too large: 40x30 = 1200 pixels")


def test_unreadable_permissions(tmp_path):
    """chmod 000. Root reads such files anyway, so as root the load runs in a child process that
    drops to uid/gid 65534 (nobody) after importing, in a world-readable temporary folder."""
    if os.geteuid() != 0:
        Image.fromarray(noise()).save(tmp_path / "ok.png")
        Image.fromarray(noise()).save(tmp_path / "locked.png")
        (tmp_path / "locked.png").chmod(0)
        try:
            probe = ProbeSet.from_folder(tmp_path, size=SIZE, progress=False)
        finally:
            (tmp_path / "locked.png").chmod(0o644)
        assert probe.names == ["ok.png"]
        assert reason_of(probe, "locked.png").startswith("unreadable: PermissionError")
        return
    folder = Path(tempfile.mkdtemp(prefix="modelspace-perm-"))
    try:
        folder.chmod(0o755)
        Image.fromarray(noise()).save(folder / "ok.png")
        Image.fromarray(noise()).save(folder / "locked.png")
        (folder / "ok.png").chmod(0o644)
        (folder / "locked.png").chmod(0)
        code = (
            "import json, os, sys\n"
            "from PIL import Image\n"
            "from modelspace.probe import ProbeSet\n"
            "Image.init()  # PIL imports its format plugins lazily: do it before losing access to them\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "assert not os.access(sys.argv[1] + '/locked.png', os.R_OK)\n"
            "p = ProbeSet.from_folder(sys.argv[1], size=8, progress=False)\n"
            "print(json.dumps({'names': p.names, 'skipped': p.skipped}))\n"
        )
        env = subprocess_env()
        done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env, check=False,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["names"] == ["ok.png"]
        [(path, reason)] = result["skipped"]
        assert path == "locked.png" and reason.startswith("unreadable: PermissionError"), reason
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_folder_symlink_cycles_do_not_hang(tmp_path, alarm):
    Image.fromarray(noise()).save(tmp_path / "only.png")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "b", tmp_path / "a" / "to_b", target_is_directory=True)
    os.symlink(tmp_path / "a", tmp_path / "b" / "to_a", target_is_directory=True)
    os.symlink(tmp_path, tmp_path / "a" / "to_root", target_is_directory=True)
    probe = ProbeSet.from_folder(tmp_path, size=SIZE, progress=False)
    assert probe.names == ["only.png"]
    assert [p for p, _ in probe.skipped] == ["a/to_b/", "a/to_root/", "b/to_a/"]  # listed, not followed
    assert all(reason.startswith("symbolic link to a folder") for _, reason in probe.skipped)


# --------------------------------------------------------------------------- converted kinds

def test_unusual_but_valid_images_are_converted(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "really_png.jpg", format="PNG")       # wrong extension
    Image.fromarray(rgb).save(tmp_path / "really_jpeg.png", format="JPEG", quality=95)
    Image.new("L", (16, 16), 77).save(tmp_path / "gray.png")
    Image.new("1", (16, 16), 1).save(tmp_path / "bilevel.bmp")
    Image.new("LA", (16, 16), (60, 0)).save(tmp_path / "gray_alpha.png")
    Image.new("RGBA", (16, 16), (10, 20, 30, 0)).save(tmp_path / "rgba_clear.png")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 70, 140, 210] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette_transparent.png", transparency=0)
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(tmp_path / "sixteen_white.png")
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(tmp_path / "float.tif")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)

    probe = ProbeSet.from_folder(tmp_path, size=SIZE, progress=False)
    assert probe.skipped == []
    got = {n: probe.images[i, :, 0, 0].tolist() for i, n in enumerate(probe.names)}
    near = lambda a, b, tol: max(abs(x - y) for x, y in zip(a, b)) <= tol
    assert got["really_png.jpg"] == [200, 100, 50]
    assert near(got["really_jpeg.png"], [200, 100, 50], 4)
    assert got["gray.png"] == [77, 77, 77]
    assert got["bilevel.bmp"] == [255, 255, 255]
    assert got["gray_alpha.png"] == [60, 60, 60]          # alpha dropped, gray kept
    assert got["rgba_clear.png"] == [10, 20, 30]          # fully transparent: stored RGB kept
    assert got["palette.png"] == [70, 140, 210]
    assert got["palette_transparent.png"] == [70, 140, 210]
    assert got["sixteen_white.png"] == [255, 255, 255]    # scaled by 255/65535, not clipped
    assert got["float.tif"] == [128, 128, 128]            # [0, 1] floats times 255
    assert near(got["cmyk.jpg"], [255, 0, 0], 6)


def test_exif_rotated_jpeg_is_rotated(tmp_path):
    # Stored 32 wide x 16 high: left half red, right half blue. Orientation 8 = "rotate 90°
    # counter-clockwise to display": displayed 16 x 32 with blue on top and red below.
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = (255, 0, 0)
    img[:, 16:] = (0, 0, 255)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 8
    pil.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    pil.save(tmp_path / "upright.jpg", quality=95)
    probe = ProbeSet.from_folder(tmp_path, size=16, progress=False)
    rotated, upright = probe.images[0].int(), probe.images[1].int()
    # Rotated: rows vary (blue over red), columns do not.
    assert rotated[2, 0, 8] > 200 and rotated[0, 0, 8] < 40
    assert rotated[0, 15, 8] > 200 and rotated[2, 15, 8] < 40
    # Upright (centre crop of the 32-wide image: columns 8..23 at 16/16 scale): red left, blue right.
    assert upright[0, 8, 0] > 200 and upright[2, 8, 15] > 200


# --------------------------------------------------------------------------- empty sets and the CLI

def test_empty_and_all_skipped_folders_are_clear_errors(tmp_path):
    empty = tmp_path / "empty_probe"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ProbeError, match="empty_probe.*holds no image file"):
        ProbeSet.from_folder(empty, progress=False)
    broken = tmp_path / "broken_probe"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"")
    (broken / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ProbeError, match=r"broken_probe.*all 2 image file\(s\) were skipped.*a\.png: empty file"):
        ProbeSet.from_folder(broken, progress=False)
    assert main(["probe", str(broken), "--out", str(tmp_path / "p.npz"), "--quiet"]) == 2


def test_cli_probe_counts_and_names_skipped_files(tmp_path, capsys):
    folder = tmp_path / "probe"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(noise()).save(folder / f"ok_{i}.png")
    (folder / "zero.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("text")
    out = tmp_path / "probe.npz"
    assert main(["probe", str(folder), "--size", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 images" in text and "2 skipped" in text
    assert "skipped zero.png: empty file" in text and "skipped notes.jpg: not an image" in text
    assert main(["probe", str(folder), "--size", "8", "--out", str(out), "--json", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_images"] == 3
    assert {s["path"]: s["reason"].split(":")[0] for s in info["skipped"]} == {
        "notes.jpg": "not an image", "zero.png": "empty file (0 bytes)"}
    assert ProbeSet.load(out).skipped == [(s["path"], s["reason"]) for s in info["skipped"]]


# ---------------------------------------------------------------------- huge and odd images
_MEMORY_PROBE = (
    "import json, resource, sys\n"
    "from modelspace.probe import ProbeSet\n"
    "vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
    "# A cap 1.5 GB above what is mapped now: the old resize (2.1 GB, 14.1 GB) fails fast, never swaps.\n"
    "resource.setrlimit(resource.RLIMIT_AS, (vm + 1536 * 2**20, resource.RLIM_INFINITY))\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "p = ProbeSet.from_folder(sys.argv[1], size=int(sys.argv[2]), progress=False)\n"
    "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024\n"
    "print(json.dumps({'names': p.names, 'skipped': p.skipped, 'grown': grown, 'shape': list(p.images.shape)}))\n"
)


@pytest.mark.parametrize("width, height, size", [(1, 100_000, 64), (10_000, 3, 1024)])
def test_thin_or_wide_images_load_in_memory_bounded_by_the_probe_size(tmp_path, width, height, size):
    """A 370-byte 1x100000 PNG at size 64 took 2.1 GB, a 10000x3 one at 1024 took
    14.1 GB: the whole image was resized (short side -> size, so 64 x 6 400 000) before the crop. Only
    the size x size window is computed now; the peak RSS of the load (a fresh process) stays small."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(tmp_path / "strip.png")
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path), str(size)], capture_output=True,
                          text=True, env=subprocess_env(), check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["skipped"] == [] and result["names"] == ["strip.png"]
    assert result["shape"] == [1, 3, size, size]
    window = size * size * 3 * 8  # bytes of the output window held as int64: a generous unit
    assert result["grown"] < 64 * 2**20 + 12 * window, result["grown"]


def _reference_resize_and_crop(img: Image.Image, size: int) -> np.ndarray:
    """The documented rule written directly in PIL (what probe.py did before): resize the whole image so
    the shorter side is ``size`` (bilinear, reducing_gap 3), then crop the centre."""
    width, height = img.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)).convert("RGB"))


def test_normal_images_give_the_same_probe_pixels_as_resizing_the_whole_image(tmp_path):
    """Computing only the window changes no pixel (probe hashes, and so stored maps,
    stay valid): landscape, portrait, square, up- and downscaled, with and without PIL's reduce step."""
    rng = np.random.default_rng(5)
    shapes = [(640, 480, 64), (480, 640, 64), (4000, 3000, 64), (500, 500, 224), (333, 97, 224), (97, 333, 50),
              (26, 426, 16), (209, 116, 32), (1024, 768, 1024), (7, 1000, 16), (300, 300, 300)]
    shapes += [(int(rng.integers(1, 700)), int(rng.integers(1, 700)), int(rng.choice([8, 32, 64, 224])))
               for _ in range(40)]
    for i, (width, height, size) in enumerate(shapes):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img.png")
        probe = ProbeSet.from_folder(folder, size=size, progress=False)
        expected = _reference_resize_and_crop(Image.fromarray(pixels), size)
        got = probe.images[0].permute(1, 2, 0).numpy()
        assert np.array_equal(got, expected), (width, height, size)


def test_a_float_tiff_holding_nan_is_skipped_with_a_reason_not_turned_black(tmp_path):
    """A float TIFF with NaN became an all-black probe image without a word."""
    values = np.random.default_rng(0).random((24, 32), dtype=np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "fine.tif")
    values[3, 4] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    values[3, 4] = np.inf
    Image.fromarray(values, mode="F").save(tmp_path / "inf.tif")
    probe = ProbeSet.from_folder(tmp_path, size=SIZE, progress=False)
    assert probe.names == ["fine.tif"] and probe.images.max() > 0
    for name in ("nan.tif", "inf.tif"):
        reason = reason_of(probe, name)
        assert reason.startswith("non-finite pixels: 1 of 768 values are NaN or infinite"), reason
        assert any(reason.startswith(k) for k in SKIP_REASONS)


def test_a_pillow_whose_resampling_is_not_reproduced_keeps_its_own_pixels(tmp_path, monkeypatch):
    """The window is computed as Pillow resamples (its pass order changed in Pillow 13).
    Should a Pillow differ, a one-time check notices and the whole-image resize is used (pixels kept)."""
    from modelspace import probe as probe_module

    monkeypatch.setattr(probe_module, "_PIL_VERTICAL_FIRST", not probe_module._PIL_VERTICAL_FIRST)
    probe_module._window_matches_pil.cache_clear()
    try:
        assert not probe_module._window_matches_pil()
        pixels = np.random.default_rng(3).integers(0, 256, (426, 26, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "tall.png")
        probe = ProbeSet.from_folder(tmp_path, size=16, progress=False)
        expected = _reference_resize_and_crop(Image.fromarray(pixels), 16)
        assert np.array_equal(probe.images[0].permute(1, 2, 0).numpy(), expected)
    finally:
        probe_module._window_matches_pil.cache_clear()
