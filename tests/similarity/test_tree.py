"""Similarity tree: clusters, Newick round trip, leaf order, cophenetic distances, tree agreement and MDS shares."""

import numpy as np
import pytest
from scipy.cluster import hierarchy

from modelspace.errors import InputError
from modelspace.similarity import cophenetic, leaf_order, mds_explained, similarity_tree, to_newick, tree_agreement


def parse_newick(text: str):
    """A tiny Newick reader: returns nested tuples (children, length) with leaves as names.

    Handles quoted labels ('' for a quote) and ':length' suffixes; enough for our writer.
    """
    assert text.endswith(";"), text
    pos = 0

    def label():
        nonlocal pos
        if text[pos] == "'":
            out, pos = [], pos + 1
            while True:
                if text[pos] == "'":
                    if text[pos + 1] == "'":
                        out.append("'")
                        pos += 2
                        continue
                    pos += 1
                    return "".join(out)
                out.append(text[pos])
                pos += 1
        start = pos
        while text[pos] not in ":,();":
            pos += 1
        return text[start:pos].replace("_", " ")  # unquoted '_' means a blank in Newick

    def length():
        nonlocal pos
        if text[pos] != ":":
            return None
        start = pos = pos + 1
        while text[pos] not in ",();":
            pos += 1
        return float(text[start:pos])

    def node():
        nonlocal pos
        if text[pos] == "(":
            children = []
            pos += 1
            while True:
                children.append(node())
                if text[pos] == ",":
                    pos += 1
                    continue
                assert text[pos] == ")"
                pos += 1
                break
            return (children, length())
        return (label(), length())

    tree = node()
    assert text[pos:] == ";", text[pos:]
    return tree


def leaves(tree):
    name, _ = tree
    return [name] if isinstance(name, str) else [x for c in name for x in leaves(c)]


def root_to_leaf_depths(tree, depth=0.0, out=None):
    out = {} if out is None else out
    content, _ = tree
    if isinstance(content, str):
        out[content] = depth
    else:
        for child in content:
            root_to_leaf_depths(child, depth + child[1], out)
    return out


def two_cluster_affinity():
    # Models 0-2 are close to each other (0.9), 3-5 too (0.8), the groups far apart (0.1).
    a = np.full((6, 6), 0.1)
    a[:3, :3] = 0.9
    a[3:, 3:] = 0.8
    np.fill_diagonal(a, 1.0)
    return a


NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


def test_two_clusters_are_two_clades_at_the_root():
    z = similarity_tree(two_cluster_affinity())
    tree = parse_newick(to_newick(z, NAMES))
    children, _ = tree
    assert len(children) == 2
    assert sorted(map(sorted, (leaves(c) for c in children))) == [
        ["alpha", "beta", "gamma"], ["delta", "epsilon", "zeta"]]


def test_branch_lengths_follow_the_merge_heights():
    # Average linkage heights: within groups 1 - 0.9 and 1 - 0.8, root at 1 - 0.1 = 0.9.
    z = similarity_tree(two_cluster_affinity())
    np.testing.assert_allclose(sorted(z[:, 2]), [0.1, 0.1, 0.2, 0.2, 0.9], atol=1e-12)
    depths = root_to_leaf_depths(parse_newick(to_newick(z, NAMES)))
    # Ultrametric: every leaf is at the root height from the root.
    for name in NAMES:
        assert depths[name] == pytest.approx(0.9, abs=1e-9)


def test_newick_round_trips_special_names():
    names = ["plain", "with space", "it's", "a,b", "x(y)", "under_score", "colon:", ""]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(names), 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    z = similarity_tree(x @ x.T)
    text = to_newick(z, names)
    assert text.endswith(";")
    assert sorted(leaves(parse_newick(text))) == sorted(names)
    assert "plain:" in text and "'it''s'" in text and "'under_score'" in text


def test_newick_leaf_count_and_parentheses_for_many_models():
    n = 150
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 20))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    names = [f"m{i}" for i in range(n)]
    text = to_newick(similarity_tree(x @ x.T), names)
    assert text.count("(") == text.count(")") == n - 1  # a binary tree: one pair per merge
    assert sorted(leaves(parse_newick(text))) == sorted(names)


def test_deep_chain_does_not_recurse():
    # Single linkage on points on a line merges one leaf at a time: a chain of depth n - 1.
    n = 3000
    pos = np.cumsum(np.arange(1, n + 1, dtype=np.float64)) / n**2
    a = 1.0 - np.abs(pos[:, None] - pos[None, :])
    text = to_newick(similarity_tree(a, method="single"), [f"m{i}" for i in range(n)])
    assert text.count("(") == n - 1 and text.endswith(";")


def test_leaf_order_is_a_permutation_keeping_clusters_together():
    z = similarity_tree(two_cluster_affinity())
    order = leaf_order(z)
    assert sorted(order) == list(range(6))
    assert all(isinstance(i, int) for i in order)
    first = set(order[:3])
    assert first in ({0, 1, 2}, {3, 4, 5})


def test_distance_is_symmetrised_and_clipped():
    a = two_cluster_affinity()
    a[0, 1] += 0.02  # slightly asymmetric
    a[2, 2] = 1.0 + 1e-9  # rounding above 1
    a[1, 2] = a[2, 1] = 1.0 + 1e-9
    z = similarity_tree(a)
    assert np.all(z[:, 2] >= 0.0)
    dist = 1.0 - (a + a.T) / 2
    dist = np.clip(dist, 0, None)
    np.fill_diagonal(dist, 0)
    expected = hierarchy.linkage(dist[np.triu_indices(6, 1)], method="average")
    np.testing.assert_allclose(z, expected)


@pytest.mark.parametrize("method", ["single", "complete", "weighted"])
def test_other_methods(method):
    z = similarity_tree(two_cluster_affinity(), method=method)
    children, _ = parse_newick(to_newick(z, NAMES))
    assert sorted(len(leaves(c)) for c in children) == [3, 3]


def test_rejects_bad_input():
    with pytest.raises(InputError, match="square"):
        similarity_tree(np.ones((2, 3)))
    with pytest.raises(InputError, match="NaN"):
        similarity_tree(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(InputError, match="at least 2"):
        similarity_tree(np.ones((1, 1)))
    with pytest.raises(InputError, match="method"):
        similarity_tree(np.eye(3), method="nearest")
    z = similarity_tree(two_cluster_affinity())
    with pytest.raises(InputError, match="names"):
        to_newick(z, NAMES[:5])
    with pytest.raises(InputError, match="linkage"):
        to_newick(np.ones((3, 3)), NAMES)
    with pytest.raises(InputError, match="linkage"):
        leaf_order(np.zeros((2, 4)) - 1)


def test_cophenetic_matches_scipy_and_agreement_of_a_tree_with_itself_is_one() -> None:
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b = x @ x.T, (x + 0.5 * rng.normal(size=x.shape)) @ x.T
    b = (b + b.T) / 2
    np.fill_diagonal(b, 1)
    za, zb = similarity_tree(a), similarity_tree(b)
    np.testing.assert_allclose(squareform(cophenetic(za)), hierarchy.cophenet(za), atol=1e-12)
    expected = np.corrcoef(hierarchy.cophenet(za), hierarchy.cophenet(zb))[0, 1]
    assert tree_agreement(za, zb) == pytest.approx(expected)
    assert tree_agreement(za, za) == pytest.approx(1.0)


def test_mds_explained_shares() -> None:
    # Three points on a line: one axis holds all the variance.
    d = np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]], dtype=float) / 4
    shares = mds_explained(1 - d)
    assert shares == pytest.approx([1.0, 0.0])
