"""`modelspace study`: how far the estimate can be trusted, measured on the built-in world.

For every estimator (the attribution methods and the label-free baselines) and every probe
domain (the training renderer domain, a shifted renderer domain, procedural textures unlike
any scene), it measures:

- P@1, P@3, P@5, R@5 against the measured transfer oracle (group 1, top-5 relevant);
- ρ: the mean over targets of the Spearman correlation between the estimated and the measured
  order of the sources (`Evaluation.rho`);
- the same-task nearest-neighbour rate: how often a group-2 or group-3 model's nearest
  neighbour among all models has its task (`demo.same_task_rate`), beside the chance rate;

and, on the training domain, P@3 against the number of probe images, and what the symmetry of
the estimate costs (see `asymmetry`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..attribution import DEFAULT_METHODS
from ..evaluation import GroundTruth, evaluate
from ..maps import encoder_activations
from ..models import load_model
from ..probe import ProbeSet
from ..similarity import affinity_matrix, rank_sources, similarity_matrix
from ..space import ModelSpace
from .build import ZOO_DIR
from .demo import BASELINES, chance_same_task_rate, load_world, same_task_rate
from .render import render_batch
from .textures import texture_batch

DOMAINS: dict[str, Callable[[int], np.ndarray]] = {
    "train": lambda n: render_batch(n, 4000)["rgb"],
    "shifted": lambda n: render_batch(n, 5000, domain="shifted")["rgb"],
    "textures": lambda n: texture_batch(n, 6000),
}
SIZES = (16, 64, 256, 1000)


def run_study(out: str | Path, n_probe: int = 1000, sizes: Sequence[int] = SIZES, domains: Sequence[str] = tuple(DOMAINS),
              progress: bool = True, zoo_dir: Path = ZOO_DIR) -> dict:
    """Run the whole study into `out` (results.json, plots, table.md); returns the results."""
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs, record, truth, oracle_info = load_world(Path(zoo_dir))
    group1 = [s.name for s in specs if record["models"][s.name]["group"] == 1]
    later = {s.name for s in specs if record["models"][s.name]["group"] in (2, 3)}
    tasks = {s.name: s.label for s in specs}
    results: dict = {"n_probe": n_probe, "domains": {}, "group1": group1}
    for domain in domains:
        if progress:
            print(f"probe domain {domain!r}: {n_probe} images", flush=True)
        probe = ProbeSet.from_array(DOMAINS[domain](n_probe))
        space = ModelSpace(DEFAULT_METHODS, baselines=BASELINES, store=out / "store", progress=progress).fit(specs, probe)
        evaluation = space.evaluate(truth, models=group1)
        rows = {}
        for estimator, result in space.results_.items():
            curves = evaluation.methods[estimator]
            rows[estimator] = {
                **{f"P@{k}": curves.at(k)[0] for k in (1, 3, 5)},
                "R@5": curves.at(5)[1],
                "rho": evaluation.rho[estimator],
                "same_task_nn": same_task_rate(result.affinity, [tasks[n] for n in result.names],
                                               [n in later for n in result.names]),
            }
        results["domains"][domain] = {"estimators": rows, "failures": [f.to_dict() for f in space.failures_],
                                      "chance_same_task_nn": chance_same_task_rate([tasks[s.name] for s in specs],
                                                                                   [s.name in later for s in specs])}
        if domain == "train":
            results["probe_size_curve"] = _probe_size_curve(space, specs, group1, tasks, truth, sizes, probe)
            results["asymmetry"] = _asymmetry(space, group1, tasks, truth, oracle_info)
    results["seconds"] = round(time.time() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    results["table"] = format_study(results)
    (out / "table.md").write_text(results["table"] + "\n")
    _plots(results, out)
    return results


# ------------------------------------------------------------------------------ measures


def _p_at(curves, k: int) -> float:
    return float(curves.at(k)[0])


def _probe_size_curve(space: ModelSpace, specs, group1, tasks, truth: GroundTruth, sizes, probe) -> dict:
    """P@3 with only the first n probe images, for each estimator (maps re-read, not recomputed)."""
    labels = [tasks[n] for n in group1]
    curve: dict[str, dict[int, float]] = {}
    for method in space.methods_:
        keys = [space.members_[n].entries[method.id] for n in group1]
        readers = [lambda s, e, k=k: space.store_.read(k, s, e) for k in keys]
        curve[method.id] = {}
        for n in sizes:
            matrix = affinity_matrix(readers, n, group1, progress=False)
            curve[method.id][n] = _p_at(evaluate(rank_sources(matrix, labels), truth, restrict_to_estimated=True)[0], 3)
    acts = [encoder_activations(load_model(s), probe.batch(0, len(probe)), progress=False) for s in specs if s.name in group1]
    for baseline in space.baselines_:
        curve[baseline.id] = {}
        for n in sizes:
            matrix = similarity_matrix([a[:n] for a in acts], baseline, progress=False, names=group1)
            curve[baseline.id][n] = _p_at(evaluate(rank_sources(matrix, labels), truth, restrict_to_estimated=True)[0], 3)
    return curve


def _asymmetry(space: ModelSpace, group1, tasks, truth: GroundTruth, oracle_info: dict) -> dict:
    """What symmetry costs, and one asymmetric variant.

    - symmetric ceiling: the oracle's own per-target ranks (as percentiles), symmetrised, and
      graded against the oracle. No symmetric estimator can do better than this.
    - source-generality variant: rank sources for target t by A[t, s] + mean_t' A[t', s], the
      affinity plus the source's mean affinity to all tasks, a label-free proxy for how general
      its representation is (Taskonomy's strongest sources help many targets).
    """
    names, loss = oracle_info["tasks"], np.asarray(oracle_info["transfer_loss"])
    n = len(names)
    percentile = np.zeros((n, n))
    for i in range(n):
        order = [j for j in np.argsort(-(1 - loss[i]), kind="stable") if j != i]
        for rank, j in enumerate(order):
            percentile[i, j] = 1 - rank / (n - 2)
    symmetric = (percentile + percentile.T) / 2
    ceiling = evaluate(rank_sources(symmetric, names), truth, restrict_to_estimated=True)[0]
    out = {"symmetric_oracle_ceiling": {f"P@{k}": _p_at(ceiling, k) for k in (1, 3, 5)}, "generality_variant": {}}
    labels = [tasks[m] for m in group1]
    for estimator, result in space.results_.items():
        keep = [result.names.index(m) for m in group1 if m in result.names]
        a = result.affinity[np.ix_(keep, keep)].copy()
        off = ~np.eye(len(keep), dtype=bool)
        generality = np.array([a[off[:, j], j].mean() for j in range(len(keep))])
        variant = a + generality[None, :]
        ranking = {labels[i]: [labels[j] for j in np.argsort(-variant[i], kind="stable") if j != i] for i in range(len(keep))}
        curves = evaluate(ranking, truth, restrict_to_estimated=True)[0]
        out["generality_variant"][estimator] = {f"P@{k}": _p_at(curves, k) for k in (1, 3, 5)}
    return out


# ------------------------------------------------------------------------------ output


def _short(estimator: str) -> str:
    return estimator.split("(")[0]


def format_study(results: dict) -> str:
    """Markdown tables of the study (what the README's results section holds)."""
    domains = list(results["domains"])
    lines = [f"P@K / R@K against the measured oracle ({len(results['group1'])} targets, top-5 relevant), "
             f"ρ = mean per-target Spearman between the estimated and the measured order of the sources, "
             f"NN = how often a group-2 or group-3 model's nearest neighbour has its task; "
             f"{results['n_probe']} probe images per domain.", ""]
    header = "| estimator | " + " | ".join(f"{d}: P@1 | P@3 | P@5 | R@5 | ρ | NN" for d in domains) + " |"
    lines += [header, "|" + "---|" * (1 + 6 * len(domains))]
    estimators = list(results["domains"][domains[0]]["estimators"])
    for est in estimators:
        cells = []
        for d in domains:
            r = results["domains"][d]["estimators"].get(est)
            cells += [f"{r[k]:.2f}" for k in ("P@1", "P@3", "P@5", "R@5", "rho", "same_task_nn")] if r else ["–"] * 6
        lines.append(f"| {_short(est)} | " + " | ".join(cells) + " |")
    chance = [f"{results['domains'][d]['chance_same_task_nn']:.2f}" for d in domains]
    random_p = 5 / (len(results["group1"]) - 1)
    lines.append("| random | " + " | ".join(f"{random_p:.2f} | {random_p:.2f} | {random_p:.2f} | {random_p:.2f} | 0 | {c}"
                                          for c in chance) + " |")
    if "probe_size_curve" in results:
        sizes = list(next(iter(results["probe_size_curve"].values())))
        lines += ["", "P@3 (training domain) against the number of probe images:", "",
                  "| estimator | " + " | ".join(str(s) for s in sizes) + " |", "|" + "---|" * (1 + len(sizes))]
        for est, curve in results["probe_size_curve"].items():
            lines.append(f"| {_short(est)} | " + " | ".join(f"{curve[s]:.2f}" for s in sizes) + " |")
    if "asymmetry" in results:
        a = results["asymmetry"]
        c = a["symmetric_oracle_ceiling"]
        lines += ["", f"Symmetry: the oracle's own ranks, symmetrised, score P@1 {c['P@1']:.2f}, P@3 {c['P@3']:.2f}, "
                      f"P@5 {c['P@5']:.2f} against the oracle (the ceiling of any symmetric estimate).",
                  "Source-generality variant (A[t,s] + mean affinity of s), training domain:", "",
                  "| estimator | P@1 | P@3 | P@5 |", "|---|---|---|---|"]
        for est, r in a["generality_variant"].items():
            lines.append(f"| {_short(est)} | {r['P@1']:.2f} | {r['P@3']:.2f} | {r['P@5']:.2f} |")
    return "\n".join(lines)


def _plots(results: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    if "probe_size_curve" not in results:
        return
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for est, curve in results["probe_size_curve"].items():
        sizes = [int(s) for s in curve]
        ax.plot(sizes, list(curve.values()), marker="o", label=_short(est))
    ax.axhline(5 / (len(results["group1"]) - 1), color="grey", linestyle="--", label="random")
    ax.set_xscale("log")
    ax.set_xlabel("probe images")
    ax.set_ylabel("P@3")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "probe_size_curve.png")
