"""Rank fusion: one estimate from several estimators that fail differently.

Attribution maps and representations go wrong on different targets (docs/trust.md, "How far to
trust it"), so a fusion of one of each can hold where either alone slips. The fusion is declared like a
baseline (`register_baseline`, an id such as ``fusion(members=('dds','gradient_x_input_subspace'))``)
but prepares nothing: `ModelSpace` computes its members as usual and fuses their matrices.

Each member's matrix is read as ranks, not values, because the members' scales differ (a mean of
cosines, a debiased CKA): a pair's fused score is the mean over the members of the pair's
percentile among all model pairs of that member's matrix (average ranks for ties, 0 for the least
similar pair, 1 for the most). The result is symmetric, as its members are, with 1 on the diagonal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.stats import rankdata

from ..attribution import METHODS
from ..errors import InputError
from ..identity import name_of
from .baselines import BASELINES, Similarity, register_baseline

__all__ = ["Fusion", "pair_percentiles"]


def pair_percentiles(matrix: np.ndarray) -> np.ndarray:
    """Each off-diagonal entry of a symmetric matrix as its percentile among the pairs.

    Parameters
    ----------
    matrix : np.ndarray
        A symmetric (M, M) matrix (affinity or similarity: higher is closer).

    Returns
    -------
    np.ndarray
        (M, M) float64: each entry's percentile among the M (M − 1) / 2 pairs above the diagonal
        (average ranks for ties, in [0, 1]), mirrored; the diagonal is 1.
    """
    m = len(matrix)
    out = np.ones((m, m))
    if m < 3:  # one pair: nothing to rank it against
        return out
    upper = np.triu_indices(m, 1)
    ranks = (rankdata(matrix[upper]) - 1) / (len(upper[0]) - 1)
    out[upper] = ranks
    out[upper[::-1]] = ranks
    return out


@register_baseline("rank_fusion")
@dataclass(frozen=True, repr=False)
class Fusion(Similarity):
    """The mean of several estimators' pair percentiles (a rank fusion).

    Parameters
    ----------
    members : tuple of str
        Two or more estimators of the same run, by name, alias or id: attribution methods (computed
        among the space's methods) and baselines (among its baselines). Not fusions. Default
        ``("dds", "gradient_x_input_subspace")``.

    Raises
    ------
    InputError
        If there are fewer than two members, or one is not a name of a method or a baseline.
    """

    name = "fusion"
    combines_estimators: ClassVar[bool] = True

    members: tuple[str, ...] = ("dds", "gradient_x_input_subspace")

    def __post_init__(self) -> None:
        members = self.members
        if isinstance(members, str) or not isinstance(members, Sequence) or len(members) < 2:
            raise InputError(f"{self.name}: members must be two or more estimator names, got {members!r}")
        for member in members:
            if not isinstance(member, str):
                raise InputError(f"{self.name}: members must be names, got {member!r}")
            base = name_of(member)
            base = METHODS.aliases.get(base, BASELINES.aliases.get(base, base))
            if base == self.name or (base not in METHODS and base not in BASELINES):
                raise InputError(f"{self.name}: member {member!r} is not an attribution method or a baseline")
        self._set("members", tuple(members))

    def fuse(self, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """The fused matrix: the mean of the members' pair percentiles (`pair_percentiles`).

        Parameters
        ----------
        matrices : sequence of np.ndarray
            The members' (M, M) matrices over the same models, in one order, in the order of `members`.

        Returns
        -------
        np.ndarray
            The fused (M, M) float64 matrix.

        Raises
        ------
        InputError
            If there is not one matrix per member, or their shapes differ.
        """
        shapes = {np.shape(m) for m in matrices}
        if len(matrices) != len(self.members) or len(shapes) != 1:
            raise InputError(f"{self.name}: expected {len(self.members)} matrices of one shape, got shapes {sorted(shapes)}")
        return np.mean([pair_percentiles(np.asarray(m, dtype=np.float64)) for m in matrices], axis=0)

    def undefined_on(self, copies: Sequence[int]) -> str | None:
        """Say where the fusion is undefined: nowhere of its own.

        A fusion is defined wherever its members are (`ModelSpace` names one whose member is not).

        Parameters
        ----------
        copies : sequence of int
            As for the other baselines; not used.

        Returns
        -------
        None
            Always.
        """
        return None

    def _prepare(self, x: np.ndarray, what: str) -> Any:
        raise InputError(f"{self.name}: a fusion fuses its members' matrices; it has no activations to prepare")
