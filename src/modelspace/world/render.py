"""A vectorised numpy ray caster for the miniature Taskonomy, and the labels of its 20 tasks.

``render(scene)`` casts one ray per pixel into an analytic scene (see `modelspace.world.scene`),
shades it (Lambert, one point light with cast shadows, ambient) and derives every task label from
the same hit buffers, so labels agree with each other and with the image exactly.
``render_batch(n, seed)`` renders scenes 0..n-1 of a seed; scene i depends only on (seed, i).

Conventions:

* Units: metres. World frame: x right, y up, z forward; camera centre at the origin.
* Camera frame: x right, y up, z forward (the optical axis); the camera is the world frame turned
  by ``scene.yaw`` about y, then ``scene.pitch`` about x (`Scene.rotation`: camera -> world).
* Pixels: row i (top to bottom), column j (left to right) of an S×S image. With
  ``T = tan(fov / 2)``, pixel (i, j) looks along camera direction
  ``(u, v, 1)``, ``u = (2 (j + 0.5) / S - 1) T``, ``v = -(2 (i + 0.5) / S - 1) T``;
  so the point at z-buffer depth z is ``(u z, v z, z)`` in the camera frame.
* Normalised image coordinates (vanishing point, projections): ``x = (j + 0.5) / S``,
  ``y = (i + 0.5) / S`` at pixel centres; (0, 0) is the top-left image corner, (1, 1) the
  bottom-right.
* Depths: metres / `MAX_DEPTH` (12 m), in [0, 1]. Normals: camera frame, unit, facing the camera,
  stored as (n + 1) / 2. Curvature: mean curvature / `CURVATURE_SCALE` (plane 0, sphere 1/r,
  cylinder side 1/(2r), cone side cos(α)/(2ρ)), clipped to [0, 1].
* Shading: ``reshading = ambient + I · max(0, n·l) · visible / (1 + LIGHT_FALLOFF · d²)``;
  ``rgb = albedo · (ambient · ambient_colour + I · ... · light_colour)``, both clipped to [0, 1].
* Output dtypes: dense regression float32 H×W×C in [0, 1]; dense classification int64 H×W;
  image classification int64 scalars; image regression float32 vectors. See `TASKS`.

Run ``python -m modelspace.world.render --bench`` to time the renderer.
"""

from __future__ import annotations

import argparse
import math
import time
from functools import lru_cache

import numpy as np

from .labels import (
    CURVATURE_SCALE,
    IMAGE_TARGETS,
    LAYOUT_ANGLE,
    SMOOTHED,
    TASKS,
    centre_patch,
    edges2d,
    keypoints2d,
    normal_bin,
    occlusion_edges,
    relabel_by_appearance,
    smooth,
    splat,
)
from .scene import (
    FLOOR,
    MAX_DEPTH,
    N_ROOM_SURFACES,
    OBJECT_TYPES,
    SEMANTIC_CLASSES,
    Box,
    Domain,
    Scene,
    Sphere,
    sample_scene,
)

LIGHT_FALLOFF = 0.01  # 1 / (1 + k d²): a light 10 m away gives half its close-range intensity
SHADOW_OFFSET = 1e-4  # shadow rays start this far off the surface so they do not hit it
AUX_KEYS = ("rgb", "instance")
"""Keys `render` returns besides `TASKS`: the image and the raw instance map (room surface index
0..5 as in `ROOM_SURFACES`, object k as ``N_ROOM_SURFACES + k``)."""
_ROOM_CLASS = np.array([SEMANTIC_CLASSES.index(c) for c in ("floor", "ceiling", "wall", "wall", "wall", "wall")])


@lru_cache(maxsize=8)
def camera_rays(size: int, fov_deg: float = 60.0) -> np.ndarray:
    """Unit ray directions in the camera frame, one per pixel (cached, read-only).

    Parameters
    ----------
    size : int
        The image's side S in pixels.
    fov_deg : float, default 60.0
        The field of view across the image, in degrees.

    Returns
    -------
    np.ndarray
        (S², 3) float64, row-major over pixels (the module's pixel convention).
    """
    t = math.tan(math.radians(fov_deg) / 2)
    centres = (2 * (np.arange(size) + 0.5) / size - 1) * t
    u, v = np.meshgrid(centres, -centres)  # v: image rows go down, camera y goes up
    d = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d.flags.writeable = False
    return d


class _Hits:
    """Per-pixel results of the primary rays (flat arrays over the size² pixels)."""

    def __init__(self, n: int):
        self.t = np.empty(n)
        self.instance = np.empty(n, dtype=np.int64)
        self.normal = np.empty((n, 3))
        self.face = np.empty(n, dtype=np.int64)
        self.curvature = np.empty(n)
        self.albedo = np.empty((n, 3))
        self.semantic = np.empty(n, dtype=np.int64)


def _trace(scene: Scene, d: np.ndarray) -> _Hits:
    """Cast primary rays ``d`` (world, unit) from the origin; fill the surface buffers."""
    origin = np.zeros(3)
    hits = _Hits(len(d))
    hits.t, hits.instance = scene.room.intersect(origin, d)
    for k, obj in enumerate(scene.objects):
        tk = obj.intersect(origin, d)
        nearer = tk < hits.t
        hits.t = np.where(nearer, tk, hits.t)
        hits.instance = np.where(nearer, N_ROOM_SURFACES + k, hits.instance)
    points = hits.t[:, None] * d
    materials = scene.room.materials()
    for inst in np.unique(hits.instance):
        m = hits.instance == inst
        if inst < N_ROOM_SURFACES:
            surf, material = scene.room.surface(points[m], inst), materials[inst]
            hits.semantic[m] = _ROOM_CLASS[inst]
        else:
            obj = scene.objects[inst - N_ROOM_SURFACES]
            surf, material = obj.surface(points[m]), obj.material
            hits.semantic[m] = SEMANTIC_CLASSES.index(obj.kind)
        hits.normal[m], hits.face[m], hits.curvature[m] = surf.normal, surf.face, surf.curvature
        hits.albedo[m] = material.albedo(surf.uv)
    return hits


def _light(scene: Scene, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Direct light factor per point: lambert × visibility × falloff (without the intensity)."""
    to_light = np.asarray(scene.light_position) - points
    dist = np.linalg.norm(to_light, axis=1)
    direction = to_light / dist[:, None]
    lambert = np.maximum((normals * direction).sum(1), 0.0)
    lit = np.flatnonzero(lambert > 0)
    # Shadow rays: only objects can block, since the light is inside the (convex) room.
    origins = points[lit] + SHADOW_OFFSET * normals[lit]
    blocked = np.zeros(len(lit), dtype=bool)
    for obj in scene.objects:
        blocked |= obj.intersect(origins, direction[lit]) < dist[lit]
    visible = np.zeros(len(points))
    visible[lit[~blocked]] = 1.0
    return lambert * visible / (1 + LIGHT_FALLOFF * dist**2)


def _keypoints3d(scene: Scene, depth_z: np.ndarray, size: int) -> np.ndarray:
    """Visible 3D keypoints splatted as Gaussians (σ = size / 64 pixels); H×W."""
    eye = np.zeros(3)
    parts = [scene.room.keypoints()]
    for obj in scene.objects:
        parts.append(obj.keypoints() if isinstance(obj, (Sphere, Box)) else obj.keypoints(eye))
    xy, z = scene.project(np.concatenate(parts))
    pix = xy * size - 0.5  # normalised coords -> (column, row) in pixel units
    ij = np.round(pix).astype(np.int64)
    inside = (z > 0.1) & np.all((ij >= 0) & (ij < size), axis=1)
    buffer = depth_z[ij[inside, 1], ij[inside, 0]]
    visible = np.zeros(len(z), dtype=bool)
    # Visible unless something clearly nearer covers its pixel (a silhouette corner may show background).
    visible[inside] = z[inside] <= buffer * 1.03 + 0.02
    return splat(pix[visible], size, sigma=size / 64)


def _edges3d(scene: Scene, t: np.ndarray, points: np.ndarray, d: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Occlusion edges (H×W) from ray distances ``t``, hit points and world rays ``d`` (flat)."""
    size = t.shape[0]
    solid = np.maximum(instance - N_ROOM_SURFACES + 1, 0)  # room 0, object k -> k + 1
    # Where an object rests on the floor, depth is continuous (a crease, not an occlusion): object
    # pixels within ~1.5 pixel footprints of the floor, next to floor pixels at about the same
    # distance (the floor's depth spread over one pixel grows as 1 / sin(grazing angle)).
    footprint = t * 2 * scene.tan_half_fov / size  # metres per pixel across the ray
    height = (points[:, 1] - scene.room.lo[1]).reshape(t.shape)
    near_floor = (solid > 0) & (height < 1.5 * footprint)
    grazing = np.maximum(np.abs(d[:, 1]), 1e-3).reshape(t.shape)  # sin of the ray-floor angle
    floor_slack = np.where(instance == FLOOR, 1.25 * footprint / grazing, 0.0)
    return occlusion_edges(t, solid, near_floor, floor_slack)


def _largest_object(instance: np.ndarray, scene: Scene) -> tuple[int, int]:
    """(object_count, object_class) of the visible objects; class -1 when none is visible."""
    counts = np.bincount(instance.ravel(), minlength=N_ROOM_SURFACES + len(scene.objects))
    pixels = counts[N_ROOM_SURFACES:]
    if not pixels.any():
        return 0, -1
    return int((pixels > 0).sum()), OBJECT_TYPES.index(scene.objects[int(np.argmax(pixels))].kind)


def room_layout(scene: Scene) -> np.ndarray:
    """The `room_layout` label: where the room is, seen from the camera.

    Parameters
    ----------
    scene : Scene
        The scene.

    Returns
    -------
    np.ndarray
        (9,) float32 in [0, 1]: vanishing point x, y; yaw, pitch (±30° -> 0..1); distances from the
        camera to the left wall, right wall, floor, ceiling and back wall / `MAX_DEPTH`.
    """
    vp = scene.vanishing_point()
    (x0, y0, _), (x1, y1, z1) = scene.room.lo, scene.room.hi
    angles = [scene.yaw / (2 * LAYOUT_ANGLE) + 0.5, scene.pitch / (2 * LAYOUT_ANGLE) + 0.5]
    distances = np.array([-x0, x1, -y0, y1, z1]) / MAX_DEPTH
    return np.clip(np.concatenate([vp, angles, distances]), 0.0, 1.0).astype(np.float32)


def render(scene: Scene, size: int = 64, smoothed: bool = True) -> dict[str, np.ndarray]:
    """Render ``scene`` at size×size: "rgb", "instance" and one label per `TASKS` entry.

    With ``smoothed=False`` the `SMOOTHED` labels come out as computed (one-pixel edges, exact
    curvature), before the smoothing that defines them as tasks.

    The image-target tasks ("autoencoding", "denoising", "colorization") are the "rgb" array itself,
    not copies: do not modify it in place.

    Parameters
    ----------
    scene : Scene
        The scene (`scene.sample_scene`).
    size : int, default 64
        The image's side in pixels.
    smoothed : bool, default True
        Smooth the `SMOOTHED` labels (σ scaled with `size`), as the tasks define them.

    Returns
    -------
    dict of str to np.ndarray
        ``"rgb"`` (H, W, 3) float32, ``"instance"`` (H, W) int64 (`AUX_KEYS`), and each task's label in
        the dtype and layout of the module's conventions.
    """
    rot = scene.rotation
    d_cam = camera_rays(size, scene.fov_deg)
    d = d_cam @ rot.T  # camera -> world directions
    hits = _trace(scene, d)
    points = hits.t[:, None] * d
    direct = _light(scene, points, hits.normal)

    shading = scene.ambient + scene.light_intensity * direct
    ambient_rgb = scene.ambient * np.asarray(scene.ambient_colour)
    light_rgb = ambient_rgb + scene.light_intensity * np.outer(direct, scene.light_colour)
    shape2 = (size, size)
    rgb = np.clip(hits.albedo * light_rgb, 0.0, 1.0).reshape(size, size, 3).astype(np.float32)

    normals_cam = hits.normal @ rot  # world -> camera
    depth_z = (hits.t * d_cam[:, 2]).reshape(shape2)
    t = hits.t.reshape(shape2)
    instance = hits.instance.reshape(shape2)
    geometry_key = (hits.instance * 16 + hits.face) * 6 + normal_bin(normals_cam)
    count, largest = _largest_object(instance, scene)

    def dense(a: np.ndarray) -> np.ndarray:
        return np.clip(a, 0.0, 1.0).reshape(size, size, -1).astype(np.float32)

    out = {
        "rgb": rgb,
        "instance": instance,
        "depth_z": dense(depth_z / MAX_DEPTH),
        "depth_euclidean": dense(t / MAX_DEPTH),
        "normals": dense((normals_cam + 1) / 2),
        "reshading": dense(shading),
        "edges2d": dense(edges2d(rgb)),
        "edges3d": dense(_edges3d(scene, t, points, d, instance)),
        "curvature": dense(hits.curvature / CURVATURE_SCALE),
        "keypoints2d": dense(keypoints2d(rgb)),
        "keypoints3d": dense(_keypoints3d(scene, depth_z, size)),
        "segment_semantic": hits.semantic.reshape(shape2),
        "segment25d": relabel_by_appearance(geometry_key.reshape(shape2)),
        "segment2d": relabel_by_appearance(instance),
        "object_class": np.asarray(largest, dtype=np.int64),
        "object_count": np.asarray(count, dtype=np.int64),
        "room_layout": room_layout(scene),
        "vanishing_point": scene.vanishing_point().astype(np.float32),
        "inpainting": centre_patch(rgb),
    }
    if smoothed:
        for task, sigma in SMOOTHED.items():
            out[task] = smooth(out[task], sigma * size / 64).astype(np.float32)
    out.update({task: rgb for task in IMAGE_TARGETS})
    return out


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of scene ``index`` of ``seed`` (independent of any batch it is part of).

    Parameters
    ----------
    seed : int
        The data set's seed.
    index : int
        The scene's index.

    Returns
    -------
    np.random.Generator
        Seeded with ``[seed, index]``.
    """
    return np.random.default_rng([seed, index])


def render_index(seed: int, index: int, domain: str | Domain = "train", size: int = 64) -> dict[str, np.ndarray]:
    """Render scene ``index`` of ``seed``.

    A scene in which no object shows (rare: sub-pixel objects) is redrawn from the same stream, so
    every rendered scene has ``object_class >= 0`` (up to 20 draws).

    Parameters
    ----------
    seed : int
        The data set's seed.
    index : int
        The scene's index.
    domain : str or Domain, default "train"
        The distribution the scene is drawn from (a name of `scene.DOMAINS`, or a `Domain`).
    size : int, default 64
        The image's side in pixels.

    Returns
    -------
    dict of str to np.ndarray
        The image and labels, as `render` gives them.
    """
    rng = scene_rng(seed, index)
    for _ in range(20):
        out = render(sample_scene(rng, domain), size)
        if out["object_count"] > 0:
            break
    return out


def render_batch(
    n: int, seed: int, domain: str | Domain = "train", size: int = 64, start: int = 0
) -> dict[str, np.ndarray]:
    """Render scenes ``start .. start + n - 1`` of ``seed`` and stack every output along axis 0.

    "rgb" is N×H×W×3 float32; labels are stacked likewise (image labels become (N,) or (N, C)).
    Scene i is the same whatever ``n`` and ``start`` are, so batches can be made in parallel.
    The image-target tasks share the "rgb" array.

    Parameters
    ----------
    n : int
        The number of scenes.
    seed : int
        The data set's seed.
    domain : str or Domain, default "train"
        The distribution the scenes are drawn from.
    size : int, default 64
        The images' side in pixels.
    start : int, default 0
        The first scene's index.

    Returns
    -------
    dict of str to np.ndarray
        Key -> the N scenes' arrays stacked along axis 0.
    """
    outs = [render_index(seed, i, domain, size) for i in range(start, start + n)]
    batch = {key: np.stack([o[key] for o in outs]) for key in outs[0] if key not in IMAGE_TARGETS}
    batch.update({task: batch["rgb"] for task in IMAGE_TARGETS})
    return batch


def _bench(n: int, size: int, domain: str) -> None:
    render_batch(2, seed=0, domain=domain, size=size)  # warm-up (ray cache, imports)
    start = time.perf_counter()
    render_batch(n, seed=1, domain=domain, size=size)
    elapsed = time.perf_counter() - start
    print(f"rendered {n} {domain!r} scenes at {size}x{size} in {elapsed:.2f} s: {n / elapsed:.1f} scenes/s")


def main(argv: list[str] | None = None) -> None:
    """The command line: ``python -m modelspace.world.render [--bench] [--save PNG] ...``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; by default ``sys.argv[1:]``. With neither ``--bench`` nor ``--save`` the help is printed.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", action="store_true", help="time the renderer")
    parser.add_argument("-n", type=int, default=200, help="scenes to render for --bench")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--domain", default="train")
    parser.add_argument("--save", metavar="PNG", help="save a contact sheet of a few scenes and labels")
    args = parser.parse_args(argv)
    if args.bench:
        _bench(args.n, args.size, args.domain)
    if args.save:
        _contact_sheet(args.save, args.size, args.domain)
    if not (args.bench or args.save):
        parser.print_help()


def _contact_sheet(path: str, size: int, domain: str, n: int = 4) -> None:
    """A PNG with one row per scene: the image then each dense label (for eyeballing)."""
    from PIL import Image

    batch = render_batch(n, seed=0, domain=domain, size=size)
    dense = [k for k, (kind, _, _) in TASKS.items() if kind.startswith("dense") and k not in IMAGE_TARGETS]
    dense.remove("inpainting")
    rows = []
    for i in range(n):
        tiles = [batch["rgb"][i]]
        for key in dense:
            a = batch[key][i].astype(np.float32)
            if key.startswith("segment"):
                a = (a[..., None] * np.array([0.37, 0.61, 0.83])) % 1.0  # ids -> distinct colours
            tiles.append(np.broadcast_to(a if a.shape[-1] == 3 else a[..., :1], (size, size, 3)))
        rows.append(np.concatenate(tiles, axis=1))
    sheet = (np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)
    Image.fromarray(sheet).save(path)
    print(f"saved {path} (columns: rgb, {', '.join(dense)})")


if __name__ == "__main__":
    main()
