"""Tests of the probe set: folder reading, array building, hashing, persistence."""

import hashlib
import os

import numpy as np
import pytest
import torch
from PIL import Image

from modelspace.errors import InputError, ProbeError
from modelspace.probe import ProbeSet

SIZE = 16


def solid(mode, size, colour):
    """A PIL image of one colour."""
    return Image.new(mode, size, colour)


@pytest.fixture
def mixed_folder(tmp_path):
    """Nested folders, mixed formats and modes, each image one known colour."""
    root = tmp_path / "probe"
    (root / "sub" / "deeper").mkdir(parents=True)
    solid("RGB", (40, 30), (200, 30, 40)).save(root / "a.png")
    solid("RGB", (50, 20), (10, 200, 60)).save(root / "sub" / "b.jpg", quality=95)
    solid("L", (20, 25), 90).save(root / "sub" / "deeper" / "c.bmp")
    solid("RGBA", (30, 30), (10, 20, 30, 128)).save(root / "sub" / "d.webp", lossless=True)
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 70, 140, 210] + [0] * (256 * 3 - 6))
    palette.save(root / "e.tiff")
    solid("RGB", (17, 17), (1, 2, 3)).save(root / "Z.PNG")  # upper-case extension counts
    (root / "notes.txt").write_text("not an image")
    return root


# Sorted relative POSIX paths: upper case sorts first, "sub/d.webp" before "sub/deeper/".
EXPECTED = {
    "Z.PNG": (1, 2, 3),
    "a.png": (200, 30, 40),
    "e.tiff": (70, 140, 210),
    "sub/b.jpg": (10, 200, 60),
    "sub/d.webp": (10, 20, 30),
    "sub/deeper/c.bmp": (90, 90, 90),
}


def test_folder_order_size_colour_and_names(mixed_folder):
    probe = ProbeSet.from_folder(mixed_folder, size=SIZE, progress=False)
    assert probe.names == list(EXPECTED)
    assert probe.images.dtype == torch.uint8
    assert probe.images.shape == (6, 3, SIZE, SIZE)
    assert probe.size == SIZE and len(probe) == 6
    [(path, reason)] = probe.skipped  # passed over by its extension, never opened
    assert path == "notes.txt" and reason.startswith("not an image: its extension '.txt' is not one of")
    for i, colour in enumerate(EXPECTED.values()):
        pixels = probe.images[i].reshape(3, -1).to(torch.int32)
        # JPEG is lossy; everything else must be exact.
        tol = 4 if probe.names[i].endswith(".jpg") else 0
        assert (pixels - torch.tensor(colour)[:, None]).abs().max() <= tol, probe.names[i]


def test_centre_crop_keeps_the_middle(tmp_path):
    # 64 x 16 image: red | green (middle half) | blue. Shorter side is already 16, so the
    # centre 16 columns (24..39) are all green.
    img = np.zeros((16, 64, 3), np.uint8)
    img[:, :16] = (255, 0, 0)
    img[:, 16:48] = (0, 255, 0)
    img[:, 48:] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / "wide.png")
    # A tall 32 x 128 image downscaled by 2: the crop keeps the middle rows, all white.
    tall = np.zeros((128, 32, 3), np.uint8)
    tall[40:88] = 255
    Image.fromarray(tall).save(tmp_path / "tall.png")
    probe = ProbeSet.from_folder(tmp_path, size=16, progress=False)
    assert probe.names == ["tall.png", "wide.png"]
    assert (probe.images[0] == 255).all()
    wide = probe.images[1]
    assert (wide[1] == 255).all() and (wide[0] == 0).all() and (wide[2] == 0).all()


def test_exif_orientation_is_applied(tmp_path):
    # Stored 32 x 16, left half red, right half blue. Orientation 6 means "rotate 90° clockwise
    # to display": displayed 16 x 32 with red on top and blue below.
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = (255, 0, 0)
    img[:, 16:] = (0, 0, 255)
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6
    pil.save(tmp_path / "rotated.png", exif=exif)
    probe = ProbeSet.from_folder(tmp_path, size=16, progress=False)
    top_left, bottom_left = probe.images[0, :, 0, 0], probe.images[0, :, 15, 0]
    assert top_left.tolist() == [255, 0, 0]
    assert bottom_left.tolist() == [0, 0, 255]


def test_sixteen_bit_and_cmyk_images(tmp_path):
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(tmp_path / "deep.png")
    solid("CMYK", (20, 20), (0, 255, 255, 0)).save(tmp_path / "print.tif")
    probe = ProbeSet.from_folder(tmp_path, size=8, progress=False)
    assert probe.names == ["deep.png", "print.tif"]
    # 40000 / 65535 * 255 = 155.6: a rescale, not a clip to white.
    assert set(probe.images[0].flatten().tolist()) == {156}
    assert probe.images[1, :, 0, 0].tolist() == [255, 0, 0]


def test_sampling_is_seeded_sorted_and_varies(tmp_path):
    for i in range(10):
        solid("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / f"img_{i}.png")
    first = ProbeSet.from_folder(tmp_path, size=8, limit=4, seed=3, progress=False)
    again = ProbeSet.from_folder(tmp_path, size=8, limit=4, seed=3, progress=False)
    assert first.names == again.names
    assert len(first) == 4 and first.names == sorted(first.names)
    assert torch.equal(first.images, again.images)
    samples = {
        tuple(ProbeSet.from_folder(tmp_path, size=8, limit=4, seed=s, progress=False).names)
        for s in range(5)
    }
    assert len(samples) > 1
    everything = ProbeSet.from_folder(tmp_path, size=8, limit=50, progress=False)
    assert everything.names == [f"img_{i}.png" for i in range(10)]


def test_hash_is_stable_and_tracks_pixels(mixed_folder):
    one = ProbeSet.from_folder(mixed_folder, size=SIZE, progress=False)
    two = ProbeSet.from_folder(mixed_folder, size=SIZE, progress=False)
    assert one.hash == two.hash
    assert len(one.hash) == 64 and int(one.hash, 16) >= 0
    # Names are not part of the content hash.
    assert ProbeSet(one.images.clone(), [f"x{i}" for i in range(6)]).hash == one.hash

    img = np.array(Image.open(mixed_folder / "a.png"))
    img[15, 20, 0] ^= 0xFF  # one pixel, in the part the centre crop keeps
    Image.fromarray(img).save(mixed_folder / "a.png")
    changed = ProbeSet.from_folder(mixed_folder, size=SIZE, progress=False)
    assert changed.hash != one.hash


def test_hash_depends_on_shape(tmp_path):
    flat = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    reshaped = torch.zeros(8, 3, 2, 2, dtype=torch.uint8)  # same bytes, other shape
    assert ProbeSet.from_array(flat).hash != ProbeSet.from_array(reshaped).hash


def test_garbage_file_is_skipped_with_reason(mixed_folder):
    (mixed_folder / "sub" / "broken.png").write_bytes(b"this is not a PNG at all")
    probe = ProbeSet.from_folder(mixed_folder, size=SIZE, progress=False)
    assert probe.names == list(EXPECTED)
    reasons = dict(probe.skipped)
    assert sorted(reasons) == ["notes.txt", "sub/broken.png"]
    assert "UnidentifiedImageError" in reasons["sub/broken.png"]


def test_empty_or_missing_folder_names_it(tmp_path):
    empty = tmp_path / "empty_probe"
    empty.mkdir()
    with pytest.raises(ProbeError, match="empty_probe"):
        ProbeSet.from_folder(empty, progress=False)
    with pytest.raises(ProbeError, match="no_such_folder"):
        ProbeSet.from_folder(tmp_path / "no_such_folder", progress=False)


def test_only_garbage_reports_skip_count(tmp_path):
    (tmp_path / "bad1.jpg").write_bytes(b"junk")
    (tmp_path / "bad2.png").write_bytes(b"")
    with pytest.raises(ProbeError, match=r"all 2 image file\(s\) were skipped"):
        ProbeSet.from_folder(tmp_path, progress=False)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_symlink_loop_does_not_hang(tmp_path):
    solid("RGB", (8, 8), (5, 5, 5)).save(tmp_path / "only.png")
    os.symlink(tmp_path, tmp_path / "loop", target_is_directory=True)
    probe = ProbeSet.from_folder(tmp_path, size=8, progress=False)
    assert probe.names == ["only.png"]


def test_from_array_layouts_and_dtypes():
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 256, size=(3, 3, 8, 8), dtype=np.uint8)
    nhwc = nchw.transpose(0, 2, 3, 1).copy()
    a = ProbeSet.from_array(nchw)
    b = ProbeSet.from_array(torch.from_numpy(nhwc))
    c = ProbeSet.from_array(nchw.astype(np.float32) / 255.0)
    assert torch.equal(a.images, torch.from_numpy(nchw))
    assert torch.equal(a.images, b.images) and torch.equal(a.images, c.images)
    assert a.names == ["image_00000", "image_00001", "image_00002"]


def test_from_array_grayscale_and_resize():
    gray = np.full((2, 10, 10), 0.5, dtype=np.float64)
    probe = ProbeSet.from_array(gray)
    assert probe.images.shape == (2, 3, 10, 10)
    assert set(probe.images.flatten().tolist()) == {128}  # round(0.5 * 255) = 128
    resized = ProbeSet.from_array(np.full((1, 3, 12, 20), 77, np.uint8), size=6, names=["only"])
    assert resized.images.shape == (1, 3, 6, 6)
    assert set(resized.images.flatten().tolist()) == {77}
    assert resized.names == ["only"]


def test_from_array_rejects_bad_input():
    with pytest.raises(ProbeError, match=r"\[-0.5, 1\]"):
        ProbeSet.from_array(np.full((1, 3, 4, 4), -0.5, np.float32) + np.eye(4, dtype=np.float32) * 1.5)
    with pytest.raises(ProbeError, match="not square"):
        ProbeSet.from_array(np.zeros((1, 3, 4, 5), np.uint8))
    with pytest.raises(ProbeError, match="shape"):
        ProbeSet.from_array(np.zeros((1, 4, 5, 5), np.uint8))
    with pytest.raises(ProbeError, match="int64"):
        ProbeSet.from_array(np.zeros((1, 3, 4, 4), np.int64))
    with pytest.raises(ProbeError, match="names"):
        ProbeSet.from_array(np.zeros((2, 3, 4, 4), np.uint8), names=["one"])
    # Rounding noise just outside [0, 1] is accepted and clipped.
    edge = ProbeSet.from_array(np.full((1, 3, 2, 2), 1.0 + 5e-7))
    assert set(edge.images.flatten().tolist()) == {255}


def test_constructor_validates_images():
    with pytest.raises(ProbeError, match="images.*uint8"):
        ProbeSet(torch.zeros(1, 3, 4, 4), ["a"])
    with pytest.raises(ProbeError, match="images.*square"):
        ProbeSet(torch.zeros(1, 3, 4, 6, dtype=torch.uint8), ["a"])
    with pytest.raises(ProbeError, match="images"):
        ProbeSet(torch.zeros(0, 3, 4, 4, dtype=torch.uint8), [])


def test_batch_and_subset():
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).reshape(4, 3, 2, 2)
    probe = ProbeSet(images, ["a", "b", "c", "d"])
    batch = probe.batch(1, 3)
    assert batch.dtype == torch.float32 and batch.shape == (2, 3, 2, 2)
    assert torch.allclose(batch, images[1:3].double().div(255).float())
    sub = probe.subset([3, 0])
    assert sub.names == ["d", "a"]
    assert torch.equal(sub.images, images[[3, 0]])
    with pytest.raises(InputError, match="stop"):
        probe.batch(2, 9)
    with pytest.raises(InputError, match="indices"):
        probe.subset([4])


def test_save_load_round_trip(mixed_folder, tmp_path):
    (mixed_folder / "broken.png").write_bytes(b"junk")
    probe = ProbeSet.from_folder(mixed_folder, size=SIZE, progress=False)
    target = tmp_path / "probe_set.npz"
    probe.save(target)
    loaded = ProbeSet.load(target)
    assert loaded.hash == probe.hash
    assert loaded.names == probe.names
    assert loaded.skipped == probe.skipped
    assert torch.equal(loaded.images, probe.images)
    # Independent check of the hash: sha256 of shape then bytes.
    expected = hashlib.sha256(repr(tuple(probe.images.shape)).encode() + probe.images.numpy().tobytes())
    assert loaded.hash == expected.hexdigest()


def test_load_refuses_missing_and_pickled_files(tmp_path):
    with pytest.raises(ProbeError, match="absent.npz"):
        ProbeSet.load(tmp_path / "absent.npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, images=np.zeros((1, 3, 2, 2), np.uint8), names=np.array([object()], dtype=object))
    with pytest.raises(ProbeError, match="pickled.npz"):
        ProbeSet.load(pickled)
