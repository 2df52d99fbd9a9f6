"""lowbit.calibration.base: the estimator contract, the registry, streaming with bounded memory,
degenerate inputs and quantize(method=...), for every built-in estimator.

Each estimator's own accuracy is tested in test_<its module>.py.  Expected values come from
NumPy (np.percentile, plain min/max), never from lowbit itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lowbit
from lowbit.calibration import (
    ACIQ,
    MSE,
    Entropy,
    MinMax,
    MovingAverageMinMax,
    Percentile,
    clone,
    get_estimator,
    list_estimators,
    register_estimator,
)

HIST_ESTIMATORS = [Percentile, MSE, Entropy, ACIQ]
ALL = [MinMax, MovingAverageMinMax, *HIST_ESTIMATORS]
ids = [c.__name__ for c in ALL]


def _state_nbytes(est) -> int:
    total = 0
    for value in vars(est).values():
        if isinstance(value, np.ndarray) or hasattr(value, "nbytes"):
            total += value.nbytes
    return total


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_contract_before_and_after_data(cls):
    est = cls()
    assert not [k for k in vars(est) if k.endswith("_")], "constructor must store parameters only"
    with pytest.raises(lowbit.NotCalibratedError, match="partial_fit"):
        est.clip_range()
    with pytest.raises(lowbit.NotCalibratedError):
        est.qparams("int8")
    assert est.partial_fit(np.arange(-5.0, 6.0)) is est
    lo, hi = est.clip_range("int8")
    assert isinstance(lo, float) and lo <= 0 <= hi
    scale, zp = est.qparams("uint8", symmetric=False)
    assert scale.dtype == np.float32 and scale > 0 and 0 <= int(zp) <= 255
    assert est.fit([np.arange(10.0, 20.0)]) is est
    assert est.clip_range("uint8")[1] >= 19.0 - 1e-9 or cls is not MinMax


def test_constructor_defaults_apply_when_range_is_asked_without_arguments(rng):
    x = rng.standard_normal(10_000) + 2.0
    assert MSE(qtype="uint4", symmetric=False).fit([x]).clip_range() == MSE().fit([x]).clip_range("uint4", False)
    lo, hi = MSE(qtype="int4").fit([x]).clip_range()
    assert lo == -hi


def test_fit_forgets_earlier_data():
    est = MinMax().fit([np.array([-100.0, 100.0])])
    assert est.fit([np.array([1.0, 2.0])]).clip_range() == (1.0, 2.0)


def test_registry_and_options():
    assert list_estimators()[:6] == ["minmax", "percentile", "mse", "entropy", "aciq", "moving_average"]
    assert isinstance(get_estimator("percentile", percentile=99.0), Percentile)
    with pytest.raises(lowbit.OptionError, match="registered estimators are: minmax, percentile"):
        get_estimator("kmeans")
    with pytest.raises(lowbit.OptionError, match=r"no option\(s\) \['percentile'\]"):
        get_estimator("minmax", percentile=99.0)
    with pytest.raises(lowbit.OptionError, match="percentile must be"):
        get_estimator("percentile", percentile=101.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Percentile(percentile=20.0),
        lambda: Percentile(percentile=101.0),
        lambda: Percentile(percentile="99"),
        lambda: MovingAverageMinMax(momentum=1.0),
        lambda: Percentile(nan_policy="ignore"),
        lambda: MSE(bins=4),
        lambda: MSE(qtype="int99"),
        lambda: ACIQ(distribution="cauchy"),
        lambda: MinMax(axis="0"),
    ],
    ids=["pct-low", "pct-high", "pct-str", "momentum", "nan-policy", "bins", "qtype", "distribution", "axis"],
)
def test_constructors_store_and_fit_validates(make):
    est = make()  # scikit-learn's contract: the constructor only stores its parameters
    with pytest.raises(lowbit.LowbitError):
        est.fit([np.arange(10.0)])
    with pytest.raises(lowbit.LowbitError):
        est.partial_fit(np.arange(10.0))


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_params_round_trip_and_clone(cls):
    est = cls()
    params = est.get_params()
    assert params == type(est)(**params).get_params()
    assert "axis" in params and "nan_policy" in params
    assert est.set_params(axis=0) is est and est.get_params()["axis"] == 0
    with pytest.raises(lowbit.OptionError, match="has no parameter"):
        est.set_params(percentil=99.0)
    est.fit([np.arange(12.0).reshape(3, 4)])
    copy = clone(est)
    assert copy.get_params() == est.get_params() and copy is not est
    assert not [k for k in vars(copy) if k.endswith("_")]


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_fitted_attributes_exist_only_after_fitting(cls):
    est = cls()
    assert not hasattr(est, "seen_") and not hasattr(est, "channels_")
    with pytest.raises(AttributeError):  # NotCalibratedError is an AttributeError, as NotFittedError is
        est.clip_range()
    with pytest.raises(ValueError):
        est.qparams()
    est.fit([np.arange(5.0)])
    fitted = sorted(k for k in vars(est) if k.endswith("_"))
    assert "seen_" in fitted and est.seen_ == 1
    est.fit([])  # fit is reset + partial_fit: no batch leaves it unfitted
    assert not [k for k in vars(est) if k.endswith("_")]


def test_registering_an_estimator():
    @register_estimator
    class MeanAbs(MinMax):
        """Symmetric range at 3x the mean |x| (a toy, to test the registry)."""

        name = "test_meanabs"

        def _reset(self, channels):
            self.total_, self.count_ = np.zeros(channels), 0

        def _has_data(self):
            return self.count_ > 0

        def _update(self, rows, mins, maxs, had_nonfinite):
            self.total_ = self.total_ + np.abs(rows).sum(axis=1)
            self.count_ += rows.shape[1]

        def _range(self, qtype, symmetric):
            t = 3 * self.total_ / self.count_
            return -t, t

    assert "test_meanabs" in list_estimators()
    x = np.array([1.0, -1.0, 2.0, -2.0], np.float32)
    assert lowbit.quantize(x, "int8", method="test_meanabs").scale == np.float32(4.5 / 127)
    with pytest.raises(lowbit.OptionError, match="already taken"):
        register_estimator(type("Other", (MinMax,), {"name": "test_meanabs"}))
    with pytest.raises(lowbit.OptionError, match="RangeEstimator subclass"):
        register_estimator(dict)


# --------------------------------------------------------------------------- streaming


def _growing_batches(rng, n=50):
    """Batches whose range grows late, shifts sign and shrinks again."""
    out = []
    for i in range(n):
        scale = 1.0 if i < 20 else 1.15 ** (i - 19)
        shift = 0.0 if i < 35 else 3.0
        out.append((rng.standard_normal(2000) * scale + shift).astype(np.float32))
    out[40] = out[40][:0]  # an empty batch in the middle changes nothing
    return out


@pytest.mark.parametrize("cls", [MinMax, *HIST_ESTIMATORS], ids=[c.__name__ for c in [MinMax, *HIST_ESTIMATORS]])
@pytest.mark.parametrize("sym", [True, False], ids=["sym", "affine"])
def test_streaming_equals_one_batch(cls, sym, rng):
    batches = _growing_batches(rng)
    streamed = cls()
    for b in batches:
        streamed.partial_fit(b)
    whole = cls().fit([np.concatenate(batches)])
    s_lo, s_hi = streamed.clip_range("int8", sym)
    w_lo, w_hi = whole.clip_range("int8", sym)
    if cls is MinMax:
        assert (s_lo, s_hi) == (w_lo, w_hi)
        return
    # The merged histogram is the histogram of the concatenation, bin for bin.
    np.testing.assert_array_equal(streamed.hist_.counts, whole.hist_.counts)
    assert streamed.hist_.width[0] == whole.hist_.width[0]
    width = float(whole.hist_.width[0])
    assert abs(s_lo - w_lo) <= width and abs(s_hi - w_hi) <= width


@pytest.mark.parametrize("cls", HIST_ESTIMATORS, ids=[c.__name__ for c in HIST_ESTIMATORS])
def test_memory_is_bounded(cls, rng):
    est = cls(bins=1024)
    sizes = []
    for i in range(200):
        est.partial_fit(rng.standard_normal(500).astype(np.float32) * (1 + i))
        sizes.append(_state_nbytes(est))
    assert sizes[-1] == sizes[1] and sizes[-1] < 64 * 1024


def test_per_channel_equals_each_channel_alone(rng):
    x = rng.standard_normal((6, 3000)) * np.arange(1, 7)[:, None]
    for cls in (MinMax, Percentile, MSE):
        lo, hi = cls(axis=0).fit([x]).clip_range("int4")
        for c in range(6):
            assert (lo[c], hi[c]) == pytest.approx(cls().fit([x[c]]).clip_range("int4"), rel=1e-12)
    with pytest.raises(lowbit.GranularityError, match="channels"):
        MinMax(axis=0).partial_fit(x).partial_fit(x[:3])


# --------------------------------------------------------------------------- degenerate inputs


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("cls", ALL, ids=ids)
@pytest.mark.parametrize("value", [0.0, 2.5, -7.0], ids=["zeros", "positive", "negative"])
def test_constant_inputs_are_exact(cls, value, no_warnings):
    x = np.full(1000, value, np.float32)
    est = cls().fit([x, x[:1]])
    lo, hi = est.clip_range("int8", symmetric=False)
    assert lo == min(value, 0.0) or lo == value
    assert max(lo, hi, key=abs) == value or value == 0.0
    scale, zp = est.qparams("int8")
    assert np.isfinite(scale) and scale > 0
    got = lowbit.fake_quantize(x, "int8", scale=scale, zero_point=zp)
    assert np.array_equal(got, x)


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_nan_and_inf(cls, no_warnings):
    x = np.linspace(-3, 3, 101)
    bad = x.copy()
    bad[[5, 50]] = [np.nan, np.inf]
    with pytest.raises(lowbit.NonFiniteError, match="2 non-finite"):
        cls().partial_fit(bad)
    omitted = cls(nan_policy="omit").fit([bad]).clip_range("int8")
    clean = cls().fit([np.delete(x, [5, 50])]).clip_range("int8")
    assert omitted == pytest.approx(clean, rel=1e-12)
    with pytest.raises(lowbit.NotCalibratedError):
        cls(nan_policy="omit").fit([np.full(10, np.nan)]).clip_range()


@pytest.mark.parametrize("cls", ALL, ids=ids)
def test_empty_batches_change_nothing(cls, no_warnings):
    est = cls()
    est.partial_fit(np.zeros(0, np.float32))
    with pytest.raises(lowbit.NotCalibratedError):
        est.clip_range()
    est.partial_fit(np.array([1.0, -1.0])).partial_fit(np.zeros((0, 3)))
    assert est.clip_range("int8", symmetric=False)[1] <= 1.0


def test_single_value_and_tiny_range(no_warnings):
    for cls in ALL:
        lo, hi = cls().fit([np.array([3.0])]).clip_range("uint8")
        assert hi == 3.0 and lo in (0.0, 3.0)
    tiny = np.array([1.0, 1.0 + 2**-20, 1.0 + 2**-19])
    for cls in HIST_ESTIMATORS:
        lo, hi = cls().fit([tiny]).clip_range("uint8")
        assert lo >= 0.0 and hi <= tiny.max()


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-2, 4, 1000, dtype=torch.bfloat16)
    assert MinMax().fit([t]).clip_range() == (-2.0, 4.0)


# --------------------------------------------------------------------------- quantize(method=...)


def test_quantize_with_a_method_uses_its_range(rng):
    x = rng.standard_normal((8, 1000)).astype(np.float32)
    x[0, 0] = 50.0
    q = lowbit.quantize(x, "int8", method="percentile", method_options={"percentile": 99.0})
    assert float(q.scale) == pytest.approx(np.percentile(np.abs(x), 99.0) / 127, rel=1e-6)
    assert lowbit.quantize(x, "int8", method=Percentile(99.0)).scale == q.scale  # an instance carries its options
    with pytest.deprecated_call(match="method_options=\\{'percentile': 99.0\\}"):
        old = lowbit.quantize(x, "int8", method="percentile", percentile=99.0)
    assert old.scale == q.scale
    qc = lowbit.quantize(x, "int8", granularity=lowbit.PerChannel(0), method="mse")
    assert qc.scale.shape == (8,) and qc.scale[0] < 50.0 / 127
    assert lowbit.metrics.mse(x, qc.dequantize()) < lowbit.metrics.mse(x, lowbit.fake_quantize(x, "int8"))


def test_quantize_method_errors(rng):
    x = rng.standard_normal((4, 64)).astype(np.float32)
    with pytest.raises(lowbit.OptionError, match=r"per-tensor, per-channel or per-token"):
        lowbit.quantize(x, "int4", granularity=lowbit.PerGroup(32), method="mse")
    with pytest.raises(lowbit.OptionError, match="unknown method"):
        lowbit.quantize(x, "int4", method="median")
    with pytest.raises(lowbit.OptionError, match="no option"):
        lowbit.quantize(x, "int4", method="mse", method_options={"percentile": 9.0})
    with pytest.raises(lowbit.OptionError, match="unexpected keyword argument 'percentile'"):
        lowbit.quantize(x, "int4", method="mse", percentile=9.0)  # not an option of mse: a mistyped keyword
    with pytest.raises(lowbit.OptionError, match="argument 'granulrity'; did you mean 'granularity'"):
        lowbit.quantize(x, "int4", granulrity="channel")
    with pytest.raises(lowbit.OptionError, match="with an estimator instance"):
        lowbit.quantize(x, "int4", method=Percentile(), method_options={"percentile": 99.0})
