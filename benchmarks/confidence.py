"""The cost of a confidence (`similarity.confidence`): what its 20 halves add to a run, as ratios of
variants timed side by side on the same inputs, with tracemalloc peak memory.

    python benchmarks/confidence.py                         # N = 100 models, Np = 1000 images, 3×64×64 maps
    python benchmarks/confidence.py --models 30 --images 200 --map-size 32   # a quick run
    python benchmarks/confidence.py --append benchmarks/RESULTS.md           # also as its section 10

Attribution methods: `affinity_matrix` alone against `affinity_halves` (the same streamed pass, which
also accumulates the 20 half affinities), on synthetic L2-normalised float16 maps of 3 × S × S values
read as float32 like `MapStore.read` (`harness.SyntheticMaps`). DDS: `compare_all` over the prepared
forms (the whole matrix) against `compare_halves` (each form restricted to each half, U-centred again,
and compared), on synthetic activations of D values per image, with the preparation timed once for the
estimate of a whole run. The whole run is N world models' maps (timed on one model, scaled to Np
images), the three default methods' affinities and DDS; the confidence's share is printed against it.
"""

import argparse
import statistics
from pathlib import Path

import numpy as np

from harness import SyntheticMaps, appended_section, fmt_bytes, fmt_s, interleaved, timed, traced
from modelspace.similarity import DDS, affinity_halves, affinity_matrix, compare_all, compare_halves, half_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100, help="N models (default 100)")
    parser.add_argument("--images", type=int, default=1000, help="Np probe images (default 1000)")
    parser.add_argument("--map-size", type=int, default=64, help="S: maps of 3 × S × S values (default 64)")
    parser.add_argument("--features", type=int, default=512, help="D: activation values per image for DDS")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per variant (median kept)")
    parser.add_argument("--map-images", type=int, default=200, help="images the maps of one model are timed on")
    parser.add_argument("--append", type=Path, default=None, metavar="RESULTS",
                        help="also append the printed results to this file as its section 10 (benchmarks/RESULTS.md)")
    args = parser.parse_args()
    with appended_section(args.append, "10. The confidence's cost", "confidence.py"):
        _measure(args)


def _measure(args: argparse.Namespace) -> None:
    n, n_img, feat = args.models, args.images, 3 * args.map_size**2
    names = [f"m{i}" for i in range(n)]
    masks = half_masks(n_img)
    print(f"N = {n} models, Np = {n_img} probe images, maps 3×{args.map_size}×{args.map_size} (F = {feat}, float16 "
          f"stored, float32 read), {len(masks)} halves of {n_img // 2} images; DDS on D = {args.features}", flush=True)

    maps = SyntheticMaps(n_img, feat)
    readers = [maps.reader(i) for i in range(n)]
    full = lambda: affinity_matrix(readers, n_img, names, progress=False)
    both = lambda: affinity_halves(readers, n_img, names, masks, progress=False)
    (a_full, t_full1, p_full), ((a_both, halves), t_both1, p_both) = traced(full), traced(both)
    times = interleaved({"full": full, "halves": both}, warmup=0, repeats=args.repeats - 1) if args.repeats > 1 else None
    t_full = statistics.median([t_full1, *(times.samples["full"] if times else [])])
    t_both = statistics.median([t_both1, *(times.samples["halves"] if times else [])])
    print(f"\nattribution affinity (one method)\n"
          f"  affinity_matrix            {fmt_s(t_full):>10}   peak {fmt_bytes(p_full)}\n"
          f"  affinity_halves (+20)      {fmt_s(t_both):>10}   peak {fmt_bytes(p_both)}\n"
          f"  ratio halves / alone       {t_both / t_full:10.2f}×  peak ×{p_both / p_full:.2f}"
          f"   (max |full − affinity_matrix| {np.abs(a_both - a_full).max():.1e})", flush=True)
    del halves, a_both, a_full

    rng = np.random.default_rng(0)
    dds = DDS()
    mixing = rng.normal(size=(args.features, args.features)) * 0.1
    acts = [rng.normal(size=(n_img, args.features)) @ mixing for _ in range(n)]
    prepared, t_prep, p_prep = traced(lambda: [dds.prepare(x, f"m{i}") for i, x in enumerate(acts)])
    _, t_all, p_all = traced(lambda: compare_all(dds, prepared))
    _, t_halves, p_halves = traced(lambda: compare_halves(dds, prepared, masks))
    print(f"\nDDS (kernel cosine, debiased)\n"
          f"  prepare ×{n} (once per run)  {fmt_s(t_prep):>10}   holds {fmt_bytes(p_prep)}\n"
          f"  compare_all                 {fmt_s(t_all):>10}   peak {fmt_bytes(p_all)}\n"
          f"  compare_halves (20 halves)  {fmt_s(t_halves):>10}   peak {fmt_bytes(p_halves)}\n"
          f"  ratio halves / compare_all  {t_halves / t_all:10.2f}×", flush=True)

    # A whole run of N models: each model's maps (one forward and one backward pass per image for the
    # paper's three methods: saliency and gradient×input share theirs, ε-LRP has its own), measured on
    # a world model at its own input size over `--map-images` images and scaled to Np; then the
    # affinity of each of the three methods and DDS. A fresh run computes the halves in the affinity's
    # own pass (`ModelSpace._affinity`) and caches them, so the confidence adds the difference of the
    # two passes per method and DDS's halves; a rerun reads them from the store.
    t_model = _maps_per_model(args.map_images) * n_img / args.map_images
    methods = 3
    run = n * t_model + methods * t_full + t_prep + t_all
    extra = methods * max(t_both - t_full, 0.0) + t_halves
    print(f"\nmaps of one world model (3 methods, 2 passes per image): {fmt_s(t_model)} for {n_img} images "
          f"(measured on {args.map_images})\n"
          f"whole run: {n} models' maps {fmt_s(n * t_model)} + {methods} affinities {fmt_s(methods * t_full)} + "
          f"DDS {fmt_s(t_prep + t_all)} = {fmt_s(run)}\n"
          f"  the confidence adds   +{fmt_s(extra)}  = {100 * extra / run:.1f} % of the run  "
          f"(peak memory ×{p_both / p_full:.2f} the streamed affinity's)", flush=True)


def _maps_per_model(n_images: int) -> float:
    """Seconds for one world model's maps (saliency, gradient×input, ε-LRP) over `n_images` probe images."""
    import torch

    from modelspace.attribution import DEFAULT_METHODS, get_method
    from modelspace.maps import Runtime, compute_maps
    from modelspace.models import load_model
    from modelspace.probe import ProbeSet
    from modelspace.world import render_batch
    from modelspace.world.demo import load_world
    from modelspace.world.build import ZOO_DIR

    specs = load_world(ZOO_DIR)[0]
    loaded = load_model(specs[0])
    probe = ProbeSet.from_array(render_batch(n_images, 4000)["rgb"])
    images, methods = probe.batch(0, n_images), [get_method(m) for m in DEFAULT_METHODS]
    with torch.inference_mode(False):
        _, seconds = timed(lambda: [compute_maps(loaded, images[i:i + 32], methods, probe.size, Runtime.of("cpu"))
                                    for i in range(0, n_images, 32)])
    return seconds


if __name__ == "__main__":
    main()
