"""The built-in world's page, rendered from the files the world's build and its checks wrote.

Directives:

- ``oracle-validity PATH``: the oracle's validity figures against the criteria they were asked to meet,
  and each target's own-encoder rank, from ``oracle.json`` (``python -m modelspace.world.build``);
- ``readout-check PATH``: one readout check's rungs (mean validation loss of its sampled pairs, the change
  from one rung to the next) and the rung its rule picks, from ``scripts/world/records/readout_*.json``.

Both are `modelspace_docs.RenderedMarkdown` directives over the file their argument names (relative to the page):
they render Markdown tables, so the page can never disagree with the files it reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from modelspace_docs import RenderedMarkdown

# The criteria the oracle was asked to meet, fixed before it was measured (tests/world/test_oracle.py
# enforces the ones it meets and expects 2a to fail).
OWN_BEST_ASKED = 18
OWN_RANK_WORST_ASKED = 3
GAP_ASKED = 5.0
RETRAINING_ASKED = 0.8
# The readout checks' shared rule (scripts/world/readout.py): a rung is enough when the next one lowers
# the sampled pairs' mean validation loss by under this share.
RUNG_GAIN = 0.02


def oracle_validity_markdown(info: dict[str, Any]) -> str:
    """The oracle's validity figures as Markdown: a summary against the criteria, then one row per target.

    Parameters
    ----------
    info : dict
        ``oracle.json`` as read: its ``tasks``, ``transfer_loss``, ``validity``, ``own_best_count``,
        ``top5_agreement_between_seeds`` and ``zoo_retraining``.

    Returns
    -------
    str
        Two Markdown tables: the criteria (figure, measured, asked for) and, per target, its own
        encoder's rank, the best source and the gaps in units of the readout's seed-to-seed noise.
    """
    tasks, validity = info["tasks"], info["validity"]
    loss = np.asarray(info["transfer_loss"])
    ranks = {t: validity[t]["own_rank"] for t in tasks}
    worst = max(ranks.values())
    worst_at = ", ".join(t for t in tasks if ranks[t] == worst)
    gaps = {t: validity[t]["gap_over_noise"] for t in tasks}
    low, high = min(gaps, key=gaps.get), max(gaps, key=gaps.get)
    retraining = info["zoo_retraining"]
    n_twinned = len(retraining["targets"])
    rows = [
        ("a target's own encoder is its best source",
         f"{info['own_best_count']} of {len(tasks)} targets; {_ordinal(worst)} at worst ({worst_at})",
         f"≥ {OWN_BEST_ASKED} of {len(tasks)}; never below {_ordinal(OWN_RANK_WORST_ASKED)}"),
        ("best − median source, in readout seed-to-seed noise",
         f"{gaps[low]:.1f} ({low}) to {gaps[high]:.0f} ({high})", f"> {GAP_ASKED:g} for every target"),
        (f"top-5 sources kept when {len(retraining['twinned_models'])} task models are retrained from another seed",
         f"{retraining['top5_agreement']:.2f}", f"≥ {RETRAINING_ASKED}"),
        ("top-5 sources kept between the two readout seeds", f"{info['top5_agreement_between_seeds']:.2f}", "–"),
        (f"own encoder best on the {n_twinned} twinned targets, first copy / second copy of the zoo",
         f"{retraining['own_best_first_copy']} / {retraining['own_best_second_copy']} of {n_twinned}", "–"),
    ]
    lines = ["| figure | measured | asked for |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "Per target: the own encoder's rank among the 20 sources (mean normalised held-out loss of the "
                  "two readout seeds, lower is better), the best source, how far the own encoder is behind it and "
                  "how far the best is ahead of the median source, both in units of the target's readout "
                  "seed-to-seed noise.", "",
              "| target | own rank | best source | own − best, in noise | best − median, in noise |",
              "|---|---|---|---|---|"]
    for i, t in enumerate(tasks):
        v = validity[t]
        behind = (loss[i, i] - loss[i].min()) / v["readout_noise"]
        lines.append(f"| {t} | {v['own_rank']} | {v['best_source']} | "
                     f"{'–' if v['own_rank'] == 1 else f'{behind:.2f}'} | {v['gap_over_noise']:.1f} |")
    return "\n".join(lines)


def readout_check_markdown(results: dict[str, dict[str, float]], unit: str) -> str:
    """One readout check as Markdown: each rung's mean validation loss, the step to the next, the rung chosen.

    Parameters
    ----------
    results : dict
        A ``scripts/world/records/readout_*.json`` record: ``"target<-source"`` → {rung: validation loss,
        ``"s<rung>"``: seconds}.
    unit : str
        What a rung counts (``epochs``, ``scenes``, ``channels``), for the table's header.

    Returns
    -------
    str
        A Markdown table (rung, pairs, mean validation loss, change from the rung before) and the sentence
        naming the rung the rule picks.
    """
    rungs = sorted({int(k) for row in results.values() for k in row if not k.startswith("s")})
    means, counts = {}, {}
    for rung in rungs:
        values = [row[str(rung)] for row in results.values() if str(rung) in row]
        means[rung], counts[rung] = float(np.mean(values)), len(values)
    lines = [f"| {unit} | pairs | mean validation loss | change from the rung before |", "|---|---|---|---|"]
    chosen = None
    for before, rung in zip([None, *rungs], rungs):
        change = "–" if before is None else f"{100 * (means[rung] - means[before]) / means[before]:+.1f} %"
        lines.append(f"| {rung} | {counts[rung]} | {means[rung]:.3f} | {change} |")
        if before is not None and chosen is None and (means[before] - means[rung]) / means[before] < RUNG_GAIN:
            chosen = before
    chosen = rungs[-1] if chosen is None else chosen
    lines += ["", f"The rule (the smallest rung at which the next lowers the mean validation loss by under "
                  f"{100 * RUNG_GAIN:g} %) picks **{chosen} {unit}**."]
    return "\n".join(lines)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


class OracleValidity(RenderedMarkdown):
    """``oracle-validity PATH``: the oracle's validity figures, from its ``oracle.json``."""

    required_arguments = 1
    has_content = False

    def markdown(self) -> str:
        """`oracle_validity_markdown` of the file's content.

        Returns
        -------
        str
            The Markdown tables.
        """
        return oracle_validity_markdown(self.read_json(self.arguments[0]))


class ReadoutCheck(RenderedMarkdown):
    """``readout-check PATH`` (option ``:unit:``, what a rung counts): one readout check's record."""

    required_arguments = 1
    has_content = False
    option_spec = {"unit": str}

    def markdown(self) -> str:
        """`readout_check_markdown` of the file's content.

        Returns
        -------
        str
            The Markdown table and the rung chosen.
        """
        return readout_check_markdown(self.read_json(self.arguments[0]), self.options.get("unit", "rung"))


def setup(app):
    """Register the directives (Sphinx's extension entry point).

    Parameters
    ----------
    app : sphinx.application.Sphinx
        The application building the site.

    Returns
    -------
    dict
        The extension's metadata: its version, and that it is safe to read and write in parallel.
    """
    app.add_directive("oracle-validity", OracleValidity)
    app.add_directive("readout-check", ReadoutCheck)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
