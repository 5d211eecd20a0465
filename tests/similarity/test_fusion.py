"""The rank fusion (similarity/fusion.py): pair percentiles by hand, and a fusion inside a space."""

from __future__ import annotations

import numpy as np
import pytest

from modelspace import ModelSpace
from modelspace.errors import InputError
from modelspace.similarity import Fusion, get_baseline, pair_percentiles
from modelspace.maps import Runtime
from support.reports import toy_probe, toy_specs


def test_pair_percentiles_by_hand() -> None:
    # four models, six pairs: values 0.9 (0,1), 0.1 (0,2), 0.5 (0,3), 0.5 (1,2), 0.3 (1,3), 0.7 (2,3)
    a = np.array([[1, .9, .1, .5], [.9, 1, .5, .3], [.1, .5, 1, .7], [.5, .3, .7, 1]])
    # ranks 1..6 with the tie of the two 0.5s at 3.5; percentile = (rank − 1) / 5
    expected = np.array([[1, 1.0, 0.0, 0.5], [1.0, 1, 0.5, 0.2], [0.0, 0.5, 1, 0.8], [0.5, 0.2, 0.8, 1]])
    np.testing.assert_allclose(pair_percentiles(a), expected)


def test_fusion_is_the_mean_of_its_members_percentiles() -> None:
    rng = np.random.default_rng(0)
    mats = []
    for _ in range(3):
        m = rng.normal(size=(6, 6))
        mats.append(m + m.T)
    fusion = get_baseline("fusion(members=('dds','rsa','gxi'))")
    fused = fusion.fuse(mats)
    # transcription: each pair's share of the pairs below it, ties counted half, averaged over the members
    for i in range(6):
        for j in range(6):
            if i == j:
                assert fused[i, j] == 1
                continue
            shares = []
            for m in mats:
                values = m[np.triu_indices(6, 1)]
                below = np.sum(values < m[i, j]) + 0.5 * (np.sum(values == m[i, j]) - 1)
                shares.append(below / (len(values) - 1))
            assert fused[i, j] == pytest.approx(np.mean(shares))
    assert fusion.id == "fusion(members=('dds', 'rsa', 'gxi'))"


def test_fusion_refuses_bad_members() -> None:
    with pytest.raises(InputError, match="two or more"):
        Fusion(members=("dds",))
    with pytest.raises(InputError, match="'no_such' is not an attribution method or a baseline"):
        Fusion(members=("dds", "no_such"))
    with pytest.raises(InputError, match="not an attribution method or a baseline"):
        Fusion(members=("dds", "fusion"))


def test_a_space_fuses_its_members_and_refuses_a_missing_one(tmp_path) -> None:
    fusion = "fusion(members=('dds','gradient_x_input'))"
    with pytest.raises(InputError, match="fuses 'dds', which this space does not compute"):
        ModelSpace(methods=["gradient_x_input"], baselines=[fusion], store=tmp_path / "s", progress=False).fit(
            toy_specs(), toy_probe(n=8, size=24))
    space = ModelSpace(methods=["gradient_x_input"], baselines=["dds", fusion], store=tmp_path / "s", runtime=Runtime(batch_size=8),
                       progress=False).fit(toy_specs(), toy_probe(n=24, size=24))
    fused = space.results_[get_baseline(fusion).id]
    members = [space.results_["gradient_x_input"], space.results_["dds"]]
    assert fused.kind == "fusion" and fused.names == members[0].names
    np.testing.assert_allclose(fused.affinity, np.mean([pair_percentiles(m.affinity) for m in members], axis=0))
    # judged against every other estimator, with its halves fused from its members' halves
    assert all(c["stability"] is not None and c["agreement"] is not None for c in fused.confidence.values())
