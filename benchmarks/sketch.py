"""Section 6: random-projection sketches against the exact affinity: error on the built-in zoo's
real maps, time and size on N = 100 synthetic models."""

from __future__ import annotations


import numpy as np

from modelspace.similarity import affinity_matrix
from modelspace.similarity import MapSketcher, sketched_affinity

from harness import SyntheticMaps, fmt_bytes, fmt_s, progress, timed

def zoo_saliency_maps(n_images: int) -> tuple[list[str], list[np.ndarray]]:
    """The built-in zoo's saliency maps on rendered probe images, as (Np, F) arrays per model."""
    from modelspace import ModelSpace, ProbeSet
    from modelspace.world.demo import PROBE_SEED
    from modelspace.models import load_zoo
    from modelspace.world.build import ZOO_DIR
    from modelspace.world.render import render_batch

    specs = load_zoo(ZOO_DIR / "zoo.toml")
    probe = ProbeSet.from_array(render_batch(n_images, PROBE_SEED)["rgb"])
    space = ModelSpace(methods=["saliency"], progress=False).fit(specs, probe)
    maps = space.maps("saliency")
    return list(maps), [m.reshape(len(m), -1) for m in maps.values()]


def top5_overlap(estimate: np.ndarray, exact: np.ndarray) -> float:
    """Mean over targets of |top-5 sources by estimate ∩ top-5 by exact| / 5."""
    n = len(exact)
    k = min(5, n - 1)
    overlaps = []
    for t in range(n):
        others = [s for s in range(n) if s != t]
        top = lambda m: set(sorted(others, key=lambda s: -m[t, s])[:k])  # noqa: E731
        overlaps.append(len(top(estimate) & top(exact)) / k)
    return float(np.mean(overlaps))


def run_sketch(report, cfg) -> None:
    dims = (32, 128) if cfg.repeats == 1 else (64, 256, 1024)
    n_zoo_images = 8 if cfg.repeats == 1 else 250
    progress("… sketch: zoo maps")
    names, maps = zoo_saliency_maps(n_zoo_images)
    readers = [lambda s, e, m=m: m[s:e] for m in maps]
    exact = affinity_matrix(readers, n_zoo_images, names, progress=False)
    off = ~np.eye(len(names), dtype=bool)
    rows = []
    for dim in dims:
        sketcher = MapSketcher(dim=dim, seed=0)
        est = sketched_affinity([sketcher.sketch(r, n_zoo_images) for r in readers], names)
        err = np.abs(est - exact)[off]
        rows.append([dim, f"{err.max():.4f}", f"{err.mean():.4f}", f"{np.corrcoef(est[off], exact[off])[0, 1]:.4f}",
                     f"{top5_overlap(est, exact):.2f}"])

    progress("… sketch: synthetic N=100")
    n, n_img, feat = (10, cfg.n_images, 3 * cfg.map_size**2) if cfg.repeats == 1 else (100, cfg.n_images, 3 * cfg.map_size**2)
    synth = SyntheticMaps(n_img, feat, seed=3)
    sreaders = [synth.reader(i) for i in range(n)]
    _, t_exact = timed(lambda: affinity_matrix(sreaders, n_img, [f"m{i}" for i in range(n)], progress=False))
    speed_rows = []
    for dim in dims:
        sketcher = MapSketcher(dim=dim, seed=0)
        sketches, t_sketch = timed(lambda: [sketcher.sketch(r, n_img) for r in sreaders])
        _, t_aff = timed(lambda: sketched_affinity(sketches))
        speed_rows.append([dim, fmt_s(t_sketch / n), fmt_s(t_aff), f"{t_exact / t_aff:.0f}",
                           f"{feat / dim:.0f}×", fmt_bytes(n_img * dim * 4)])

    report.add("## 6. Random-projection sketch vs exact affinity")
    report.add()
    report.add(f"Error on real maps: saliency maps of the {len(names)} zoo models on {n_zoo_images} rendered probe "
               "images (F = 3·64·64), sketched affinity against the exact one, off-diagonal entries; "
               "'top-5 overlap' = mean over targets of the share of the exact top-5 sources that the sketch also "
               "ranks top-5.")
    report.add()
    report.table(["k", "max abs error", "mean abs error", "correlation", "top-5 overlap"], rows)
    report.add(f"Cost on N = {n} synthetic models (Np = {n_img}, F = {feat}); exact streamed matrix: "
               f"{fmt_s(t_exact)}. Sketching is done once per model (at embedding time, from its maps); the "
               "matrix from sketches then never touches the maps.")
    report.add()
    report.table(["k", "sketch per model", "matrix from sketches", "exact / sketched matrix", "smaller by",
                  "sketch per model (float32)"], speed_rows)
    report.add()
