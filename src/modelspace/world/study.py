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

Then the measured "which estimator when" table (`which`, written to ``table.md`` after the figures
above): every estimator of `STUDY_METHODS` and `STUDY_BASELINES`, DEPARA with its λ chosen by
leave-one-target-out cross-validation over `DEPARA_GRID` beside the fixed λ, and the label-based
scores of `LABEL_SCORES` on `LABEL_SIZES` labelled images of each target; per probe domain,
bootstrap intervals over targets, paired comparisons with the best, the seed-twin check, the cost
per model as a multiple of one forward+backward pass (measured) and the labels needed; then a
recommendation per regime generated from those numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import torch

from ..attribution import DEFAULT_METHODS, get_method
from ..errors import ModelspaceError
from ..identity import label as estimator_label
from ..evaluation import BOOTSTRAP, Bootstrap, GroundTruth, evaluate
from ..maps import Runtime, compute_maps, encoder_activations
from ..models import load_model
from ..probe import ProbeSet
from ..results import OutputFolder
from ..similarity import affinity_matrix, get_baseline, rank_sources, similarity_matrix
from ..space import DEFAULT_ESTIMATOR, ModelSpace, default_estimators, get_estimator_id
from ..transferability import get_score
from . import which
from .build import ZOO_DIR
from .demo import chance_same_task_rate, load_world, same_task_rate
from .labels import TASKS, task_input
from .photos import photo_batch
from .registration import REGISTRATION, RULE_TIE
from .render import render_batch
from .textures import texture_batch


DOMAINS: dict[str, Callable[[int], np.ndarray]] = {
    "train": lambda n: render_batch(n, 4000)["rgb"],
    "shifted": lambda n: render_batch(n, 5000, domain="shifted")["rgb"],
    "textures": lambda n: texture_batch(n, 6000),
    "photos": lambda n: photo_batch(n, 8000),
}
"""The probe domains: the zoo's own renderer, a shifted renderer (other light, palette, textures),
procedural textures, and crops of real photographs (`photos.photo_batch`, scikit-image's bundled photos)."""
N_PROBE = REGISTRATION["domains"]["n_probe"]
"""Probe images per domain. The subspace method costs several passes of every model of the zoo per
image (its measured cost: docs/study/table.md), which on 2 CPU cores puts 1000 images per domain at
hours; the probe-size curve (below) says how much fewer images lose."""
SIZES = (16, 32, 64, 100, 1000)

STUDY_METHODS: tuple[str, ...] = tuple(REGISTRATION["candidates"]["methods"])
"""The attribution methods the study measures, as registered in ``candidates.toml``: a newly
registered method is measured by adding its name (or id) there, and nowhere else."""
STUDY_BASELINES: tuple[str, ...] = (*REGISTRATION["candidates"]["baselines"], *REGISTRATION["candidates"]["fusions"])
"""The label-free baselines (representation similarities, DDS, DEPARA) and fusions the study measures, likewise."""
LABEL_SCORES: tuple[str, ...] = ("logme", "hscore", "transrate", "gbc", "leep", "nce")
"""Label-based scores, each on the world's targets where it applies (see `_label_based`)."""
LABEL_SIZES: tuple[int, ...] = (50, 200, 1000)
"""Labelled target images per target for the label-based rows (the first n of one rendered set)."""
LABEL_SEED = 7000  # not a training (1000), test (2000), shifted (3000) or probe (4000-6000) seed
LABEL_GRID = 4
"""Dense labels are read as their area means over a LABEL_GRID × LABEL_GRID grid (class fractions for
class maps), flattened, as LogME's regression targets: fixed before any score was seen."""
LABEL_COLUMNS = 8
"""Regression targets with more columns are reduced to their top LABEL_COLUMNS principal components
(over the n labelled images): LogME runs its fixed point once per column, and a 4×4 grid of 48 segment
classes would be 768 columns."""
DEPARA_GRID: tuple[float, ...] = (0.25, 0.03, 0.1, 0.5, 1.0)
"""DEPARA's λ values for leave-one-target-out cross-validation, declared before looking at the oracle:
the authors' values (0.25 Taskonomy, the default and first, so that it wins ties; 0.03 COCO) and a
coarse grid around them."""
COST_MODELS = 2
"""Group-1 models the costs are measured on (the ratios are averaged over them)."""
COST_REPEATS = 2
"""Timed runs per cost measurement, after one warm-up run; the fastest counts."""
TABLE_MD = "table.md"
CURVE_PNG = "probe_size_curve.png"
"""The study's files beside its results.json: the table and the probe-size curve."""


def run_study(out: str | Path, n_probe: int = N_PROBE, sizes: Sequence[int] = SIZES, domains: Sequence[str] = tuple(DOMAINS),
              progress: bool = True, zoo_dir: Path = ZOO_DIR, methods: Sequence[str] = STUDY_METHODS,
              baselines: Sequence[str] = STUDY_BASELINES, label_scores: Sequence[str] = LABEL_SCORES,
              label_sizes: Sequence[int] = LABEL_SIZES, depara_grid: Sequence[float] = DEPARA_GRID,
              bootstrap: Bootstrap = BOOTSTRAP, measure_costs: bool = True) -> dict:
    """Run the whole study into `out` (results.json, plots, table.md); returns the results.

    Per probe domain, a space of every method and baseline over the built-in zoo (stored in
    ``out/store``, so a rerun reuses its maps) is evaluated against the oracle; then the label-based
    scores, the "which estimator when" table (`which`) and the confidence's validation.

    Parameters
    ----------
    out : str or Path
        The results folder (made if missing); a rerun replaces its previous run's files only.
    n_probe : int, default N_PROBE
        Probe images per domain.
    sizes : sequence of int, default SIZES
        Probe sizes of the probe-size curve (those above `n_probe` are left out).
    domains : sequence of str, default all of DOMAINS
        The probe domains, keys of `DOMAINS`.
    progress : bool, default True
        Print each domain and show progress bars.
    zoo_dir : Path, default ZOO_DIR
        The zoo's folder (`demo.load_world`).
    methods : sequence of str, default STUDY_METHODS
        The attribution methods' ids.
    baselines : sequence of str, default STUDY_BASELINES
        The label-free baselines' and fusions' ids.
    label_scores : sequence of str, default LABEL_SCORES
        The label-based scores' names.
    label_sizes : sequence of int, default LABEL_SIZES
        Labelled images per target for the label-based rows.
    depara_grid : sequence of float, default DEPARA_GRID
        DEPARA's λ values for leave-one-target-out cross-validation (empty: no cross-validated row).
    bootstrap : Bootstrap, default BOOTSTRAP
        How the intervals and paired comparisons are drawn.
    measure_costs : bool, default True
        Time each estimator against a forward+backward pass; False skips the timing (the cost column
        then reads n/a).

    Returns
    -------
    dict
        The results: ``n_probe``, ``group1``, ``domains`` (per domain, each estimator's figures and the
        failures), ``probe_size_curve`` and ``asymmetry`` (with the "train" domain), ``which``,
        ``confidence``, ``seconds`` and ``table`` (`format_study`'s markdown). ``results.json`` holds
        the same, less ``table``.
    """
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs, record, truth, oracle_info = load_world(Path(zoo_dir))
    group1 = [s.name for s in specs if record["models"][s.name]["group"] == 1]
    later = {s.name for s in specs if record["models"][s.name]["group"] in (2, 3)}
    tasks = {s.name: s.label for s in specs}
    results: dict = {"n_probe": n_probe, "domains": {}, "group1": group1}
    table_rows: dict[str, dict[str, dict]] = {}
    cv_chosen: dict[str, dict[str, dict]] = {}
    costs: dict[str, float] = {}
    pairs: list[dict] = []  # the confidence beside the realised P@5, per estimator, target and domain
    for domain in domains:
        if progress:
            print(f"probe domain {domain!r}: {n_probe} images", flush=True)
        probe = ProbeSet.from_array(DOMAINS[domain](n_probe))
        space = ModelSpace(methods, baselines=baselines, store=out / "store", progress=progress).fit(specs, probe)
        evaluation = space.evaluate(truth, models=group1)
        rows, table_rows[domain] = {}, {}
        methods_by_id = {m.id: m for m in space.methods_}
        for estimator, result in space.results_.items():
            curves = evaluation.methods[estimator]
            rows[estimator] = {
                **{f"P@{k}": curves.at(k)[0] for k in (1, 3, 5)},
                "R@5": curves.at(5)[1],
                "rho": evaluation.rho[estimator],
                "same_task_nn": _nn(result, tasks, later),
            }
            table_rows[domain][_display(estimator, space.results_)] = {
                "id": estimator, "kind": "attribution" if result.kind == "method" else "label-free", "labels": 0,
                "per_target": which.per_target_figures(evaluation.per_target[estimator]),
                "same_task_nn": rows[estimator]["same_task_nn"], "twin": which.twin_check(result.affinity, result.names),
                **({"passes": _passes(method)} if (method := methods_by_id.get(estimator)) else {})}
        depara = next((b for b in space.baselines_ if b.name == "depara"), None)
        if depara is not None and depara_grid:
            row, chosen = _depara_cv(space, depara, depara_grid, group1, truth)
            table_rows[domain][f"{_display(depara.id, space.results_)} (λ by LOO-CV)"] = row
            cv_chosen.setdefault(f"depara λ (fixed: {depara.edge_weight:g})", {})[domain] = chosen
        results["domains"][domain] = {"estimators": rows, "failures": [f.to_dict() for f in space.failures_],
                                      "chance_same_task_nn": chance_same_task_rate([tasks[s.name] for s in specs],
                                                                                   [s.name in later for s in specs])}
        if domain == "train":
            results["probe_size_curve"] = _probe_size_curve(space, specs, group1, tasks, truth,
                                                            [n for n in sizes if n <= n_probe], probe)
            results["asymmetry"] = _asymmetry(space, group1, tasks, truth, oracle_info)
        if measure_costs and not costs:  # the costs do not depend on the probe domain: measured once
            costs = _costs(space, specs, group1, probe)
        pairs += _confidence_pairs(methods, baselines, out / "store", [s for s in specs if s.name in group1], probe,
                                   truth, domain, progress)
    label_rows, not_applicable, label_costs = _label_based(specs, group1, tasks, truth, label_scores, label_sizes,
                                                           measure_costs, progress)
    results["which"] = _which(table_rows, label_rows, not_applicable, {**costs, **label_costs}, cv_chosen, results,
                              bootstrap, len(group1))
    results["confidence"] = _confidence_validation(pairs, results["which"], bootstrap)
    chosen = _chosen_id(results["which"])
    if chosen is not None:  # what a user of `modelspace run` gets: its default estimators, not the study's many
        extra_methods, extra_baselines = default_estimators(DEFAULT_METHODS, chosen)
        run_pairs = []
        for domain in domains:
            run_pairs += [p for p in _confidence_pairs([*DEFAULT_METHODS, *extra_methods], extra_baselines, out / "store",
                                                       [s for s in specs if s.name in group1],
                                                       ProbeSet.from_array(DOMAINS[domain](n_probe)), truth, domain,
                                                       progress)
                          if p["estimator"] == chosen]
        results["confidence"]["validation"][f"`{results['which']['supported_estimator']}` in a default run "
                                            f"({', '.join([*DEFAULT_METHODS, *extra_methods, *extra_baselines])})"] = \
            which.validate_confidence(run_pairs, REGISTRATION["confidence"]["bands"], bootstrap)
        results["confidence"]["default_run_pairs"] = run_pairs
    results["seconds"] = round(time.time() - start, 1)
    saved = json.loads(json.dumps(results, default=_jsonable))  # what results.json holds
    results["table"] = format_study(results)
    with OutputFolder(out) as folder:  # a rerun replaces its previous run's files only (`results.save`)
        folder.path(TABLE_MD).write_text(results["table"] + "\n")
        _plots(results, folder.path(CURVE_PNG))
        folder.commit(saved)
    return results


def _confidence_pairs(methods, baselines, store: Path, specs, probe: ProbeSet, truth: GroundTruth, domain: str,
                      progress: bool) -> list[dict]:
    """Each estimator's confidence per target beside the target's realised P@5, on one domain.

    Judged as a user with the 20 task models would be: a space of the group-1 models alone (their
    maps come from the study's store), whose rankings are the ones graded against the oracle.
    """
    space = ModelSpace(methods, baselines=baselines, store=store, progress=progress).fit(specs, probe)
    evaluation = space.evaluate(truth)
    pairs = []
    for estimator, result in space.results_.items():
        p5 = which.per_target_figures(evaluation.per_target[estimator])[which.CRITERION]
        for name, label in zip(result.names, result.labels):
            judged = (result.confidence or {}).get(name)
            if judged is not None and label in p5:
                pairs.append({"domain": domain, "estimator": estimator, "target": label, "realised": p5[label],
                              **{k: judged[k] for k in ("confidence", "stability", "agreement")}})
    return pairs


def _confidence_validation(pairs: list[dict], which_data: dict, bootstrap: Bootstrap) -> dict:
    """The registered validation of the confidence, over (target, domain) pairs.

    For the rule's choice, and pooled over the eligible label-free estimators (fixed-parameter rows).
    """
    bands = REGISTRATION["confidence"]["bands"]
    rows = next(iter(which_data["domains"].values()))["rows"]
    eligible = {r["id"] for r in rows.values() if r["kind"] in ("attribution", "label-free")}
    chosen = which_data["supported_estimator"]
    chosen_id = _chosen_id(which_data)
    validation = {}
    if chosen_id is not None:
        validation[f"`{chosen}` (the rule's choice)"] = which.validate_confidence(
            [p for p in pairs if p["estimator"] == chosen_id], bands, bootstrap)
    validation["every eligible estimator, pooled"] = which.validate_confidence(
        [p for p in pairs if p["estimator"] in eligible], bands, bootstrap)
    return {"pairs": pairs, "validation": validation, "bands": bands}


def _chosen_id(which_data: dict) -> str | None:
    """The id of the rule's choice (the table names it by its display name), or None."""
    rows = next(iter(which_data["domains"].values()))["rows"]
    chosen = which_data["supported_estimator"]
    return rows[chosen]["id"] if chosen in rows else None


def _nn(result, tasks: dict[str, str], later: set[str]) -> float:
    """The same-task nearest-neighbour rate of one estimator's result (groups 2 and 3 asked)."""
    return same_task_rate(result.affinity, [tasks[n] for n in result.names], [n in later for n in result.names])


# ------------------------------------------------------------------------------ measures


def _p_at(curves, k: int) -> float:
    return float(curves.at(k)[0])


def _probe_size_curve(space: ModelSpace, specs, group1, tasks, truth: GroundTruth, sizes, probe) -> dict:
    """P@3 with only the first n probe images, for each estimator (maps re-read, not recomputed)."""
    labels = [tasks[n] for n in group1]
    curve: dict[str, dict[int, float]] = {}
    node: dict[tuple[str, int], np.ndarray] = {}  # method name, n -> affinity (DEPARA's node term)
    for method in space.methods_:
        keys = [space.members_[n].entries[method.id] for n in group1]
        readers = [lambda s, e, k=k: space.store_.read(k, s, e) for k in keys]
        curve[method.id] = {}
        for n in sizes:
            matrix = node[method.name, n] = node[method.id, n] = affinity_matrix(readers, n, group1, progress=False,
                                                                                  directions=method.directions)
            curve[method.id][n] = _p_at(evaluate(rank_sources(matrix, labels), truth, restrict_to_estimated=True)[0], 3)
    acts = [encoder_activations(load_model(s), probe.batch(0, len(probe)), progress=False) for s in specs if s.name in group1]
    for baseline in space.baselines_:
        curve[baseline.id] = {}
        for n in sizes:
            if baseline.combines_estimators:
                matrix = node[baseline.id, n] = baseline.fuse([node[get_estimator_id(m), n] for m in baseline.members])
            else:
                affinity = node[baseline.method, n] if baseline.uses_affinity else None
                matrix = node[baseline.id, n] = similarity_matrix([a[:n] for a in acts], baseline, progress=False,
                                                                  names=group1, affinity=affinity)
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


# ------------------------------------------------------------------------- which estimator when


def _display(estimator: str, results) -> str:
    """The table name of an estimator id: its bare name unless two computed ids share it."""
    return estimator_label(estimator, results)


def _depara_cv(space: ModelSpace, depara, grid: Sequence[float], group1: list[str], truth: GroundTruth
               ) -> tuple[dict, dict]:
    """DEPARA with λ chosen by leave-one-target-out cross-validation over `grid` (group-1 targets).

    DEPARA's matrix is (A + λ E) / (1 + λ) with A its node method's affinity; E, the activation
    (edge) term, is recovered from the fixed-λ matrix, so that no λ costs another pass over the models.
    """
    result, node = space.results_[depara.id], space.results_[depara.method]
    keep = [n for n in result.names if n in group1 and n in node.names]
    s = result.affinity[np.ix_(*[[result.names.index(n) for n in keep]] * 2)]
    a = node.affinity[np.ix_(*[[node.names.index(n) for n in keep]] * 2)]
    lam = depara.edge_weight
    edge = ((1 + lam) * s - a) / lam
    labels = [result.labels[result.names.index(n)] for n in keep]
    figures = {}
    for value in grid:
        variant = get_baseline(depara.name, method=depara.method, edge_weight=value)
        _, details = evaluate(rank_sources(variant.combine(a, edge), labels), truth, restrict_to_estimated=True)
        figures[value] = which.per_target_figures(details)
    cv = which.cross_validated_row(figures)
    row = {"id": depara.id, "kind": "cross-validated", "labels": 0, "per_target": cv["per_target"],
           "same_task_nn": None, "twin": None}
    return row, {f"{v:g}": c for v, c in cv["counts"].items()}


def _passes(method) -> int:
    """How many forward+backward passes an attribution method makes per image (its input passes)."""
    return len(list(method.passes(torch.zeros(1, 3, 4, 4))))


def _batches(images: torch.Tensor, size: int = 32):
    return (images[i:i + size] for i in range(0, len(images), size))


def _forward_backward(loaded, images: torch.Tensor, runtime: Runtime) -> None:
    """The cost unit: one forward pass to R and one backward pass from R to the input, per image.

    The weights are frozen as the attribution methods have them (no weight gradients).
    """
    tap = loaded.tap()
    flags = [(p, p.requires_grad) for p in loaded.module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for batch in _batches(images):
            x = runtime.inputs(loaded.transform, batch).requires_grad_(True)
            r = tap(x)
            torch.autograd.grad(r, x, grad_outputs=torch.ones_like(r))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _costs(space: ModelSpace, specs, group1: list[str], probe: ProbeSet) -> dict[str, float]:
    """Each estimator's per-model computation, timed against one forward+backward pass.

    The pass is of the same model over the same probe images; the cost is the mean ratio over
    `COST_MODELS` group-1 models.

    Attribution methods: their maps (each method alone; saliency and gradient×input share one
    pass when computed together). Baselines: the encoder forward pass and the baseline's
    per-model preparation, plus the node method's maps for DEPARA. The pairwise comparisons (M − 1
    per added model, cheap next to these) are not counted.
    """
    images, runtime = probe.batch(0, len(probe)), Runtime.of("cpu")
    ratios: dict[str, list[float]] = {}
    for spec in [s for s in specs if s.name in group1][:COST_MODELS]:
        loaded = load_model(spec)

        def reference(loaded=loaded) -> None:
            _forward_backward(loaded, images, runtime)

        def maps(methods, loaded=loaded) -> None:
            for batch in _batches(images):
                compute_maps(loaded, batch, methods, probe.size, runtime)

        def prepare(baseline, loaded=loaded) -> None:
            baseline.prepare(encoder_activations(loaded, images, progress=False), loaded.name)
            if baseline.uses_affinity:
                maps([get_method(baseline.method)])

        for method in space.methods_:
            ratios.setdefault(method.id, []).append(which.measure_cost(lambda m=method: maps([m]), reference,
                                                                       COST_REPEATS))
        for baseline in space.baselines_:
            if baseline.combines_estimators:
                continue  # the sum of its members' costs, below
            ratios.setdefault(baseline.id, []).append(which.measure_cost(lambda b=baseline: prepare(b), reference,
                                                                         COST_REPEATS))
    costs = {estimator: float(np.mean(r)) for estimator, r in ratios.items()}
    for fusion in (b for b in space.baselines_ if b.combines_estimators):
        costs[fusion.id] = sum(costs[get_estimator_id(m)] for m in fusion.members)
    return costs


def _regression_targets(label: np.ndarray, kind: str, channels: int) -> np.ndarray:
    """A target task's labels as (N, Q) float regression targets.

    Image values as they are, dense maps as area means over a `LABEL_GRID` grid (class maps as the
    fractions of each class); constant columns dropped, then at most `LABEL_COLUMNS` principal
    components (those with nonzero variance).
    """
    n = len(label)
    if kind == "dense_classification":
        label = np.stack([label == k for k in range(channels)], axis=-1)
    if kind != "image_regression":
        h, w = label.shape[1:3]
        g = LABEL_GRID
        label = np.asarray(label, dtype=np.float64).reshape(n, g, h // g, g, w // g, -1).mean(axis=(2, 4))
    y = np.asarray(label, dtype=np.float64).reshape(n, -1)
    y = y[:, y.std(axis=0) > 0]  # a column constant over the images carries no information
    if y.shape[1] > LABEL_COLUMNS:
        u, s, _ = np.linalg.svd(y - y.mean(axis=0), full_matrices=False)
        # only components with variance: labels of rank < LABEL_COLUMNS would add all-zero columns
        keep = min(LABEL_COLUMNS, int(np.sum(s > 1e-9 * s[0])))
        y = u[:, :keep] * s[:keep]
    return y


def _label_based(specs, group1: list[str], tasks: dict[str, str], truth: GroundTruth, scores: Sequence[str],
                 sizes: Sequence[int], measure_costs: bool, progress: bool) -> tuple[dict, dict, dict]:
    """Rows of the label-based scores, graded against the oracle like the estimators.

    Each group-1 target is scored with n labelled images of its task (rendered in the training domain,
    seed `LABEL_SEED`, as the target's model sees them), every group-1 model ranked as a source by its score.

    A score that takes class labels only (H-score, TransRate, GBC) is scored on the image-classification
    targets and is n/a on the others; LogME takes the others as regression (`_regression_targets`).
    LEEP and NCE need a classifier head on every source: n/a here, where most sources are dense
    predictors. Returns (rows, n/a reasons, costs per row).
    """
    rows: dict[str, dict] = {}
    not_applicable: dict[str, str] = {}
    costs: dict[str, float] = {}
    if not scores or not sizes:
        return rows, not_applicable, costs
    n_max = max(sizes)
    if progress:
        print(f"label-based scores: {n_max} labelled images per target", flush=True)
    data = render_batch(n_max, LABEL_SEED)
    sources = [s for s in specs if s.name in group1]
    targets = [t for t in truth.targets if t in {tasks[n] for n in group1}]
    heads = sum(TASKS[tasks[n]][0] == "image_classification" for n in group1)
    scorers = []
    for name in scores:
        scorer = get_score(name)
        if scorer.takes == "probs":
            not_applicable[scorer.name] = (f"needs a classifier head on every source; {heads} of {len(group1)} "
                                           "group-1 sources have one")
            continue
        try:
            regression = get_score(name, regression=True)
        except ModelspaceError:  # a classification-only score has no regression form
            regression = None
        scorers.append((scorer, regression))
    # features: one forward pass per source model and input variant (the image, or the noisy,
    # grey or masked image of a self-supervised target)
    variants = {t: (t if task_input(t, data["rgb"]) is not data["rgb"] else "image") for t in targets}
    batches = {v: ProbeSet.from_array(task_input(v, data["rgb"]) if v != "image" else data["rgb"]).batch(0, n_max)
               for v in set(variants.values())}
    features: dict[str, dict[str, np.ndarray]] = {}
    loaded_first = None
    for spec in sources:
        loaded = load_model(spec)
        loaded_first = loaded_first or loaded
        features[spec.name] = {v: encoder_activations(loaded, b, pool=True, progress=False) for v, b in batches.items()}
    for scorer, regression in scorers:
        for n in sorted(sizes):
            if progress:
                print(f"  {scorer.name}, n = {n}: {len(targets)} targets × {len(sources)} sources", flush=True)
            ranking, skipped = {}, []
            for t in targets:
                kind, channels, _ = TASKS[t]
                if kind == "image_classification":
                    use, y = scorer, np.asarray(data[t][:n])
                elif regression is not None:
                    use, y = regression, _regression_targets(data[t][:n], kind, channels)
                else:
                    continue
                try:
                    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # reported below
                        values = {s.name: use(features[s.name][variants[t]][:n], y) for s in sources}
                except ModelspaceError as exc:  # e.g. GBC with a class seen once among n images
                    skipped.append(f"{t} ({exc})")
                    continue
                bad = [m for m, v in values.items() if not np.isfinite(v)]
                if bad:  # e.g. LogME's evidence without a maximum when D >= n: no order to grade
                    skipped.append(f"{t} (not finite for {len(bad)} of {len(values)} sources)")
                    continue
                ranking[t] = [tasks[m] for m in sorted(values, key=lambda m: -values[m])]
            if not ranking:
                not_applicable[f"{scorer.name} (n={n})"] = (
                    f"no target scored: failed on all {len(skipped)} it applies to, e.g. {skipped[0]}" if skipped
                    else "no target it applies to")
                continue
            _, details = evaluate(ranking, truth, restrict_to_estimated=True)
            row = {"id": f"{scorer.id} n={n}", "kind": "label-based", "labels": n,
                   "per_target": which.per_target_figures(details), "same_task_nn": None, "twin": None}
            if skipped:
                row["note"] = "not scored: " + "; ".join(skipped)
            rows[f"{scorer.name} (n={n})"] = row
            if measure_costs and loaded_first is not None:
                row["cost"] = _label_cost(loaded_first, batches["image"] if "image" in batches else
                                          next(iter(batches.values())), scorer, regression, data, targets, n)
    return rows, not_applicable, costs


def _label_cost(loaded, images: torch.Tensor, scorer, regression, data: dict, targets: list[str], n: int) -> float:
    """One label-based score's per-model cost on n labelled images (pooled forward pass + the score).

    Against one forward+backward pass over the same n images; on the first target it applies to.
    """
    runtime = Runtime.of("cpu")
    target = next((t for t in targets if TASKS[t][0] == "image_classification"), None)
    use = scorer
    if target is not None:
        y = np.asarray(data[target][:n])
    else:
        target = targets[0]
        kind, channels, _ = TASKS[target]
        use, y = regression, _regression_targets(data[target][:n], kind, channels)

    def run() -> None:
        try:
            use(encoder_activations(loaded, images[:n], pool=True, progress=False), y)
        except ModelspaceError:
            pass  # timed all the same: the forward pass is most of the cost

    return which.measure_cost(run, lambda: _forward_backward(loaded, images[:n], runtime), COST_REPEATS)


def _which(table_rows: dict, label_rows: dict, not_applicable: dict, costs: dict, cv_chosen: dict, results: dict,
           bootstrap: Bootstrap, n_targets: int) -> dict:
    """The "which estimator when" table's data: summarised rows per domain, the recommendation, notes."""
    domains = {}
    ids = []
    for domain, rows in table_rows.items():
        rows = {**rows, **json.loads(json.dumps(label_rows))}  # the same labelled images on every domain
        for row in rows.values():
            row.setdefault("cost", costs.get(row["id"]))
            ids.append(row["id"])
        which.summarise_rows(rows, bootstrap)
        domains[domain] = {"rows": rows, "not_applicable": not_applicable, "n_targets": n_targets,
                           "random_p5": 5 / (n_targets - 1),
                           "chance_same_task_nn": results["domains"][domain]["chance_same_task_nn"]}
    recommendation, supported = which.recommend({d: b["rows"] for d, b in domains.items()}, DEFAULT_ESTIMATOR,
                                                bootstrap, tie=RULE_TIE)
    twins = max((r["twin"] or {}).get("n_twins", 0) for b in domains.values() for r in b["rows"].values())
    passes = {r["id"]: r["passes"] for b in domains.values() for r in b["rows"].values() if "passes" in r}
    notes = [
        "Parameters, all fixed before the oracle was looked at: "
        + ", ".join(f"`{i}`" for i in dict.fromkeys(ids) if "n=" not in i)
        + "; each model's declared encoder layer R; one direction of R (its mean), signed maps.",
        *([f"DEPARA's λ: the fixed value above, and, as a separate row, chosen per held-out target by leave-one-target-out "
           f"cross-validation over {list(DEPARA_GRID)} (by mean {which.CRITERION} on the other targets); that row has no "
           "single λ, so its NN and twin figures are n/a."] if cv_chosen else []),
        f"Label-based rows: the first n of {max(LABEL_SIZES)} labelled images per target (training renderer domain, "
        f"seed {LABEL_SEED}, the target model's input), features = R averaged over its spatial positions; dense labels "
        f"as {LABEL_GRID}×{LABEL_GRID} area means, regression targets cut to their top {LABEL_COLUMNS} principal "
        "components (LogME regression); they do not use the probe images, so they are the "
        "same on every domain; NN and twin figures are model-to-model and n/a for them.",
        "Cost: measured on CPU, each estimator's per-model computation over the same images timed against one forward "
        f"pass to R and one backward pass to the input (fastest of {COST_REPEATS} timed runs after a warm-up, mean "
        f"over {COST_MODELS} group-1 models); the M − 1 pairwise comparisons per model are not counted. Derived "
        "from the passes instead, an attribution method costs its number of input passes: "
        + ", ".join(f"`{i}` {n}" for i, n in passes.items())
        + " (saliency and gradient×input share one when computed together).",
        "Seed twins: models named `X@seed…` beside an original `X`"
        + ("." if twins else "; this world has none, so the twin figures are n/a (world v2 adds them)."),
    ]
    notes += [f"{name}: {row['note']}" for name, row in next(iter(domains.values()))["rows"].items() if row.get("note")]
    return {"domains": domains, "recommendation": recommendation, "supported_estimator": supported,
            "default_estimator": DEFAULT_ESTIMATOR, "cv": cv_chosen, "notes": notes,
            "n_resamples": bootstrap.n_resamples, "level": bootstrap.level}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ------------------------------------------------------------------------------ output


#: The parts of the study's markdown, in the order `format_study` joins them (`study_sections`' keys).
STUDY_SECTIONS = ("estimators", "probe-size", "symmetry", "candidates", "which", "confidence")


def study_sections(results: dict) -> dict[str, str]:
    """The study's markdown, part by part: what `format_study` joins, for a page that shows some of them.

    Parameters
    ----------
    results : dict
        `run_study`'s results (or a ``results.json`` read back).

    Returns
    -------
    dict of str to str
        The parts the results hold, in `STUDY_SECTIONS`' order, each without a blank line at either end:
        ``estimators`` (per-domain P@K, R@K, ρ and NN), ``probe-size`` (P@3 against the number of probe
        images), ``symmetry`` (the symmetric ceiling and the source-generality variant), ``candidates``
        (*Every candidate on every domain*), ``which`` (*Which estimator when*: its per-domain tables,
        recommendation and notes) and ``confidence`` (its validation). The first three have no heading of
        their own; the others' headings start at level 2 (``##``), their subsections at level 3.
    """
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
        lines.append(f"| {_display(est, estimators)} | " + " | ".join(cells) + " |")
    chance = [f"{results['domains'][d]['chance_same_task_nn']:.2f}" for d in domains]
    random_p = 5 / (len(results["group1"]) - 1)
    lines.append("| random | " + " | ".join(f"{random_p:.2f} | {random_p:.2f} | {random_p:.2f} | {random_p:.2f} | 0 | {c}"
                                          for c in chance) + " |")
    parts = {"estimators": lines}
    if "probe_size_curve" in results:
        sizes = list(next(iter(results["probe_size_curve"].values())))
        lines = ["P@3 (training domain) against the number of probe images:", "",
                 "| estimator | " + " | ".join(str(s) for s in sizes) + " |", "|" + "---|" * (1 + len(sizes))]
        for est, curve in results["probe_size_curve"].items():
            lines.append(f"| {_display(est, results['probe_size_curve'])} | " + " | ".join(f"{curve[s]:.2f}" for s in sizes) + " |")
        parts["probe-size"] = lines
    if "asymmetry" in results:
        a = results["asymmetry"]
        c = a["symmetric_oracle_ceiling"]
        lines = [f"Symmetry: the oracle's own ranks, symmetrised, score P@1 {c['P@1']:.2f}, P@3 {c['P@3']:.2f}, "
                 f"P@5 {c['P@5']:.2f} against the oracle (the ceiling of any symmetric estimate).",
                 "Source-generality variant (A[t,s] + mean affinity of s), training domain:", "",
                 "| estimator | P@1 | P@3 | P@5 |", "|---|---|---|---|"]
        for est, r in a["generality_variant"].items():
            lines.append(f"| {_display(est, a['generality_variant'])} | {r['P@1']:.2f} | {r['P@3']:.2f} | {r['P@5']:.2f} |")
        parts["symmetry"] = lines
    if "which" in results:
        parts["candidates"] = ["## Every candidate on every domain", "", which.format_candidates(results["which"]).rstrip()]
        parts["which"] = [which.format_which(results["which"]).rstrip()]
    if results.get("confidence"):
        parts["confidence"] = [which.format_confidence(results["confidence"]["validation"],
                                                       REGISTRATION["confidence"]["bands"]).rstrip()]
    return {name: "\n".join(lines) for name, lines in parts.items()}


def format_study(results: dict) -> str:
    """Markdown tables of the study: its parts (`study_sections`), one blank line between each two.

    Parameters
    ----------
    results : dict
        `run_study`'s results (or a ``results.json`` read back).

    Returns
    -------
    str
        The markdown: per-domain figures, the probe-size curve, the symmetry check, every candidate on
        every domain, the "which estimator when" table and the confidence's validation, each where the
        results hold it.
    """
    return "\n\n".join(study_sections(results).values())


def _plots(results: dict, path: Path) -> None:
    """The probe-size curve, drawn to ``path`` (nothing without one)."""
    from matplotlib.figure import Figure

    if "probe_size_curve" not in results:
        return
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for est, curve in results["probe_size_curve"].items():
        sizes = [int(s) for s in curve]
        ax.plot(sizes, list(curve.values()), marker="o", label=_display(est, results["probe_size_curve"]))
    ax.axhline(5 / (len(results["group1"]) - 1), color="grey", linestyle="--", label="random")
    ax.set_xscale("log")
    ax.set_xlabel("probe images")
    ax.set_ylabel("P@3")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
