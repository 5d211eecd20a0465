"""Streamed affinity against the naive per-pair reference, closed forms and degenerate maps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelspace.similarity import affinity_matrix, affinity_naive, affinity_row
from support.maps import Reader, names, readers_for, unit_rows
from modelspace.errors import DegenerateMapsError, InputError


def random_maps(seed, n_models=5, n_images=13, shape=(3, 4, 4)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n_images, *shape)).astype(np.float32) for _ in range(n_models)]


def cosine_mean(a, b):
    """Independent scalar reference: mean over images of cos between rows of a and b."""
    total = 0.0
    for x, y in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        x, y = x.astype(np.float64), y.astype(np.float64)
        total += float(x @ y) / float(np.sqrt(x @ x) * np.sqrt(y @ y))
    return total / len(a)


def test_naive_matches_scalar_reference():
    maps = random_maps(0, n_models=3, n_images=4)
    a = affinity_naive(maps)
    for i in range(3):
        for j in range(3):
            assert a[i, j] == pytest.approx(cosine_mean(maps[i], maps[j]), abs=1e-12)


@pytest.mark.parametrize("budget", [1, 5 * 48 * 4 * 3, 2**30])
def test_streamed_equals_naive(budget):
    maps = random_maps(1)
    readers = readers_for(maps)
    got = affinity_matrix(readers, 13, names(5), memory_budget=budget, progress=False)
    np.testing.assert_allclose(got, affinity_naive(maps), atol=1e-6)
    assert got.dtype == np.float64 and got.shape == (5, 5)


def test_chunking_follows_the_budget():
    maps = random_maps(2)  # 5 models, F = 48, 13 images
    per_image = 5 * 48 * 4
    cases = {1: 1, per_image * 3: 3, per_image * 3 + per_image - 1: 3, 2**30: 13}
    for budget, chunk in cases.items():
        readers = readers_for(maps)
        affinity_matrix(readers, 13, names(5), memory_budget=budget, progress=False)
        calls = readers[1].calls  # readers[0] is also probed once for F
        expected = [(s, min(s + chunk, 13)) for s in range(0, 13, chunk)]
        assert calls == expected, budget


def test_identical_models_have_affinity_one_and_negated_minus_one():
    (m,) = random_maps(3, n_models=1)
    readers = readers_for([m, m.copy(), -m])
    a = affinity_matrix(readers, 13, ["a", "a2", "neg"], progress=False)
    np.testing.assert_allclose(a, [[1, 1, -1], [1, 1, -1], [-1, -1, 1]], atol=1e-6)


def test_orthogonal_maps_have_affinity_zero():
    # Disjoint supports: every per-image cosine is exactly 0.
    rng = np.random.default_rng(4)
    a_maps = np.zeros((6, 10), np.float32)
    b_maps = np.zeros((6, 10), np.float32)
    a_maps[:, :5] = rng.normal(size=(6, 5))
    b_maps[:, 5:] = rng.normal(size=(6, 5))
    a = affinity_matrix(readers_for([a_maps, b_maps]), 6, ["a", "b"], progress=False)
    assert a[0, 1] == pytest.approx(0.0, abs=1e-7)


def test_closed_form_mixture():
    # Per image, map_b = cos t · u + sin t · v with u ⟂ v unit vectors and map_a = u, so
    # cos(a, b) = cos t exactly; the mean over images is the mean of cos t_k.
    n = 9
    angles = np.linspace(0.0, np.pi, n)
    u = np.zeros((n, 8), np.float32)
    v = np.zeros((n, 8), np.float32)
    u[:, 0] = 1.0
    v[:, 1] = 1.0
    b = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v
    got = affinity_matrix(readers_for([u, b]), n, ["u", "b"], progress=False, memory_budget=64)
    assert got[0, 1] == pytest.approx(np.cos(angles).mean(), abs=1e-6)


def test_positive_scaling_invariance_of_naive_reference():
    maps = random_maps(5, n_models=3)
    scales = np.random.default_rng(6).uniform(0.01, 100.0, size=(3, 13, 1, 1, 1))
    scaled = [m * s for m, s in zip(maps, scales)]
    np.testing.assert_allclose(affinity_naive(scaled), affinity_naive(maps), atol=1e-9)


def test_streamed_renormalises_rows_that_are_only_nearly_unit():
    # The store keeps float16 rows, whose norms are 1 only to ~1e-3; and raw rows of any norm.
    maps = random_maps(7, n_models=4)
    stored = [Reader(unit_rows(m).astype(np.float16)) for m in maps]
    a = affinity_matrix(stored, 13, names(4), progress=False)
    np.testing.assert_allclose(np.diag(a), 1.0, atol=1e-6)
    np.testing.assert_allclose(a, affinity_naive(maps), atol=2e-3)
    raw = [Reader(m.reshape(13, -1) * 7.0) for m in maps]
    np.testing.assert_allclose(affinity_matrix(raw, 13, names(4), progress=False),
                               affinity_naive(maps), atol=1e-6)


@pytest.mark.parametrize("budget", [1, 2**30])
def test_row_equals_matrix_row(budget):
    maps = random_maps(8, n_models=6)
    full = affinity_matrix(readers_for(maps), 13, names(6), progress=False)
    new = readers_for([maps[2]])[0]
    row = affinity_row(new, readers_for(maps), 13, ["new", *names(6)], memory_budget=budget,
                       progress=False)
    assert row.shape == (6,)
    np.testing.assert_allclose(row, full[2], atol=1e-6)
    # and against the reference for a model not in the matrix
    extra = random_maps(9, n_models=1)[0]
    row = affinity_row(readers_for([extra])[0], readers_for(maps), 13, ["x", *names(6)],
                       progress=False, memory_budget=budget)
    np.testing.assert_allclose(row, affinity_naive([extra, *maps])[0, 1:], atol=1e-6)


@pytest.mark.parametrize("budget", [1, 2**30])
def test_zero_and_nan_maps_raise_naming_models_and_counts(budget):
    maps = [unit_rows(m) for m in random_maps(10, n_models=4)]
    maps[1][[2, 5, 11]] = 0.0  # three all-zero maps
    maps[3][7, 4] = np.nan  # one non-finite map
    with pytest.raises(DegenerateMapsError) as info:
        affinity_matrix([Reader(m) for m in maps], 13, ["ok0", "zeros", "ok2", "nans"],
                        memory_budget=budget, progress=False)
    message = str(info.value)
    assert "'zeros' (3 of 13" in message and "'nans' (1 of 13" in message
    assert "ok0" not in message and "ok2" not in message
    assert info.value.bad_counts == {"zeros": 3, "nans": 1}


def test_row_degenerate_new_model_is_named():
    maps = [unit_rows(m) for m in random_maps(11, n_models=2)]
    bad = maps[0].copy()
    bad[0] = np.inf
    with pytest.raises(DegenerateMapsError, match="'newbie' \\(1 of 13"):
        affinity_row(Reader(bad), [Reader(m) for m in maps], 13, ["newbie", "a", "b"],
                     progress=False)


def test_naive_rejects_zero_maps():
    maps = random_maps(12, n_models=2)
    maps[1][0] = 0.0
    with pytest.raises(DegenerateMapsError, match=r"maps\[1\]"):
        affinity_naive(maps)


def test_bad_arguments():
    readers = readers_for(random_maps(13, n_models=2))
    with pytest.raises(InputError, match="names"):
        affinity_matrix(readers, 13, ["only-one"], progress=False)
    with pytest.raises(InputError, match="n_images"):
        affinity_matrix(readers, 0, names(2), progress=False)
    with pytest.raises(InputError, match="memory_budget"):
        affinity_matrix(readers, 13, names(2), memory_budget=0, progress=False)
    with pytest.raises(InputError, match="names"):
        affinity_row(readers[0], readers, 13, names(2), progress=False)  # lacks the new name
    short = Reader(unit_rows(random_maps(14, n_models=1, shape=(2, 2, 2))[0]))
    with pytest.raises(InputError, match="'m1'"):
        affinity_matrix([readers[0], short], 13, names(2), progress=False)
    with pytest.raises(InputError, match="shape"):
        affinity_naive([np.ones((3, 4)), np.ones((3, 5))])


@settings(max_examples=30, deadline=None)
@given(
    n_models=st.integers(1, 6),
    n_images=st.integers(1, 9),
    n_features=st.integers(1, 12),
    budget=st.integers(1, 4000),
    seed=st.integers(0, 2**32 - 1),
)
def test_symmetric_unit_diagonal_bounded(n_models, n_images, n_features, budget, seed):
    rng = np.random.default_rng(seed)
    maps = [rng.normal(size=(n_images, n_features)) for _ in range(n_models)]
    maps = [np.where(np.abs(m) < 1e-6, 1.0, m) for m in maps]  # no (near-)zero rows
    a = affinity_matrix(readers_for(maps), n_images, names(n_models), memory_budget=budget,
                        progress=False)
    assert np.array_equal(a, a.T)
    np.testing.assert_allclose(np.diag(a), 1.0, atol=1e-6)
    assert np.all(np.abs(a) <= 1.0 + 1e-6)
    np.testing.assert_allclose(a, affinity_naive(maps), atol=1e-6)


def test_progress_bar_does_not_change_result(capsys):
    maps = random_maps(15, n_models=3)
    quiet = affinity_matrix(readers_for(maps), 13, names(3), progress=False, memory_budget=1)
    loud = affinity_matrix(readers_for(maps), 13, names(3), progress=True, memory_budget=1)
    np.testing.assert_array_equal(quiet, loud)
    assert "affinity" in capsys.readouterr().err


def test_peak_memory_is_bounded_by_the_chunk_not_the_data():
    import tracemalloc

    rng = np.random.default_rng(16)
    rows = [unit_rows(rng.normal(size=(400, 1000))) for _ in range(4)]  # 6.4 MB in all
    readers = [Reader(r) for r in rows]  # views: reading allocates nothing
    budget = 4 * 5 * 1000 * 4  # five images per chunk: 80 kB
    affinity_matrix(readers, 10, names(4), memory_budget=budget, progress=False)  # warm caches
    tracemalloc.start()
    try:
        affinity_matrix(readers, 400, names(4), memory_budget=budget, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * budget, peak  # a full stack of the maps would take 80 × budget
