"""Bit-exact agreement with PyTorch's own quantized tensors (torch as the oracle).

Given the same scale and zero point, lowbit's codes must equal
``torch.quantize_per_tensor`` / ``torch.quantize_per_channel`` codes, and
lowbit's dequantize must equal torch's ``q.dequantize()``.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

import lowbit
from lowbit import PerChannel

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

N = 300_000


@contextlib.contextmanager
def quiet_torch():
    """torch's quantized tensor constructors warn that they are deprecated; silence only that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated", category=UserWarning)
        yield


def oracle_values(scale: float, zp: int, qmin: int, qmax: int, rng) -> np.ndarray:
    """Random values over (and beyond) the grid, a third of them exact .5 ties of x * float32(1/scale)."""
    inv = np.float32(1.0) / np.float32(scale)
    third = N // 3
    spread = rng.uniform(qmin - zp - 20, qmax - zp + 20, third) / inv
    k = rng.integers(qmin - zp - 10, qmax - zp + 10, third)
    ties = ((k + 0.5) / inv).astype(np.float32)
    # keep only values where x * inv really is k + 0.5 in float32 (exact ties)
    exact = (ties * inv) == np.float32(k + 0.5)
    ties = np.where(exact, ties, np.float32(0.0))
    normal = rng.standard_normal(N - 2 * third) * (qmax - qmin) / 4 / inv
    x = np.concatenate([spread, ties, normal]).astype(np.float32)
    rng.shuffle(x)
    return x


PER_TENSOR_CASES = [
    # (lowbit format, torch dtype name, scale, zero point)
    ("uint8", "quint8", 0.0625, 0),
    ("uint8", "quint8", 0.0625, 131),  # odd zero point: ties after adding zp
    ("uint8", "quint8", 0.1, 0),
    ("uint8", "quint8", 0.1, 30),
    ("uint8", "quint8", 1 / 3, 255),
    ("uint8", "quint8", 0.6520392156862745, 30),
    ("uint8", "quint8", 3.7e-5, 77),
    ("int8_full", "qint8", 0.0625, 0),
    ("int8_full", "qint8", 0.0625, -5),
    ("int8_full", "qint8", 1.154251968503937, 0),
    ("int8_full", "qint8", 0.02, 17),
    ("int8_full", "qint8", 2.5, -128),
]


PER_TENSOR_IDS = [f"{c[0]}-s{c[2]:.4g}-zp{c[3]}" for c in PER_TENSOR_CASES]


@pytest.mark.parametrize("name,tdtype,scale,zp", PER_TENSOR_CASES, ids=PER_TENSOR_IDS)
def test_quantize_per_tensor_bit_exact(name, tdtype, scale, zp, rng):
    qt_fmt = lowbit.get_qtype(name)
    x = oracle_values(scale, zp, qt_fmt.qmin, qt_fmt.qmax, rng)
    with quiet_torch():
        tq = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, getattr(torch, tdtype))
    lq = lowbit.quantize(x, name, symmetric=False, scale=scale, zero_point=zp)
    t_codes = tq.int_repr().numpy()
    assert t_codes.dtype == lq.codes.dtype
    # the sample really exercises both clamps
    assert (t_codes == qt_fmt.qmin).any() and (t_codes == qt_fmt.qmax).any()
    mismatch = np.flatnonzero(t_codes != lq.codes)
    assert mismatch.size == 0, (mismatch.size, x[mismatch[:5]], t_codes[mismatch[:5]], lq.codes[mismatch[:5]])
    np.testing.assert_array_equal(lq.dequantize(), tq.dequantize().numpy())


@pytest.mark.parametrize("name,tdtype,scale,zp", PER_TENSOR_CASES, ids=PER_TENSOR_IDS)
def test_dequantize_per_tensor_bit_exact(name, tdtype, scale, zp, rng):
    """torch's dequantize of lowbit's own codes (same scale and zero point) equals lowbit's."""
    qt_fmt = lowbit.get_qtype(name)
    x = oracle_values(scale, zp, qt_fmt.qmin, qt_fmt.qmax, rng)
    lq = lowbit.quantize(x, name, symmetric=False, scale=scale, zero_point=zp)
    with quiet_torch():
        tq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(lq.codes.copy()), scale, zp)
    assert tq.dtype == getattr(torch, tdtype)
    np.testing.assert_array_equal(lq.dequantize(), tq.dequantize().numpy())


def test_fma_near_tie_minimal_example():
    """351.25 / 2.5 = 140.5, but float32(1/2.5) is slightly above 0.4: fma(351.25, inv, -128) = 12.500002."""
    x = np.array([351.25], np.float32)
    inv = np.float32(1) / np.float32(2.5)
    fused = np.float64(x[0]) * np.float64(inv) - 128  # exact product, one rounding
    assert 12.5 < fused < 12.5001
    with quiet_torch():
        t = torch.quantize_per_tensor(torch.from_numpy(x), 2.5, -128, torch.qint8).int_repr().tolist()
    assert t == [13]
    # with the product rounded first (x * inv == 140.5 in float32) the tie would go to even: 12
    assert np.float32(x[0] * inv) == np.float32(140.5)
    assert lowbit.quantize(x, "int8_full", symmetric=False, scale=2.5, zero_point=-128).codes.tolist() == [13]


def test_ties_are_present_and_round_to_even(rng):
    scale, zp = 0.0625, 131
    x = np.arange(-50, 50, dtype=np.float32) * np.float32(scale) + np.float32(scale / 2)  # exact ties
    with quiet_torch():
        tq = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8)
    lq = lowbit.quantize(x, "uint8", symmetric=False, scale=scale, zero_point=zp)
    np.testing.assert_array_equal(lq.codes, tq.int_repr().numpy())
    # code = rint(k + 0.5 + 131): ties go to the even integer
    expected = np.rint(np.arange(-50, 50) + 0.5 + zp).astype(int)
    assert np.all(expected % 2 == 0)
    np.testing.assert_array_equal(lq.codes.astype(int), expected)


PER_CHANNEL_CASES = [
    ("uint8", "quint8", 0),
    ("uint8", "quint8", 1),
    ("int8_full", "qint8", 0),
    ("int8_full", "qint8", 1),
]


def _channel_params(name: str, channels: int, rng, float32_scales: bool):
    q = lowbit.get_qtype(name)
    scales = rng.uniform(0.001, 0.5, channels)
    scales[0] = 0.0625  # a power of two: exact ties
    if float32_scales:
        scales = scales.astype(np.float32).astype(np.float64)
    zps = rng.integers(q.qmin, q.qmax + 1, channels)
    zps[0] = q.qmin + 1 if q.qmin % 2 == 0 else q.qmin  # odd zero point
    return scales, zps


def _channel_values(shape, axis, scales, zps, name, rng):
    q = lowbit.get_qtype(name)
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    s = scales.reshape(bshape)
    z = zps.reshape(bshape)
    k = rng.integers(q.qmin - 10, q.qmax + 10, shape)
    tie = rng.random(shape) < 0.4
    x = ((k - z + np.where(tie, 0.5, rng.uniform(-0.5, 0.5, shape))) * s).astype(np.float32)
    return x


@pytest.mark.parametrize("name,tdtype,axis", PER_CHANNEL_CASES, ids=[f"{c[0]}-axis{c[2]}" for c in PER_CHANNEL_CASES])
def test_quantize_per_channel_bit_exact(name, tdtype, axis, rng):
    """Note: torch's per-channel kernel rounds x * (1/scale) to float32 before adding the zero point
    (no fused multiply-add, unlike its per-tensor kernel); the near-ties built here tell the two apart."""
    shape = (64, 4096) if axis == 0 else (4096, 64)
    scales, zps = _channel_params(name, shape[axis], rng, float32_scales=False)
    x = _channel_values(shape, axis, scales, zps, name, rng)
    with quiet_torch():
        tq = torch.quantize_per_channel(
            torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zps), axis, getattr(torch, tdtype)
        )
    lq = lowbit.quantize(x, name, granularity=PerChannel(axis), symmetric=False, scale=scales, zero_point=zps)
    np.testing.assert_array_equal(lq.codes, tq.int_repr().numpy())


@pytest.mark.parametrize("name,tdtype,axis", PER_CHANNEL_CASES, ids=[f"{c[0]}-axis{c[2]}" for c in PER_CHANNEL_CASES])
def test_dequantize_per_channel_bit_exact(name, tdtype, axis, rng):
    """Scales that are float32 numbers (as lowbit's own scales are): torch's dequantize of lowbit's
    codes equals lowbit's dequantize."""
    shape = (32, 1000) if axis == 0 else (1000, 32)
    scales, zps = _channel_params(name, shape[axis], rng, float32_scales=True)
    x = _channel_values(shape, axis, scales, zps, name, rng)
    lq = lowbit.quantize(x, name, granularity=PerChannel(axis), symmetric=False, scale=scales, zero_point=zps)
    with quiet_torch():
        tq = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(lq.codes.copy()), torch.from_numpy(scales), torch.from_numpy(zps), axis
        )
    assert tq.dtype == getattr(torch, tdtype)
    np.testing.assert_array_equal(lq.dequantize(), tq.dequantize().numpy())


def test_explicit_float64_scales_are_stored_as_float32(rng):
    """lowbit keeps float32 scales (as torch's quantized kernels compute with): float64 scales given
    explicitly are rounded once, and dequantize agrees with torch given those float32 scales."""
    shape = (32, 1000)
    scales, zps = _channel_params("uint8", 32, rng, float32_scales=False)
    x = _channel_values(shape, 0, scales, zps, "uint8", rng)
    lq = lowbit.quantize(x, "uint8", granularity=PerChannel(0), symmetric=False, scale=scales, zero_point=zps)
    assert lq.scale.dtype == np.float32
    np.testing.assert_array_equal(lq.scale, scales.astype(np.float32))
    with quiet_torch():
        tq = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(lq.codes.copy()), torch.from_numpy(lq.scale.astype(np.float64)), torch.from_numpy(zps), 0
        )
    np.testing.assert_array_equal(lq.dequantize(), tq.dequantize().numpy())


def test_lowbit_qparams_match_torch_minmax_observers(rng):
    """Min-max affine parameters agree with torch's observers (scale to float32 rounding, same zero point)."""
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    x = rng.standard_normal((16, 300)) * rng.uniform(0.1, 5, (16, 1)) + rng.uniform(-1, 2, (16, 1))
    x = x.astype(np.float32)
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    obs(torch.from_numpy(x))
    t_scale, t_zp = obs.calculate_qparams()
    lq = lowbit.quantize(x, "uint8")
    assert float(lq.scale) == pytest.approx(float(t_scale), rel=1e-6)
    assert int(lq.zero_point) == int(t_zp)

    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine)
    obs(torch.from_numpy(x))
    t_scale, t_zp = obs.calculate_qparams()
    lq = lowbit.quantize(x, "uint8", granularity=PerChannel(0))
    np.testing.assert_allclose(lq.scale, t_scale.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(lq.zero_point.astype(np.int64), t_zp.numpy())
