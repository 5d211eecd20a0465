"""Section 3: the streamed `affinity_matrix` against the per-pair `affinity_naive`: time and peak
memory (tracemalloc, which sees numpy's allocations)."""


import statistics

import numpy as np


from harness import GIB, Config, Report, SyntheticMaps, fmt_bytes, fmt_s, progress, traced
from modelspace.similarity import affinity_matrix, affinity_naive

def run_affinity(report: Report, cfg: Config) -> None:
    n_img, feat = cfg.n_images, 3 * cfg.map_size**2
    maps = SyntheticMaps(n_img, feat)
    rows, streamed_at = [], {}
    for n in cfg.affinity_ns:
        progress(f"… affinity N={n}")
        readers = [maps.reader(i) for i in range(n)]
        names = [f"m{i}" for i in range(n)]
        reps = cfg.matrix_repeats if n <= 100 else 1
        times, peak, streamed = [], 0, None
        for _ in range(reps):
            streamed, seconds, p = traced(lambda: affinity_matrix(readers, n_img, names, progress=False))
            times.append(seconds)
            peak = max(peak, p)
        t_stream = statistics.median(times)
        streamed_at[n] = (t_stream, peak)

        if n <= cfg.naive_max:
            inputs = [maps.array(i) for i in range(n)]
            naive, t_naive, p_naive = traced(lambda: affinity_naive(inputs))
            del inputs
            check = f"max abs diff {np.abs(naive - streamed).max():.1e}"
            how = f"measured ({n}² pairs)"
        else:
            k = cfg.naive_subset
            inputs = [maps.array(i) for i in range(k)]
            naive, t_sub, p_sub = traced(lambda: affinity_naive(inputs))
            del inputs
            t_naive, p_naive = t_sub * (n / k) ** 2, p_sub * n / k
            check = f"subset: max abs diff {np.abs(naive - streamed[:k, :k]).max():.1e}"
            how = f"**estimated** from {k} models ({k}² pairs, {fmt_s(t_sub)}, {fmt_bytes(p_sub)}): time × (N/{k})², memory × N/{k}"
        del streamed, naive
        rows.append([n, f"{fmt_s(t_stream)} (median of {reps})", fmt_bytes(streamed_at[n][1]),
                     fmt_s(t_naive), fmt_bytes(p_naive), f"{t_naive / t_stream:.1f}", how, check])

    report.add("## 3. Affinity matrix: streamed vs naive")
    report.add()
    report.add(f"Synthetic L2-normalised float16 maps, Np = {n_img} images, F = 3·{cfg.map_size}·{cfg.map_size} = "
               f"{feat}; each reader returns float32 rows like `MapStore.read`. Peak memory = tracemalloc peak of "
               "the call (numpy's allocations included; the maps given to the naive loop and the shared pool the "
               f"readers copy from are allocated before and not counted). Input data per model: "
               f"{fmt_bytes(n_img * feat * 2)} as float16.")
    report.add()
    report.table(["N", "streamed time", "streamed peak", "naive time", "naive peak", "naive / streamed",
                  "naive figures", "agreement"], rows)
    if 100 in streamed_at:
        t, p = streamed_at[100]
        report.target("N=100 streamed ≤ 10 s", t <= 10, fmt_s(t))
        report.target("N=100 streamed ≤ 2 GiB", p <= 2 * GIB, fmt_bytes(p))
    else:
        report.target("N=100 streamed ≤ 10 s and ≤ 2 GiB", None, "N=100 not run in this configuration")
    report.add()
