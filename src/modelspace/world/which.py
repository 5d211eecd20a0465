"""The measured "which estimator when" table of `modelspace study`, and the pieces it is made of.

Per probe domain and estimator, from the per-target details of an evaluation against the oracle:

- P@1, P@3, P@5, R@5 and Spearman's ρ, each a mean over targets with a percentile bootstrap
  interval over targets (`summarise`, drawn as `evaluation.BOOTSTRAP` says unless told otherwise),
  ρ also with its spread (sd and interquartile range) over targets;
- a paired comparison with the domain's best label-free estimator by P@5 (`compare_with_best`):
  the mean per-target difference and its bootstrap interval, so that two estimators 0.02 apart on
  the same targets are called different only when the interval leaves out 0; a label-based score
  is compared with the same estimator, which is what labels have to beat;
- the seed-twin check (`twin_check`): whether a ``name@seed…`` model's nearest neighbour is its
  original, and how far the twin's and the original's rankings of the other models agree;
- the cost per model as a multiple of one forward+backward pass (`measure_cost`);
- the labels it needs (0 for a label-free estimator).

`cross_validated_row` gives an estimator whose free parameter is chosen by leave-one-target-out
cross-validation (`evaluation.leave_one_target_out`) the same figures; `recommend` turns the rows
into a plain recommendation per regime, and `format_which` into the markdown of ``table.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ..errors import InputError
from ..evaluation import (BOOTSTRAP, Bootstrap, Difference, bootstrap_interval, leave_one_target_out, paired_difference,
                          target_scores)

__all__ = ["CRITERION", "KINDS", "METRICS", "TWIN_MARK", "compare_with_best",
           "cross_validated_row", "format_which", "measure_cost", "per_target_figures",
           "format_candidates", "format_confidence", "recommend", "registered_choice", "summarise", "summarise_rows", "twin_check",
           "validate_confidence"]

METRICS = ("P@1", "P@3", "P@5", "R@5", "rho")
"""The per-target figures of a row, in table order."""
KINDS = ("attribution", "label-free", "cross-validated", "label-based")
"""Row kinds, in table order: attribution methods, label-free baselines (representation
similarity, DEPARA), cross-validated variants, label-based scores."""
TWIN_MARK = "@seed"
"""A model named ``X@seed…`` is the seed twin of model ``X`` (world v2's group 3)."""
TIE = 0.005
"""Minima within this of the highest count as tied in `registered_choice` (``data/world/candidates.toml``)."""
CRITERION = "P@5"
"""The figure the best estimator, ties and cross-validated choices are judged by."""


# --------------------------------------------------------------------------------- figures


def per_target_figures(details: Mapping[str, Mapping]) -> dict[str, dict[str, float]]:
    """Per metric of `METRICS`, per target: the figures of one estimator from `evaluate`'s per-target details.

    Read with `evaluation.target_scores`; targets without ρ are left out of ρ only.

    Parameters
    ----------
    details : mapping
        Target -> that target's details from an evaluation of one estimator.

    Returns
    -------
    dict of str to dict
        Metric (``"P@1"``, ``"P@3"``, ``"P@5"``, ``"R@5"``, ``"rho"``) -> {target: figure}.
    """
    figures = {f"P@{k}": target_scores(details, "precision", k) for k in (1, 3, 5)}
    return {**figures, "R@5": target_scores(details, "recall", 5), "rho": target_scores(details, "rho")}


def summarise(values: Mapping[str, float], bootstrap: Bootstrap = BOOTSTRAP) -> dict[str, float] | None:
    """Mean over targets, its bootstrap interval (`evaluation.bootstrap_interval`), sd and quartiles.

    Parameters
    ----------
    values : mapping of str to float
        Target -> figure.
    bootstrap : Bootstrap, default BOOTSTRAP
        How intervals are drawn (resamples, seed, level).

    Returns
    -------
    dict or None
        ``mean``, ``low``, ``high`` (the interval), ``sd`` (0 for one target), ``q25``, ``q75`` and ``n``
        (targets); None for no targets.
    """
    v = np.array(list(values.values()), dtype=np.float64)
    if len(v) == 0:
        return None
    low, high = bootstrap_interval(v, bootstrap)
    q25, q75 = np.percentile(v, [25, 75])
    return {"mean": float(v.mean()), "low": low, "high": high, "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "q25": float(q25), "q75": float(q75), "n": len(v)}


def compare_with_best(per_target: Mapping[str, Mapping[str, float]],
                      bootstrap: Bootstrap = BOOTSTRAP) -> tuple[str, dict[str, Difference]]:
    """The best estimator by mean score, and each other's paired difference from it.

    Parameters
    ----------
    per_target : mapping
        Estimator -> {target: score} (e.g. P@5). Each comparison uses the targets both score.
    bootstrap : Bootstrap, default BOOTSTRAP
        How intervals are drawn (resamples, seed, level).

    Returns
    -------
    best : str
        The highest mean among the estimators that score the most targets.
    differences : dict
        Estimator -> `Difference` (best − other: mean and bootstrap interval over the common
        targets); ``distinguishable`` is False when the interval holds 0. The best itself is left out,
        and so is an estimator sharing no target with it.

    Raises
    ------
    InputError
        No estimator scores any target.
    """
    scored = {e: s for e, s in per_target.items() if s}
    if not scored:
        raise InputError("per_target: no estimator scores any target")
    # Only an estimator scoring the most targets can be the best: a mean over 2 targets is not
    # compared with one over 20.
    coverage = max(len(s) for s in scored.values())
    best = max((e for e in scored if len(scored[e]) == coverage),
               key=lambda e: float(np.mean(list(scored[e].values()))))  # first maximum
    out = {}
    for estimator, scores in scored.items():
        d = paired_difference(scored[best], scores, bootstrap, estimator) if estimator != best else None
        if d is not None:
            out[estimator] = d
    return best, out


def twin_check(affinity: np.ndarray, names: Sequence[str], mark: str = TWIN_MARK) -> dict[str, Any]:
    """The seed-twin check of one estimator's (M, M) affinity over models `names`.

    A twin is a model named ``X{mark}…`` whose original ``X`` is among `names`.

    Parameters
    ----------
    affinity : np.ndarray
        The (M, M) affinity matrix.
    names : sequence of str
        The M models' names, in the matrix's order.
    mark : str, default TWIN_MARK
        What separates a twin's original name from its seed.

    Returns
    -------
    dict
        - ``n_twins``: how many twins have their original here (0: the figures are None, "n/a");
        - ``nn_original``: the fraction of twins whose nearest neighbour (highest affinity, itself
          excluded) is their original; ``nn_hits`` the count;
        - ``rank_agreement``: the mean over twins of the Spearman correlation between the twin's and
          the original's affinities to every other model (twins excluded): whether the estimate
          ranks sources for a re-trained model as it does for the original.

    Raises
    ------
    InputError
        A matrix whose shape does not match `names`.
    """
    a = np.asarray(affinity, dtype=np.float64)
    names = list(names)
    if a.shape != (len(names), len(names)):
        raise InputError(f"affinity: expected a ({len(names)}, {len(names)}) matrix, got shape {a.shape}")
    index = {n: i for i, n in enumerate(names)}
    pairs = [(index[n], index[n.split(mark)[0]]) for n in names if mark in n and n.split(mark)[0] in index]
    if not pairs:
        return {"n_twins": 0, "nn_hits": None, "nn_original": None, "rank_agreement": None}
    others = [i for i, n in enumerate(names) if mark not in n]
    hits, agreement = 0, []
    for twin, original in pairs:
        row = a[twin].copy()
        row[twin] = -np.inf
        hits += int(np.argmax(row)) == original
        rest = [j for j in others if j != original]
        if len(rest) >= 2:
            rho = spearmanr(a[twin, rest], a[original, rest])[0]
            if np.isfinite(rho):
                agreement.append(float(rho))
    return {"n_twins": len(pairs), "nn_hits": hits, "nn_original": hits / len(pairs),
            "rank_agreement": float(np.mean(agreement)) if agreement else None}


def cross_validated_row(figures_by_value: Mapping[Any, Mapping[str, Mapping[str, float]]],
                        criterion: str = CRITERION) -> dict[str, Any]:
    """The figures of an estimator whose free parameter is chosen per held-out target.

    Parameters
    ----------
    figures_by_value : mapping
        Parameter value (in the pre-declared order of the grid) -> `per_target_figures` of the
        estimator with that value.
    criterion : str, default CRITERION
        The figure the value is chosen by (on the other targets).

    Returns
    -------
    dict
        ``per_target`` (each metric: every target's figure under the value chosen without it),
        ``chosen`` (target -> value), ``counts`` (value -> times chosen) and ``criterion``.

    Raises
    ------
    InputError
        No parameter value.
    """
    values = list(figures_by_value)
    if not values:
        raise InputError("figures_by_value: expected at least one parameter value")
    cv = leave_one_target_out({v: figures_by_value[v][criterion] for v in values})
    per_target = {m: {t: figures_by_value[v][m][t] for t, v in cv.chosen.items() if t in figures_by_value[v][m]}
                  for m in METRICS}
    return {"per_target": per_target, "chosen": dict(cv.chosen), "counts": cv.counts, "criterion": criterion}


def measure_cost(run: Callable[[], Any], reference: Callable[[], Any], repeats: int = 3,
                 clock: Callable[[], float] = time.perf_counter) -> float:
    """How many `reference` calls one `run` call costs: the ratio of their fastest wall times.

    Each is called once first (allocation, lazy initialisation), then `repeats` times; the fastest
    time is the one least disturbed by other work on the machine.

    Parameters
    ----------
    run : callable
        What is measured, called with no argument.
    reference : callable
        The unit of cost (e.g. one forward+backward pass over the same images), called with no argument.
    repeats : int, default 3
        Timed calls of each, after one untimed call.
    clock : callable, default time.perf_counter
        Reads the time in seconds.

    Returns
    -------
    float
        The fastest `run` time over the fastest `reference` time.

    Raises
    ------
    InputError
        `repeats` is not an integer >= 1.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats: expected an integer >= 1, got {repeats!r}")

    def fastest(fn: Callable[[], Any]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = clock()
            fn()
            times.append(clock() - start)
        return min(times)

    base = fastest(reference)
    return fastest(run) / max(base, 1e-9)


# ---------------------------------------------------------------------------- the table


def _cell(s: dict | None, ci: bool = True) -> str:
    if s is None:
        return "n/a"
    return f"{s['mean']:.2f} [{s['low']:.2f}, {s['high']:.2f}]" if ci else f"{s['mean']:.2f}"


def _rho_cell(s: dict | None) -> str:
    if s is None:
        return "n/a"
    return f"{s['mean']:.2f} ± {s['sd']:.2f} [{s['low']:.2f}, {s['high']:.2f}]"


def _vs_best(row: dict) -> str:
    d = row.get("vs_best")
    if row.get("best"):
        return "best"
    if d is None:
        return "–"
    sign = "<" if d["low"] > 0 else ">" if d["high"] < 0 else "="
    return f"{sign} {-d['mean']:+.2f} [{-d['high']:+.2f}, {-d['low']:+.2f}]"


def _twin_cells(row: dict) -> list[str]:
    twin = row.get("twin")
    if not twin or not twin.get("n_twins"):
        return ["n/a", "n/a"]
    ra = twin["rank_agreement"]
    return [f"{twin['nn_hits']}/{twin['n_twins']}", "n/a" if ra is None else f"{ra:.2f}"]


def _number(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, fmt)


def summarise_rows(rows: Mapping[str, dict], bootstrap: Bootstrap = BOOTSTRAP) -> None:
    """Fill in each row's figures, mark the best label-free row, and give every other its difference from it.

    Each row's ``figures`` (metric -> `summarise`) come from its ``per_target``; the best row that needs
    no labels by `CRITERION` gets ``best`` True, and every other row, label-based ones included, its
    paired difference from it (``vs_best``: mean, low, high of best − row). Labels are a different
    regime: a label-based row is never "the best" a label-free one is measured against. With no
    label-free row scoring `CRITERION`, only the figures are filled in.

    Parameters
    ----------
    rows : mapping of str to dict
        Estimator -> row with ``per_target`` (`per_target_figures`) and ``labels``; changed in place.
    bootstrap : Bootstrap, default BOOTSTRAP
        How intervals are drawn (resamples, seed, level).
    """
    for row in rows.values():
        row["figures"] = {m: summarise(row["per_target"].get(m, {}), bootstrap) for m in METRICS}
    scores = {e: r["per_target"][CRITERION] for e, r in rows.items() if r["per_target"].get(CRITERION)}
    label_free = {e: s for e, s in scores.items() if not rows[e]["labels"]}
    if not label_free:
        return
    best, diffs = compare_with_best(label_free, bootstrap)
    for estimator, row in rows.items():
        row["best"] = estimator == best
        d = diffs.get(estimator)
        if estimator in scores and estimator not in label_free:
            d = paired_difference(label_free[best], scores[estimator], bootstrap, estimator)
        row["vs_best"] = None if d is None else {"mean": d.mean, "low": d.low, "high": d.high}


def format_which(which: Mapping[str, Any]) -> str:
    """The markdown of the "which estimator when" table.

    One table per probe domain, then the recommendation per regime and the notes.

    Parameters
    ----------
    which : mapping
        The study's ``which`` result (below).

    Returns
    -------
    str
        The markdown, ending in a newline.

    Notes
    -----
    `which` holds ``domains`` ({domain: {"rows": {estimator: row}, "n_targets", "random_p5"}}),
    ``recommendation`` (regime -> text), ``notes`` (lines) and optional ``cv`` (estimator ->
    chosen values). A row holds ``kind``, ``labels``, ``cost``, ``figures`` (see `summarise_rows`),
    ``same_task_nn``, ``twin`` and optional ``note``.
    """
    level = int(round(which.get("level", BOOTSTRAP.level) * 100))
    lines = ["## Which estimator when", "",
             f"Mean over targets [{level} % bootstrap interval over targets, {which.get('n_resamples', BOOTSTRAP.n_resamples)} "
             f"resamples]; ρ: mean ± sd over targets [interval]; vs best: the paired difference from the domain's best "
             f"label-free estimator by {CRITERION} ('=' when its interval holds 0: not distinguishable; '<' or '>' "
             "when it does not, behind or ahead of it). "
             "NN: same-task nearest-neighbour rate; twin NN: seed twins whose nearest neighbour is their original; "
             "twin ρ: Spearman between a twin's and its original's affinities to the other models. Cost: per model, "
             "as a multiple of one forward+backward pass over the same images. Labels: labelled target images needed.",
             ""]
    header = ("| estimator | kind | labels | cost | targets | P@1 | P@3 | P@5 | R@5 | ρ | NN | twin NN | twin ρ "
              f"| vs best ({CRITERION}) |")
    for domain, block in which["domains"].items():
        lines += [f"### Probe domain: {domain}", "", header, "|" + "---|" * 14]
        rows = block["rows"]
        for kind in KINDS:
            for estimator, row in rows.items():
                if row["kind"] != kind:
                    continue
                f = row["figures"]
                n_targets = f[CRITERION]["n"] if f.get(CRITERION) else 0
                cells = [estimator, kind, str(row["labels"]), _number(row.get("cost"), ".1f"), str(n_targets),
                         _cell(f["P@1"]), _cell(f["P@3"]), _cell(f["P@5"]), _cell(f["R@5"], ci=False),
                         _rho_cell(f["rho"]), _number(row.get("same_task_nn")), *_twin_cells(row), _vs_best(row)]
                lines.append("| " + " | ".join(cells) + " |")
        for estimator, reason in block.get("not_applicable", {}).items():
            lines.append(f"| {estimator} | label-based | – | – | 0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | "
                         f"n/a: {reason} |")
        if "random_p5" in block:
            p = block["random_p5"]
            chance = block.get("chance_same_task_nn")
            lines.append(f"| random | reference | 0 | 0 | {block.get('n_targets', '')} | {p:.2f} | {p:.2f} | {p:.2f} | "
                         f"{p:.2f} | 0 | {_number(chance)} | – | 0 | – |")
        lines.append("")
    if which.get("cv"):
        lines += ["Free parameters chosen by leave-one-target-out cross-validation (each target scored with the "
                  f"value that maximises mean {CRITERION} on the other targets): values chosen (times), per domain:", ""]
        for estimator, by_domain in which["cv"].items():
            chosen = "; ".join(f"{d}: " + ", ".join(f"{v} ({c})" for v, c in counts.items())
                               for d, counts in by_domain.items())
            lines.append(f"- {estimator}: {chosen}")
        lines.append("")
    if which.get("recommendation"):
        lines += ["### Recommendation", ""]
        lines += [f"- **{regime}**: {text}" for regime, text in which["recommendation"].items()]
        lines.append("")
    if which.get("notes"):
        lines += ["### Notes", ""] + [f"- {note}" for note in which["notes"]]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------- the advice


def registered_choice(domains: Mapping[str, Mapping[str, dict]], estimators: Sequence[str], tie: float = TIE
                      ) -> tuple[str, dict[str, float]]:
    """The registered selection rule (``data/world/candidates.toml``, [rule]) applied to `estimators`.

    The choice is the estimator with the highest minimum over the domains of its mean `CRITERION` over
    targets; values within `tie` of the highest count as tied, and ties go to the higher mean over the
    domains of mean ρ, then to the lower cost (the rows' ``cost``; unknown counts as the highest), then
    to table order.

    Parameters
    ----------
    domains : mapping
        Domain -> {estimator: row} with ``per_target`` and ``cost``.
    estimators : sequence of str
        The eligible estimators, in table order; each must have a row on every domain.
    tie : float, default TIE
        How close to the highest a value counts as tied.

    Returns
    -------
    choice : str
        The chosen estimator.
    worst : dict of str to float
        Every estimator's minimum over the domains of its mean `CRITERION`.
    """
    def mean(row: dict, metric: str) -> float:
        values = list(row["per_target"].get(metric, {}).values())
        return float(np.mean(values)) if values else -np.inf

    worst = {e: min(mean(rows[e], CRITERION) for rows in domains.values()) for e in estimators}
    top = max(worst.values())
    tied = [e for e in estimators if worst[e] >= top - tie]
    rho = {e: float(np.mean([mean(rows[e], "rho") for rows in domains.values()])) for e in tied}
    first = next(iter(domains.values()))

    def price(e: str) -> float:
        cost = first[e].get("cost")
        return np.inf if cost is None else float(cost)

    best_rho = max(rho.values())
    tied = [e for e in tied if rho[e] >= best_rho - tie]
    return min(tied, key=price), worst


def recommend(domains: Mapping[str, Mapping[str, dict]], default_estimator: str, bootstrap: Bootstrap = BOOTSTRAP,
              tie: float | None = None) -> tuple[dict[str, str], str | None]:
    """A plain recommendation per regime, generated from the rows of every probe domain.

    - no labels: the rule registered in ``data/world/candidates.toml`` (`registered_choice`): among
      label-free rows (attribution methods, label-free baselines and fusions; not the
      cross-validated ones, which a user without a measured oracle cannot reproduce), the highest
      minimum over the domains of mean `CRITERION`; near-ties go to the higher mean ρ, then the
      lower cost. Whether it is distinguishable from each domain's best (paired bootstrap) is said,
      and cheaper rows that cannot be told apart from the best on as many domains are named.
    - many models: of the same set, the cheapest per model.
    - few labels (n ≤ 200) and many labels: the best label-based row at that n, and whether it
      beats the no-label choice distinguishably on every domain (same targets, paired).

    Parameters
    ----------
    domains : mapping
        Domain -> {estimator: row} with ``kind``, ``labels``, ``cost``, ``per_target``.
    default_estimator : str
        The current default label-free estimator (`space.DEFAULT_ESTIMATOR`); the last line says
        whether the numbers support it.
    bootstrap : Bootstrap, default BOOTSTRAP
        How intervals are drawn (resamples, seed, level).
    tie : float or None, default None
        `registered_choice`'s tie; None: `TIE`.

    Returns
    -------
    recommendation : dict of str to str
        Regime ("no labels", "many models", "few labels", "many labels", "default") -> text.
    supported : str or None
        The label-free estimator the numbers support; None when no label-free estimator was measured.
    """
    def p5(row: dict) -> dict[str, float]:
        return row["per_target"].get(CRITERION, {})

    def mean_over_domains(estimator: str) -> float:
        return float(np.mean([np.mean(list(p5(rows[estimator]).values())) for rows in domains.values()]))

    # an estimator missing from a domain (every model failed there) cannot be recommended for all
    label_free = [e for e, r in next(iter(domains.values())).items()
                  if r["kind"] in ("attribution", "label-free") and all(e in rows and p5(rows[e]) for rows in domains.values())]
    out: dict[str, str] = {}
    if not label_free:
        return {"no labels": "no label-free estimator was measured"}, None
    tied_count = dict.fromkeys(label_free, 0)
    for rows in domains.values():
        best, diffs = compare_with_best({e: p5(rows[e]) for e in label_free if e in rows}, bootstrap)
        for e in label_free:
            if e == best or (e in diffs and not diffs[e].distinguishable):
                tied_count[e] += 1
    most = max(tied_count.values())
    robust = [e for e in label_free if tied_count[e] == most]
    every = most == len(domains)
    choice, worst = registered_choice(domains, label_free, TIE if tie is None else tie)
    cost = {e: next(iter(domains.values()))[e].get("cost") for e in label_free}

    def price(e: str) -> float:
        return np.inf if cost[e] is None else float(cost[e])

    cheaper = [e for e in robust if price(e) < price(choice) and e != choice]
    where = "every probe domain" if every else f"{most} of {len(domains)} probe domains (none is on all)"
    text = (f"`{choice}`: the registered rule's choice, the highest minimum over the {len(domains)} domains of mean "
            f"{CRITERION} ({worst[choice]:.2f}; averaged over domains {mean_over_domains(choice):.2f}); it is not "
            f"distinguishable from the best on {tied_count[choice]} of {len(domains)} domains")
    if cheaper:
        text += "; " + ", ".join(f"`{e}` ({_number(cost[e], '.1f')}× fwd+bwd)" for e in cheaper)
        text += f" cannot be told apart from it and cost{'s' if len(cheaper) == 1 else ''} less"
    out["no labels"] = text + "."
    thrifty = min(robust, key=lambda e: (price(e), -mean_over_domains(e)))
    out["many models"] = (f"`{thrifty}`: the cheapest per model ({_number(cost[thrifty], '.1f')}× fwd+bwd) of those "
                          f"not distinguishable from the best on {where}; every estimator here also compares each "
                          "pair of models once (M − 1 comparisons per added model).")
    sizes = sorted({r["labels"] for r in next(iter(domains.values())).values() if r["kind"] == "label-based"})
    for regime, wanted in (("few labels", [n for n in sizes if n <= 200]), ("many labels", [n for n in sizes if n > 200])):
        if not wanted:
            continue
        parts = []
        for n in wanted:
            rows0 = next(iter(domains.values()))
            candidates = [e for e, r in rows0.items() if r["kind"] == "label-based" and r["labels"] == n and p5(r)]
            if not candidates:
                continue
            # full coverage first: a score defined on 2 targets is not compared with one on all of them
            coverage = max(len(p5(rows0[e])) for e in candidates)
            best = max((e for e in candidates if len(p5(rows0[e])) == coverage),
                       key=lambda e: float(np.mean(list(p5(rows0[e]).values()))))
            wins = 0
            for rows in domains.values():  # on the targets both score, paired
                d = paired_difference(p5(rows[best]), p5(rows[choice]), bootstrap, choice)
                wins += d is not None and d.low > 0
            everywhere = wins == len(domains)
            verdict = (f"beats `{choice}` distinguishably on every domain" if everywhere
                       else f"beats `{choice}` distinguishably on {wins} of {len(domains)} domains only")
            parts.append((everywhere, f"n = {n}: `{best}` (P@5 {np.mean(list(p5(rows0[best]).values())):.2f}) "
                                      f"{verdict}"))
        if parts:
            advice = ("use the label-based score where it wins: " if any(w for w, _ in parts) else
                      f"labels at these n do not beat `{choice}` on every domain, so it stays the choice: ")
            out[regime] = advice + "; ".join(text for _, text in parts) + "."
    out["default"] = (f"`modelspace run`'s default label-free estimator is `{default_estimator}`; these numbers support "
                      + ("keeping it." if _same(default_estimator, choice) else f"`{choice}`."))
    return out, choice


def _same(a: str, b: str) -> bool:
    """Whether two estimator ids name the same estimator (an id with parameters and its bare name)."""
    return a == b or a.split("(")[0] == b.split("(")[0]


def format_candidates(which: Mapping[str, Any]) -> str:
    """The markdown of every label-free row on every domain, side by side.

    Per domain: mean P@5 and ρ over targets, each with its bootstrap interval, and the vs-best mark ('='
    not distinguishable from the domain's best, '<' behind it); then the minimum of P@5 over the
    domains that the registered rule ranks by.

    Parameters
    ----------
    which : mapping
        The study's ``which`` result, its rows summarised (`summarise_rows`), with the optional
        ``supported_estimator`` shown in bold.

    Returns
    -------
    str
        The markdown, ending in a newline.
    """
    domains = list(which["domains"])
    rows = {d: b["rows"] for d, b in which["domains"].items()}
    names = [e for e, r in rows[domains[0]].items() if r["kind"] in ("attribution", "label-free", "cross-validated")]

    def cell(row: dict) -> str:
        p, r = row["figures"][CRITERION], row["figures"]["rho"]
        if p is None:
            return "–"
        mark = "best" if row.get("best") else ("=" if row.get("vs_best") and row["vs_best"]["low"] <= 0 <= row["vs_best"]["high"]
                                               else "<")
        rho = "–" if r is None else f"{r['mean']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"
        return f"{p['mean']:.2f} [{p['low']:.2f}, {p['high']:.2f}] {mark} / {rho}"

    lines = [f"{CRITERION} [interval] vs-best mark / ρ [interval], per probe domain; min: the lowest mean {CRITERION} "
             "over the domains (the registered rule's criterion; cross-validated rows are not eligible).", "",
             "| estimator | " + " | ".join(domains) + f" | min {CRITERION} |", "|" + "---|" * (len(domains) + 2)]
    chosen = which.get("supported_estimator")
    for name in names:
        cells = [cell(rows[d][name]) if name in rows[d] else "–" for d in domains]
        worst = min((rows[d][name]["figures"][CRITERION] or {"mean": np.nan})["mean"] for d in domains if name in rows[d])
        label = f"**{name}** (chosen)" if name == chosen else name
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {worst:.2f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- the confidence, validated


def validate_confidence(pairs: Sequence[Mapping[str, Any]], bands: Mapping[str, float],
                        bootstrap: Bootstrap = BOOTSTRAP) -> dict[str, Any]:
    """How well a label-free confidence predicts the realised `CRITERION`, over (target, domain) pairs.

    Parameters
    ----------
    pairs : sequence of mapping
        One per target and domain: ``confidence``, ``stability``, ``agreement`` (a signal may be
        None where it is not defined) and ``realised`` (the target's P@5 against the oracle).
    bands : mapping
        ``high`` and ``medium``: the lower edges of the high and medium bands of the confidence.
    bootstrap : Bootstrap, default BOOTSTRAP
        How intervals are drawn (resamples, seed, level).

    Returns
    -------
    dict
        Per signal: Spearman's ρ with the realised figure and its percentile bootstrap interval
        (pairs resampled with replacement); per band of the confidence: the pairs in it and their
        mean realised figure.
    """
    out: dict[str, Any] = {"n_pairs": len(pairs), "signals": {}, "bands": {}}
    rng = np.random.default_rng(bootstrap.seed)
    for signal in ("confidence", "stability", "agreement"):
        kept = [(p[signal], p["realised"]) for p in pairs if p.get(signal) is not None]
        if len(kept) < 3:
            out["signals"][signal] = None
            continue
        x, y = np.array(kept, dtype=np.float64).T
        rho = _spearman(x, y)
        draws = [_spearman(x[i], y[i]) for i in rng.integers(0, len(x), size=(bootstrap.n_resamples, len(x)))]
        draws = [d for d in draws if np.isfinite(d)]
        tail = (1.0 - bootstrap.level) / 2 * 100
        low, high = np.percentile(draws, [tail, 100 - tail]) if draws else (np.nan, np.nan)
        out["signals"][signal] = {"rho": rho, "low": float(low), "high": float(high), "n": len(x)}
    edges = (("high", bands["high"], np.inf), ("medium", bands["medium"], bands["high"]), ("low", -np.inf, bands["medium"]))
    for band, low_edge, high_edge in edges:
        realised = [p["realised"] for p in pairs if p.get("confidence") is not None and low_edge <= p["confidence"] < high_edge]
        out["bands"][band] = {"n": len(realised), "mean": float(np.mean(realised)) if realised else None}
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")  # no order on one side: undefined, not 0
    return float(spearmanr(x, y)[0])


def format_confidence(validation: Mapping[str, Mapping[str, Any]], bands: Mapping[str, float]) -> str:
    """The markdown of the confidence's validation: one table of signals, one of bands, per estimator set.

    Parameters
    ----------
    validation : mapping
        Estimator set -> `validate_confidence`'s result.
    bands : mapping of str to float
        ``high`` and ``medium``: the bands' lower edges, as given to `validate_confidence`.

    Returns
    -------
    str
        The markdown, ending in a newline.
    """
    lines = ["## How far to trust a ranking: the confidence, validated", "",
             f"Spearman's ρ over (target, domain) pairs between each signal and the realised {CRITERION} "
             f"[{int(BOOTSTRAP.level * 100)} % bootstrap interval over the pairs]; then the realised {CRITERION} per band "
             f"of the confidence (high ≥ {bands['high']}, medium ≥ {bands['medium']}, low below).", "",
             "| estimators | pairs | confidence | stability | agreement | high: pairs, P@5 | medium | low |",
             "|---|---|---|---|---|---|---|---|"]
    for name, v in validation.items():
        cells = []
        for signal in ("confidence", "stability", "agreement"):
            s = v["signals"].get(signal)
            cells.append("n/a" if s is None else f"{s['rho']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}]")
        for band in ("high", "medium", "low"):
            b = v["bands"][band]
            cells.append(f"{b['n']}, –" if b["mean"] is None else f"{b['n']}, {b['mean']:.2f}")
        lines.append(f"| {name} | {v['n_pairs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
