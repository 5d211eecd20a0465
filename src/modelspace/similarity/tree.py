"""The model-similarity tree, its flat clusters and the classical MDS map of the same distance.

The tree is an agglomerative clustering on 1 − affinity, written as Newick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from ..errors import InputError

METHODS = ("single", "complete", "average", "weighted", "centroid", "median", "ward")
"""The linkage methods scipy offers. The tree's default is "average" (UPGMA); centroid, median
and ward assume Euclidean distances, which 1 − affinity is not, so use them knowingly."""

# Characters that end an unquoted Newick label (and '_', which readers turn into a blank).
_NEWICK_SPECIAL = set(" \t\r\n()[]':;,_")


def distance(affinity: np.ndarray) -> np.ndarray:
    """1 − affinity, symmetrised ((A + Aᵀ)/2), clipped at 0 and with a zero diagonal.

    Rounding can push an affinity a hair above 1; the clip keeps the distance a distance.

    Parameters
    ----------
    affinity : np.ndarray
        An (N, N) affinity matrix (1 = identical).

    Returns
    -------
    np.ndarray
        The (N, N) float64 distance matrix.

    Raises
    ------
    InputError
        A non-square, empty or non-finite matrix.
    """
    a = np.asarray(affinity, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"affinity: expected a square matrix, got shape {a.shape}")
    if a.shape[0] == 0:
        raise InputError(f"affinity: expected a non-empty square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError("affinity: the matrix holds NaN or infinite values")
    dist = np.clip(1.0 - (a + a.T) / 2.0, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    return dist


def similarity_tree(affinity: np.ndarray, method: str = "average") -> np.ndarray:
    """Return a scipy linkage matrix clustering the models by `distance`.

    Parameters
    ----------
    affinity : np.ndarray
        An (N, N) affinity matrix, N >= 2.
    method : str, default "average"
        scipy's linkage method (``"average"``: UPGMA).

    Returns
    -------
    np.ndarray
        The (N − 1, 4) linkage matrix.

    Raises
    ------
    InputError
        A non-square, non-finite or smaller than 2×2 matrix, or an unknown method.
    """
    a = np.asarray(affinity, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] < 2:
        raise InputError(f"affinity: a tree needs at least 2 models, got {a.shape[0]}")
    dist = distance(a)
    if method not in METHODS:
        raise InputError(f"method: unknown linkage method {method!r}; expected one of {METHODS}")
    return hierarchy.linkage(squareform(dist, checks=False), method=method)


def classical_mds(affinity: np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates (N × dims) whose distances approximate `distance` (Torgerson's classical MDS).

    Dimensions with a non-positive eigenvalue (a non-Euclidean distance, or fewer models than
    dims + 1) are left at 0.

    Parameters
    ----------
    affinity : np.ndarray
        An (N, N) affinity matrix.
    dims : int, default 2
        The number of axes.

    Returns
    -------
    np.ndarray
        (N, dims) coordinates.
    """
    d = distance(affinity)
    n = len(d)
    centring = np.eye(n) - 1.0 / n
    b = -0.5 * centring @ (d**2) @ centring  # double-centred squared distances: a Gram matrix
    values, vectors = np.linalg.eigh(b)
    top = np.argsort(values)[::-1][:dims]
    coords = np.zeros((n, dims))
    for k, i in enumerate(top):
        if values[i] > 1e-12:
            coords[:, k] = vectors[:, i] * np.sqrt(values[i])
    return coords


def mds_explained(affinity: np.ndarray, dims: int = 2) -> np.ndarray:
    """The share of the variance each of the first `dims` classical-MDS axes holds.

    Parameters
    ----------
    affinity : np.ndarray
        An (N, N) affinity matrix.
    dims : int, default 2
        The number of axes.

    Returns
    -------
    np.ndarray
        (dims,): each axis's eigenvalue over the sum of the positive eigenvalues (0 where there is none).
    """
    d = distance(affinity)
    n = len(d)
    centring = np.eye(n) - 1.0 / n
    values = np.sort(np.linalg.eigvalsh(-0.5 * centring @ (d**2) @ centring))[::-1]
    positive = values[values > 1e-12]
    shares = np.zeros(dims)
    if positive.size:
        top = np.clip(values[:dims], 0.0, None) / positive.sum()
        shares[:len(top)] = top
    return shares


def cophenetic(linkage: np.ndarray) -> np.ndarray:
    """The cophenetic distances of a tree.

    Parameters
    ----------
    linkage : np.ndarray
        A scipy linkage matrix over N leaves.

    Returns
    -------
    np.ndarray
        (N, N): for each pair of leaves, the height of the merge that first joins them (0 on the diagonal).
    """
    z = _checked_linkage(linkage)
    n = len(z) + 1
    members = {i: [i] for i in range(n)}
    out = np.zeros((n, n))
    for step, (a, b, height, _) in enumerate(z):
        left, right = members.pop(int(a)), members.pop(int(b))
        out[np.ix_(left, right)] = height
        out[np.ix_(right, left)] = height
        members[n + step] = left + right
    return out


def tree_agreement(linkage_a: np.ndarray, linkage_b: np.ndarray) -> float:
    """How alike two trees over the same leaves (in the same order) are.

    Parameters
    ----------
    linkage_a, linkage_b : np.ndarray
        scipy linkage matrices over the same leaves.

    Returns
    -------
    float
        The Pearson correlation of their cophenetic distances over the pairs of leaves (1 = the same
        hierarchy and heights up to scale); NaN when either tree has all its merges at one height or
        fewer than three leaves.
    """
    a, b = cophenetic(linkage_a), cophenetic(linkage_b)
    if a.shape != b.shape:
        raise InputError(f"trees: {len(a)} and {len(b)} leaves; the agreement needs the same leaves")
    upper = np.triu_indices(len(a), 1)
    x, y = a[upper], b[upper]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def clusters(linkage: np.ndarray | None, n: int) -> np.ndarray:
    """A flat clustering cut from the tree, for colouring points.

    Parameters
    ----------
    linkage : np.ndarray or None
        A scipy linkage matrix over n leaves, or None (one group).
    n : int
        The number of leaves.

    Returns
    -------
    np.ndarray
        int (n,): each leaf's group, from 0; about √(n/2) groups, 2 to 10 (one group below 3 leaves).
    """
    if linkage is None or n < 3:
        return np.zeros(n, dtype=int)
    k = int(np.clip(round(math.sqrt(n / 2)), 2, 10))
    return hierarchy.fcluster(linkage, k, criterion="maxclust") - 1


def spread(names: Sequence[str], linkage: np.ndarray | None, k: int) -> list[str]:
    """Up to k names spread evenly along the tree's leaf order.

    Parameters
    ----------
    names : sequence of str
        The leaves' names, in the linkage's leaf indices.
    linkage : np.ndarray or None
        A scipy linkage matrix, or None (the names as they are).
    k : int
        How many names.

    Returns
    -------
    list of str
        The picked names in leaf order; all of them when there are k or fewer (or no tree).
    """
    if len(names) <= k or linkage is None:
        return list(names)
    order = leaf_order(linkage)
    picks = sorted({order[round(i * (len(order) - 1) / (k - 1))] for i in range(k)}, key=order.index)
    return [names[i] for i in picks]


def to_newick(linkage: np.ndarray, names: Sequence[str]) -> str:
    """Return the tree as a Newick string with branch lengths, ending with ';'.

    A branch length is the difference between the heights of the parent and child merges (leaves
    sit at height 0). Names holding whitespace, Newick punctuation or '_' are single-quoted
    (with any inner quote doubled), so that every reader gets the exact name back.

    Built bottom-up without recursion, so deep (chain-like) trees of thousands of leaves work.

    Parameters
    ----------
    linkage : np.ndarray
        A scipy linkage matrix over N leaves.
    names : sequence of str
        The N leaves' names.

    Returns
    -------
    str
        The Newick string.

    Raises
    ------
    InputError
        An invalid linkage, or a names list of the wrong length.
    """
    z = _checked_linkage(linkage)
    n = z.shape[0] + 1
    if isinstance(names, str) or len(names) != n:
        raise InputError(f"names: expected {n} names for a linkage of {n} leaves, got "
                         f"{1 if isinstance(names, str) else len(names)}")
    text = [_quote(str(name)) for name in names]
    height = [0.0] * n
    for left, right, h, _count in z:
        children = (int(left), int(right))
        parts = [f"{text[c]}:{_length(h - height[c])}" for c in children]
        text.append("(" + ",".join(parts) + ")")
        height.append(float(h))
    return text[-1] + ";"


def leaf_order(linkage: np.ndarray) -> list[int]:
    """Return the leaves' left-to-right order in the dendrogram.

    Parameters
    ----------
    linkage : np.ndarray
        A scipy linkage matrix over N leaves.

    Returns
    -------
    list of int
        A permutation of 0..N-1.
    """
    return [int(i) for i in hierarchy.leaves_list(_checked_linkage(linkage))]


def _checked_linkage(linkage: np.ndarray) -> np.ndarray:
    z = np.asarray(linkage, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != 4 or z.shape[0] < 1 \
            or not hierarchy.is_valid_linkage(z, throw=False):
        raise InputError(f"linkage: not a valid scipy linkage matrix (shape {z.shape})")
    return z


def _quote(name: str) -> str:
    if name and not (set(name) & _NEWICK_SPECIAL):
        return name
    return "'" + name.replace("'", "''") + "'"


def _length(value: float) -> str:
    # 10 significant digits: enough to keep distinct heights distinct, short enough to read.
    return f"{value:.10g}"
