"""lowbit.algorithms._statistics: ActivationStatistics (per-channel max and mean of |x|, a sample of rows).

Expected values are NumPy over all rows at once (float64); the sample is checked against the input rows
themselves and, for uniformity, against the fraction a uniform sample would take from each half.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import ActivationStatistics


def test_statistics_stream_equals_all_rows_at_once(outlier_rows):
    x = outlier_rows(300, 8)
    st = ActivationStatistics(8, max_rows=50)
    for chunk in np.array_split(x, 7):
        st.partial_fit(chunk.reshape(-1, 1, 8) if len(chunk) % 2 else chunk)
    np.testing.assert_allclose(st.absmax_, np.abs(x).max(axis=0))
    np.testing.assert_allclose(st.mean_abs_, np.abs(x).astype(np.float64).mean(axis=0), rtol=1e-6)
    sample = st.sample_
    assert sample.shape == (50, 8) and st.n_samples_ == 300
    assert all(any(np.array_equal(r, y) for y in x) for r in sample)  # rows of the input, not made up
    again = ActivationStatistics(8, max_rows=50)
    for chunk in np.array_split(x, 7):
        again.partial_fit(chunk)
    np.testing.assert_array_equal(again.sample_, sample)  # same batches, same seed -> same sample


def test_statistics_errors():
    with pytest.raises(lowbit.NotCalibratedError, match="seen no data"):
        _ = ActivationStatistics(4).absmax_
    with pytest.raises(lowbit.OptionError, match=r"\(\.\.\., 4\)"):
        ActivationStatistics(4).partial_fit(np.ones((2, 3)))
    with pytest.raises(lowbit.NonFiniteError):
        ActivationStatistics(2).partial_fit(np.array([[1.0, np.nan]]))
    with pytest.raises(lowbit.OptionError, match="max_rows"):
        ActivationStatistics(2, max_rows=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_absmax_and_mean_abs_equal_numpy_over_all_batches(dtype, rng):
    """2-d and 3-d batches of different sizes, streamed: the float64 statistics of everything seen."""
    shapes = [(5, 6), (2, 3, 6), (1, 6), (40, 6), (3, 7, 6)]
    batches = [(rng.standard_normal(s) * rng.uniform(0.01, 100, 6) + rng.uniform(-3, 3, 6)).astype(dtype)
               for s in shapes]
    st = ActivationStatistics(6, max_rows=10)
    for b in batches:
        assert st.partial_fit(b) is st
    rows = np.concatenate([b.reshape(-1, 6).astype(np.float64) for b in batches])
    assert st.n_samples_ == rows.shape[0] == 5 + 6 + 1 + 40 + 21
    np.testing.assert_array_equal(st.absmax_, np.abs(rows).max(axis=0))
    np.testing.assert_allclose(st.mean_abs_, np.abs(rows).mean(axis=0), rtol=1e-12)
    assert st.absmax_.dtype == st.mean_abs_.dtype == np.float64


def test_torch_batches_are_read_like_numpy():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0))
    st = ActivationStatistics(3, max_rows=100).partial_fit(x)
    rows = x.reshape(-1, 3).double().numpy()
    np.testing.assert_array_equal(st.absmax_, np.abs(rows).max(axis=0))
    np.testing.assert_allclose(st.mean_abs_, np.abs(rows).mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(np.sort(st.sample_, axis=0), np.sort(rows.astype(np.float32), axis=0))


def test_sample_is_bounded_and_made_of_input_rows(rng):
    rows = rng.standard_normal((1000, 4)).astype(np.float32)
    rows[:, 0] = np.arange(1000)  # every row is told apart by its first value
    st = ActivationStatistics(4, max_rows=64)
    for chunk in np.array_split(rows, [1, 3, 100, 101, 500]):
        st.partial_fit(chunk)
        assert st.sample_.shape == (min(64, st.n_samples_), 4)
    sample = st.sample_
    assert sample.dtype == np.float32
    ids = sample[:, 0].astype(np.int64)
    assert len(set(ids.tolist())) == 64  # no row taken twice
    np.testing.assert_array_equal(sample, rows[ids])  # each one is an input row, unchanged


def test_fewer_rows_than_max_rows_keeps_them_all(rng):
    rows = rng.standard_normal((30, 3))
    st = ActivationStatistics(3, max_rows=50).partial_fit(rows[:10]).partial_fit(rows[10:])
    got, want = st.sample_, rows.astype(np.float32)
    np.testing.assert_array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])


def test_same_batches_and_seed_give_the_same_sample_another_seed_another(rng):
    batches = [rng.standard_normal((100, 3)) for _ in range(5)]

    def sample(seed):
        st = ActivationStatistics(3, max_rows=20, seed=seed)
        for b in batches:
            st.partial_fit(b)
        return st.sample_

    np.testing.assert_array_equal(sample(7), sample(7))
    assert not np.array_equal(sample(7), sample(8))


def test_sample_is_uniform_over_everything_seen():
    """10,000 rows in 20 batches, 500 kept: a uniform sample takes 250 +- 11 (one standard deviation,
    hypergeometric) from the first half; a sample that favours early or late batches does not."""
    rows = np.arange(10_000, dtype=np.float64)[:, None] * np.ones((1, 2))
    for seed in range(3):
        st = ActivationStatistics(2, max_rows=500, seed=seed)
        for chunk in np.split(rows, 20):
            st.partial_fit(chunk)
        ids = st.sample_[:, 0]
        assert ids.size == 500
        assert 0.4 <= np.mean(ids < 5000) <= 0.6
        assert 0.15 <= np.mean(ids < 2500) <= 0.35  # each quarter too


def test_max_rows_zero_keeps_no_sample_but_the_channel_statistics():
    x = np.array([[1.0, -2.0], [-3.0, 0.5]])
    st = ActivationStatistics(2, max_rows=0).partial_fit(x)
    assert st.sample_.shape == (0, 2)
    assert st.absmax_.tolist() == [3.0, 2.0] and st.mean_abs_.tolist() == [2.0, 1.25]


def test_nothing_seen_means_no_statistics():
    st = ActivationStatistics(3)
    for name in ("absmax_", "mean_abs_", "sample_"):
        with pytest.raises(lowbit.NotCalibratedError, match="seen no data"):
            getattr(st, name)
        assert not hasattr(st, name)  # NotCalibratedError is an AttributeError
    assert st.n_samples_ == 0


@pytest.mark.parametrize("bad", [np.ones((2, 4)), np.ones(4), np.ones((3, 2, 1)), np.float64(1.0)],
                         ids=["wide", "1d-wrong", "3d-wrong", "scalar"])
def test_wrong_width_is_an_option_error_naming_the_width(bad):
    with pytest.raises(lowbit.OptionError, match=r"\(\.\.\., 3\)"):
        ActivationStatistics(3).partial_fit(bad)


def test_bad_batches_raise_and_change_nothing():
    st = ActivationStatistics(2, max_rows=5).partial_fit(np.array([[1.0, -1.0]]))
    with pytest.raises(lowbit.NonFiniteError):
        st.partial_fit(np.array([[1.0, 2.0], [np.inf, 0.0]]))
    with pytest.raises(lowbit.NonFiniteError):
        st.partial_fit(np.array([[np.nan, 100.0]], np.float32))
    with pytest.raises(lowbit.EmptyInputError):
        st.partial_fit(np.zeros((0, 2)))
    with pytest.raises(lowbit.EmptyInputError):
        st.partial_fit(np.zeros((3, 0, 2)))
    assert st.n_samples_ == 1 and st.absmax_.tolist() == [1.0, 1.0] and st.sample_.shape == (1, 2)


@pytest.mark.parametrize("kwargs", [{"in_features": 0}, {"in_features": 2.0}, {"in_features": True},
                                    {"in_features": 2, "max_rows": 1.5}, {"in_features": 2, "max_rows": -1}],
                         ids=["width-0", "width-float", "width-bool", "rows-float", "rows-negative"])
def test_bad_options_are_option_errors(kwargs):
    with pytest.raises(lowbit.OptionError):
        ActivationStatistics(**kwargs)
