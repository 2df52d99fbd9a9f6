"""Independent float64 NumPy reference for the tests.

Nothing here imports lowbit: format ranges are parsed from the names, blocks are
built with ``np.indices``, parameters and codes are computed in float64.  The
tests compare lowbit against these functions, never against lowbit itself.
"""

from __future__ import annotations

import math
import re

import numpy as np

# --------------------------------------------------------------------------- formats

SIGNED_NAMES = [f"int{b}" for b in range(1, 17)]
UNSIGNED_NAMES = [f"uint{b}" for b in range(1, 17)]
FULL_NAMES = [f"int{b}_full" for b in range(2, 17)]
ALL_NAMES = SIGNED_NAMES + UNSIGNED_NAMES + FULL_NAMES
# a representative subset of the full-range formats for the heavier property tests
SOME_FULL_NAMES = ["int2_full", "int3_full", "int4_full", "int5_full", "int8_full", "int12_full", "int16_full"]
PROPERTY_NAMES = SIGNED_NAMES + UNSIGNED_NAMES + SOME_FULL_NAMES


def parse_name(name: str) -> tuple[int, bool, bool]:
    """(bits, signed, full) of a format name such as ``int4``, ``uint7`` or ``int8_full``."""
    m = re.fullmatch(r"(u?)int(\d+)(_full)?", name)
    assert m is not None, name
    return int(m.group(2)), m.group(1) == "", m.group(3) is not None


def qrange(name: str) -> tuple[int, int]:
    """(qmin, qmax) computed from the name alone."""
    bits, signed, full = parse_name(name)
    if not signed:
        return 0, 2**bits - 1
    if bits == 1:
        return -1, 0
    if full:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1


def storage_dtype(name: str) -> np.dtype:
    bits, signed, _ = parse_name(name)
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype(np.int16 if signed else np.uint16)


def symmetric_zero_and_steps(name: str) -> tuple[int, int]:
    """Zero point and number of steps from 0 to the largest magnitude, symmetric use."""
    bits, signed, _ = parse_name(name)
    qmin, qmax = qrange(name)
    if signed:
        return 0, qmax if qmax > 0 else -qmin
    return 2 ** (bits - 1), 2 ** (bits - 1) - 1


# --------------------------------------------------------------------------- blocks


def granularity_spec(gran) -> tuple:
    """("tensor",), ("channel", axis) or ("group", size, axis) from a lowbit granularity object."""
    name = type(gran).__name__
    if name == "PerTensor":
        return ("tensor",)
    if name == "PerChannel":
        return ("channel", gran.axis)
    if name == "PerGroup":
        return ("group", gran.size, gran.axis)
    raise AssertionError(name)


def block_index(shape: tuple[int, ...], spec: tuple) -> tuple[tuple[int, ...], np.ndarray]:
    """(param_shape, array shaped like the tensor holding each element's flat parameter index)."""
    shape = tuple(shape)
    if spec[0] == "tensor":
        return (), np.zeros(shape, np.int64)
    ndim = len(shape)
    idx = np.indices(shape)
    if spec[0] == "channel":
        axis = spec[1] % ndim
        return (shape[axis],), idx[axis].astype(np.int64)
    size, axis = spec[1], spec[2] % ndim
    pshape = tuple(-(-s // size) if i == axis else s for i, s in enumerate(shape))  # the last group may be shorter
    idx[axis] //= size
    return pshape, np.ravel_multi_index(tuple(idx), pshape).astype(np.int64)


def block_reduce(values: np.ndarray, bidx: np.ndarray, nparams: int, op: str) -> np.ndarray:
    out = np.full(nparams, np.inf if op == "min" else -np.inf)
    fn = np.minimum if op == "min" else np.maximum
    fn.at(out, bidx.reshape(-1), np.asarray(values, np.float64).reshape(-1))
    return out


# --------------------------------------------------------------------------- parameters


def ref_qparams(x: np.ndarray, name: str, spec: tuple, symmetric: bool):
    """Float64 min-max scale and zero point per block (before any ulp nudging).

    Returns ``(scale, zero_point, lo, hi)`` flat per parameter; ``lo``/``hi`` are the
    block range widened to include 0.  A constant block may instead use the single
    step ``|value|`` (see ``single_step_scale``).
    """
    x = np.asarray(x, np.float64)
    pshape, bidx = block_index(x.shape, spec)
    n = math.prod(pshape)
    lo = np.minimum(block_reduce(x, bidx, n, "min"), 0.0)
    hi = np.maximum(block_reduce(x, bidx, n, "max"), 0.0)
    qmin, qmax = qrange(name)
    if symmetric:
        zp0, steps = symmetric_zero_and_steps(name)
        scale = np.maximum(-lo, hi) / steps
        zp = np.full(n, float(zp0))
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(qmin - np.rint(lo / safe), qmin, qmax)
    scale = np.where(scale > 0, scale, 1.0)
    return scale, zp, lo, hi


def single_step_scale(x: np.ndarray, spec: tuple, symmetric: bool) -> np.ndarray:
    """Per block: ``|value|`` for a constant block (lowbit's documented fallback when no
    nudged scale reproduces the value exactly), NaN for any other block."""
    x = np.asarray(x, np.float64)
    pshape, bidx = block_index(x.shape, spec)
    n = math.prod(pshape)
    raw_lo, raw_hi = block_reduce(x, bidx, n, "min"), block_reduce(x, bidx, n, "max")
    return np.where(raw_lo == raw_hi, np.abs(raw_lo), np.nan)


# --------------------------------------------------------------------------- codes


def ref_codes(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, name: str, spec: tuple):
    """Float64 ``clip(rint(x / scale + zp))`` per element, and the unrounded value."""
    x = np.asarray(x, np.float64)
    _, bidx = block_index(x.shape, spec)
    s = np.asarray(scale, np.float64).reshape(-1)[bidx]
    z = np.asarray(zp, np.float64).reshape(-1)[bidx]
    v = x / s + z
    qmin, qmax = qrange(name)
    return np.clip(np.rint(v), qmin, qmax), v


def ref_dequant(codes: np.ndarray, scale: np.ndarray, zp: np.ndarray, spec: tuple, dtype) -> np.ndarray:
    """``(code - zp) * scale``: exact in float64 for these sizes, then one rounding to ``dtype``."""
    codes = np.asarray(codes)
    _, bidx = block_index(codes.shape, spec)
    s = np.asarray(scale, np.float64).reshape(-1)[bidx]
    z = np.asarray(zp, np.float64).reshape(-1)[bidx]
    return ((codes.astype(np.float64) - z) * s).astype(dtype)


# --------------------------------------------------------------------------- packing


def ref_pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Little-endian bit stream: code i takes bits [i*b, (i+1)*b), low bits first."""
    c = np.asarray(codes).reshape(-1).astype(np.int64) & ((1 << bits) - 1)
    if c.size == 0:
        return np.zeros(0, np.uint8)
    bitmat = ((c[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return np.packbits(bitmat.reshape(-1), bitorder="little")


def ref_unpack(data: np.ndarray, count: int, bits: int, signed: bool) -> np.ndarray:
    stream = np.unpackbits(np.asarray(data, np.uint8), bitorder="little")[: count * bits]
    vals = (stream.reshape(count, bits).astype(np.int64) << np.arange(bits)).sum(axis=1)
    if signed:
        vals = np.where(vals >= 2 ** (bits - 1), vals - 2**bits, vals)
    return vals


# --------------------------------------------------------------------------- metrics


def ref_metrics(x, y) -> dict[str, float]:
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    d = x - y
    sse = float(np.sum(d * d))
    sig = float(np.sum(x * x))
    return {
        "sse": sse,
        "mse": sse / x.size,
        "rmse": math.sqrt(sse / x.size),
        "sqnr_db": 10 * math.log10(sig / sse),
        "max_abs_error": float(np.max(np.abs(d))),
        "cosine_similarity": float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))),
    }
