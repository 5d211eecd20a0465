"""The fidelity study's measures on constructed inputs, and the study end to end in miniature."""

from __future__ import annotations

import numpy as np
import pytest

from modelspace.world import study
from modelspace.world.demo import chance_same_task_rate, same_task_rate
from modelspace.world.textures import texture_batch


def test_same_task_rate_and_chance() -> None:
    labels = ["a", "a", "b", "b", "c"]
    affinity = np.array([
        [1.0, 0.9, 0.1, 0.1, 0.1],   # a → a  (hit)
        [0.9, 1.0, 0.1, 0.1, 0.95],  # a → c  (miss)
        [0.1, 0.1, 1.0, 0.8, 0.2],   # b → b  (hit)
        [0.1, 0.1, 0.8, 1.0, 0.2],   # b → b  (hit)
        [0.1, 0.95, 0.2, 0.2, 1.0],  # c has no partner: not counted
    ])
    assert same_task_rate(affinity, labels) == pytest.approx(3 / 4)
    assert chance_same_task_rate(labels) == pytest.approx(1 / 4)  # one partner among 4 others
    queries = [False, True, True, False, True]  # asked: the second a (miss), the first b (hit); c skipped
    assert same_task_rate(affinity, labels, queries) == pytest.approx(1 / 2)
    assert chance_same_task_rate(labels, queries) == pytest.approx(1 / 4)
    assert np.isnan(same_task_rate(affinity, labels, [False, False, False, False, True]))


def test_textures_are_deterministic_and_cover_every_family() -> None:
    a, b = texture_batch(24, seed=1), texture_batch(24, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24, 64, 64, 3) and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a, texture_batch(24, seed=2))
    # image i depends on (seed, i) only
    np.testing.assert_array_equal(texture_batch(5, seed=1), a[:5])


def test_study_in_miniature(tmp_path) -> None:
    results = study.run_study(tmp_path, n_probe=12, sizes=(6, 12), domains=("train", "textures"), progress=False)
    assert set(results["domains"]) == {"train", "textures"}
    rows = results["domains"]["train"]["estimators"]
    assert {"saliency", "gradient_x_input", "svcca(variance=0.99)"} <= set(rows)
    for row in rows.values():
        assert 0 <= row["P@1"] <= 1 and -1 <= row["rho"] <= 1 and 0 <= row["same_task_nn"] <= 1
    assert set(results["probe_size_curve"]["saliency"]) == {6, 12}
    assert "symmetric_oracle_ceiling" in results["asymmetry"]
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("P@K / R@K") and "| saliency |" in table and "| random |" in table
    assert (tmp_path / "probe_size_curve.png").exists()
