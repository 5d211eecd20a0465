"""The HTML report: one self-contained page of a run, readable offline and for 5 or 200 models.

    from modelspace.report import from_space, write_report
    write_report(from_space(space, truth="taskonomy"), "out/report.html")

or, from a folder that `ModelSpace.save` (`modelspace run`) wrote: `write_report(from_folder("out/"), ...)`.

The page opens with a summary drawn from the results (which estimator ranks sources best, by how much,
and whether the lead is more than chance, by a bootstrap over targets; without a truth, how the models
group), then any failures, and any estimator the probe set leaves undefined with the reason (also in its
tab under Model space and in the settings). It holds the attribution-map grid (the paper's Figure 2),
per estimator the affinity heatmap in tree order, the dendrogram and a 2-D map of the model space
(classical MDS on 1 − affinity), two estimators compared as the paper's Figures 3 and 5 compare them (a pair
chosen in the page: their matrices and trees side by side with the trees' agreement, the difference of the
normalised matrices and the Correlation–Priority Curve, `evaluation.pairs`), per-target tables of the top
sources, the label-based scores of a run with labelled images (each score's ranking of the models, and
whether it can rank them at this number of labels), and — with a ground truth — the P@K/R@K curves beside random and oracle and the truth's tree
beside the estimated one with their agreement; last, the settings that reproduce it. Figures are palette
PNGs inlined as data: URIs; the style and a small script are inline too. Names and messages show their
control characters escaped, as on the terminal (`errors.printable`).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..attribution import METHODS
from ..errors import InputError, printable
from ..evaluation import (BOOTSTRAP, BUNDLED, Comparison, Comparisons, Curves, Evaluation, GroundTruth,
                          compare_estimators, evaluate_matrices, pair_agreement, pair_comparisons,
                          relevant_for)
from ..models import describe_preprocessing
from ..results import TRUTH_AFFINITY_CSV, MethodResult, holds, read_matrix
from ..results import load as load_folder
from ..identity import find
from ..similarity import (
    BASELINES,
    HUB_SHARE,
    classical_mds,
    clusters,
    hubs,
    mds_explained,
    similarity_tree,
    top_sources,
    tree_agreement,
)
from ..world.registration import RULE_TIE
from . import figures as figs
from .assets import CSS, JS
from .plots import thin_labels

TOP_SOURCES = 5
"""Sources listed per target in the tables."""

WIDE_FROM = 24
"""Beyond this many models, the heatmap, the model-space map and the tree each take the page's full width
(a tree of many leaves is tall: at half width its names would be drawn too small to read)."""

MATRIX_SCALE = 1000
"""The heatmap's hover data holds round(affinity × MATRIX_SCALE) as integers."""

REPEAT_TREES_UP_TO = 30
"""Up to this many tasks, the evaluation draws each estimate's tree beside the truth's even when it is the
tree already under Model space; beyond, that tree is not drawn twice (the agreement figure compares them)."""

OPEN_TARGETS = 3
"""The first this many per-target tables are shown open; the others are collapsed."""

OPEN_SKIPPED = 10
"""Up to this many skipped probe files, their list is shown open; more are collapsed."""

@dataclass
class ReportData:
    """Everything the page shows; build it with `from_space` or `from_folder`, or by hand.

    Attributes
    ----------
    estimators : list of MethodResult
        The attribution methods' and baselines' model spaces.
    settings : dict
        The run's summary (`results.json`).
    evaluation : Evaluation or None
        Scores against a ground truth (its JSON form is accepted too).
    truth : GroundTruth or None
        The ground truth, for the per-target tables' relevant sources.
    truth_tree : (np.ndarray, list of str, str) or None
        The truth's tree to draw beside the estimated ones: an affinity over tasks, the tasks and a caption.
    title : str
        The page's title.
    grids : dict of str to bytes
        PNG of the attribution grid per method id.
    comparisons : Comparisons or None
        The pairs of estimators compared (`evaluation.pair_comparisons`); None: computed when the page is
        written, from the estimators and the truth (or, without a truth, the run's ``results.json``).
    """

    estimators: list[MethodResult]
    settings: dict = field(default_factory=dict)
    evaluation: Evaluation | None = None
    truth: GroundTruth | None = None
    truth_tree: tuple[np.ndarray, list[str], str] | None = None
    title: str = "modelspace report"
    grids: dict[str, bytes] = field(default_factory=dict)
    comparisons: Comparisons | None = None

    def __post_init__(self) -> None:
        if self.evaluation is not None and not isinstance(self.evaluation, Evaluation):
            self.evaluation = Evaluation.from_dict(self.evaluation)


# --------------------------------------------------------------------------- building the data


def from_space(space, truth: GroundTruth | str | Path | None = None,
               truth_tree: tuple[np.ndarray, list[str], str] | None = None,
               grid_images: int = 6, grid_models: int = 8, title: str = "modelspace report") -> ReportData:
    """Report data of a fitted `ModelSpace` (its evaluation, if `evaluate` was called, included).

    The space's own trees and rankings are shown: its linkage method may not be the default.

    Parameters
    ----------
    space : ModelSpace
        A fitted space.
    truth : GroundTruth, str or Path, optional
        A ground truth, or the name of a bundled one or a file (`GroundTruth.load`).
    truth_tree : (np.ndarray, list of str, str), optional
        The truth's tree: affinity over tasks, tasks, caption (default: from the truth's ranks,
        `truth_affinity`).
    grid_images : int, default 6
        Probe images per attribution grid.
    grid_models : int, default 8
        Models per attribution grid.
    title : str, default "modelspace report"
        The page's title.

    Returns
    -------
    ReportData
        What the page shows.
    """
    settings = space.summary()  # raises if the space is not fitted
    views = list(space.results_.values())
    grids = {}
    for v in views:
        if v.kind == "method" and v.names:
            images, maps = space.grid(v.id, grid_images, grid_models)
            grids[v.id] = figs.grid_png(images, maps, len(images))
    truth = _truth(truth)
    if truth is not None and truth_tree is None:
        truth_tree = truth_affinity(truth, views[0].labels if views else [])
    return ReportData(views, settings, getattr(space, "evaluation_", None), truth, truth_tree, title, grids)


def from_folder(folder: str | Path, truth: GroundTruth | str | Path | None = None, n_relevant: int | None = None,
                title: str = "modelspace report") -> ReportData:
    """Report data of an output folder written by `ModelSpace.save` (`modelspace run`, `demo`).

    With a `truth` the evaluation is recomputed against it; otherwise the folder's own is shown.
    The truth's tree comes from `oracle_affinity.csv` in the folder if there is one (the demo writes it).
    Only the files that the folder's `results.json` lists are read.

    Parameters
    ----------
    folder : str or Path
        The output folder.
    truth : GroundTruth, str or Path, optional
        A ground truth, or the name of a bundled one or a file (`GroundTruth.load`).
    n_relevant : int, optional
        With a truth, the relevant sources per target (default: `evaluation.relevant_for`'s).
    title : str, default "modelspace report"
        The page's title.

    Returns
    -------
    ReportData
        What the page shows.

    Raises
    ------
    InputError
        A folder that `results.load` cannot read, or a truth that cannot be read.
    """
    folder = Path(folder)
    settings, results, grids = load_folder(folder)
    views = list(results.values())
    truth = _truth(truth)
    evaluation = settings.get("evaluation")
    if truth is not None:
        evaluation = evaluate_views(views, truth, n_relevant)
    truth_tree = None
    if holds(folder, settings, TRUTH_AFFINITY_CSV):
        matrix, tasks_ = read_matrix(folder / TRUTH_AFFINITY_CSV)
        truth_tree = (matrix, tasks_, "Oracle tree (measured transfers)")
    elif truth is not None:
        truth_tree = truth_affinity(truth, views[0].labels if views else [])
    return ReportData(views, settings, evaluation, truth, truth_tree, title, grids)


def evaluate_views(views: list[MethodResult], truth: GroundTruth, n_relevant: int | None = None) -> Evaluation:
    """P@K / R@K of every estimator against `truth` (models matched by task label).

    Parameters
    ----------
    views : list of MethodResult
        The estimators' model spaces.
    truth : GroundTruth
        The ground truth.
    n_relevant : int, optional
        The relevant sources per target; None: `evaluation.relevant_for`'s default, as
        `ModelSpace.evaluate` and `modelspace run` take it.

    Returns
    -------
    Evaluation
        The scores of every estimator.
    """
    labels = list(dict.fromkeys(label for v in views for label in v.labels))
    return evaluate_matrices({v.id: (v.affinity, v.labels) for v in views}, truth,
                             relevant_for(truth, labels, n_relevant))


def truth_affinity(truth: GroundTruth, labels: list[str]) -> tuple[np.ndarray, list[str], str] | None:
    """A similarity over the tasks both in `labels` and the truth, from the truth's ranks, for its tree.

    A target's candidates score 1 (best) down to 0 (worst) by rank; the score is symmetrised.

    Parameters
    ----------
    truth : GroundTruth
        The ground truth.
    labels : list of str
        The models' task labels.

    Returns
    -------
    (np.ndarray, list of str, str) or None
        The affinity over the shared tasks (1 on the diagonal), the tasks and a caption; None when
        fewer than two tasks are shared.
    """
    tasks = [t for t in dict.fromkeys(labels) if t in truth.ranking]
    if len(tasks) < 2:
        return None
    index = {t: i for i, t in enumerate(tasks)}
    score = np.full((len(tasks), len(tasks)), np.nan)
    for t in tasks:
        ranked = [s for s in truth.ranking[t] if s in index]
        for pos, s in enumerate(ranked):
            score[index[t], index[s]] = 1.0 - pos / max(len(ranked) - 1, 1)
    score = np.where(np.isnan(score), np.nan_to_num(score.T, nan=0.0), score)  # one-sided pairs
    a = (score + score.T) / 2
    np.fill_diagonal(a, 1.0)
    return a, tasks, "Ground-truth tree (from its ranks)"


def _truth(truth: GroundTruth | str | Path | None) -> GroundTruth | None:
    if truth is None or isinstance(truth, GroundTruth):
        return truth
    return GroundTruth.load(truth)


# --------------------------------------------------------------------------- the page


def write_report(data: ReportData, path: str | Path, progress: bool = False,
                 summary_estimator: str | None = None, compare: tuple[str, str] | None = None) -> Path:
    """Write the page to `path` (parents created); returns the path.

    Parameters
    ----------
    data : ReportData
        What the page shows.
    path : str or Path
        The HTML file to write.
    progress : bool, default False
        A progress bar over the sections.
    summary_estimator : str, optional
        The estimator whose sources the per-target lines and the summary name (an id, or its name
        without parameters, e.g. ``"lrp_epsilon"``). By default the best by P@5 when there is an
        evaluation, else the first estimator.
    compare : (str, str), optional
        The pair of estimators the comparison shows first (ids or names without parameters): the
        first ranks the sources, the second gives the similarity. By default the run's first
        attribution method against the first other estimator (`evaluation.default_pairs`).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        No estimator to show, or a ``summary_estimator`` that is none of them.
    """
    from ..progress import progress as progress_bar

    if not data.estimators:
        raise InputError("report: no estimator to show (every model failed?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = _Page()
    page.comparison = _compare(data.evaluation)
    page.view, page.why = _summary_view(data, page.comparison, summary_estimator)
    page.pairs = comparisons_for(data, compare)
    steps = [("summary", _section_summary), ("failures", _section_failures), ("maps", _section_maps),
             ("space", _section_space), ("compare", _section_compare), ("sources", _section_sources),
             ("labels", _section_labels), ("evaluation", _section_evaluation), ("settings", _section_settings)]
    body = []
    for _, section in progress_bar(steps, desc="report", unit="section", disable=not progress):
        body.append(section(data, page))
    path.write_text(page.document(data, "\n".join(b for b in body if b)), encoding="utf-8")
    return path


# Inside <script>, "</script" ends the block and "<!--" followed by "<script" makes the browser
# skip the real "</script>" (HTML's "script data double escaped" state), swallowing the rest of
# the page's scripts; "&" and ">" complete those sequences. U+2028/2029 are line ends to older JS.
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(payload: Any) -> str:
    r"""``payload`` as JSON that is safe as the text of a ``<script>`` element, whatever strings it holds.

    Parameters
    ----------
    payload : object
        JSON-able data.

    Returns
    -------
    str
        Compact JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 written as ``\uXXXX`` escapes, so
        that it parses to the same value and holds no markup.
    """
    text = json.dumps(payload, separators=(",", ":"))
    return "".join(_SCRIPT_ESCAPES.get(c, c) for c in text)


def resolve_estimator(views: list[MethodResult], name: str) -> MethodResult:
    """The estimator of `views` named `name`.

    Parameters
    ----------
    views : list of MethodResult
        The estimators' model spaces.
    name : str
        An id, a name without parameters or an alias (the first estimator of that name).

    Returns
    -------
    MethodResult
        The estimator.

    Raises
    ------
    InputError
        None of the estimators has that name.
    """
    found = find(name, [v.id for v in views], {**METHODS.aliases, **BASELINES.aliases})
    for v in views:
        if v.id == found:
            return v
    raise InputError(f"summary estimator: {name!r} is not one of the estimators: {', '.join(v.id for v in views)}")


def headline_k(evaluation: Evaluation) -> int:
    """The K of the P@K the page leads with.

    Parameters
    ----------
    evaluation : Evaluation
        The scores against a ground truth.

    Returns
    -------
    int
        5, or fewer when the truth counts fewer relevant sources or ranks fewer candidates (at K above
        the relevant count, P@K cannot reach 1 and says less); at least 1.
    """
    return max(1, min(5, evaluation.n_relevant, evaluation.n_candidates))


def _compare(evaluation: Evaluation | None) -> Comparison | None:
    if evaluation is None or not evaluation.per_target:
        return None  # an evaluation read from an old results.json may lack the per-target details
    if evaluation.n_relevant >= evaluation.n_candidates:  # every candidate is relevant: P@K is 1 for any order
        return compare_estimators(evaluation, "rho", bootstrap=BOOTSTRAP, tie=RULE_TIE)
    return compare_estimators(evaluation, "precision", headline_k(evaluation), BOOTSTRAP, tie=RULE_TIE)


def _rule(c: Comparison) -> str:
    """How the summary's best estimator is chosen: the study's registered rule on this one evaluation."""
    tie = f"means within {c.tie:g} tie"
    steps = (f"the highest mean {c.metric}; {tie}, and a tie goes to the higher mean Spearman ρ (within {c.tie:g} "
             "too), then to the estimator listed first" if c.metric.startswith("P@")
             else f"the highest mean ρ; {tie}, and a tie goes to the estimator listed first")
    return (f"The best is chosen by the selection rule registered for <code>modelspace study</code> "
            f"(<code>data/world/candidates.toml</code>), on this one evaluation: {steps} (the rule's last step, the "
            "lower cost, needs measured costs, which a run does not have).")


def _summary_view(data: ReportData, comparison: Comparison | None, chosen: str | None) -> tuple[MethodResult, str]:
    ranked = [v for v in data.estimators if v.ranking]
    views = ranked or data.estimators
    if chosen is not None:
        return resolve_estimator(data.estimators, chosen), "chosen"
    if comparison is not None and comparison.best in {v.id for v in views}:
        return next(v for v in views if v.id == comparison.best), f"the best by {comparison.metric}"
    if data.evaluation:
        k = headline_k(data.evaluation)
        best = max(data.evaluation.methods, key=lambda n: _at(data.evaluation.methods[n], k)[0])
        if best in {v.id for v in views}:
            return next(v for v in views if v.id == best), f"the best by P@{k}"
    return views[0], "the first estimator; no ground truth to pick the best"


class _Page:
    """Collects the JSON blocks the figures' tooltips read, with unique ids.

    Also what the sections share: the estimators' comparison and the estimator the summary lines use.
    """

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str]] = []
        self.comparison: Comparison | None = None
        self.pairs: Comparisons | None = None
        self.view: MethodResult | None = None
        self.why = ""

    def data(self, payload: Any) -> str:
        ident = f"d{len(self.blocks)}"
        self.blocks.append((ident, script_json(payload)))
        return ident

    def document(self, data: ReportData, body: str) -> str:
        scripts = "\n".join(f'<script type="application/json" id="{i}">{p}</script>' for i, p in self.blocks)
        nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in _nav(data))
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.title)}</title>
<style>{CSS}</style></head>
<body>
<header><div class="wrap"><h1>{_e(data.title)}</h1>
<p class="lead">Transferability estimated from attribution maps (Song et al., NeurIPS 2019): two models are as
close as their attribution maps on the same unlabeled probe images; a target's best sources are its nearest models.</p>
{_facts(data)}<nav>{nav}</nav></div></header>
<main class="wrap">
{body}
</main>
<footer class="wrap">modelspace {_e(__version__)} · built {_e(_now())} · self-contained: no network needed.</footer>
<div id="tip"></div>
{scripts}
<script>{JS}</script>
</body></html>
"""


def _nav(data: ReportData) -> list[tuple[str, str]]:
    items = [("summary", "Summary")]
    items += [("failures", "Failures")] if data.settings.get("failures") else []
    items += [("maps", "Attribution maps")] if data.grids else []
    items += [("space", "Model space")]
    items += [("compare", "Two estimators")] if len([v for v in data.estimators if len(v.names) >= 2]) >= 2 else []
    items += [("sources", "Sources per target")]
    items += [("labels", "Label-based scores")] if data.settings.get("label_scores") else []
    if data.evaluation or data.truth_tree:
        items.append(("evaluation", "Evaluation"))
    return items + [("settings", "Settings")]


def _facts(data: ReportData) -> str:
    s = data.settings
    probe = s.get("probe") or {}
    n_models = max(len(v.names) for v in data.estimators)
    facts = [(str(n_models), "models"),
             (str(probe.get("n_images", "–")), f"probe images ({probe.get('size', '?')} px)"),
             (str(len([v for v in data.estimators if v.kind == "method"])), "attribution methods"),
             (str(len([v for v in data.estimators if v.kind != "method"])), "baselines"),
             (str(len(s.get("failures") or [])), "failures")]
    if data.evaluation:
        k = headline_k(data.evaluation)  # P@5, or fewer for a smaller zoo or truth
        best = max(data.evaluation.methods.items(), key=lambda kv: _at(kv[1], k)[0])
        facts.append((f"{_at(best[1], k)[0]:.2f}", f"best P@{k} ({best[0]})"))
    cells = []
    for value, what in facts:
        cell = f"<b>{_e(value)}</b><span>{_e(what)}</span>"
        if what == "failures" and value != "0":  # the counter leads to the list
            cell = f'<a href="#failures" class="fail">{cell}</a>'
        cells.append(f"<div>{cell}</div>")
    return '<div class="facts">' + "".join(cells) + "</div>"


def _section_summary(data: ReportData, page: _Page) -> str:
    view, c = page.view, page.comparison
    items, rule = [], ""
    if c is not None:
        ev = data.evaluation
        origin = _truth_label(data.truth.origin)[0] if data.truth else "the run's ground truth"
        rho = ev.rho.get(c.best, float("nan"))
        oracle = _at(ev.oracle, headline_k(ev))[0] if c.metric.startswith("P@") else 1.0
        also = f"; mean Spearman ρ {rho:.2f}" if c.metric.startswith("P@") and np.isfinite(rho) else ""
        lead = (f"Against {_e(origin)}, over {c.n_targets} targets, <b>{_e(c.best)}</b> ranks sources best: "
                f"{c.metric} {c.scores[c.best]:.2f} against {c.scores['random']:.2f} for random ranking and "
                f"{oracle:.2f} for the oracle{also}.")
        others = [n for n in c.tied if n != c.best]
        if others:
            tied = ", ".join(f"{_e(n)} ({c.scores[n]:.3f}" + (f", ρ {ev.rho[n]:.2f}" if also and np.isfinite(ev.rho.get(n, np.nan))
                                                              else "") + ")" for n in others)
            lead += f" It ties on {c.metric} ({c.scores[c.best]:.3f}) with {tied}; the rule below breaks the tie."
        rule = f'<p class="muted">{_rule(c)}</p>'
        items.append(_difference(c, c.vs_random, "random ranking"))
        if c.vs_runner_up is not None:
            items.append(_difference(c, c.vs_runner_up, f"the runner-up, {c.vs_runner_up.other} "
                                     f"({c.scores[c.vs_runner_up.other]:.2f})"))
    elif data.evaluation:
        k = headline_k(data.evaluation)
        best = max(data.evaluation.methods, key=lambda n: _at(data.evaluation.methods[n], k)[0])
        lead = (f"<b>{_e(best)}</b> has the best P@{k}, {_at(data.evaluation.methods[best], k)[0]:.2f} against "
                f"{_at(data.evaluation.random, k)[0]:.2f} for random ranking; the evaluation holds no per-target "
                "scores, so whether the lead is more than chance cannot be said here.")
    else:
        lead = ("No ground truth was given, so this page cannot say which estimator predicts transfer best; it "
                f"shows how the models group. By <b>{_e(view.id)}</b>:")
        items += _structure(view)
        items += _agreement_of_neighbours(data, view)
    hub = hubs(view.ranking) if view.ranking else {}
    if hub:
        items.append("Hub" + ("s" if len(hub) > 1 else "") + ": " + "; ".join(
            f"<b>{_e(s)}</b> is the best source of {n} of {len(view.ranking)} targets" for s, n in hub.items())
            + f" by {_e(view.id)}. A source that many targets share says as much about the estimate (a generic "
            "map close to all) as about transfer.")
    elif view.ranking:
        items.append(f"No hub: no model is the best source of more than a third of the targets by {_e(view.id)}.")
    if view.ranking:
        items.append(f"Sources per target name {_e(view.id)} ({_e(page.why)}); "
                     "<code>--summary-estimator</code> chooses another.")
    items += _label_summary(data.settings)
    items += [_not_computed(estimator, reason) for estimator, reason in _not_computed_items(data.settings)]
    failures = data.settings.get("failures") or []
    if failures:
        items.append(f'<a href="#failures">{len(failures)} failure{"s" if len(failures) != 1 else ""}</a>: '
                     "those models are missing from the estimators they failed in.")
    table = _summary_table(data, c) if c is not None else ""
    return ('<section id="summary"><h2>Summary</h2>'
            f'<p class="conclusion">{lead}</p>{rule}<ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
            + table + "</section>")


def _difference(c: Comparison, d, against: str) -> str:
    verdict = ("<b>not distinguishable</b>: the interval contains 0" if not d.distinguishable
               else "a real difference: the interval excludes 0")
    return (f"Over {_e(against)}: {d.mean:+.2f} {c.metric} ({c.bootstrap.level:.0%} interval {d.low:+.2f} to {d.high:+.2f}, "
            f"bootstrap over targets, {c.bootstrap.n_resamples} resamples) — {verdict}.")


def _summary_table(data: ReportData, c: Comparison) -> str:
    rho = data.evaluation.rho_rows()
    extra = c.metric != "ρ"  # a ρ column beside a P@K headline
    rows = "".join(f'<tr{" class=ref" if n == "random" else ""}><td>{_e(n)}</td><td class="num">{v:.3f}</td>'
                   + (f'<td class="num">{rho.get(n, float("nan")):.3f}</td>' if extra else "")
                   + f'<td class="num">{c.scores[c.best] - v:+.3f}</td></tr>' for n, v in c.scores.items())
    what = f"{c.metric} and ρ" if extra else c.metric
    return (f'<details><summary>The figures this rests on ({what} per estimator, mean over '
            f'{c.n_targets} targets; details under <a href="#evaluation">Evaluation</a>)</summary>'
            f'<table><tr><th>estimator</th><th class="num">{c.metric}</th>'
            + ('<th class="num">ρ</th>' if extra else "")
            + f'<th class="num">best − this</th></tr>{rows}</table></details>')


def _structure(view: MethodResult) -> list[str]:
    """What the matrix of one estimator says without a truth: clusters, closest pair, mutual neighbours."""
    n = len(view.names)
    if n < 2:
        return []
    groups = clusters(view.linkage, n)
    sizes = sorted(np.bincount(groups).tolist(), reverse=True)
    a = view.affinity.copy()
    np.fill_diagonal(a, -np.inf)
    i, j = np.unravel_index(np.argmax(a), a.shape)
    np.fill_diagonal(a, np.inf)
    k, m = np.unravel_index(np.argmin(a), a.shape)
    tops = top_sources(view.ranking) if view.ranking else {}
    mutual = sorted({tuple(sorted((t, s))) for t, s in tops.items() if tops.get(s) == t})
    counts = ", ".join(map(str, sizes[:-1])) + (" and " if len(sizes) > 1 else "") + str(sizes[-1])
    out = [f"{len(sizes)} {'cluster' if len(sizes) == 1 else 'clusters'} cut from the tree, of {counts} "
           f"{'model' if sizes == [1] else 'models'}.",
           f"Closest pair: {_e(view.names[i])} and {_e(view.names[j])} (affinity {view.affinity[i, j]:.3f}); "
           f"least alike: {_e(view.names[k])} and {_e(view.names[m])} ({view.affinity[k, m]:.3f})."]
    if tops:
        shown = ", ".join(f"{_e(x)} – {_e(y)}" for x, y in mutual[:5]) + (" …" if len(mutual) > 5 else "")
        pairs = "1 pair is" if len(mutual) == 1 else f"{len(mutual)} pairs are"
        out.append(f"{pairs} each other's nearest neighbour" + (f": {shown}." if mutual else "."))
    return out


def _agreement_of_neighbours(data: ReportData, view: MethodResult) -> list[str]:
    """How often the other estimators name the same nearest neighbour as `view`."""
    mine = top_sources(view.ranking) if view.ranking else {}
    parts = []
    for v in data.estimators:
        if v is view or not v.ranking or not mine:
            continue
        theirs = top_sources(v.ranking)
        shared = [t for t in mine if t in theirs]
        same = sum(mine[t] == theirs[t] for t in shared)
        parts.append(f"{_e(v.id)} {same} of {len(shared)}")
    return [f"Same nearest neighbour as {_e(view.id)}: " + "; ".join(parts) + "."] if parts else []


def _section_failures(data: ReportData, page: _Page) -> str:
    failures = data.settings.get("failures") or []
    if not failures:
        return ""
    rows = "".join(f"<tr><td>{_e(f['model'])}</td><td>{_e(f.get('method') or 'loading')}</td>"
                   f"<td>{_e(f['message'])}</td></tr>" for f in failures)
    return ('<section id="failures"><h2>Failures</h2><p class="muted">These models are missing from the '
            "estimators named (from every one when loading failed).</p>"
            f"<table><tr><th>model</th><th>step</th><th>why</th></tr>{rows}</table></section>")


def _section_maps(data: ReportData, page: _Page) -> str:
    views = [v for v in data.estimators if v.id in data.grids]
    if not views:
        return ""
    panels = [(v.id, _figure(data.grids[v.id], f"Attribution maps, {v.id}",
                             "Top row: probe images. Below: one row per model (a few, spread along the similarity tree), "
                             "Σ|channels| of its map (a unit vector), on one colour scale for the whole grid "
                             "(the colour bar), so brighter means more of the map's weight there.", zoom=True))
              for v in views]
    return ('<section id="maps"><h2>Attribution maps</h2><p class="muted">What each model looks at: the attribution '
            "of the mean of its encoder output to the input pixels, for the first probe images.</p>"
            + _tabs(panels) + "</section>")


def _section_space(data: ReportData, page: _Page) -> str:
    panels = []
    for k, v in enumerate(data.estimators):
        if len(v.names) < 2:
            panels.append((v.id, '<p class="muted">Fewer than two models: no matrix to show.</p>'))
            continue
        ordered = [v.names[i] for i in v.order]
        matrix = v.affinity[np.ix_(v.order, v.order)]
        png, box = figs.heatmap_png(matrix, ordered, f"Affinity · {v.id}")
        hm = page.data({"kind": "matrix", "box": box, "labels": ordered, **hover_values(matrix)})
        thinned = len(thin_labels(len(ordered))) < len(ordered)
        heat = _figure(png, f"Affinity heatmap of {v.id}", "Rows and columns in the order of the similarity tree"
                       + ("; every k-th name is written" if thinned else "") + "; the diagonal (1 by definition) is "
                       "grey, outside the colour scale of the other pairs. Hover a cell for its pair and value; "
                       "click to zoom.", hover=hm, zoom=True, key=f"heat-{k}")
        coords = classical_mds(v.affinity)
        groups, legend = figs.colour_groups(v.names, v.labels, v.linkage)
        mds_img, mds_box = figs.mds_png(coords, v.names, groups, v.order, f"Model space · {v.id}",
                                        mds_explained(v.affinity), legend)
        notes = [f" ({lab})" if lab != name else "" for name, lab in zip(v.names, v.labels)]
        md = page.data({"kind": "points", "box": mds_box, "labels": v.names, "notes": notes,
                        "x": np.round(coords[:, 0], 4).tolist(), "y": np.round(coords[:, 1], 4).tolist()})
        colours = "tasks" if legend else "clusters cut from the tree"
        mds = _figure(mds_img, f"Model-space map of {v.id}", f"Classical MDS on 1 − affinity; colours are {colours}; "
                      "each axis says the share of the variance it holds. Names that would overlap are left out: "
                      "hover a point for its name.", hover=md)
        tree = _figure(figs.dendrogram_png(v.linkage, v.names, f"Similarity tree · {v.id}"),
                       f"Similarity tree of {v.id}", "Average linkage on 1 − affinity; click to zoom.", zoom=True,
                       key=f"tree-{k}")
        if len(v.names) > WIDE_FROM:  # a large matrix and its tree get the page's full width, one below the other
            panels.append((v.id, f'{heat}{mds}{tree}'))
        else:
            panels.append((v.id, f'<div class="cols"><div>{heat}</div><div>{mds}</div></div>{tree}'))
    panels += [(estimator, f'<p class="warn">{_not_computed(estimator, reason)}</p>')
               for estimator, reason in _not_computed_items(data.settings)]
    return ('<section id="space"><h2>Model space</h2><p class="muted">Affinity = mean cosine of two models\' '
            "attribution maps over the probe images (1 = the same maps). Baselines compare encoder activations "
            "instead.</p>" + _tabs(panels) + "</section>")


def hover_values(matrix: np.ndarray) -> dict:
    """The heatmap's hover data: thousandths as integers, and of a symmetric matrix the upper triangle.

    The tooltip shows 3 decimals, and "123" is half the bytes of "0.123"; the triangle is written row
    by row (i ≤ j).

    Parameters
    ----------
    matrix : np.ndarray
        (N, N) an affinity matrix.

    Returns
    -------
    dict
        ``{"scale": MATRIX_SCALE, "symmetric": bool, "values": rows}``; `matrix_from_hover` inverts it.
    """
    ints = np.rint(np.asarray(matrix, dtype=np.float64) * MATRIX_SCALE).astype(int)
    symmetric = bool(np.array_equal(ints, ints.T))
    values = [row[i:].tolist() for i, row in enumerate(ints)] if symmetric else ints.tolist()
    return {"scale": MATRIX_SCALE, "symmetric": symmetric, "values": values}


def matrix_from_hover(block: dict) -> np.ndarray:
    """The matrix (to 3 decimals) that `hover_values` wrote.

    Parameters
    ----------
    block : dict
        What `hover_values` returned.

    Returns
    -------
    np.ndarray
        (N, N) float64.
    """
    rows = block["values"]
    n = len(rows)
    out = np.zeros((n, n))
    for i, row in enumerate(rows):
        if block.get("symmetric"):
            out[i, i:] = row
            out[i:, i] = row
        else:
            out[i] = row
    return out / block["scale"]


# --------------------------------------------------------------------------- two estimators compared

OPEN_PAIR_PRIORITIES = (1, 5)
"""Besides the last, the priorities whose CPC values the page writes out for a pair."""


def comparisons_for(data: ReportData, compare: tuple[str, str] | None = None) -> Comparisons:
    """The pairs of estimators the page compares (`evaluation.pair_comparisons`), `compare` first.

    Pairs that `data.comparisons` or, without a truth, the run's ``results.json`` holds are taken from
    there (with the oracle's curves they were computed with); the others are computed.

    Parameters
    ----------
    data : ReportData
        The page's data.
    compare : (str, str), optional
        A pair of estimators (ids or names without parameters) to show first.

    Returns
    -------
    Comparisons
        The pairs and, with a truth, the oracle's curves.

    Raises
    ------
    InputError
        `compare` names an estimator the page does not hold.
    """
    views = [v for v in data.estimators if len(v.names) >= 2]
    first = [] if compare is None else [tuple(resolve_estimator(data.estimators, n).id for n in compare)]
    known = data.comparisons
    if known is None and data.truth is None and data.settings.get("comparison"):
        known = Comparisons.from_dict(data.settings["comparison"])
    return pair_comparisons(views, data.truth, first, BOOTSTRAP, known=known)


def _section_compare(data: ReportData, page: _Page) -> str:
    views = [(k, v) for k, v in enumerate(data.estimators) if len(v.names) >= 2]
    if len(views) < 2 or page.pairs is None:
        return ""
    index = {v.id: k for k, v in views}
    pairs = [p for p in page.pairs.pairs if p.ranking in index and p.similarity in index]
    a0, b0 = (index[pairs[0].ranking], index[pairs[0].similarity]) if pairs else (views[0][0], views[1][0])
    agreement = {}
    for x, (kx, vx) in enumerate(views):
        for ky, vy in views[x + 1:]:
            r, n = pair_agreement(vx, vy)
            agreement[f"{kx}-{ky}"] = {"r": None if np.isnan(r) else round(r, 4), "n": n}
    block = page.data({"kind": "agreement", "pairs": agreement})

    def select(side: str, chosen: int) -> str:
        options = "".join(f'<option value="{k}"{" selected" if k == chosen else ""}>{_e(v.id)}</option>'
                          for k, v in views)
        return f'<select id="pair-{side}" data-agreement="{block}">{options}</select>'

    def side(which: str, what: str) -> str:
        return (f'<figure class="zoomable"><img data-copy="{what}" data-side="{which}" data-hover="" alt="">'
                f"<figcaption>{'A' if which == 'a' else 'B'}: "
                + ("the affinity in the order of its own tree." if what == "heat" else "its similarity tree.")
                + "</figcaption></figure>")

    if max(len(v.names) for _, v in views) > WIDE_FROM:  # tall trees at their drawn size, one below the other
        figure5 = (f'<div class="cols"><div>{side("a", "heat")}</div><div>{side("b", "heat")}</div></div>'
                   f'{side("a", "tree")}{side("b", "tree")}')
    else:
        figure5 = (f'<div class="cols"><div>{side("a", "heat")}{side("a", "tree")}</div>'
                   f'<div>{side("b", "heat")}{side("b", "tree")}</div></div>')
    panels = "".join(_pair_panel(page, p, index) for p in pairs)
    oracle = ""
    if page.pairs.oracle:
        oracle = ("<h3>Each similarity along the oracle's ranking</h3>"
                  + _figure(figs.oracle_priority_png({k: c.to_dict() for k, c in page.pairs.oracle.items()}),
                            "Correlation–Priority Curves of the oracle's ranking",
                            "The Correlation–Priority Curve of the ground truth's ranking against each estimator's "
                            f"similarity, {page.pairs.normalisation}: the similarity whose values fall fastest along "
                            "the measured ranking is the one that predicts transfer. Over the models matched to the "
                            f"truth's tasks (the first model of each task). {_bands(page.pairs)}"))
    return ('<section id="compare"><h2>Two estimators compared</h2>'
            '<p class="muted">The seed paper\'s Figures 3 and 5, for any two estimators: choose the pair. '
            "A ranks the sources (the attribution affinity in the paper), B gives the similarity ρ (SVCCA in the "
            "paper). <code>modelspace report FOLDER --compare A B</code> opens the page on a pair.</p>"
            f'<p class="pair-select"><label>A {select("a", a0)}</label> <label>B {select("b", b0)}</label></p>'
            "<h3>Matrices and trees side by side</h3>"
            '<p id="pair-agreement" class="conclusion"></p>' + figure5
            + "<h3>Difference matrix and Correlation–Priority Curve</h3>" + panels
            + '<p id="pair-missing" class="muted" hidden>This pair is not drawn on this page: '
            "<code>modelspace report FOLDER --compare A B</code> draws it.</p>" + oracle + "</section>")


def _pair_panel(page: _Page, pair, index: dict[str, int]) -> str:
    a, b = pair.ranking, pair.similarity
    png, box = figs.difference_png(pair.difference, pair.names, f"{b} − {a}, normalised")
    hover = page.data({"kind": "matrix", "box": box, "labels": pair.names, **hover_values(pair.difference)})
    difference = _figure(png, f"Difference matrix, {b} − {a}",
                         f"{b}'s matrix minus {a}'s, {page.pairs.normalisation}; rows and columns in the order of "
                         f"{a}'s tree over the {len(pair.names)} models both hold; red: {b} finds the pair more alike "
                         f"than {a} does, blue: less; the diagonal is grey. Hover a cell for its value.",
                         hover=hover, zoom=True)
    oracle = (f"; black: the ground truth's ranking; dotted: a random order. Over the {len(pair.cpc_names)} models "
              "matched to the ground truth's tasks (the first model of each)." if "oracle" in pair.curves
              else "; dotted: a random order.")
    curve = _figure(figs.pair_priority_png(pair.to_dict()), f"Correlation–Priority Curve, {a} ranks, {b} similarity",
                    f"correlation(p) = (1/N) Σ_i Σ_j [rank_i(j) = p] ρ_ij: the mean over the N targets i of {b}'s "
                    f"similarity ρ_ij to the source j that {a} ranks p-th. Falling as p grows: the sources ranked "
                    f"first are also the most similar by {b}. Dashed: {b}'s own ranking (the steepest fall there "
                    f"is){oracle} {_bands(page.pairs)}")
    return (f'<div class="pair-panel" data-pair="{index[a]}-{index[b]}">{_priority_numbers(pair)}'
            f'<div class="cols"><div>{difference}</div><div>{curve}</div></div></div>')


def _priority_numbers(pair) -> str:
    """A small table of a pair's CPC values at p = 1, 5 and the last priority, with their bands."""
    ranking = pair.curves["ranking"]
    ps = [p for p in dict.fromkeys([*OPEN_PAIR_PRIORITIES, ranking.priorities[-1]]) if p in ranking.priorities]
    names = {"ranking": f"{pair.ranking}'s ranking", "self": f"{pair.similarity}'s own ranking",
             "oracle": "the oracle's ranking"}
    rows = []
    for key, curve in pair.curves.items():
        cells = "".join('<td class="num">{:.3f} [{:.3f}, {:.3f}]</td>'.format(*curve.at(p)) if p in curve.priorities
                        else "<td></td>" for p in ps)
        rows.append(f"<tr><td>{_e(names[key])}</td>{cells}</tr>")
    rows.append('<tr class="ref"><td>a random order</td>'
                + "".join(f'<td class="num">{ranking.chance:.3f}</td>' for _ in ps) + "</tr>")
    head = "".join(f'<th class="num">p = {p}</th>' for p in ps)
    return (f"<table><tr><th>{_e(pair.similarity)}'s similarity to the source at priority p, along</th>{head}</tr>"
            + "".join(rows) + "</table>")


def _bands(comparisons: Comparisons) -> str:
    b = comparisons.bootstrap
    return f"Bands: {b.level:.0%} bootstrap intervals over targets ({b.n_resamples} resamples)."


def _section_sources(data: ReportData, page: _Page) -> str:
    n_rel = data.evaluation.n_relevant if data.evaluation else 5
    views = [v for v in data.estimators if v.ranking]
    if not views:
        return ""
    targets = list(dict.fromkeys(n for v in views for n in v.names))
    label_of = {n: lab for v in views for n, lab in zip(v.names, v.labels)}
    lead = page.view if page.view in views else views[0]
    rows = []
    for position, target in enumerate(targets):
        label = label_of.get(target, target)
        relevant = set(data.truth.relevant(label, n_rel)) if data.truth and label in data.truth.ranking else None
        head = "".join(f"<th>{_e(v.id)}</th>" for v in views) + ("<th>ground truth</th>" if relevant is not None else "")
        body = []
        for k in range(TOP_SOURCES):
            cells = []
            for v in views:
                ranked = v.ranking.get(target, [])
                if k >= len(ranked):
                    cells.append("<td></td>")
                    continue
                name, value = ranked[k]
                hit = relevant is not None and dict(zip(v.names, v.labels)).get(name, name) in relevant
                cells.append(f'<td{" class=hit" if hit else ""}>{_e(name)}<span class="v">{value:.3f}</span></td>')
            if relevant is not None:
                truth_ranked = data.truth.relevant(label, TOP_SOURCES)
                cells.append(f"<td>{_e(truth_ranked[k]) if k < len(truth_ranked) else ''}</td>")
            body.append(f'<tr><td class="num">{k + 1}</td>{"".join(cells)}</tr>')
        confidence = "".join(f"<td>{_badge(v, target)}</td>" for v in views) + ("<td></td>" if relevant is not None else "")
        body.insert(0, f'<tr class="conf"><td class="num">C</td>{confidence}</tr>')
        best = lead.ranking.get(target, [])
        hint = f"{lead.id}: {best[0][0]} {best[0][1]:.3f}" if best else ""
        task = f" · task {label}" if label != target else ""
        opened = " open" if position < OPEN_TARGETS else ""
        rows.append(f'<details class="target"{opened} data-name="{_e(target)} {_e(label)}"><summary><b>{_e(target)}</b>'
                    f'<span class="muted">{_e(task)} · best source by {_e(hint)}</span>{_badge(lead, target)}</summary>'
                    f'<div class="tablewrap"><table><tr><th class="num">#</th>{head}</tr>{"".join(body)}</table></div>'
                    "</details>")
    note = (f" ✓ marks a source among the ground truth's top {n_rel} for that target." if data.truth else "")
    hub = hubs(lead.ranking)
    hub_line = ("".join(f'<p class="warn">Hub: <b>{_e(s)}</b> is the best source of {n} of {len(lead.ranking)} '
                        f"targets by {_e(lead.id)} (more than {HUB_SHARE:.0%} of them).</p>" for s, n in hub.items()))
    notes = list(dict.fromkeys(v.confidence_note for v in views if v.confidence_note))
    trust = ("Row C is each estimator's confidence in its top sources for that target (label-free: their "
             "stability over halves of the probe images, S, and their agreement with the estimators built on the "
             "other kind of evidence, G; hover for both): high ≥ 0.8, medium ≥ 0.6, else low. "
             + " ".join(_e(n[:1].upper() + n[1:]) + "." for n in notes))
    return ('<section id="sources"><h2>Sources per target</h2>'
            f'<p class="muted">For each model as a target, its top {TOP_SOURCES} sources by each estimator, with the '
            f"affinity.{note} Each line names the best source by {_e(lead.id)} ({_e(page.why)}).</p>"
            f'<p class="muted">{trust}</p>{hub_line}'
            '<p><input type="search" id="target-filter" placeholder="filter targets by name or task"></p>'
            + "".join(rows) + "</section>")


def _badge(view: MethodResult, target: str) -> str:
    """A target's confidence band under one estimator, with S and G on hover ("" when none)."""
    c = (view.confidence or {}).get(target)
    if not c:
        return ""
    parts = [f"{name} {c[key]:.2f}" for name, key in (("stability S", "stability"), ("agreement G", "agreement"))
             if c.get(key) is not None]
    hover = f"{view.id}: confidence {c['confidence']:.2f} from " + ", ".join(parts) + (
        f" ({c['note']})" if c.get("note") else "")
    return f'<span class="badge {_e(c["band"])}" title="{_e(hover)}">{_e(c["band"])} {c["confidence"]:.2f}</span>'


def _label_counts(info: dict) -> str:
    """"96 labelled images of 24 classes (4 per class)", from `results.json`'s "labels"."""
    text = f"{info.get('n_images', '?')} labelled images"
    if info.get("n_classes"):
        per = info.get("per_class") or {}
        each = (f"{per['min']}" if per.get("min") == per.get("max") else f"{per.get('min')} to {per.get('max')}")
        text += f" of {info['n_classes']} classes ({each} per class)"
    return text


def _label_summary(settings: dict) -> list[str]:
    """The summary's line on the label-based scores: each score's best model, and which cannot rank."""
    scores = settings.get("label_scores") or {}
    if not scores:
        return []
    info = settings.get("labels") or {}
    blind = info.get("cannot_rank") or {}
    best = [f"{_e(score)}: <b>{_e(max(v, key=v.get))}</b>" for score, v in scores.items() if v and not blind.get(score)]
    line = f'<a href="#labels">Label-based scores</a> on {_e(_label_counts(info))}'
    line += (", best model by " + "; ".join(best) + "." if best else ".")
    if any(blind.get(score) for score in scores):
        line += (" <b>" + ", ".join(_e(score) for score in scores if blind.get(score))
                 + "</b> cannot rank these models at this number of labels (see the section).")
    return [line]


def _section_labels(data: ReportData, page: _Page) -> str:
    scores = data.settings.get("label_scores") or {}
    if not scores:
        return ""
    info = data.settings.get("labels") or {}
    blind = info.get("cannot_rank") or {}
    ranked = {score: sorted(v.items(), key=lambda kv: -kv[1]) for score, v in scores.items()}
    head = "".join(f'<th{" class=blind" if blind.get(score) else ""}>{_e(score)}{" ⚠" if blind.get(score) else ""}'
                   "</th>" for score in scores)
    rows = []
    for k in range(max((len(r) for r in ranked.values()), default=0)):
        cells = "".join(f"<td>{_e(r[k][0])}<span class=\"v\">{r[k][1]:.4g}</span></td>" if k < len(r) else "<td></td>"
                        for r in ranked.values())
        rows.append(f'<tr><td class="num">{k + 1}</td>{cells}</tr>')
    warnings = "".join(f'<p class="warn">⚠ <b>{_e(score)}</b> cannot rank these models: {_e(why)}.</p>'
                       for score in scores for why in blind.get(score, []))
    return ('<section id="labels"><h2>Label-based scores</h2>'
            f'<p class="muted">On the {_e(_label_counts(info))} of <code>--labels</code>, each score ranks the models by how '
            "well their features (LogME, H-score, TransRate, GBC) or classifier heads (LEEP, NCE) suit the labelled "
            "task, best first; higher is better. The labelled task is not one of the models, so the label-free "
            "rankings above (sources per model as a target) have no list to set beside these.</p>" + warnings
            + f'<div class="tablewrap"><table><tr><th class="num">#</th>{head}</tr>{"".join(rows)}</table></div>'
            "</section>")


def _section_evaluation(data: ReportData, page: _Page) -> str:
    parts = []
    ev = data.evaluation
    if ev:
        parts.append(f'<p class="muted">Each target\'s top {ev.n_relevant} measured sources are the relevant ones; '
                     f'P@K = relevant among the estimate\'s top K / K, R@K = / {ev.n_relevant}; averaged over '
                     f'targets, {ev.n_candidates} candidates. Random and oracle are the reference lines.</p>')
        parts.append(_score_table(ev))
        banded = " The bands span the middle half of the targets (25th to 75th percentile)." if ev.per_target else ""
        parts.append(_figure(figs.curves_png(ev), "P@K and R@K curves", "Estimators each with a colour, marker and "
                             f"line style; dashed: random (grey) and oracle (black).{banded}"))
    validity = data.settings.get("oracle_validity")
    if validity:
        parts.append(_validity_table(validity))
    if data.truth_tree:
        matrix, tasks, caption = data.truth_tree
        oracle = _figure(figs.dendrogram_png(similarity_tree(matrix), tasks, caption), caption,
                         "Average linkage on 1 − the truth's symmetrised similarity.", zoom=True)
        panels, agreement = [], {}
        for v in data.estimators:
            shared = [t for t in tasks if t in v.labels]
            if len(shared) < 2:
                continue
            keep = [v.labels.index(t) for t in shared]
            tree = similarity_tree(v.affinity[np.ix_(keep, keep)])
            at = [tasks.index(t) for t in shared]
            agreement[v.id] = tree_agreement(similarity_tree(matrix[np.ix_(at, at)]), tree)
            r = agreement[v.id]
            agree = "n/a" if np.isnan(r) else f"{r:.2f}"
            if len(shared) > REPEAT_TREES_UP_TO and len(shared) == len(v.labels):
                panels.append((v.id, f'<p class="muted">{_e(v.id)} over these tasks is its similarity tree under '
                                     f'<a href="#space">Model space</a>, not drawn twice; cophenetic correlation with '
                                     f"the truth's tree {agree}.</p>"))
                continue
            panels.append((v.id, _figure(figs.dendrogram_png(tree, shared, f"Estimated tree · {v.id}"),
                                         f"Estimated tree of {v.id}", "The same tasks, from the estimate; cophenetic "
                                         f"correlation with the truth's tree {agree}.", zoom=True)))
        trees = (f"{oracle}{_tabs(panels)}" if len(tasks) > WIDE_FROM  # tall trees: one below the other
                 else f'<div class="cols"><div>{oracle}</div><div>{_tabs(panels)}</div></div>')
        parts.append('<h3>Ground truth\'s tree beside the estimated one</h3>' + trees)
        if agreement:
            parts.append(_figure(figs.agreement_png(agreement, "Agreement of each estimated tree with the truth's"),
                                 "Tree agreement", "Pearson correlation of the two trees' cophenetic distances (the "
                                 "height at which two tasks first join) over every pair of shared tasks: 1 = the same "
                                 "hierarchy, 0 = unrelated."))
    if not parts:
        return ""
    return '<section id="evaluation"><h2>Evaluation</h2>' + "".join(parts) + "</section>"


def _score_table(ev: Evaluation) -> str:
    ks = [k for k in (1, 3, 5) if k <= ev.n_candidates] or [1]
    head = "".join(f'<th class="num">P@{k}</th>' for k in ks) + f'<th class="num">R@{ks[-1]}</th>'
    rho = ev.rho_rows() if ev.per_target else None
    if rho is not None:
        head += '<th class="num" title="mean per-target Spearman correlation with the truth\'s order">ρ</th>'
    rows = []
    entries = [(n, c, "" if n in ev.methods else "ref") for n, c in ev.rows()]
    for name, curves, cls in entries:
        cells = "".join(f'<td class="num">{_at(curves, k)[0]:.3f}</td>' for k in ks)
        cells += f'<td class="num">{_at(curves, ks[-1])[1]:.3f}</td>'
        if rho is not None:
            cells += f'<td class="num">{rho.get(name, float("nan")):.3f}</td>'
        rows.append(f'<tr class="{cls}"><td>{_e(name)}</td>{cells}</tr>')
    return f"<table><tr><th>estimator</th>{head}</tr>{''.join(rows)}</table>"


def _validity_table(validity: dict) -> str:
    """How far the measured oracle can be trusted (the figures `oracle.json` records)."""
    per_target = validity["validity"]
    retrain = validity.get("zoo_retraining") or {}
    facts = [f"its own encoder is the best source for {validity['own_best_count']} of {len(per_target)} targets",
             f"two readout seeds agree on {validity['top5_agreement_between_seeds']:.2f} of the top-5 sources"]
    if retrain.get("top5_agreement") is not None:
        facts.append(f"retraining {len(retrain['twinned_models'])} task models from another seed keeps "
                     f"{retrain['top5_agreement']:.2f} of the top-5 sources")
    head = "".join(f'<th class="num">{h}</th>' for h in ("own rank", "best − median", "readout noise", "gap / noise"))
    rows = "".join(
        f'<tr><td>{_e(t)}</td><td>{_e(v["best_source"])}</td><td class="num">{v["own_rank"]}</td>'
        f'<td class="num">{v["best_minus_median"]:.3f}</td><td class="num">{v["readout_noise"]:.4f}</td>'
        f'<td class="num">{v["gap_over_noise"]:.1f}</td></tr>'
        for t, v in per_target.items())
    return ('<h3>How far the measured oracle can be trusted</h3>'
            f'<p class="muted">Per target: {"; ".join(facts)}.</p>'
            f'<table><tr><th>target</th><th>best source</th>{head}</tr>{rows}</table>')


def _section_settings(data: ReportData, page: _Page) -> str:
    import matplotlib
    import scipy

    s = data.settings
    probe = s.get("probe") or {}
    side = probe.get("size", "?")
    n_skipped = len(probe.get("skipped") or [])
    pairs = [("probe", f"{probe.get('n_images', '?')} images, {side}×{side} px, hash {probe.get('hash', '?')}"
                       + (f"; {n_skipped} file{'' if n_skipped == 1 else 's'} skipped (listed below)" if n_skipped else "")),
             ("attribution methods", ", ".join(s.get("methods", [v.id for v in data.estimators if v.kind == "method"]))),
             ("baselines", ", ".join(s.get("baselines", [])) or "none"),
             ("ground truth", data.truth if data.truth else ("as evaluated in the run" if data.evaluation
                                                            else "none")),
             ("computed with", f"modelspace {s.get('modelspace_version', '?')}, torch {s.get('torch_version', '?')}"),
             ("report built with", (f"modelspace {__version__}, Python {platform.python_version()}, numpy "
                                    f"{np.__version__}, scipy {scipy.__version__}, matplotlib {matplotlib.__version__}")),
             ("built", _now())]
    if _not_computed_items(s):
        pairs.insert(3, ("not computed", "; ".join(f"{e}: {r}" for e, r in _not_computed_items(s))))
    if s.get("command"):
        pairs.append(("command", s["command"]))
    kv = "".join(f"<tr><th>{_e(k)}</th><td>{_truth_cell(v) if isinstance(v, GroundTruth) else _e(v)}</td></tr>"
                 for k, v in pairs)
    models = s.get("models") or [{"name": n} for n in data.estimators[0].names]
    model_rows = "".join(f"<tr><td>{_e(m.get('name'))}</td><td>{_e(m.get('task', ''))}</td>"
                         f"<td><code>{_e(m.get('source', ''))}</code></td>"
                         f"<td>{_e(describe_preprocessing(m.get('preprocessing')))}</td>"
                         f"<td><code>{_e(str(m.get('key', ''))[:12])}</code></td></tr>" for m in models)
    n_failed = len(s.get("failures") or [])
    return ('<section id="settings"><h2>Settings</h2><table>' + kv + "</table>"
            f"<details><summary>{len(models)} model{'' if len(models) == 1 else 's'}</summary><div class=\"tablewrap\"><table><tr><th>name</th>"
            f"<th>task</th><th>source</th><th>input (from)</th><th>key</th></tr>{model_rows}</table></div></details>"
            + _skipped_files(probe.get("skipped") or [])
            + (f'<p>{n_failed} failure{"s" if n_failed != 1 else ""}: see <a href="#failures">Failures</a>.</p>'
               if n_failed else "")
            + "</section>")


def _not_computed_items(settings: dict) -> list[tuple[str, str]]:
    """The estimators the run did not compute, as the probe set leaves them undefined, with the reason.

    From ``results.json``'s "not_computed".
    """
    return list((settings.get("not_computed") or {}).items())


def _not_computed(estimator: str, reason: str) -> str:
    """One estimator's note, where its results would be."""
    return f"<b>{_e(estimator)}</b> was not computed: {_e(reason)}."


def _skipped_files(skipped: list[dict]) -> str:
    """The probe files left out of the run, each with its reason; open when short, collapsed when long."""
    if not skipped:
        return ""
    rows = "".join(f"<tr><td><code>{_e(f.get('path'))}</code></td><td>{_e(f.get('reason'))}</td></tr>" for f in skipped)
    opened = " open" if len(skipped) <= OPEN_SKIPPED else ""
    return (f"<details id=\"skipped\"{opened}><summary>{len(skipped)} probe file{'' if len(skipped) == 1 else 's'} "
            f"skipped</summary><div class=\"tablewrap\"><table><tr><th>file</th><th>reason</th></tr>{rows}</table>"
            "</div></details>")


def _truth_label(origin: str) -> tuple[str, str]:
    """A ground truth's readable name and its full origin.

    The name is "built-in taskonomy" for a bundled one (also when given by its path inside the installed
    package, e.g. in site-packages), "built-in world oracle_ranking.csv" for another file of the package
    (the demo's), the file name for any other file.
    """
    if origin.endswith(", bundled)"):
        return f"built-in {origin.split(' (')[0]}", origin
    path = Path(origin)
    parts = path.parts
    if len(parts) < 2:
        return origin, origin
    package = Path(__file__).resolve().parents[1]  # this modelspace package
    installed = "modelspace" in parts[:-1] and bool({"site-packages", "dist-packages"} & set(parts))
    if not (installed or path.resolve().is_relative_to(package)):
        return parts[-1], origin
    bundled = {file: name for name, file in BUNDLED.items()}
    if parts[-1] in bundled:
        return f"built-in {bundled[parts[-1]]}", origin
    parts = path.resolve().parts if not installed else parts
    below = parts[len(parts) - parts[::-1].index("modelspace"):]  # the path inside the package
    return f"built-in {below[0]} {parts[-1]}" if len(below) > 1 else f"built-in {parts[-1]}", origin


def _truth_cell(truth: GroundTruth) -> str:
    short, full = _truth_label(truth.origin)
    return f'<span title="{_e(full)}">{_e(short)}</span>'  # the full path on hover


# --------------------------------------------------------------------------- small pieces


def _figure(png: bytes, alt: str, caption: str, hover: str | None = None, zoom: bool = False,
            key: str | None = None) -> str:
    # Never in a scroll box: a tall figure (a tree of many leaves) makes the page longer, not hides its end.
    attrs = f' data-hover="{hover}"' if hover else ""
    attrs += f' data-figure="{key}"' if key else ""  # the comparison of two estimators shows it again
    img = f'<img src="{figs.data_uri(png)}" alt="{_e(alt)}"{attrs}>'
    cls = ' class="zoomable"' if zoom else ""
    return f"<figure{cls}>{img}<figcaption>{_e(caption)}</figcaption></figure>"


def _tabs(panels: list[tuple[str, str]]) -> str:
    if len(panels) == 1:
        return panels[0][1]
    buttons = "".join(f'<button type="button">{_e(name)}</button>' for name, _ in panels)
    bodies = "".join(f'<div class="panel">{body}</div>' for _, body in panels)
    return f'<div class="tabbed"><div class="tabs">{buttons}</div>{bodies}</div>'


def _at(curves: Curves, k: int) -> tuple[float, float]:
    """(P@k, R@k), or at the last K when the curves stop before k."""
    return curves.at(k if k in curves.ks else curves.ks[-1])


def _e(text: Any) -> str:
    """Text for the page: control characters escaped as on the terminal (`printable`), then HTML-escaped."""
    return html.escape(printable(str(text)), quote=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
