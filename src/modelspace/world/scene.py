"""Scene description for the miniature Taskonomy: domains, materials, analytic shapes, sampling.

A scene is a box-shaped room seen from a pinhole camera at the world origin, holding a few convex
objects that rest on the floor, lit by one point light plus ambient light. Everything is analytic, so
every label (depth, normals, curvature, segments, keypoints, ...) is exact. The conventions shared
with the renderer are documented in `modelspace.world.render`.

World frame (metres): x right, y up, z forward. The camera sits at the origin; its own frame is the
world frame turned by ``yaw`` about y (positive: looks right) and then by ``pitch`` about x
(positive: looks up). The room is the axis-aligned box ``room.lo``..``room.hi``; it contains the
camera, so the room's depth direction is world +z and its vanishing point is the image of that
direction.

Shapes expose ``intersect(o, d) -> t`` (distance along unit rays, ``inf`` on a miss; ``o`` is one
point (3,) or one per ray (N, 3)) and ``surface(p) -> Surface`` (outward normal, face id, texture
coordinates and mean curvature at points ``p`` on the shape). Objects are convex, so the only
occlusion boundaries of a scene are object silhouettes.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

OBJECT_TYPES = ("sphere", "box", "cylinder", "cone")
"""Object kinds; `object_class` labels are indices into this tuple."""

SEMANTIC_CLASSES = ("floor", "ceiling", "wall") + OBJECT_TYPES
"""`segment_semantic` labels are indices into this tuple."""
N_CLASSES = len(SEMANTIC_CLASSES)
FIRST_OBJECT_CLASS = SEMANTIC_CLASSES.index(OBJECT_TYPES[0])

ROOM_SURFACES = ("floor", "ceiling", "back", "left", "right", "front")
"""Room surfaces; they are instances 0..5, object k is instance ``N_ROOM_SURFACES + k``."""
N_ROOM_SURFACES = len(ROOM_SURFACES)
FLOOR = ROOM_SURFACES.index("floor")

MAX_OBJECTS = 8
"""No domain places more objects than this; `object_count` has ``MAX_OBJECTS + 1`` classes."""
MAX_DEPTH = 12.0
"""Depth labels are metres divided by this (no room is deeper than ~10.7 m along any ray)."""
PATTERNS = ("checker", "stripes", "noise", "plain")
EPS = 1e-6  # minimum ray distance: a ray never hits the surface it leaves


class Surface(NamedTuple):
    """Surface attributes at M hit points of one shape."""

    normal: np.ndarray  # (M, 3) outward unit normal, world frame
    face: np.ndarray  # (M,) int: which planar face / smooth patch of the shape
    uv: np.ndarray  # (M, 2) texture coordinates in metres
    curvature: np.ndarray  # (M,) mean curvature in 1/m (0 on planes)


# --------------------------------------------------------------------------------------------
# Domains


@dataclass(frozen=True)
class Domain:
    """The distribution scenes are drawn from. Ranges are (low, high), sampled uniformly.

    Parameters
    ----------
    name : str
        The domain's name, recorded in each `Scene`.
    n_objects : tuple of int, default (2, 6)
        Objects per scene, both ends included, within 1..`MAX_OBJECTS`.
    object_size : tuple of float, default (0.25, 0.6)
        An object's radius or half-width, metres.
    object_weights : tuple of float, default (1.0, 1.0, 1.0, 0.6)
        Relative odds of each of `OBJECT_TYPES`.
    light_intensity : tuple of float, default (0.7, 1.0)
        The point light's intensity.
    ambient : tuple of float, default (0.2, 0.35)
        The ambient light's intensity.
    light_colour : tuple of float, default (1.0, 1.0, 1.0)
        The point light's RGB colour.
    ambient_colour : tuple of float, default (1.0, 1.0, 1.0)
        The ambient light's RGB colour.
    saturation : tuple of float, default (0.15, 0.6)
        Object colours' saturation (room colours are paler).
    value : tuple of float, default (0.45, 0.95)
        Colours' value (HSV).
    texture_weights : tuple of float, default (0.25, 0.2, 0.25, 0.3)
        Relative odds of each of `PATTERNS`.
    texture_period : tuple of float, default (0.2, 0.6)
        A pattern's period, metres.
    texture_contrast : tuple of float, default (0.2, 0.6)
        How much darker a pattern's second colour is (a fraction of the value).
    yaw_deg : float, default 12.0
        The camera's yaw is uniform in ±yaw_deg degrees.
    pitch_deg : tuple of float, default (-15.0, 5.0)
        The camera's pitch, degrees.

    Raises
    ------
    ValueError
        `n_objects` outside 1..`MAX_OBJECTS` (or low above high), or not one weight per object type
        and per texture pattern.
    """

    name: str
    n_objects: tuple[int, int] = (2, 6)  # inclusive
    object_size: tuple[float, float] = (0.25, 0.6)  # radius / half-width, metres
    object_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 0.6)  # relative odds of OBJECT_TYPES
    light_intensity: tuple[float, float] = (0.7, 1.0)
    ambient: tuple[float, float] = (0.2, 0.35)
    light_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: tuple[float, float] = (0.15, 0.6)  # object colours (room colours are paler)
    value: tuple[float, float] = (0.45, 0.95)
    texture_weights: tuple[float, ...] = (0.25, 0.2, 0.25, 0.3)  # relative odds of PATTERNS
    texture_period: tuple[float, float] = (0.2, 0.6)  # metres
    texture_contrast: tuple[float, float] = (0.2, 0.6)
    yaw_deg: float = 12.0  # camera yaw is uniform in ±yaw_deg
    pitch_deg: tuple[float, float] = (-15.0, 5.0)

    def __post_init__(self):
        if not 1 <= self.n_objects[0] <= self.n_objects[1] <= MAX_OBJECTS:
            raise ValueError(f"Domain {self.name!r}: n_objects {self.n_objects} must lie within 1..{MAX_OBJECTS}")
        if len(self.object_weights) != len(OBJECT_TYPES) or len(self.texture_weights) != len(PATTERNS):
            raise ValueError(f"Domain {self.name!r}: one weight per object type and per texture pattern")


DOMAINS: dict[str, Domain] = {
    "train": Domain("train"),
    # Warm, dim light, saturated colours, mostly fine stripes: same geometry, new appearance.
    "shifted": Domain(
        "shifted",
        light_intensity=(0.55, 0.8),
        ambient=(0.12, 0.22),
        light_colour=(1.0, 0.75, 0.45),
        ambient_colour=(1.0, 0.8, 0.6),
        saturation=(0.7, 1.0),
        value=(0.55, 1.0),
        texture_weights=(0.1, 0.6, 0.1, 0.2),
        texture_period=(0.15, 0.4),
        texture_contrast=(0.4, 0.8),
    ),
    # Same appearance as "train", but crowded with small objects.
    "objects": Domain("objects", n_objects=(5, 8), object_size=(0.15, 0.35)),
}


def get_domain(domain: str | Domain) -> Domain:
    """A `Domain` from itself or from its name in `DOMAINS`.

    Parameters
    ----------
    domain : str or Domain
        A key of `DOMAINS`, or a domain (returned as it is).

    Returns
    -------
    Domain
        The domain.

    Raises
    ------
    ValueError
        An unknown name.
    """
    if isinstance(domain, Domain):
        return domain
    try:
        return DOMAINS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; known: {sorted(DOMAINS)}") from None


# --------------------------------------------------------------------------------------------
# Materials


@dataclass(frozen=True)
class Material:
    """Two colours blended by a procedural pattern evaluated in surface coordinates (metres).

    Parameters
    ----------
    colour : tuple of float
        The first RGB colour, in [0, 1].
    colour2 : tuple of float
        The second RGB colour.
    pattern : str, default "plain"
        One of `PATTERNS`: ``"checker"``, ``"stripes"``, ``"noise"`` or ``"plain"`` (the first colour only).
    period : float, default 0.4
        The pattern's period, metres.
    angle : float, default 0.0
        The pattern's rotation in the surface, radians.
    waves : tuple of tuple of float, default ()
        For ``"noise"``: (fu, fv, phase) of each summed sinusoid.
    """

    colour: tuple[float, float, float]
    colour2: tuple[float, float, float]
    pattern: str = "plain"
    period: float = 0.4
    angle: float = 0.0  # pattern rotation in the surface, radians
    waves: tuple[tuple[float, float, float], ...] = ()  # "noise": (fu, fv, phase) per sinusoid

    def albedo(self, uv: np.ndarray) -> np.ndarray:
        """The albedo at surface coordinates.

        Parameters
        ----------
        uv : np.ndarray
            (M, 2) surface coordinates, metres.

        Returns
        -------
        np.ndarray
            (M, 3) albedo in [0, 1].
        """
        c1, c2 = np.asarray(self.colour), np.asarray(self.colour2)
        return c1 + (c2 - c1) * self._mix(uv)[:, None]

    def _mix(self, uv: np.ndarray) -> np.ndarray:
        """Pattern value in [0, 1] (0 = colour, 1 = colour2)."""
        ca, sa = math.cos(self.angle), math.sin(self.angle)
        u = (uv[:, 0] * ca + uv[:, 1] * sa) / self.period
        v = (-uv[:, 0] * sa + uv[:, 1] * ca) / self.period
        if self.pattern == "checker":
            return (np.floor(u) + np.floor(v)) % 2
        if self.pattern == "stripes":
            return np.floor(2 * u) % 2
        if self.pattern == "noise":
            # A few random plane waves summed: smooth, band-limited, cheap to evaluate anywhere.
            s = sum(np.sin(2 * np.pi * (fu * u + fv * v) + ph) for fu, fv, ph in self.waves)
            return 0.5 + 0.5 * np.tanh(s / math.sqrt(len(self.waves) / 2))
        return np.zeros(len(uv))


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def sample_material(rng: np.random.Generator, domain: Domain, paleness: float = 0.0) -> Material:
    """A random material drawn from a domain's colours and textures.

    Parameters
    ----------
    rng : np.random.Generator
        The random stream.
    domain : Domain
        The distribution of colours and textures.
    paleness : float, default 0.0
        In [0, 1): scales the saturation down by ``1 - paleness`` (room surfaces are paler).

    Returns
    -------
    Material
        The material.
    """
    hue = rng.uniform()
    sat = rng.uniform(*domain.saturation) * (1 - paleness)
    val = rng.uniform(*domain.value)
    contrast = rng.uniform(*domain.texture_contrast)
    colour = _hsv(hue, sat, val)
    colour2 = _hsv(hue + rng.uniform(-0.15, 0.15), sat, val * (1 - contrast))
    weights = np.asarray(domain.texture_weights, float)
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=weights / weights.sum())]
    waves = tuple(
        (float(fu), float(fv), float(ph))
        for fu, fv, ph in zip(rng.normal(size=4), rng.normal(size=4), rng.uniform(0, 2 * np.pi, 4))
    )
    return Material(
        colour=colour,
        colour2=colour2,
        pattern=pattern,
        period=float(rng.uniform(*domain.texture_period)),
        angle=float(rng.uniform(0, np.pi)),
        waves=waves,
    )


# --------------------------------------------------------------------------------------------
# Geometry helpers


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _safe(d: np.ndarray) -> np.ndarray:
    """Direction components bounded away from 0, so that slab divisions never give nan."""
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def yaw_matrix(angle: float) -> np.ndarray:
    """Rotation about +y taking +z towards +x by ``angle`` radians (column vectors).

    Parameters
    ----------
    angle : float
        Radians.

    Returns
    -------
    np.ndarray
        (3, 3) rotation matrix.
    """
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def pitch_matrix(angle: float) -> np.ndarray:
    """Rotation about +x taking +z towards +y by ``angle`` radians (column vectors).

    Parameters
    ----------
    angle : float
        Radians.

    Returns
    -------
    np.ndarray
        (3, 3) rotation matrix.
    """
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def _nearest_root(a, b, c, valid) -> np.ndarray:
    """Smallest t > EPS solving a t² + b t + c = 0 with ``valid(t)``; inf if none."""
    disc = b * b - 4 * a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    a = np.where(np.abs(a) < 1e-12, 1e-12, a)
    t = np.full(np.shape(disc), np.inf)
    for root in ((-b + sq) / (2 * a), (-b - sq) / (2 * a)):  # keep the smaller valid root
        ok = (disc >= 0) & (root > EPS) & valid(root) & (root < t)
        t = np.where(ok, root, t)
    return t


# --------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class Sphere:
    """A sphere of ``radius`` centred at ``centre``.

    Parameters
    ----------
    centre : tuple of float
        World coordinates, metres.
    radius : float
        Metres.
    material : Material
        Its surface.
    """

    centre: tuple[float, float, float]
    radius: float
    material: Material
    kind: ClassVar[str] = "sphere"

    @property
    def footprint(self) -> float:
        """Radius of the shape's outline on the floor (for placing shapes apart)."""
        return self.radius

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance along each ray to its first hit on the shape.

        Parameters
        ----------
        o : np.ndarray
            Ray origins: one point (3,) or one per ray (N, 3), world frame.
        d : np.ndarray
            (N, 3) unit ray directions, world frame.

        Returns
        -------
        np.ndarray
            (N,) distances greater than `EPS`; ``inf`` on a miss.
        """
        oc = o - np.asarray(self.centre)
        b = _dot(oc, d)
        c = _dot(oc, oc) - self.radius**2
        disc = b * b - c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t = np.where(-b - sq > EPS, -b - sq, -b + sq)
        return np.where((disc >= 0) & (t > EPS), t, np.inf)

    def surface(self, p: np.ndarray) -> Surface:
        """Surface attributes at points on the shape.

        Parameters
        ----------
        p : np.ndarray
            (M, 3) points on the shape, world frame (hit points of `intersect`).

        Returns
        -------
        Surface
            Outward normals, face ids, texture coordinates and mean curvature at the points.
        """
        n = (p - np.asarray(self.centre)) / self.radius
        uv = self.radius * np.stack([np.arctan2(n[:, 0], n[:, 2]), np.arcsin(np.clip(n[:, 1], -1, 1))], 1)
        return Surface(n, np.zeros(len(p), int), uv, np.full(len(p), 1.0 / self.radius))

    def keypoints(self) -> np.ndarray:
        """Salient 3D points: the top of the sphere.

        Returns
        -------
        np.ndarray
            (1, 3) world coordinates.
        """
        cx, cy, cz = self.centre
        return np.array([[cx, cy + self.radius, cz]])


@dataclass(frozen=True)
class Box:
    """A box of half extents ``half`` centred at ``centre``, turned by ``yaw`` about the vertical.

    Parameters
    ----------
    centre : tuple of float
        World coordinates, metres.
    half : tuple of float
        Half extents along the box's own x, y and z, metres.
    yaw : float
        Turn about the vertical, radians.
    material : Material
        Its surface.
    """

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float
    material: Material
    kind: ClassVar[str] = "box"

    @property
    def footprint(self) -> float:
        """Radius of the shape's outline on the floor (for placing shapes apart)."""
        return math.hypot(self.half[0], self.half[2])

    @property
    def _rot(self) -> np.ndarray:
        return yaw_matrix(self.yaw)  # local -> world; world -> local is v @ _rot

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance along each ray to its first hit on the shape.

        Parameters
        ----------
        o : np.ndarray
            Ray origins: one point (3,) or one per ray (N, 3), world frame.
        d : np.ndarray
            (N, 3) unit ray directions, world frame.

        Returns
        -------
        np.ndarray
            (N,) distances greater than `EPS`; ``inf`` on a miss.
        """
        rot, h = self._rot, np.asarray(self.half)
        lo = (o - np.asarray(self.centre)) @ rot
        inv = 1.0 / _safe(d @ rot)
        t1, t2 = (-h - lo) * inv, (h - lo) * inv
        t_in = np.minimum(t1, t2).max(-1)
        t_out = np.maximum(t1, t2).min(-1)
        return np.where((t_out >= t_in) & (t_in > EPS), t_in, np.inf)

    def surface(self, p: np.ndarray) -> Surface:
        """Surface attributes at points on the shape.

        Parameters
        ----------
        p : np.ndarray
            (M, 3) points on the shape, world frame (hit points of `intersect`).

        Returns
        -------
        Surface
            Outward normals, face ids, texture coordinates and mean curvature at the points.
        """
        rot, h = self._rot, np.asarray(self.half)
        q = (p - np.asarray(self.centre)) @ rot
        axis = np.argmax(np.abs(q) / h, axis=1)  # the face is the slab the point is on
        sign = np.sign(np.take_along_axis(q, axis[:, None], 1))[:, 0]
        n_local = np.zeros_like(q)
        n_local[np.arange(len(q)), axis] = sign
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # the two in-face axes
        uv = np.take_along_axis(q, other, 1)
        face = 2 * axis + (sign > 0)
        return Surface(n_local @ rot.T, face, uv, np.zeros(len(p)))

    def keypoints(self) -> np.ndarray:
        """Salient 3D points: the corners.

        Returns
        -------
        np.ndarray
            (8, 3) world coordinates.
        """
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        return np.asarray(self.centre) + (signs * np.asarray(self.half)) @ self._rot.T


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder standing on ``base`` (centre of its bottom disc); the top disc is capped.

    Parameters
    ----------
    base : tuple of float
        World coordinates of the bottom disc's centre, metres.
    radius : float
        Metres.
    height : float
        Metres.
    material : Material
        Its surface.
    """

    base: tuple[float, float, float]
    radius: float
    height: float
    material: Material
    kind: ClassVar[str] = "cylinder"

    @property
    def footprint(self) -> float:
        """Radius of the shape's outline on the floor (for placing shapes apart)."""
        return self.radius

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance along each ray to its first hit on the shape.

        Parameters
        ----------
        o : np.ndarray
            Ray origins: one point (3,) or one per ray (N, 3), world frame.
        d : np.ndarray
            (N, 3) unit ray directions, world frame.

        Returns
        -------
        np.ndarray
            (N,) distances greater than `EPS`; ``inf`` on a miss.
        """
        bx, by, bz = self.base
        x0, y0, z0 = o[..., 0] - bx, o[..., 1] - by, o[..., 2] - bz
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]

        def on_side(t):
            y = y0 + t * dy
            return (y >= 0) & (y <= self.height)

        side = _nearest_root(dx * dx + dz * dz, 2 * (x0 * dx + z0 * dz), x0 * x0 + z0 * z0 - self.radius**2, on_side)
        t_cap = (self.height - y0) / _safe(dy)
        xc, zc = x0 + t_cap * dx, z0 + t_cap * dz
        cap = np.where((t_cap > EPS) & (xc * xc + zc * zc <= self.radius**2), t_cap, np.inf)
        # The bottom disc lies on the floor: no ray from inside the room reaches it first.
        return np.minimum(side, cap)

    def surface(self, p: np.ndarray) -> Surface:
        """Surface attributes at points on the shape.

        Parameters
        ----------
        p : np.ndarray
            (M, 3) points on the shape, world frame (hit points of `intersect`).

        Returns
        -------
        Surface
            Outward normals, face ids, texture coordinates and mean curvature at the points.
        """
        bx, by, bz = self.base
        x, y, z = p[:, 0] - bx, p[:, 1] - by, p[:, 2] - bz
        rho = np.hypot(x, z)
        on_cap = np.abs(y - self.height) < np.abs(rho - self.radius)
        side_n = np.stack([x / np.maximum(rho, 1e-12), np.zeros_like(x), z / np.maximum(rho, 1e-12)], 1)
        normal = np.where(on_cap[:, None], np.array([0.0, 1.0, 0.0]), side_n)
        uv = np.where(on_cap[:, None], np.stack([x, z], 1), np.stack([self.radius * np.arctan2(x, z), y], 1))
        curvature = np.where(on_cap, 0.0, 0.5 / self.radius)
        return Surface(normal, on_cap.astype(int), uv, curvature)

    def keypoints(self, eye: np.ndarray) -> np.ndarray:
        """Salient 3D points: the ends of the top and bottom rims as outlined from ``eye`` (the image's corners).

        Parameters
        ----------
        eye : np.ndarray
            (3,) the viewpoint, world coordinates.

        Returns
        -------
        np.ndarray
            (4, 3) world coordinates.
        """
        return _rim_points(self.base, self.radius, eye, (0.0, self.height))


@dataclass(frozen=True)
class Cone:
    """A vertical cone whose base disc (``radius``) rests on ``base``, apex ``height`` above it.

    Parameters
    ----------
    base : tuple of float
        World coordinates of the base disc's centre, metres.
    radius : float
        The base disc's radius, metres.
    height : float
        Metres.
    material : Material
        Its surface.
    """

    base: tuple[float, float, float]
    radius: float
    height: float
    material: Material
    kind: ClassVar[str] = "cone"

    @property
    def footprint(self) -> float:
        """Radius of the shape's outline on the floor (for placing shapes apart)."""
        return self.radius

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance along each ray to its first hit on the shape.

        Parameters
        ----------
        o : np.ndarray
            Ray origins: one point (3,) or one per ray (N, 3), world frame.
        d : np.ndarray
            (N, 3) unit ray directions, world frame.

        Returns
        -------
        np.ndarray
            (N,) distances greater than `EPS`; ``inf`` on a miss.
        """
        bx, by, bz = self.base
        k2 = (self.radius / self.height) ** 2
        # x² + z² = k² Y², Y = apex height - y: a double cone; keep the nappe 0 <= Y <= height.
        x0, z0, ya = o[..., 0] - bx, o[..., 2] - bz, by + self.height - o[..., 1]
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]

        def on_nappe(t):
            y = ya - t * dy
            return (y >= 0) & (y <= self.height)

        a = dx * dx + dz * dz - k2 * dy * dy
        b = 2 * (x0 * dx + z0 * dz + k2 * ya * dy)
        c = x0 * x0 + z0 * z0 - k2 * ya * ya
        return _nearest_root(a, b, c, on_nappe)

    def surface(self, p: np.ndarray) -> Surface:
        """Surface attributes at points on the shape.

        Parameters
        ----------
        p : np.ndarray
            (M, 3) points on the shape, world frame (hit points of `intersect`).

        Returns
        -------
        Surface
            Outward normals, face ids, texture coordinates and mean curvature at the points.
        """
        bx, by, bz = self.base
        k = self.radius / self.height
        x, z, y_down = p[:, 0] - bx, p[:, 2] - bz, by + self.height - p[:, 1]
        normal = _unit(np.stack([x, k * k * y_down, z], 1))
        rho = np.maximum(np.hypot(x, z), 1e-9)
        uv = np.stack([self.radius * np.arctan2(x, z), p[:, 1] - by], 1)
        # Surface of revolution: κ_parallel = (horizontal part of n) / ρ, κ_meridian = 0.
        curvature = 0.5 / (rho * math.sqrt(1 + k * k))
        return Surface(normal, np.zeros(len(p), int), uv, curvature)

    def keypoints(self, eye: np.ndarray) -> np.ndarray:
        """Salient 3D points: the apex and the two ends of the base rim as outlined from ``eye``.

        Parameters
        ----------
        eye : np.ndarray
            (3,) the viewpoint, world coordinates.

        Returns
        -------
        np.ndarray
            (3, 3) world coordinates.
        """
        bx, by, bz = self.base
        apex = np.array([[bx, by + self.height, bz]])
        return np.concatenate([apex, _rim_points(self.base, self.radius, eye, (0.0,))])


def _rim_points(base, radius: float, eye: np.ndarray, heights) -> np.ndarray:
    """Points of horizontal circles about ``base`` at the left/right extremes seen from ``eye``."""
    b = np.asarray(base, float)
    view = b[[0, 2]] - np.asarray(eye, float)[[0, 2]]
    side = np.array([-view[1], 0.0, view[0]]) / max(np.linalg.norm(view), 1e-9)
    return np.array([b + [0.0, h, 0.0] + s * radius * side for h in heights for s in (-1, 1)])


Shape = Sphere | Box | Cylinder | Cone


# --------------------------------------------------------------------------------------------
# Room

_ROOM_NORMALS = np.array([[0, 1, 0], [0, -1, 0], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 0, 1]], float)
_ROOM_UV_AXES = np.array([[0, 2], [0, 2], [0, 1], [2, 1], [2, 1], [0, 1]])
# ROOM_SURFACES index of the wall a ray leaves through, by [axis, direction is positive].
_ROOM_EXIT = np.array([[3, 4], [0, 1], [5, 2]])


@dataclass(frozen=True)
class Room:
    """The inside of the axis-aligned box ``lo``..``hi``; materials for floor, ceiling and walls.

    Parameters
    ----------
    lo : tuple of float
        The box's lowest corner (x, y, z), world coordinates, metres.
    hi : tuple of float
        Its highest corner.
    floor : Material
        The floor's surface.
    ceiling : Material
        The ceiling's surface.
    walls : Material
        The four walls' surface.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    floor: Material
    ceiling: Material
    walls: Material

    def materials(self) -> tuple[Material, ...]:
        """One material per `ROOM_SURFACES` entry.

        Returns
        -------
        tuple of Material
            Floor, ceiling, then the walls' material four times.
        """
        return (self.floor, self.ceiling) + (self.walls,) * 4

    def intersect(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where rays from inside the room leave it.

        Parameters
        ----------
        o : np.ndarray
            Ray origins inside the room: one point (3,) or one per ray (N, 3), world frame.
        d : np.ndarray
            (N, 3) unit ray directions, world frame.

        Returns
        -------
        t : np.ndarray
            (N,) distance to the surface each ray leaves through.
        index : np.ndarray
            (N,) int: that surface's index in `ROOM_SURFACES`.
        """
        d = _safe(d)
        ts = (np.where(d > 0, self.hi, self.lo) - o) / d
        axis = np.argmin(ts, axis=-1)
        t = np.take_along_axis(ts, axis[..., None], -1)[..., 0]
        positive = np.take_along_axis(d > 0, axis[..., None], -1)[..., 0]
        return t, _ROOM_EXIT[axis, positive.astype(int)]

    def surface(self, p: np.ndarray, index: int) -> Surface:
        """Attributes of points on one room surface (normals point into the room).

        Parameters
        ----------
        p : np.ndarray
            (M, 3) points on the surface, world frame.
        index : int
            The surface's index in `ROOM_SURFACES`.

        Returns
        -------
        Surface
            Normals, face ids (0), texture coordinates and curvature (0) at the points.
        """
        m = len(p)
        normal = np.broadcast_to(_ROOM_NORMALS[index], (m, 3))
        return Surface(normal, np.zeros(m, int), p[:, _ROOM_UV_AXES[index]], np.zeros(m))

    def keypoints(self) -> np.ndarray:
        """Salient 3D points: the corners of the back wall (the front corners are behind the camera).

        Returns
        -------
        np.ndarray
            (4, 3) world coordinates.
        """
        (x0, y0, _), (x1, y1, z1) = self.lo, self.hi
        return np.array([[x, y, z1] for x in (x0, x1) for y in (y0, y1)])


# --------------------------------------------------------------------------------------------
# Scene


@dataclass(frozen=True)
class Scene:
    """Everything `render` needs. Angles in radians, positions in metres, world frame.

    Parameters
    ----------
    room : Room
        The room.
    objects : tuple of Shape
        The objects on the floor.
    light_position : tuple of float
        The point light's position.
    light_intensity : float
        The point light's intensity.
    light_colour : tuple of float
        The point light's RGB colour.
    ambient : float
        The ambient light's intensity.
    ambient_colour : tuple of float
        The ambient light's RGB colour.
    yaw : float
        The camera's turn about y (positive: looks right), radians.
    pitch : float
        The camera's turn about x after the yaw (positive: looks up), radians.
    fov_deg : float, default 60.0
        The field of view across the image, degrees.
    domain : str, default "train"
        The name of the domain the scene was drawn from.
    """

    room: Room
    objects: tuple[Shape, ...]
    light_position: tuple[float, float, float]
    light_intensity: float
    light_colour: tuple[float, float, float]
    ambient: float
    ambient_colour: tuple[float, float, float]
    yaw: float
    pitch: float
    fov_deg: float = 60.0
    domain: str = "train"

    @property
    def rotation(self) -> np.ndarray:
        """Camera -> world rotation (columns: camera right, up, forward in world coordinates)."""
        return yaw_matrix(self.yaw) @ pitch_matrix(self.pitch)

    @property
    def tan_half_fov(self) -> float:
        """``tan(fov / 2)``: the image's half-width at unit depth."""
        return math.tan(math.radians(self.fov_deg) / 2)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points into the image.

        Image coords are (column, row) scaled to [0, 1] over the image: (0, 0) is the top-left
        corner, (1, 1) the bottom-right; points behind the camera give meaningless coordinates.

        Parameters
        ----------
        points : np.ndarray
            (K, 3) world points.

        Returns
        -------
        xy : np.ndarray
            (K, 2) normalised image coordinates (x, y).
        z : np.ndarray
            (K,) depth along the camera's axis.
        """
        q = np.asarray(points, float) @ self.rotation  # world -> camera (row vectors)
        z = q[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (q[:, 0] / z / self.tan_half_fov + 1) / 2
            y = (-q[:, 1] / z / self.tan_half_fov + 1) / 2
        return np.stack([x, y], 1), z

    def vanishing_point(self) -> np.ndarray:
        """Where the room's depth direction (world +z) vanishes in the image.

        Returns
        -------
        np.ndarray
            (2,) normalised image coordinates (x, y).
        """
        forward = self.rotation[2]  # world +z in camera coordinates (third row of R)
        x = (forward[0] / forward[2] / self.tan_half_fov + 1) / 2
        y = (-forward[1] / forward[2] / self.tan_half_fov + 1) / 2
        return np.array([x, y])


def _in_view(scene_rot: np.ndarray, tan_half: float, p: np.ndarray, margin: float = 0.85) -> bool:
    """Whether world point ``p`` projects inside the central ``margin`` of the image."""
    q = p @ scene_rot
    return q[2] > 0.5 and abs(q[0] / q[2]) < margin * tan_half and abs(q[1] / q[2]) < margin * tan_half


def _sample_object(rng: np.random.Generator, domain: Domain, kind: str, max_height: float) -> dict:
    """Shape parameters for an object of ``kind`` (position is chosen by the caller)."""
    lo, hi = domain.object_size
    size = rng.uniform(lo, hi)
    if kind == "sphere":
        return {"radius": min(size, max_height / 2)}
    if kind == "box":
        half_y = min(size * rng.uniform(0.6, 1.5), max_height / 2)
        return {"half": (size, half_y, rng.uniform(lo, hi)), "yaw": rng.uniform(0, np.pi / 2)}
    radius = size * rng.uniform(0.6, 1.0) if kind == "cylinder" else size
    ratio = rng.uniform(1.0, 2.5) if kind == "cylinder" else rng.uniform(1.5, 3.0)
    return {"radius": radius, "height": min(radius * ratio, max_height)}


def _build(kind: str, params: dict, x: float, floor_y: float, z: float, material: Material) -> Shape:
    if kind == "sphere":
        return Sphere((x, floor_y + params["radius"], z), params["radius"], material)
    if kind == "box":
        half = tuple(float(h) for h in params["half"])
        return Box((x, floor_y + half[1], z), half, float(params["yaw"]), material)
    cls = Cylinder if kind == "cylinder" else Cone
    return cls((x, floor_y, z), float(params["radius"]), float(params["height"]), material)


def _centre_height(shape: Shape) -> float:
    if isinstance(shape, (Cylinder, Cone)):
        return shape.base[1] + shape.height / 2
    return shape.centre[1]


def _place_objects(rng, domain, room_lo, room_hi, rotation, tan_half) -> tuple[Shape, ...]:
    """Objects on the floor, apart from each other and the walls, with their centres in view."""
    n = int(rng.integers(domain.n_objects[0], domain.n_objects[1] + 1))
    weights = np.asarray(domain.object_weights, float)
    max_height = room_hi[1] - room_lo[1] - 0.3  # keep clear of the ceiling (and the light)
    placed: list[Shape] = []
    for _ in range(n):
        kind = OBJECT_TYPES[rng.choice(len(OBJECT_TYPES), p=weights / weights.sum())]
        params = _sample_object(rng, domain, kind, max_height)
        material = sample_material(rng, domain)
        for _attempt in range(30):
            x = rng.uniform(room_lo[0] + 0.1, room_hi[0] - 0.1)
            z = 1.0 + (room_hi[2] - 1.1) * rng.uniform() ** 1.5  # favour nearer, larger-looking objects
            shape = _build(kind, params, x, room_lo[1], z, material)
            fp = shape.footprint
            inside = room_lo[0] + fp + 0.1 < x < room_hi[0] - fp - 0.1 and 1.0 + fp < z < room_hi[2] - fp - 0.1
            apart = all(math.hypot(x - _xz(o)[0], z - _xz(o)[1]) > fp + o.footprint + 0.1 for o in placed)
            centre = np.array([x, _centre_height(shape), z])
            if inside and apart and _in_view(rotation, tan_half, centre):
                placed.append(shape)
                break
    return tuple(placed)


def _xz(shape: Shape) -> tuple[float, float]:
    p = shape.centre if isinstance(shape, (Sphere, Box)) else shape.base
    return p[0], p[2]


def sample_scene(rng: np.random.Generator, domain: str | Domain = "train") -> Scene:
    """Draw a random scene from a domain, using ``rng`` only.

    Parameters
    ----------
    rng : np.random.Generator
        The random stream; the scene depends on nothing else.
    domain : str or Domain, default "train"
        A `Domain`, or a key of `DOMAINS`.

    Returns
    -------
    Scene
        The scene.

    Raises
    ------
    ValueError
        An unknown domain name.
    """
    dom = get_domain(domain)
    # The camera stands 1.2-1.8 m above the floor; the front wall (z = -1) is always behind it.
    room_lo = (-float(rng.uniform(1.6, 3.5)), -float(rng.uniform(1.2, 1.8)), -1.0)
    room_hi = (float(rng.uniform(1.6, 3.5)), float(rng.uniform(0.8, 1.5)), float(rng.uniform(6.0, 10.0)))
    room = Room(
        room_lo,
        room_hi,
        floor=sample_material(rng, dom, paleness=0.3),
        ceiling=sample_material(rng, dom, paleness=0.8),
        walls=sample_material(rng, dom, paleness=0.6),
    )
    yaw = math.radians(rng.uniform(-dom.yaw_deg, dom.yaw_deg))
    pitch = math.radians(rng.uniform(*dom.pitch_deg))
    fov = 60.0
    rotation = yaw_matrix(yaw) @ pitch_matrix(pitch)
    objects = _place_objects(rng, dom, room_lo, room_hi, rotation, math.tan(math.radians(fov) / 2))
    light = (
        rng.uniform(room_lo[0] + 0.4, room_hi[0] - 0.4),
        room_hi[1] - 0.1,
        rng.uniform(-0.5, room_hi[2] - 1.0),
    )
    return Scene(
        room=room,
        objects=objects,
        light_position=tuple(float(v) for v in light),
        light_intensity=float(rng.uniform(*dom.light_intensity)),
        light_colour=dom.light_colour,
        ambient=float(rng.uniform(*dom.ambient)),
        ambient_colour=dom.ambient_colour,
        yaw=yaw,
        pitch=pitch,
        fov_deg=fov,
        domain=dom.name,
    )
