"""The procedural renderer: determinism, and labels checked against each other and the scene.

Each consistency check recomputes a quantity independently (finite differences of depth, pixel
rays, the scene's own parameters) rather than calling the code that produced the label.
"""

import math

import numpy as np
import pytest

from modelspace.world import (
    DOMAINS,
    Domain,
    MAX_DEPTH,
    MAX_OBJECTS,
    N_CLASSES,
    N_SEGMENTS,
    OBJECT_TYPES,
    ROOM_SURFACES,
    SEMANTIC_CLASSES,
    SMOOTHED,
    TASKS,
    camera_rays,
    centre_patch,
    mask_centre,
    noisy,
    render,
    render_batch,
    sample_scene,
    scene_rng,
    to_grey,
)

N_ROOM = len(ROOM_SURFACES)
SIZE = 64


@pytest.fixture(scope="module")
def scenes():
    """12 scenes of each named domain (with their Scene objects) rendered once for the module,
    with the `SMOOTHED` labels as computed, so that their geometry can be checked exactly."""
    out = []
    for name in DOMAINS:
        for i in range(12):
            scene = sample_scene(scene_rng(100, i), name)
            out.append((scene, render(scene, SIZE, smoothed=False)))
    return out


def pixel_uv(size: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera-plane coordinates (u, v) of the pixel centres, as the documented pinhole model says."""
    t = math.tan(math.radians(fov_deg) / 2)
    c = (2 * (np.arange(size) + 0.5) / size - 1) * t
    u, v = np.meshgrid(c, -c)
    return u, v


def backproject(depth_z: np.ndarray, fov_deg: float) -> np.ndarray:
    """H×W z-buffer label -> H×W×3 camera-frame points."""
    z = depth_z * MAX_DEPTH
    u, v = pixel_uv(depth_z.shape[0], fov_deg)
    return np.stack([u * z, v * z, z], -1)


def interior(labels: np.ndarray) -> np.ndarray:
    """(H-2)×(W-2) mask: the 3×3 neighbourhood of the pixel has a single label."""
    h, w = labels.shape
    centre = labels[1:-1, 1:-1]
    same = np.ones_like(centre, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            same &= labels[1 + di : h - 1 + di, 1 + dj : w - 1 + dj] == centre
    return same


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_same_arrays_and_different_seed_differs():
    a, b, c = render_batch(4, seed=3), render_batch(4, seed=3), render_batch(4, seed=4)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["rgb"], c["rgb"])
    assert not np.array_equal(a["depth_z"], c["depth_z"])


def test_scene_does_not_depend_on_batch_size_or_start():
    small, large = render_batch(4, seed=5), render_batch(8, seed=5)
    tail = render_batch(3, seed=5, start=5)
    for key in small:
        np.testing.assert_array_equal(small[key], large[key][:4])
        np.testing.assert_array_equal(tail[key], large[key][5:])


def test_scenes_within_a_batch_differ():
    rgb = render_batch(6, seed=0)["rgb"].reshape(6, -1)
    assert len({row.tobytes() for row in rgb}) == 6


# ---------------------------------------------------------------------------------- outputs


def test_every_task_present_with_its_kind_dtype_shape_and_range():
    batch = render_batch(3, seed=1)
    n = 3
    assert len(TASKS) >= 16
    assert batch["rgb"].shape == (n, SIZE, SIZE, 3) and batch["rgb"].dtype == np.float32
    assert 0.0 <= batch["rgb"].min() and batch["rgb"].max() <= 1.0
    for task, (kind, channels, description) in TASKS.items():
        assert description, task
        a = batch[task]
        if kind == "dense_regression":
            side = SIZE // 2 if task == "inpainting" else SIZE
            assert a.shape == (n, side, side, channels), task
            assert a.dtype == np.float32, task
            assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0, task
        elif kind == "dense_classification":
            assert a.shape == (n, SIZE, SIZE) and a.dtype == np.int64, task
            assert a.min() >= 0 and a.max() < channels, task
        elif kind == "image_classification":
            assert a.shape == (n,) and a.dtype == np.int64, task
            assert a.min() >= 0 and a.max() < channels, task
        else:
            assert kind == "image_regression", task
            assert a.shape == (n, channels) and a.dtype == np.float32, task
            assert a.min() >= 0.0 and a.max() <= 1.0, task
    assert TASKS["segment_semantic"][1] == N_CLASSES == len(SEMANTIC_CLASSES)
    assert TASKS["object_count"][1] == MAX_OBJECTS + 1


@pytest.mark.parametrize("size", [64, 40])
def test_smoothed_labels_are_the_computed_ones_under_a_gaussian(size):
    from scipy.ndimage import gaussian_filter

    scene = sample_scene(scene_rng(5, 3))
    sharp, out = render(scene, size, smoothed=False), render(scene, size)
    for task, sigma in SMOOTHED.items():
        s = sigma * size / 64
        expected = gaussian_filter(sharp[task].astype(np.float64), (s, s, 0), mode="nearest", truncate=3.0)
        np.testing.assert_allclose(out[task], expected, atol=1e-6, err_msg=task)
        assert out[task].std() < sharp[task].std() or sharp[task].std() == 0, task
    for task in set(TASKS) - set(SMOOTHED):
        np.testing.assert_array_equal(out[task], sharp[task], err_msg=task)


def test_image_sizes_other_than_64():
    out = render(sample_scene(scene_rng(0, 0)), size=40)
    assert out["rgb"].shape == (40, 40, 3) and out["normals"].shape == (40, 40, 3)
    assert out["inpainting"].shape == (20, 20, 3) and out["segment2d"].shape == (40, 40)


def test_self_supervised_targets_and_inputs():
    out = render(sample_scene(scene_rng(0, 1)), smoothed=False)
    rgb = out["rgb"]
    for task in ("autoencoding", "denoising", "colorization"):
        np.testing.assert_array_equal(out[task], rgb)
    np.testing.assert_array_equal(out["inpainting"], rgb[16:48, 16:48])
    np.testing.assert_array_equal(centre_patch(rgb), out["inpainting"])

    masked = mask_centre(rgb)
    assert np.all(masked[16:48, 16:48] == 0.5)
    np.testing.assert_array_equal(masked[:16], rgb[:16])
    assert not np.shares_memory(masked, rgb)

    grey = to_grey(rgb)
    assert grey.shape == rgb.shape
    np.testing.assert_allclose(grey[..., 0], grey[..., 2])
    np.testing.assert_allclose(grey[..., 0], rgb @ np.array([0.299, 0.587, 0.114], np.float32), rtol=1e-6)

    noise_a, noise_b = noisy(rgb, np.random.default_rng(0)), noisy(rgb, np.random.default_rng(0))
    np.testing.assert_array_equal(noise_a, noise_b)
    assert noise_a.dtype == rgb.dtype and noise_a.min() >= 0 and noise_a.max() <= 1
    assert 0.05 < np.abs(noise_a - rgb).mean() < 0.1


# ---------------------------------------------------------------------------------- geometry


def test_depth_z_is_euclidean_depth_times_the_ray_cosine(scenes):
    for scene, out in scenes:
        cos = camera_rays(SIZE, scene.fov_deg)[:, 2].reshape(SIZE, SIZE)
        np.testing.assert_allclose(out["depth_z"][..., 0], out["depth_euclidean"][..., 0] * cos, atol=1e-6)


def test_normals_agree_with_finite_differences_of_depth(scenes):
    errors = []
    for scene, out in scenes:
        points = backproject(out["depth_z"][..., 0].astype(np.float64), scene.fov_deg)
        dx = points[1:-1, 2:] - points[1:-1, :-2]
        dy = points[2:, 1:-1] - points[:-2, 1:-1]
        n = np.cross(dx, dy)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        n *= -np.sign((n * points[1:-1, 1:-1]).sum(-1, keepdims=True))  # face the camera
        rendered = out["normals"][1:-1, 1:-1].astype(np.float64) * 2 - 1
        rendered /= np.linalg.norm(rendered, axis=-1, keepdims=True)
        smooth = interior(out["segment25d"]) & (out["edges3d"][1:-1, 1:-1, 0] == 0)
        cos = np.clip((n * rendered).sum(-1), -1, 1)
        errors.append(np.degrees(np.arccos(cos[smooth])))
    errors = np.concatenate(errors)
    assert len(errors) > 10_000
    assert np.median(errors) < 2.0
    assert np.percentile(errors, 90) < 10.0


def test_normals_face_the_camera(scenes):
    for scene, out in scenes:
        n = out["normals"].reshape(-1, 3).astype(np.float64) * 2 - 1
        d = camera_rays(SIZE, scene.fov_deg)
        assert np.all((n * d).sum(1) < 1e-3)


def test_edges3d_mark_depth_discontinuities_and_not_planar_interiors(scenes):
    for _, out in scenes:
        t = out["depth_euclidean"][..., 0].astype(np.float64)
        edges = out["edges3d"][..., 0] > 0
        instance = out["segment2d"]
        assert set(np.unique(out["edges3d"])) <= {0.0, 1.0}
        for axis in (0, 1):
            a = np.take(t, range(SIZE - 1), axis), np.take(t, range(1, SIZE), axis)
            e = np.take(edges, range(SIZE - 1), axis), np.take(edges, range(1, SIZE), axis)
            ids = np.take(instance, range(SIZE - 1), axis), np.take(instance, range(1, SIZE), axis)
            jump = np.abs(a[0] - a[1]) / np.minimum(a[0], a[1]) > 0.3
            # Large jumps between different surfaces are occlusions: the pair holds an edge pixel.
            assert np.all((e[0] | e[1])[jump & (ids[0] != ids[1])])
        planar = interior(out["segment25d"]) & (out["curvature"][1:-1, 1:-1, 0] == 0)
        assert not edges[1:-1, 1:-1][planar].any()


def test_edge_pixels_are_nearer_than_a_neighbour_on_another_surface(scenes):
    for _, out in scenes:
        t = np.pad(out["depth_euclidean"][..., 0], 1, mode="edge")
        ids = np.pad(out["segment2d"], 1, mode="edge")
        centre_t, centre_id = t[1:-1, 1:-1], ids[1:-1, 1:-1]
        occluder = np.zeros((SIZE, SIZE), dtype=bool)
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            window = (slice(1 + di, SIZE + 1 + di), slice(1 + dj, SIZE + 1 + dj))
            nt, nid = t[window], ids[window]
            occluder |= (nid != centre_id) & (nt >= centre_t)
        assert np.all(occluder[out["edges3d"][..., 0] > 0])


def test_curvature_is_zero_on_the_room_and_analytic_on_objects(scenes):
    seen, cylinder_sides = set(), 0
    for scene, out in scenes:
        curvature = out["curvature"][..., 0].astype(np.float64)
        semantic, instance = out["segment_semantic"], out["instance"]
        room = semantic < SEMANTIC_CLASSES.index("sphere")
        assert np.all(curvature[room] == 0)
        for k, obj in enumerate(scene.objects):
            mask = instance == N_ROOM + k
            if not mask.any():
                continue
            seen.add(obj.kind)
            if obj.kind == "sphere":
                np.testing.assert_allclose(curvature[mask], min(1.0, 0.1 / obj.radius), rtol=1e-5)
            elif obj.kind == "box":
                assert np.all(curvature[mask] == 0)
            elif obj.kind == "cylinder":
                side = curvature[mask][curvature[mask] > 0]  # the cap (flat) may also show
                np.testing.assert_allclose(side, min(1.0, 0.05 / obj.radius), rtol=1e-5)
                cylinder_sides += len(side)
            else:
                assert np.all(curvature[mask] > 0)
    assert seen == set(OBJECT_TYPES) and cylinder_sides > 0


# ---------------------------------------------------------------------------------- segments


def test_semantic_classes_match_the_scene_objects(scenes):
    for scene, out in scenes:
        semantic, instance = out["segment_semantic"], out["instance"]
        expected_room = {"floor": "floor", "ceiling": "ceiling"}
        for s, name in enumerate(ROOM_SURFACES):
            cls = SEMANTIC_CLASSES.index(expected_room.get(name, "wall"))
            assert np.all(semantic[instance == s] == cls)
        for k, obj in enumerate(scene.objects):
            assert np.all(semantic[instance == N_ROOM + k] == SEMANTIC_CLASSES.index(obj.kind))
        present_objects = {SEMANTIC_CLASSES[c] for c in np.unique(semantic)} - {"floor", "ceiling", "wall"}
        assert present_objects <= {obj.kind for obj in scene.objects}


def test_object_count_and_class_agree_with_segments(scenes):
    for scene, out in scenes:
        objects = out["segment_semantic"] >= SEMANTIC_CLASSES.index("sphere")
        visible = np.unique(out["segment2d"][objects])
        assert out["object_count"] == len(visible) >= 1
        counts = np.bincount(out["instance"][objects] - N_ROOM, minlength=len(scene.objects))
        assert out["object_class"] == OBJECT_TYPES.index(scene.objects[int(np.argmax(counts))].kind)


def test_segments_are_numbered_in_order_of_appearance(scenes):
    for _, out in scenes:
        for task in ("segment2d", "segment25d"):
            flat = out[task].ravel()
            _, first = np.unique(flat, return_index=True)
            assert flat[0] == 0
            assert np.all(np.diff(flat[np.sort(first)]) == 1), task
            assert flat.max() < N_SEGMENTS


def test_segment2d_is_the_instance_map_relabelled_and_segment25d_refines_it(scenes):
    for _, out in scenes:
        seg2d, seg25d, instance = out["segment2d"], out["segment25d"], out["instance"]
        pairs = set(zip(seg2d.ravel().tolist(), instance.ravel().tolist()))
        assert len(pairs) == len(np.unique(seg2d)) == len(np.unique(instance))  # a bijection
        # Each geometric segment lies on one instance.
        for s in np.unique(seg25d)[:-1]:  # the last id may collect overflow segments
            assert len(np.unique(seg2d[seg25d == s])) == 1


def test_segment25d_planar_segments_have_one_normal(scenes):
    for _, out in scenes:
        normals = out["normals"].reshape(-1, 3)
        flat_seg, flat_curv = out["segment25d"].ravel(), out["curvature"].ravel()
        for s in np.unique(flat_seg)[:-1]:
            mask = flat_seg == s
            if np.all(flat_curv[mask] == 0):
                assert np.ptp(normals[mask], axis=0).max() < 1e-5


# ---------------------------------------------------------------------------------- layout, light


def test_vanishing_point_is_where_the_room_depth_direction_projects(scenes):
    for scene, out in scenes:
        # Independently: the pixel ray (documented pinhole model) nearest the world +z direction.
        u, v = pixel_uv(SIZE * 8, scene.fov_deg)  # a finer grid: 1/8 pixel resolution
        cam = np.stack([u, v, np.ones_like(u)], -1)
        world = cam @ scene.rotation.T
        cos = world[..., 2] / np.linalg.norm(world, axis=-1)
        i, j = np.unravel_index(np.argmax(cos), cos.shape)
        expected = np.array([(j + 0.5) / (SIZE * 8), (i + 0.5) / (SIZE * 8)])
        np.testing.assert_allclose(out["vanishing_point"], expected, atol=1 / (SIZE * 8))
        np.testing.assert_allclose(out["room_layout"][:2], out["vanishing_point"])
        # And a far point straight down the room projects there too.
        xy, z = scene.project(np.array([[0.3, -0.2, 1e7]]))
        np.testing.assert_allclose(xy[0], out["vanishing_point"], atol=1e-5)
        assert z[0] > 0


def test_room_corner_lines_converge_to_the_vanishing_point(scenes):
    scene, out = scenes[0]
    # The floor/left-wall seam runs along +z: points on it project on a line through the vp.
    seam = np.array([[scene.room.lo[0], scene.room.lo[1], z] for z in (2.0, 4.0, 1e6)])
    xy, _ = scene.project(seam)
    (x0, y0), (x1, y1), (x2, y2) = xy
    assert abs((x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)) < 1e-6
    np.testing.assert_allclose(xy[2], out["vanishing_point"], atol=1e-5)


def test_rgb_is_albedo_times_reshading_on_plain_objects(scenes):
    checked = 0
    for scene, out in scenes:
        if scene.domain != "train":
            continue  # white light only: then rgb = colour × reshading exactly
        rgb, shading = out["rgb"].astype(np.float64), out["reshading"][..., 0].astype(np.float64)
        for k, obj in enumerate(scene.objects):
            mask = (out["instance"] == N_ROOM + k) & (shading < 1) & (rgb.max(-1) < 1)
            if obj.material.pattern != "plain" or mask.sum() < 5:
                continue
            np.testing.assert_allclose(rgb[mask], shading[mask][:, None] * obj.material.colour, atol=2e-6)
            checked += 1
    assert checked > 0


def test_shadows_darken_the_floor_behind_objects():
    # Somewhere on the floor reshading falls to the ambient level: a cast shadow (or facing away).
    shadowed = 0
    for i in range(8):
        scene = sample_scene(scene_rng(7, i))
        out = render(scene)
        floor = out["instance"] == ROOM_SURFACES.index("floor")
        shadowed += np.sum(np.isclose(out["reshading"][..., 0][floor], scene.ambient, atol=1e-6))
    assert shadowed > 0


def test_keypoints3d_peak_at_visible_box_corners(scenes):
    hits = 0
    for scene, out in scenes:
        kp = out["keypoints3d"][..., 0]
        for obj in scene.objects:
            if obj.kind != "box":
                continue
            xy, z = scene.project(obj.keypoints())
            for (x, y), depth in zip(xy, z):
                i, j = math.floor(y * SIZE), math.floor(x * SIZE)
                if 0 <= i < SIZE and 0 <= j < SIZE and out["depth_z"][i, j, 0] * MAX_DEPTH >= depth - 0.02:
                    assert kp[i, j] > 0.3  # a visible corner sits under a splat
                    hits += 1
    assert hits > 0


def test_shifted_domain_has_different_colour_statistics():
    train = render_batch(32, seed=11, domain="train")["rgb"]
    shifted = render_batch(32, seed=11, domain="shifted")["rgb"]
    mean_t, mean_s = train.mean((0, 1, 2)), shifted.mean((0, 1, 2))
    assert np.abs(mean_t - mean_s).max() > 0.05
    # Warm light: blue drops relative to red.
    assert mean_s[2] / mean_s[0] < mean_t[2] / mean_t[0] - 0.1
    # More saturated colours: larger spread between channels.
    assert np.ptp(shifted, axis=-1).mean() > np.ptp(train, axis=-1).mean()


def test_objects_domain_has_more_smaller_objects():
    train = render_batch(16, seed=2, domain="train")
    crowded = render_batch(16, seed=2, domain="objects")
    assert crowded["object_count"].mean() > train["object_count"].mean()


def test_unknown_domain_is_rejected():
    with pytest.raises(ValueError, match="unknown domain"):
        sample_scene(np.random.default_rng(0), "nope")


def test_domains_outside_the_label_ranges_are_rejected():
    with pytest.raises(ValueError, match="n_objects"):
        Domain("crowded", n_objects=(2, MAX_OBJECTS + 1))
    custom = Domain("custom", n_objects=(1, 1), object_weights=(0.0, 1.0, 0.0, 0.0))
    scene = sample_scene(np.random.default_rng(0), custom)
    assert [obj.kind for obj in scene.objects] == ["box"]
