"""The two seed notebooks (/work/shared/seeds), done right.

Each test reproduces what the notebook meant with an independent float64
reference or the notebook's printed numbers, reproduces the notebook's defect
in plain NumPy to show what it gives, and checks that lowbit does not.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import metrics

# --------------------------------------------------------------------------- seed 000 (PyTorch, 3x4)

SEED000_X = np.array(
    [
        [-2.1104, 1.0370, -0.1524, 1.5283],
        [-0.5803, 0.4747, -0.0349, -0.4250],
        [1.0839, 0.2665, -0.3881, 1.3272],
    ],
    np.float32,
)
# x_quantized printed by the notebook's (correct) symmetric_quantization
SEED000_SYMMETRIC_CODES = [[-127, 62, -9, 92], [-35, 29, -2, -26], [65, 16, -23, 80]]
# x_quantized printed by the notebook's percentile method: -176 is outside int8
SEED000_PERCENTILE_CODES = [[-176, 86, -13, 127], [-48, 40, -3, -35], [90, 22, -32, 110]]


def _sse64(x, y) -> float:
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    return float(np.sum(d * d))


def _reference_symmetric(x: np.ndarray, bits: int = 8):
    x = x.astype(np.float64)
    qmax = 2 ** (bits - 1) - 1
    scale = np.abs(x).max() / qmax
    q = np.clip(np.rint(x / scale), -qmax, qmax)
    return q, q * scale, scale


def _reference_affine_unsigned(x: np.ndarray, bits: int = 8):
    x = x.astype(np.float64)
    qmax = 2**bits - 1
    lo, hi = min(x.min(), 0.0), max(x.max(), 0.0)
    scale = (hi - lo) / qmax
    zp = -np.rint(lo / scale)
    q = np.clip(np.rint(x / scale + zp), 0, qmax)
    return q, (q - zp) * scale, scale, zp


def _buggy_seed000_asymmetric(x: np.ndarray, bits: int = 8):
    """The notebook's asymmetric_quantization + asymmetric_dequantization, verbatim in NumPy."""
    x = x.astype(np.float64)
    alpha = np.max(np.abs(x))
    beta = 0
    scale = (alpha - beta) / (2**bits - 1)
    zero_point = -1 * np.round(beta / scale)
    q = np.clip(np.round(x / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return q, q * scale + zero_point  # adds the zero point instead of subtracting it


def test_seed000_symmetric_int8_matches_reference():
    q_ref, deq_ref, scale_ref = _reference_symmetric(SEED000_X)
    assert q_ref.astype(int).tolist() == SEED000_SYMMETRIC_CODES  # the reference agrees with the notebook
    qt = lowbit.quantize(SEED000_X, "int8")
    assert qt.codes.tolist() == SEED000_SYMMETRIC_CODES
    assert float(qt.scale) == pytest.approx(scale_ref, rel=1e-6)
    expected_sse = _sse64(SEED000_X, deq_ref)
    assert round(expected_sse, 4) == 0.0002  # as printed by the notebook
    assert metrics.sse(SEED000_X, qt.dequantize()) == pytest.approx(expected_sse, rel=1e-4)
    assert _sse64(SEED000_X, qt.dequantize()) == pytest.approx(expected_sse, rel=1e-4)


def test_seed000_asymmetric_uint8_is_as_good_as_symmetric():
    q_ref, deq_ref, scale_ref, zp_ref = _reference_affine_unsigned(SEED000_X)
    qt = lowbit.quantize(SEED000_X, "uint8")  # affine by default for unsigned formats
    assert qt.symmetric is False
    assert int(qt.zero_point) == int(zp_ref) == 148
    assert float(qt.scale) == pytest.approx(scale_ref, rel=1e-6)
    np.testing.assert_array_equal(qt.codes, q_ref)
    # dequantize subtracts the zero point: the value with code zp is exactly 0
    np.testing.assert_allclose(qt.dequantize(), deq_ref, rtol=0, atol=1e-6)

    asym_sse = metrics.sse(SEED000_X, qt.dequantize())
    sym_sse = metrics.sse(SEED000_X, lowbit.fake_quantize(SEED000_X, "int8"))
    assert asym_sse == pytest.approx(_sse64(SEED000_X, deq_ref), rel=1e-4)
    assert asym_sse < 1e-3
    assert 0.1 < asym_sse / sym_sse < 10  # same order as symmetric


def test_seed000_buggy_asymmetric_formula_gives_1_41_and_lowbit_does_not():
    q_bug, deq_bug = _buggy_seed000_asymmetric(SEED000_X)
    bug_sse = _sse64(SEED000_X, deq_bug)
    assert bug_sse == pytest.approx(1.4099, abs=1e-3)  # the notebook's number
    # the bug: every value above alpha/2 saturates at 127
    assert int((q_bug == 127).sum()) == 3
    lowbit_sse = metrics.sse(SEED000_X, lowbit.fake_quantize(SEED000_X, "uint8"))
    assert lowbit_sse < bug_sse / 1000
    # signed affine (int8 with a zero point) is just as good
    assert metrics.sse(SEED000_X, lowbit.fake_quantize(SEED000_X, "int8", symmetric=False)) < 1e-3


def test_seed000_percentile_codes_stay_in_range():
    # the notebook: scale from the 99.9th percentile, no clamp -> codes below -127
    alpha = np.percentile(SEED000_X.astype(np.float64), 99.9)
    scale = alpha / 127
    buggy = np.round(SEED000_X.astype(np.float64) / scale)
    assert buggy.astype(int).tolist() == SEED000_PERCENTILE_CODES
    assert buggy.min() == -176

    qt = lowbit.quantize(SEED000_X, "int8", scale=scale)
    codes = qt.codes.astype(int)
    assert codes.min() >= -127
    assert codes.max() <= 127
    assert codes[0, 0] == -127  # clamped, not -176
    expected = np.clip(buggy, -127, 127).astype(int)
    np.testing.assert_array_equal(codes, expected)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_seed000_codes_never_leave_range_for_any_clipping_scale(bits):
    name = f"int{bits}"
    qmax = 2 ** (bits - 1) - 1
    for frac in (0.1, 0.5, 0.9, 0.999):
        scale = frac * float(np.abs(SEED000_X).max()) / qmax
        codes = lowbit.quantize(SEED000_X, name, scale=scale).codes.astype(int)
        assert codes.min() >= -qmax
        assert codes.max() <= qmax
        assert codes[0, 0] == -qmax


# --------------------------------------------------------------------------- seed 002 (NumPy, 20 values)

SEED002_X = np.array(
    [79.63, 100.75, 47.9, 85.26, -19.68, 91.28, 82.59, -7.12, 90.24, 60.92,
     67.78, 27.35, 115.33, 143.0, 104.42, 84.64, 146.59, 51.34, 125.74, 126.03]
)  # fmt: skip
SEED002_ASYM_CODES = [152, 185, 103, 161, 0, 170, 157, 19, 168, 123, 134, 72, 207, 249, 190, 160, 255, 109, 223, 223]
SEED002_SYM_CODES = [69, 87, 41, 74, -17, 79, 72, -6, 78, 53, 59, 24, 100, 124, 90, 73, 127, 44, 109, 109]
SEED002_ASYM_DEQ = [79.55, 101.07, 47.6, 85.42, -19.56, 91.29, 82.81, -7.17, 89.98, 60.64,
                    67.81, 27.39, 115.41, 142.8, 104.33, 84.77, 146.71, 51.51, 125.84, 125.84]  # fmt: skip
SEED002_SYM_DEQ = [79.64, 100.42, 47.32, 85.41, -19.62, 91.19, 83.11, -6.93, 90.03, 61.18,
                   68.1, 27.7, 115.43, 143.13, 103.88, 84.26, 146.59, 50.79, 125.81, 125.81]  # fmt: skip


def test_seed002_asymmetric_uint8():
    qt = lowbit.quantize(SEED002_X, "uint8", symmetric=False)
    assert float(qt.scale) == pytest.approx(0.6520392156862745, rel=1e-6)
    assert float(qt.scale) == pytest.approx((146.59 + 19.68) / 255, rel=1e-12)
    assert int(qt.zero_point) == 30
    assert qt.codes.tolist() == SEED002_ASYM_CODES
    deq = qt.dequantize()
    assert deq.dtype == np.float64
    np.testing.assert_array_equal(np.round(deq, 2), SEED002_ASYM_DEQ)
    mse = metrics.mse(SEED002_X, deq)
    assert round(mse, 2) == 0.03
    assert mse == pytest.approx(np.mean((SEED002_X - deq) ** 2), rel=1e-12)


def test_seed002_symmetric_int8():
    qt = lowbit.quantize(SEED002_X, "int8")
    assert float(qt.scale) == pytest.approx(1.154251968503937, rel=1e-6)
    assert float(qt.scale) == pytest.approx(146.59 / 127, rel=1e-12)
    assert int(qt.zero_point) == 0
    assert qt.codes.tolist() == SEED002_SYM_CODES
    deq = qt.dequantize()
    np.testing.assert_array_equal(np.round(deq, 2), SEED002_SYM_DEQ)
    mse = metrics.mse(SEED002_X, deq)
    assert round(mse, 1) == 0.1
    assert mse == pytest.approx(np.mean((SEED002_X - deq) ** 2), rel=1e-12)


def _buggy_seed002_symmetric(parameters: np.ndarray, bits: int, scale: float) -> np.ndarray:
    """The notebook's symmetric clamp, verbatim: lower bound -2**bits - 1."""
    lower_bound = -(2**bits) - 1
    upper_bound = 2 ** (bits - 1) - 1
    return np.clip(np.round(parameters / scale), lower_bound, upper_bound).astype(np.int32)


def test_seed002_lower_bound_bug_is_not_reproduced():
    x = np.array([-1000.0, -300.0, -127.4, 1.0, 500.0])
    buggy = _buggy_seed002_symmetric(x, 8, 1.0)
    assert buggy.tolist() == [-257, -257, -127, 1, 127]  # the bug lets -257 through

    assert lowbit.get_qtype("int8").qmin == -127
    qt = lowbit.quantize(x, "int8", scale=1.0)
    assert qt.codes.tolist() == [-127, -127, -127, 1, 127]
    assert lowbit.quantize(x, "int8_full", scale=1.0).codes.tolist() == [-128, -128, -127, 1, 127]
    assert lowbit.dequantize(qt).min() == -127.0


@pytest.mark.parametrize("bits", range(2, 17))
def test_seed002_lower_bound_for_every_width(bits):
    narrow = lowbit.get_qtype(f"int{bits}")
    assert narrow.qmin == -(2 ** (bits - 1) - 1)
    assert narrow.qmin != -(2**bits) - 1
    far_below = np.array([-(2.0**20), 1.0])
    codes = lowbit.quantize(far_below, f"int{bits}", scale=1.0).codes.astype(int)
    assert codes[0] == -(2 ** (bits - 1) - 1)
