"""Section 4: `ModelSpace.add` of one model to a space of N models whose maps and affinities are in
the store, against recomputing the (N+1)² matrix."""


import hashlib
import tempfile
from typing import Any, Callable

import numpy as np
from torch import nn


from harness import Config, Report, SyntheticMaps, fmt_bytes, fmt_s, interleaved, loaded_model, progress, timed
from modelspace.similarity import affinity_matrix, affinity_row

class ShardLoads:
    """Counts the bytes `MapStore` loads from shard files (instrumentation of one store object)."""

    def __init__(self, store: Any) -> None:
        self.bytes = 0
        original = store._load_shard

        def counting(row: Any) -> np.ndarray:  # one manifest row of a shard
            data = original(row)
            if not isinstance(data, np.memmap):  # read whole and hashed; a verified file is mapped instead
                self.bytes += data.nbytes
            return data

        store._load_shard = counting

    def during(self, fn: Callable[[], Any]) -> tuple[Any, float, int]:
        """(result, seconds, shard bytes loaded) of one call."""
        before = self.bytes
        out, seconds = timed(fn)
        return out, seconds, self.bytes - before


def run_insertion(report: Report, cfg: Config) -> None:
    from modelspace import LocalExecutor, ModelSpace, ProbeSet
    from modelspace.models import LoadedModel, ModelSpec
    from modelspace.maps import EntryKey, MapStore, plan_units

    n_img, s = cfg.n_images, cfg.map_size
    feat = 3 * s * s
    maps = SyntheticMaps(n_img, feat, seed=1)
    probe = ProbeSet.from_array(np.random.default_rng(2).integers(0, 256, (n_img, 3, s, s), dtype=np.uint8))
    method, shard_size = "saliency", 256
    map_bytes = n_img * feat * 2  # one model's maps as stored (float16)

    def member(i: int, name: str) -> LoadedModel:
        spec = ModelSpec(name=name, source="python:torch.nn:Identity", input_size=s)
        return loaded_model(spec, nn.Identity(), None, hashlib.sha256(f"bench-{i}".encode()).hexdigest())

    n_old = max(cfg.insertion_ns)
    rows, adds, fulls, lookups = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="modelspace-bench-") as tmp:
        store = MapStore(tmp)
        loads = ShardLoads(store)
        old = [member(i, f"old{i}") for i in range(n_old)]
        new = {n: member(10_000 + n, f"new{n}") for n in cfg.insertion_ns}
        progress(f"… writing {n_old + len(new)} models' maps to a temporary store")
        sources = [(m, i) for i, m in enumerate(old)] + [(m, 10_000 + n) for n, m in new.items()]
        for m, i in sources:
            key = EntryKey(m.key, probe.hash, method, probe.size)
            store.register_model(m.key, m.name, m.spec.to_dict())
            data = maps.array(i).astype(np.float32)
            for unit in plan_units(key, m.name, n_img, shard_size):
                store.write(unit, data[unit.start:unit.stop])
        keys = {m.name: EntryKey(m.key, probe.hash, method, probe.size) for m, _ in sources}

        def reader(m: LoadedModel):
            return lambda a, b, k=keys[m.name]: store.read(k, a, b)

        # The old models' pairs are cached, as after an earlier fit (values from the same maps in memory).
        progress("… caching the old models' affinities")
        a = affinity_matrix([maps.reader(i) for i in range(n_old)], n_img, [m.name for m in old], progress=False)
        store.put_affinities((keys[old[i].name], keys[old[j].name], float(a[i, j]))
                             for i in range(n_old) for j in range(i + 1, n_old))

        for n in cfg.insertion_ns:
            progress(f"… insertion N={n}")
            space = ModelSpace(methods=[method], store=store, executor=LocalExecutor(shard_size=shard_size),
                               progress=False)
            space.fit(old[:n], probe)  # maps and pairs all cached: nothing is computed
            _, t_add, add_bytes = loads.during(lambda: space.add(new[n]))
            assert space.results_[method].affinity.shape == (n + 1, n + 1)
            everyone = [new[n], *old[:n]]
            names = [m.name for m in everyone]
            _, t_full, full_bytes = loads.during(
                lambda: affinity_matrix([reader(m) for m in everyone], n_img, names, progress=False))
            memory_readers = [maps.reader(10_000 + n)] + [maps.reader(i) for i in range(n)]
            med = interleaved({
                "row_mem": lambda: affinity_row(memory_readers[0], memory_readers[1:], n_img, names, progress=False),
                "full_mem": lambda: affinity_matrix(memory_readers, n_img, names, progress=False),
                # What add() spends on the pair cache: one query for every cached pair among the N+1 models.
                "lookups": lambda: store.affinities_among([keys[m.name] for m in everyone]),
            }, warmup=0, repeats=cfg.matrix_repeats if n <= 20 else 1)
            adds[n], fulls[n], lookups[n] = t_add, t_full, med.median("lookups")
            rows.append([n, fmt_s(t_add), fmt_s(t_full), f"**{t_full / t_add:.1f}**", f"{t_add / n * 1e3:.0f} ms",
                         fmt_s(med.median("row_mem")), fmt_s(med.median("full_mem")),
                         f"{med.median('full_mem') / med.median('row_mem'):.1f}", fmt_s(med.median("lookups")),
                         f"{add_bytes / ((n + 1) * map_bytes):.1f}× / {full_bytes / ((n + 1) * map_bytes):.1f}×"])
        store.close()

    def slope(d: dict[int, float]) -> float:
        xs, ys = np.log(list(d)), np.log(list(d.values()))
        return float(np.polyfit(xs, ys, 1)[0]) if len(d) >= 2 else float("nan")

    report.add("## 4. Adding one model vs recomputing the matrix")
    report.add()
    report.add(f"A `ModelSpace` (method saliency) over N models whose maps (synthetic, Np = {n_img}, F = {feat}, "
               f"float16 shards of {shard_size} images, {fmt_bytes(map_bytes)} per model) and pairwise affinities "
               "are already in a `MapStore`; `add()` of one more model whose maps are stored computes its row "
               "(and re-reads the cached pairs, builds the tree and rankings). Against it, recomputing: "
               "`affinity_matrix` over the same N+1 models read from the store. Both are timed once (a second "
               "add() would find its row cached). Beside them, the same row and matrix from maps held in memory "
               f"(median of {cfg.matrix_repeats} for N ≤ 20, else one run), the pair-cache query that add() makes, and the bytes read "
               "whole and checksummed from shard files per byte of maps (add() / recompute; a file already verified "
               "by this store object and unchanged since is memory-mapped and not hashed again; files written "
               "less than 2 s before are always hashed).")
    report.add()
    report.table(["N", "add()", "recompute (store)", "recompute / add", "add() / N", "row (memory)",
                  "matrix (memory)", "matrix / row (memory)", "pair-cache lookups", "shard bytes hashed / map bytes"],
                 rows)
    report.add(f"Empirical growth exponent (slope of log time on log N): add() {slope(adds):.2f}, "
               f"recompute {slope(fulls):.2f}, pair-cache lookups {slope(lookups):.2f} (1 = linear, 2 = quadratic).")
    report.add()
