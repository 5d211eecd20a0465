"""The cost of a confidence (`similarity.confidence`): what its 20 halves add to a run, as ratios of
variants timed side by side on the same inputs, with tracemalloc peak memory.

    python benchmarks/confidence.py                         # N = 100 models, Np = 1000 images, 3×64×64 maps
    python benchmarks/confidence.py --models 30 --images 200 --map-size 32   # a quick run

Attribution methods: `affinity_matrix` alone against `affinity_halves` (the same streamed pass, which
also accumulates the 20 half affinities), on synthetic L2-normalised float16 maps of 3 × S × S values
read as float32 like `MapStore.read` (`harness.SyntheticMaps`). DDS: `compare_all` over the prepared
forms (the whole matrix) against `compare_halves` (each form restricted to each half, U-centred again,
and compared), on synthetic activations of D values per image, with the preparation timed once for the
estimate of a whole run. The extra cost of a run is estimated against what a run does after the maps
(one affinity per method, one DDS preparation per model and its `compare_all`): the forward and backward
passes that make the maps come on top, so the true share is smaller than the one printed.
"""

import argparse
import statistics

import numpy as np

from harness import SyntheticMaps, fmt_bytes, fmt_s, interleaved, traced
from modelspace.similarity import DDS, affinity_halves, affinity_matrix, compare_all, compare_halves, half_masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100, help="N models (default 100)")
    parser.add_argument("--images", type=int, default=1000, help="Np probe images (default 1000)")
    parser.add_argument("--map-size", type=int, default=64, help="S: maps of 3 × S × S values (default 64)")
    parser.add_argument("--features", type=int, default=512, help="D: activation values per image for DDS")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per variant (median kept)")
    args = parser.parse_args()
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

    # What a run does after the maps: this method's affinity, DDS prepared and compared. ModelSpace
    # computes the halves in a pass of its own after the affinity (`ModelSpace._judge`), so its extra
    # cost per method is a whole `affinity_halves`, not the difference of the two.
    run = t_full + t_prep + t_all
    in_pass, as_wired = (t_both - t_full) + t_halves, t_both + t_halves
    print(f"\nextra cost of the confidence, against the post-map work of a run with one method and DDS "
          f"({fmt_s(run)}; the maps' own forward+backward passes not included)\n"
          f"  halves in the affinity's own pass     +{fmt_s(in_pass)}  (×{(run + in_pass) / run:.2f})\n"
          f"  as ModelSpace computes them (a pass    +{fmt_s(as_wired)}  (×{(run + as_wired) / run:.2f})\n"
          f"  of its own after the affinity)", flush=True)


if __name__ == "__main__":
    main()
