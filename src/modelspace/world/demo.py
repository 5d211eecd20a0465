"""`modelspace demo`: the built-in benchmark world end to end.

Renders a probe set (a seed the zoo never trained on), loads the built-in zoo (group 1: one
encoder-decoder per task; group 2: other architectures, input sizes and domains), computes
saliency, gradient×input and ε-LRP maps, the affinities, rankings and trees, and grades each
method's per-target source ranking against the measured transfer oracle with P@K / R@K, beside
random ranking, the oracle itself and label-free baselines (SVCCA, CKA, RSA) computed on the
same probe set's encoder activations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..attribution import DEFAULT_METHODS
from ..evaluation import GroundTruth, format_table
from ..models import load_zoo
from ..probe import ProbeSet
from ..results import REPORT_HTML, TRUTH_AFFINITY_CSV, add_files, file_name, locked, write_matrix
from ..similarity import get_baseline, similarity_tree, to_newick
from ..space import ModelSpace, default_estimators
from .build import ZOO_DIR
from .registration import REGISTRATION
from .render import render_batch

PROBE_SEED = 4000  # not a training (1000), test (2000) or shifted-domain (3000) seed
DEMO_PROBE = 100  # the demo's time: README; P@3 against the number of probe images: docs/study/probe_size_curve.png
BASELINES: tuple[str, ...] = tuple(REGISTRATION["candidates"]["baselines"])
"""The label-free baselines on the activations that the demo computes: those the study registers as candidates."""
VALIDITY_KEYS = ("validity", "own_best_count", "top5_agreement_between_seeds", "zoo_retraining")
"""The oracle's validity figures (`build.oracle_summary`) that the demo carries to its page."""


def load_world(zoo_dir: Path = ZOO_DIR) -> tuple[list, dict, GroundTruth, dict]:
    """The built-in zoo's specs, its record (groups, losses), the oracle and its metadata.

    Parameters
    ----------
    zoo_dir : Path, default ZOO_DIR
        The folder of a built zoo: ``zoo.toml``, ``zoo.json``, ``oracle_ranking.csv`` and ``oracle.json``.

    Returns
    -------
    specs : list of ModelSpec
        The zoo's models, in the order of ``zoo.toml``.
    record : dict
        ``zoo.json``: each model's group, task and training losses under ``"models"``.
    truth : GroundTruth
        The measured transfer oracle's ranking.
    oracle_info : dict
        ``oracle.json``: the oracle's tasks, transfer losses and validity figures.
    """
    specs = load_zoo(zoo_dir / "zoo.toml")
    record = json.loads((zoo_dir / "zoo.json").read_text())
    truth = GroundTruth.from_csv(zoo_dir / "oracle_ranking.csv")
    oracle_info = json.loads((zoo_dir / "oracle.json").read_text())
    return specs, record, truth, oracle_info


def run_demo(
    out: str | Path,
    full: bool = False,
    n_probe: int | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    baselines: Sequence[str] = BASELINES,
    progress: bool = True,
    zoo_dir: Path = ZOO_DIR,
    write_page: bool = True,
) -> dict:
    """Run the benchmark into `out`: the space's results, the trees and, with `write_page`, the HTML page.

    The space is stored in ``out/store``, so a second run reuses every map.

    Parameters
    ----------
    out : str or Path
        The results folder (made if missing).
    full : bool, default False
        1000 probe images instead of `DEMO_PROBE` (when `n_probe` is None).
    n_probe : int or None, default None
        Probe images; None: 1000 with `full`, else `DEMO_PROBE`.
    methods : sequence of str, default DEFAULT_METHODS
        The attribution methods' ids (the default estimator's are added when missing).
    baselines : sequence of str, default BASELINES
        The label-free baselines' ids (the default estimator's are added when missing).
    progress : bool, default True
        Show progress bars.
    zoo_dir : Path, default ZOO_DIR
        The zoo's folder (`load_world`).
    write_page : bool, default True
        Write ``out/report.html``.

    Returns
    -------
    dict
        The space's summary (`ModelSpace.summary`), the group-1 targets, the same-task nearest-neighbour
        rates (``"same_task_nn"``), the trees, the oracle's figures, the seconds taken, ``"report"`` (the
        page's path, with `write_page`) and ``"table"``: the printable table of P@K / R@K / ρ.
    """
    start = time.time()
    out = Path(out)
    specs, record, truth, oracle_info = load_world(Path(zoo_dir))
    group1 = [s.name for s in specs if record["models"][s.name]["group"] == 1]
    n = n_probe or (1000 if full else DEMO_PROBE)
    probe = ProbeSet.from_array(render_batch(n, PROBE_SEED)["rgb"])

    # the default estimator is in every run's table, whatever it is (a method, a baseline, a fusion)
    extra_methods, extra_baselines = default_estimators(methods, n_images=n)
    have = {get_baseline(b).id for b in baselines}
    baselines = [*baselines, *(b for b in extra_baselines if get_baseline(b).id not in have)]
    space = ModelSpace(methods=[*methods, *extra_methods], baselines=baselines, store=out / "store",
                       progress=progress).fit(specs, probe)
    space.evaluate(truth, n_relevant=min(5, len(group1) - 1), models=group1)  # top 5, or all of a miniature
    with locked(out):  # no other run commits into `out` between its results and the files added to them
        space.save(out, report=False)  # its page, with the oracle's tree, is added below

        # Groups 2 and 3 repeat group-1 tasks: a sound estimate puts each next to a model of its task.
        tasks = {s.name: s.label for s in specs}
        later = {s.name for s in specs if record["models"][s.name]["group"] in (2, 3)}
        nn = {name: same_task_rate(r.affinity, [tasks[n] for n in r.names], [n in later for n in r.names])
              for name, r in space.results_.items()}
        nn["random"] = chance_same_task_rate([tasks[s.name] for s in specs], [s.name in later for s in specs])
        trees, oracle_affinity, draw_oracle_tree = _trees(space, group1, oracle_info)
        extra = {
            "group1": group1,
            "oracle_top5_agreement_between_seeds": oracle_info["top5_agreement_between_seeds"],
            "same_task_nn": nn,
            **({"oracle_validity": {k: oracle_info[k] for k in VALIDITY_KEYS}} if "validity" in oracle_info else {}),
            "trees": trees,
            "seconds": round(time.time() - start, 1),
        }
        summary = {**space.summary(), **extra}
        files = {file_name("dendrogram", "oracle"): draw_oracle_tree,
                 # `modelspace report` reads it for the oracle's tree
                 TRUTH_AFFINITY_CSV: lambda path: write_matrix(path, oracle_affinity, oracle_info["tasks"])}
        if write_page:
            from ..report import from_space, write_report

            data = from_space(space, truth=truth, title="modelspace demo: the built-in world",
                              truth_tree=(oracle_affinity, list(oracle_info["tasks"]),
                                          "Oracle tree (measured transfers)"))
            data.settings = {**summary, "command": "modelspace demo --out " + str(out)}
            files[REPORT_HTML] = lambda path: write_report(data, path, progress=progress)
            summary["report"] = str(out / REPORT_HTML)
        add_files(out, files, info=extra)
    table = format_table(space.evaluation_, columns={"NN": nn})
    table += (f"\n\nρ: mean per-target Spearman with the measured order; NN: how often a group-2 or group-3 "
              f"model's nearest neighbour has its task (random: its chance rate).\n"
              f"{len(group1)} targets (group 1), {len(specs)} models, {len(probe)} probe images, "
              f"{summary['seconds']:.0f} s. {_oracle_line(oracle_info)} Results in {out}/"
              + (f", the page: {summary['report']}" if write_page else ""))
    return {**summary, "table": table}


def _oracle_line(oracle_info: dict) -> str:
    line = f"Oracle: two readout seeds agree on {oracle_info['top5_agreement_between_seeds']:.2f} of the top-5 sources"
    if "validity" in oracle_info:
        line += (f"; own encoder best for {oracle_info['own_best_count']}/{len(oracle_info['validity'])} targets; "
                 f"zoo retraining keeps {oracle_info['zoo_retraining']['top5_agreement']:.2f} of the top-5")
    return line + "."


def same_task_rate(affinity: np.ndarray, labels: Sequence[str], queries: Sequence[bool] | None = None) -> float:
    """How often a query model's nearest neighbour (highest affinity, itself excluded) has its task.

    Parameters
    ----------
    affinity : np.ndarray
        The (n, n) affinity matrix.
    labels : sequence of str
        The n models' tasks.
    queries : sequence of bool or None, default None
        Which models are asked (None: all); one whose task no other model has is skipped.

    Returns
    -------
    float
        The share of asked models whose nearest neighbour has their task; NaN when none is asked.
    """
    labels = list(labels)
    asked = [i for i in range(len(labels)) if (queries is None or queries[i]) and labels.count(labels[i]) > 1]
    if not asked:
        return float("nan")
    hits = 0
    for i in asked:
        row = np.asarray(affinity[i], dtype=np.float64).copy()
        row[i] = -np.inf
        hits += labels[int(np.argmax(row))] == labels[i]
    return hits / len(asked)


def chance_same_task_rate(labels: Sequence[str], queries: Sequence[bool] | None = None) -> float:
    """`same_task_rate`'s expectation when each nearest neighbour is drawn at random.

    Parameters
    ----------
    labels : sequence of str
        The models' tasks.
    queries : sequence of bool or None, default None
        Which models are asked (None: all); one whose task no other model has is skipped.

    Returns
    -------
    float
        The mean over asked models of (models of its task − 1) / (models − 1); NaN when none is asked.
    """
    labels = list(labels)
    rates = [(labels.count(label) - 1) / (len(labels) - 1) for i, label in enumerate(labels)
             if (queries is None or queries[i]) and labels.count(label) > 1]
    return float(np.mean(rates)) if rates else float("nan")


def _trees(space: ModelSpace, group1: list[str], oracle_info: dict) -> tuple[dict, np.ndarray, Callable]:
    """Newick trees of group 1: the oracle's (from symmetrised transfer scores) and each method's.

    Also returns the oracle's symmetrised affinity, and ``draw(path)`` drawing the oracle's dendrogram.
    """
    from ..report.plots import plot_dendrogram

    tasks = oracle_info["tasks"]
    score = 1.0 - np.asarray(oracle_info["transfer_loss"])
    oracle_affinity = (score + score.T) / 2
    linkage = similarity_tree(oracle_affinity)
    trees = {"oracle": to_newick(linkage, tasks)}
    for method_id, result in space.results_.items():
        keep = [i for i, n in enumerate(result.names) if n in group1]
        sub = result.affinity[np.ix_(keep, keep)]
        trees[method_id] = to_newick(similarity_tree(sub), [result.names[i] for i in keep])
    return trees, oracle_affinity, lambda path: plot_dendrogram(linkage, tasks, path,
                                                               title="Oracle tree (measured transfers)")
