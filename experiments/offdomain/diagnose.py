"""Why gradient×input degrades off-domain, measured (issue 31, part 1).

Per probe domain (train, shifted, textures, photos) this measures, on the built-in world:

1. energy concentration of the maps (share of squared mass in the top 5 % of pixels);
2. how much of a gradient×input map is the input's intensity: the DC share of ‖x‖², the affinity a
   shuffled-gradient control keeps, and the plain signed gradient beside gradient×input and saliency;
3. the distribution of per-image cosines, a per-target contrast (signal / standard error), and the
   split-half reliability of the affinity against its distance from the train affinity;
4. 100 against 1000 probe images on textures and photos;
5. the models' preprocessing.

Each part is cached to ``diagnosis/<part>.json`` (a rerun skips what is done; delete a file to redo
it) and maps are cached in a ModelSpace store under /tmp. Run from the repository root::

    PYTHONPATH=src python experiments/offdomain/diagnose.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modelspace import ModelSpace, ProbeSet, load_model
from modelspace.evaluation import evaluate
from modelspace.similarity import rank_sources
from modelspace.world.build import ZOO_DIR
from modelspace.world.demo import load_world
from modelspace.world.photos import photo_batch
from modelspace.world.study import DOMAINS as STUDY_DOMAINS

torch.set_num_threads(1)  # the machine is shared with a long background job

OUT = Path(__file__).parent / "diagnosis"
STORE = Path("/tmp/modelspace-diagnose-store")
DOMAINS = {**STUDY_DOMAINS, "photos": lambda n: photo_batch(n, 8000)}
METHODS = ("gradient_x_input", "saliency", "gradient")
MAP_METHODS = METHODS  # the methods whose per-image cosines parts 1 and 3 look at
BASELINES = ("dds",)
N_SMALL, N_LARGE = 100, 1000
LARGE_DOMAINS = ("textures", "photos")
LARGE_BASELINES = ()  # DDS left out at 1000 images: the run must fit in ~25 CPU minutes
TOP = 0.05  # the top fraction of pixels of part 1

SPECS, RECORD, TRUTH, _ = load_world(ZOO_DIR)
GROUP1 = [s.name for s in SPECS if RECORD["models"][s.name]["group"] == 1]
LABEL = {s.name: s.label for s in SPECS}


# ------------------------------------------------------------------------------ helpers


def cached(part: str):
    """Decorator: run ``part`` once; later calls read ``diagnosis/<part>.json``."""
    def wrap(fn):
        def run(*args):
            path = OUT / f"{part}.json"
            if path.exists():
                return json.loads(path.read_text())
            start = time.time()
            result = fn(*args)
            result["seconds"] = round(time.time() - start, 1)
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1))
            print(f"{part}: {result['seconds']} s", flush=True)
            return result
        return run
    return wrap


_SPACES: dict = {}


def space(domain: str, n: int, models: tuple[str, ...] | None = None, baselines=BASELINES) -> ModelSpace:
    """A fitted ModelSpace on the first n images of a domain (maps reused from the store)."""
    key = (domain, n, models, baselines)
    if key not in _SPACES:
        specs = [s for s in SPECS if models is None or s.name in models]
        probe = ProbeSet.from_array(DOMAINS[domain](n))
        _SPACES[key] = ModelSpace(METHODS, baselines=baselines, store=STORE, progress=False).fit(specs, probe)
    return _SPACES[key]


def grade_matrix(affinity: np.ndarray, names: list[str]) -> dict:
    """P@5 and mean Spearman ρ of an affinity over `names` (group-1 models) against the oracle."""
    curves, details = evaluate(rank_sources(affinity, [LABEL[n] for n in names]), TRUTH, restrict_to_estimated=True)
    rhos = [d["spearman"] for d in details.values() if d["spearman"] is not None]
    return {"P@5": float(curves.at(5)[0]), "rho": float(np.mean(rhos))}


def grade_space(sp: ModelSpace) -> dict:
    """P@5 and ρ of every estimator of a fitted space, over the group-1 models."""
    ev = sp.evaluate(TRUTH, models=GROUP1)
    return {e.split("(")[0]: {"P@5": float(ev.methods[e].at(5)[0]), "rho": float(ev.rho[e])} for e in sp.results_}


def unit_rows(a: np.ndarray) -> np.ndarray:
    """(n, ...) maps → (n, F) float32 rows of unit L2 norm (zero rows stay zero)."""
    a = a.reshape(len(a), -1).astype(np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def model_input(sp: ModelSpace, n: int) -> np.ndarray:
    """x: the first n probe images through the group-1 preprocessing (all share it, see part 5)."""
    t = load_model(next(s for s in SPECS if s.name == GROUP1[0])).transform
    return t(sp.probe_.batch(0, n)).numpy()


def per_image_cosines(rows: dict[str, np.ndarray], names: list[str], other: dict | None = None) -> np.ndarray:
    """c[i, j, k] = cos(row_k of model i, row_k of model j) (of `other`'s model j when given)."""
    other = rows if other is None else other
    c = np.zeros((len(names), len(names), len(rows[names[0]])), np.float32)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if other is rows and j < i:
                c[i, j] = c[j, i]
            else:
                c[i, j] = np.einsum("kf,kf->k", rows[a], other[b])
    return c


def contrast(c: np.ndarray) -> dict:
    """Per target t and image k: d_k = mean cos to t's 5 measured-best sources − mean cos to the rest.

    Returns the mean over targets of the signal (mean_k d), the noise (sd_k d) and the contrast
    t = mean d / (sd d / √n), and the share of targets with t > 2.
    """
    idx = {n: i for i, n in enumerate(GROUP1)}
    by_label = {LABEL[n]: n for n in GROUP1}
    sig, noise, t = [], [], []
    for target in TRUTH.targets:
        if target not in by_label:
            continue
        i = idx[by_label[target]]
        best = [idx[by_label[s]] for s in TRUTH.relevant(target)[:5] if s in by_label]
        rest = [j for j in range(len(GROUP1)) if j != i and j not in best]
        d = c[i, best].mean(0) - c[i, rest].mean(0)
        sig.append(d.mean()), noise.append(d.std(ddof=1)), t.append(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))
    return {"signal": float(np.mean(sig)), "noise": float(np.mean(noise)), "t": float(np.mean(t)),
            "share_t_gt_2": float(np.mean(np.array(t) > 2)), "n_targets": len(t)}


# -------------------------------------------------------------------------------- parts


@cached("grades_100")
def grades_100() -> dict:
    """P@5 / ρ of every estimator with 100 probe images per domain (all 37 models fitted)."""
    return {d: grade_space(space(d, N_SMALL)) for d in DOMAINS}


@cached("energy")
def energy() -> dict:
    """Part 1: share of each map's squared mass (summed over channels) in its top 5 % of pixels."""
    out: dict = {}
    for d in DOMAINS:
        sp = space(d, N_SMALL)
        for m in MAP_METHODS:
            for name, maps in sp.maps(m).items():
                e = (maps.astype(np.float64) ** 2).sum(1).reshape(len(maps), -1)
                k = int(round(TOP * e.shape[1]))
                top = np.sort(e, axis=1)[:, -k:].sum(1) / np.maximum(e.sum(1), 1e-30)
                out.setdefault(m, {}).setdefault(name, {})[d] = float(top.mean())
    return out


@cached("input_factor")
def input_factor() -> dict:
    """Part 2: (a) the DC share of ‖x‖²; (b) the affinity the input alone explains (shuffled control)."""
    out: dict = {"dc_share": {}, "affinity": {}}
    for d in DOMAINS:
        sp = space(d, N_SMALL)
        x = model_input(sp, N_SMALL)
        dc = (x.mean((2, 3), keepdims=True) ** 2 * x[0, 0].size).sum((1, 2, 3)) / (x ** 2).sum((1, 2, 3))
        out["dc_share"][d] = {"mean": float(dc.mean()), "sd": float(dc.std())}
        grad = {n: g for n, g in sp.maps("gradient").items() if n in GROUP1}
        gxi = {n: unit_rows(x * g) for n, g in grad.items()}
        shifted = {n: unit_rows(x * np.roll(g, 1, axis=0)) for n, g in grad.items()}  # g at image k-1
        stored = {n: unit_rows(v) for n, v in sp.maps("gradient_x_input").items() if n in GROUP1}
        check = float(np.mean([np.einsum("kf,kf->k", gxi[n], stored[n]).mean() for n in GROUP1]))
        true_c, shuf_c = per_image_cosines(gxi, GROUP1), per_image_cosines(gxi, GROUP1, shifted)
        g_c = per_image_cosines({n: unit_rows(g) for n, g in grad.items()}, GROUP1)
        off = ~np.eye(len(GROUP1), dtype=bool)
        out["affinity"][d] = {
            "true_gxi": float(true_c.mean(2)[off].mean()),
            "shuffled_gxi": float(shuf_c.mean(2)[off].mean()),
            "gradient": float(g_c.mean(2)[off].mean()),
            # does the x-only part rank sources? (the control's own P@5 / ρ, symmetrised)
            "shuffled_gxi_grade": grade_matrix((shuf_c.mean(2) + shuf_c.mean(2).T) / 2, GROUP1),
            "reconstruction_cos": check,  # x ⊙ stored gradient against the stored gradient×input map
        }
    return out


@cached("cosines")
def cosines() -> dict:
    """Part 3: per-image pairwise cosines (group 1): mean, sd over images, and the per-target contrast."""
    out: dict = {}
    for d in DOMAINS:
        sp = space(d, N_SMALL)
        for m in MAP_METHODS:
            rows = {n: unit_rows(v) for n, v in sp.maps(m).items() if n in GROUP1}
            c = per_image_cosines(rows, GROUP1)
            off = ~np.eye(len(GROUP1), dtype=bool)
            out.setdefault(m, {})[d] = {"mean": float(c.mean(2)[off].mean()), "sd_over_images": float(c.std(2)[off].mean()),
                                        "sd_over_pairs": float(c.mean(2)[off].std()), **contrast(c)}
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two vectors (no ties expected in affinities)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@cached("stability")
def stability() -> dict:
    """Noise or bias? Split-half reliability of the affinity (even against odd images), and how far
    each domain's affinity is from the training domain's.

    Per domain and method: the Spearman of the off-diagonal affinities of the two halves (all pairs),
    the mean over targets of the Spearman of the two halves' rows (the per-target source order that
    P@5 reads), P@5 of each half, and the Spearman of the domain's affinity with the train one.
    """
    out: dict = {}
    mats: dict = {}
    off = ~np.eye(len(GROUP1), dtype=bool)
    for d in DOMAINS:
        sp = space(d, N_SMALL)
        for m in MAP_METHODS:
            rows = {n: unit_rows(v) for n, v in sp.maps(m).items() if n in GROUP1}
            c = per_image_cosines(rows, GROUP1)
            a, h1, h2 = c.mean(2), c[:, :, 0::2].mean(2), c[:, :, 1::2].mean(2)
            mats[d, m] = a
            row_rho = [spearman(h1[i][off[i]], h2[i][off[i]]) for i in range(len(GROUP1))]
            out.setdefault(m, {})[d] = {
                "split_half_all": spearman(h1[off], h2[off]), "split_half_rows": float(np.mean(row_rho)),
                "P@5_halves": [grade_matrix(h, GROUP1)["P@5"] for h in (h1, h2)],
                "vs_train_all": spearman(a[off], mats["train", m][off]),
                "vs_train_rows": float(np.mean([spearman(a[i][off[i]], mats["train", m][i][off[i]])
                                                for i in range(len(GROUP1))])),
            }
    return out


@cached("probe_size")
def probe_size() -> dict:
    """Part 4: 100 against 1000 probe images on the off-domain sets (group-1 models only)."""
    out: dict = {}
    for d in LARGE_DOMAINS:
        sp = space(d, N_LARGE, tuple(GROUP1), LARGE_BASELINES)
        out[d] = {"1000": grade_space(sp), "contrast_1000": {}}
        for m in MAP_METHODS:
            rows = {n: unit_rows(v) for n, v in sp.maps(m).items() if n in GROUP1}
            c = per_image_cosines(rows, GROUP1)
            del rows
            out[d]["contrast_1000"][m] = contrast(c)
            out[d].setdefault("100_from_first", {})[m] = grade_matrix(c[:, :, :N_SMALL].mean(2), GROUP1)
    return out


@cached("preprocessing")
def preprocessing() -> dict:
    """Part 5: each model's input size, interpolation, mean and std."""
    out = {}
    for s in SPECS:
        t = load_model(s).transform
        out[s.name] = {"group": RECORD["models"][s.name]["group"], "size": list(t.size), "mean": list(t.mean),
                       "std": list(t.std), "interpolation": t.interpolation}
    return out


def tables(r: dict) -> str:
    """The results as the markdown tables of DIAGNOSIS.md."""
    doms, f = list(DOMAINS), lambda v: f"{v:.3f}"
    def table(head, rows):
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(map(str, row)) + " |" for row in rows]) + "\n"
    g, out = r["grades_100"], []
    out.append("### P@5 / ρ, 100 probe images (group 1)\n\n" + table(
        ["estimator", *doms], [[e, *(f"{g[d][e]['P@5']:.2f} / {g[d][e]['rho']:.2f}" for d in doms)] for e in g["train"]]))
    en, g1 = r["energy"], set(GROUP1)
    out.append("### 1. Share of squared mass in the top 5 % of pixels (mean over images; mean over models)\n\n" + table(
        ["method", "models", *doms],
        [[m, grp, *(f(np.mean([v[d] for n, v in en[m].items() if (n in g1) == (grp == "group 1")])) for d in doms)]
         for m in MAP_METHODS for grp in ("group 1", "groups 2+3")]))
    out.append("#### gradient×input, per model\n\n" + table(
        ["model", *doms], [[n, *(f(v[d]) for d in doms)] for n, v in en["gradient_x_input"].items()]))
    inp = r["input_factor"]
    out.append("### 2a. Share of ‖x‖² in the per-channel mean (DC), x the normalised input\n\n" + table(
        ["domain", "mean", "sd over images"], [[d, f(inp["dc_share"][d]["mean"]), f(inp["dc_share"][d]["sd"])] for d in doms]))
    out.append("### 2b. Mean pairwise affinity (group 1): true, shuffled-gradient control, plain gradient\n\n" + table(
        ["domain", "gxi true", "gxi shuffled (x alone)", "gradient", "control's P@5 / ρ", "x⊙g vs stored gxi"],
        [[d, f(a["true_gxi"]), f(a["shuffled_gxi"]), f(a["gradient"]),
          f"{a['shuffled_gxi_grade']['P@5']:.2f} / {a['shuffled_gxi_grade']['rho']:.2f}", f(a["reconstruction_cos"])]
         for d, a in inp["affinity"].items()]))
    cs = r["cosines"]
    out.append("### 3. Per-image pairwise cosines and the per-target contrast (group 1, 100 images)\n\n" + table(
        ["method", "domain", "mean cos", "sd over images", "sd over pairs", "signal", "noise (sd)", "t", "targets t>2"],
        [[m, d, *(f(cs[m][d][k]) for k in ("mean", "sd_over_images", "sd_over_pairs", "signal", "noise")),
          f"{cs[m][d]['t']:.1f}", f"{cs[m][d]['share_t_gt_2']:.2f}"] for m in MAP_METHODS for d in doms]))
    st = r["stability"]
    out.append("### 3b. Split-half reliability and distance from the train affinity (Spearman)\n\n" + table(
        ["method", "domain", "halves: all pairs", "halves: per-target rows", "P@5 of each half", "vs train: all", "vs train: rows"],
        [[m, d, f(st[m][d]["split_half_all"]), f(st[m][d]["split_half_rows"]),
          " / ".join(f"{p:.2f}" for p in st[m][d]["P@5_halves"]), f(st[m][d]["vs_train_all"]), f(st[m][d]["vs_train_rows"])]
         for m in MAP_METHODS for d in doms]))
    ps = r["probe_size"]
    out.append("### 4. 100 against 1000 probe images (group 1 fitted; P@5 / ρ)\n\n" + table(
        ["domain", "method", "100", "1000", "contrast t at 100", "at 1000", "signal 100 → 1000", "noise 100 → 1000"],
        [[d, m, f"{g[d][m]['P@5']:.2f} / {g[d][m]['rho']:.2f}",
          f"{ps[d]['1000'][m]['P@5']:.2f} / {ps[d]['1000'][m]['rho']:.2f}",
          f"{cs[m][d]['t']:.1f}", f"{ps[d]['contrast_1000'][m]['t']:.1f}",
          f"{cs[m][d]['signal']:.3f} → {ps[d]['contrast_1000'][m]['signal']:.3f}",
          f"{cs[m][d]['noise']:.3f} → {ps[d]['contrast_1000'][m]['noise']:.3f}"]
         for d in LARGE_DOMAINS for m in MAP_METHODS]))
    pre: dict = {}
    for n, v in ((n, v) for n, v in r["preprocessing"].items() if n != "seconds"):
        pre.setdefault((tuple(v["size"]), tuple(v["mean"]), tuple(v["std"]), v["interpolation"]), []).append(n)
    out.append("### 5. Preprocessing (T_i) of the 37 models\n\n" + table(
        ["size", "mean", "std", "interpolation", "models"],
        [[f"{k[0][0]}×{k[0][1]}", k[1], k[2], k[3], f"{len(v)}: " + ", ".join(v)] for k, v in pre.items()]))
    return "\n".join(out)


PARTS = {"grades_100": grades_100, "energy": energy, "input_factor": input_factor, "cosines": cosines, "stability": stability,
         "probe_size": probe_size, "preprocessing": preprocessing}

if __name__ == "__main__":
    start = time.time()
    chosen = sys.argv[1:] or list(PARTS)
    results = {p: PARTS[p]() for p in chosen}
    if not sys.argv[1:]:
        (OUT / "results.json").write_text(json.dumps(results, indent=1))
        (OUT / "tables.md").write_text(tables(results))
    print(f"done in {time.time() - start:.0f} s")
