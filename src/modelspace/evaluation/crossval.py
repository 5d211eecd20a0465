"""Choosing a free parameter fairly: leave-one-target-out cross-validation over targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["CrossValidated", "leave_one_target_out"]


@dataclass(frozen=True)
class CrossValidated:
    """A free parameter chosen by leave-one-target-out cross-validation, and the score it earns.

    Attributes
    ----------
    per_target : dict of str to float
        Each held-out target's score under the value chosen without it.
    chosen : dict
        Each held-out target -> the value chosen on the other targets.
    mean : float
        Mean of `per_target`: the cross-validated score.
    """

    per_target: dict[str, float]
    chosen: dict[str, Any]
    mean: float

    @property
    def counts(self) -> dict[Any, int]:
        """How often each value was chosen, in order of first choice."""
        out: dict[Any, int] = {}
        for value in self.chosen.values():
            out[value] = out.get(value, 0) + 1
        return out


def leave_one_target_out(scores: Mapping[Any, Mapping[str, float]]) -> CrossValidated:
    """Choose a free parameter without scoring any target with a value chosen on it.

    For each target t: the value whose mean score over the *other* targets is highest is chosen,
    and t is scored with it. The mean of those held-out scores says what choosing the parameter
    this way earns, an honest figure beside a value fixed beforehand, where picking the best
    value on all targets would report the maximum over the grid (biased upward).

    Parameters
    ----------
    scores : mapping
        Parameter value -> {target: score} (P@5 or ρ, higher is better), every value scoring the
        same targets (at least 2). Ties go to the value that comes first, so list the grid in a
        pre-declared order (the fixed default first).

    Returns
    -------
    CrossValidated
        Each target's held-out score and the value chosen for it, and their mean.

    Raises
    ------
    InputError
        If ``scores`` is empty, its values score different targets, fewer than 2 targets, or a score
        is not finite.
    """
    if not isinstance(scores, Mapping) or not scores:
        raise InputError("scores: expected a non-empty mapping parameter value -> {target: score}")
    values = list(scores)
    targets = list(scores[values[0]])
    for value in values:
        if set(scores[value]) != set(targets):
            raise InputError(f"scores: value {value!r} scores other targets than {values[0]!r}")
    if len(targets) < 2:
        raise InputError(f"scores: leaving one target out needs at least 2 targets, got {len(targets)}")
    table = np.array([[float(scores[v][t]) for t in targets] for v in values])  # (values, targets)
    if not np.isfinite(table).all():
        raise InputError("scores: expected finite scores")
    totals = table.sum(axis=1)
    per_target, chosen = {}, {}
    for j, target in enumerate(targets):
        rest = (totals - table[:, j]) / (len(targets) - 1)
        best = int(np.argmax(rest))  # the first maximum: ties go to the earlier value
        chosen[target] = values[best]
        per_target[target] = float(table[best, j])
    return CrossValidated(per_target, chosen, float(np.mean(list(per_target.values()))))
