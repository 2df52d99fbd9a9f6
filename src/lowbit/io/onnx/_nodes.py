"""ONNX nodes and initializers for lowbit's quantized weights and int8 activations (not public).

A :class:`Builder` collects the nodes and initializers that replace one float graph's
weights.  Every array comes from the layer's QTensor as stored (codes, decoded float32
scales, zero points): nothing is re-quantized.

* :meth:`Builder.matmul_nbits`: ``MatMulNBits`` (com.microsoft), codes shifted to unsigned
  (``code + 2**(bits-1)`` for signed formats, with the zero point shifted alike), two 4-bit
  codes per byte, element ``2i`` in the low nibble; blocks of a power of two >= 16 (a lowbit
  group of 64 is one block of 64; a scale per channel is repeated over the blocks of its row);
* :meth:`Builder.dequantize`: ``DequantizeLinear`` of INT4/UINT4/INT8/UINT8 codes, per tensor,
  per axis or blocked (opset 21);
* :meth:`Builder.dynamic_codes`: lowbit's dynamic int8 activation codes, exactly as
  :func:`lowbit.nn.quantize_activations` makes them (``s = absmax / 127``, 1 for an all-zero
  input; ``round_half_even(x * (1 / s))``), carried as uint8 with zero point 128 so that ONNX
  Runtime's fast u8 x s8 ``MatMulInteger`` computes the exact int32 products;
* :meth:`Builder.qdq`: ``Clip`` -> ``QuantizeLinear`` -> ``DequantizeLinear`` of an activation with a
  static scale (the QDQ form that ONNX Runtime fuses into integer kernels); the Clip at ``-127 s``
  keeps lowbit's narrow range (QuantizeLinear alone saturates at -128).  QuantizeLinear computes
  ``x / s`` where lowbit computes ``x * (1 / s)``: the two differ by one float32 rounding, which can
  move a code only for an input within ~1e-7 of a rounding tie (none in 24 x 565k MiniLM codes).

Example:
    >>> import numpy as np
    >>> pack_nibbles(np.array([[1, 2, 15, 0]], np.uint8)).tolist()
    [[33, 15]]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lowbit.granularity import PerChannel, PerGroup, PerTensor

__all__ = ["Builder", "pack_nibbles", "nbits_block", "unsigned_codes"]

MAX_BLOCK = 128
#: lowbit's int8 activation codes are -127..127 (narrow range)
QMAX = 127


def pack_nibbles(u: np.ndarray) -> np.ndarray:
    """Two 4-bit values per byte along the last axis (even index in the low nibble), odd lengths padded with 0."""
    if u.shape[-1] % 2:
        u = np.concatenate([u, np.zeros((*u.shape[:-1], 1), u.dtype)], axis=-1)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def nbits_block(granularity: Any, k: int) -> int:
    """MatMulNBits block size for a lowbit granularity over ``k`` inputs: a power of two >= 16 that each lowbit
    group is made of (at most 128), or for per-channel/per-tensor scales the largest such divisor of ``k``.

    Example:
        >>> from lowbit.granularity import PerGroup, PerChannel
        >>> nbits_block(PerGroup(48), 96), nbits_block(PerChannel(0), 384), nbits_block(PerChannel(0), 100)
        (16, 128, 32)
    """
    size = granularity.size if isinstance(granularity, PerGroup) else k
    low = size & -size  # largest power of two dividing size
    return min(low, MAX_BLOCK) if low >= 16 else 32


def unsigned_codes(qt: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """(codes, zero points, offset) of a 4/8-bit QTensor shifted to unsigned: value ``(u - uz) * scale``."""
    offset = 2 ** (qt.qtype.bits - 1) if qt.qtype.signed else 0
    u = (np.asarray(qt.codes).astype(np.int16) + offset).astype(np.uint8)
    uz = (np.asarray(qt.zero_point).astype(np.int16) + offset).astype(np.uint8)
    return u, uz, offset


def _per_block(param: np.ndarray, granularity: Any, n: int, block: int, n_blocks: int) -> np.ndarray:
    """A per-tensor/channel/group parameter as ``(n, n_blocks)`` (each group's value over its blocks)."""
    if isinstance(granularity, PerGroup):
        return np.repeat(param.reshape(n, -1), granularity.size // block, axis=1)[:, :n_blocks]
    return np.broadcast_to(param.reshape(-1, 1) if param.ndim else param, (n, n_blocks)).copy()


class Builder:
    """Collects new nodes and initializers; names are unique within the graph (prefix + counter)."""

    def __init__(self, taken: set[str]) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._taken = set(taken)
        self._cache: dict[tuple[Any, ...], tuple[str, str]] = {}

    def name(self, base: str) -> str:
        """A fresh value/node name starting with ``base``."""
        base = base.replace("/", ".").strip(".") or "lowbit"
        cand, i = base, 0
        while cand in self._taken:
            i += 1
            cand = f"{base}_{i}"
        self._taken.add(cand)
        return cand

    def const(self, base: str, array: Any) -> str:
        """Add an initializer holding ``array`` (NumPy, ml_dtypes int4/uint4 included) and return its name."""
        name = self.name(base)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], base: str, outputs: int = 1, out: str | None = None,
             domain: str = "", **attrs: Any) -> str:
        """Add a node; returns its (first) output name (``out`` if given)."""
        names = [out or self.name(f"{base}.{op}")] + [self.name(f"{base}.{op}.{i}") for i in range(1, outputs)]
        self.nodes.append(self.helper.make_node(op, inputs, names, name=self.name(f"{base}/{op}"), domain=domain,
                                                **attrs))
        return names[0]

    # -- weights -------------------------------------------------------------------------------------------
    def matmul_nbits(self, x: str, out: str, base: str, qt: Any, accuracy_level: int) -> str:
        """``out = x @ dequantize(W).T`` with a ``(N, K)`` 4/8-bit QTensor ``qt`` in ``MatMulNBits``."""
        n, k = qt.shape
        bits = qt.qtype.bits
        u, uz, _ = unsigned_codes(qt)
        block = nbits_block(qt.granularity, k)
        n_blocks = math.ceil(k / block)
        scales = _per_block(np.asarray(qt.scale, np.float32), qt.granularity, n, block, n_blocks)
        zps = _per_block(uz, qt.granularity, n, block, n_blocks)
        if n_blocks * block > k:  # pad each row with its last zero point: dequantizes to 0
            u = np.concatenate([u, np.repeat(zps[:, -1:], n_blocks * block - k, axis=1)], axis=1)
        packed = pack_nibbles(u) if bits == 4 else u
        inputs = [x, self.const(f"{base}.qweight", packed.reshape(n, n_blocks, block * bits // 8)),
                  self.const(f"{base}.scales", scales.reshape(-1))]
        if not (zps == 2 ** (bits - 1)).all():
            inputs.append(self.const(f"{base}.qzeros", pack_nibbles(zps) if bits == 4 else zps))
        return self.node("MatMulNBits", inputs, base, out=out, domain="com.microsoft", K=k, N=n, bits=bits,
                         block_size=block, accuracy_level=accuracy_level)

    def dequantize(self, base: str, qt: Any, transpose: bool = False) -> str:
        """``DequantizeLinear`` of a QTensor's codes (optionally of a 2-d weight transposed to ``(K, N)``)."""
        codes, zp = _typed(qt)
        scale = np.asarray(qt.scale, np.float32)
        gran, attrs = qt.granularity, dict[str, Any]()
        codes = codes.reshape(qt.shape)
        if transpose:
            codes, scale, zp = codes.T, scale.T, zp.T
        if isinstance(gran, PerChannel):
            attrs["axis"] = 1 if transpose else 0
        elif isinstance(gran, PerGroup):
            attrs.update(axis=0 if transpose else codes.ndim - 1, block_size=gran.size)
        elif not isinstance(gran, PerTensor):  # pragma: no cover - refused by the plan
            raise AssertionError(gran)
        inputs = [self.const(f"{base}.qweight", np.ascontiguousarray(codes)), self.const(f"{base}.scale", scale),
                  self.const(f"{base}.zero_point", np.ascontiguousarray(zp))]
        return self.node("DequantizeLinear", inputs, f"{base}.weight", **attrs)

    # -- activations ---------------------------------------------------------------------------------------
    def dynamic_codes(self, x: str, base: str, per_token: bool) -> tuple[str, str]:
        """(uint8 codes = lowbit's int8 code + 128, float32 scale) of ``x``, shared by layers reading the same input."""
        key = ("dynamic", x, per_token)
        if key not in self._cache:
            ax = self.node("Abs", [x], base)
            if per_token:
                amax = self.node("ReduceMax", [ax, self.const(f"{base}.axes", np.array([-1], np.int64))], base,
                                 keepdims=1)
            else:
                amax = self.node("ReduceMax", [ax], base, keepdims=0)
            s0 = self.node("Div", [amax, self.const(f"{base}.qmax", np.float32(127))], base)
            pos = self.node("Greater", [s0, self.const(f"{base}.zero", np.float32(0))], base)
            s = self.node("Where", [pos, s0, self.const(f"{base}.one", np.float32(1))], base)
            scaled = self.node("Mul", [x, self.node("Reciprocal", [s], base)], base)
            codes = self.node("QuantizeLinear", [scaled, self.const(f"{base}.unit", np.float32(1)),
                                                 self.const(f"{base}.zp128", np.uint8(128))], base)
            self._cache[key] = (codes, s)
        return self._cache[key]

    def qdq(self, x: str, base: str, scale: float) -> str:
        """``DequantizeLinear(QuantizeLinear(Clip(x, -127 s)))`` with a static int8 scale, zero point 0.

        QuantizeLinear saturates to -128; lowbit's activation codes stop at -127 (narrow range), so
        the input is first clipped at ``-127 * s`` (which quantizes to exactly -127).  ONNX Runtime
        keeps such a Clip (its range is narrower than the Q's), and still fuses the DQ -> MatMul/Conv.
        """
        key = ("static", x, np.float32(scale).tobytes())
        if key not in self._cache:
            s = self.const(f"{base}.act_scale", np.float32(scale))
            z = self.const(f"{base}.act_zero_point", np.int8(0))
            low = self.const(f"{base}.act_min", np.float32(-QMAX) * np.float32(scale))
            q = self.node("QuantizeLinear", [self.node("Clip", [x, low], base), s, z], base)
            self._cache[key] = (self.node("DequantizeLinear", [q, s, z], base), s)
        return self._cache[key][0]

    def dynamic_qdq(self, x: str, base: str) -> str:
        """Dequantized dynamic int8 codes of ``x`` (per tensor): the float values lowbit's int8 GEMM sees."""
        key = ("dynamic-qdq", x)
        if key not in self._cache:
            codes, s = self.dynamic_codes(x, base, per_token=False)
            self._cache[key] = (self.node("DequantizeLinear", [codes, s, self.const(f"{base}.zp128", np.uint8(128))],
                                          base), s)
        return self._cache[key][0]

    def int8_matmul(self, x: str, out: str, base: str, qt: Any, per_token: bool) -> str:
        """``out = x @ W.T`` of a W8A8 layer with dynamic activations: exact int32 ``MatMulInteger``, then scales."""
        codes, s_x = self.dynamic_codes(x, base, per_token)
        w_t = np.ascontiguousarray(np.asarray(qt.codes, np.int8).reshape(qt.shape).T)
        acc = self.node("MatMulInteger", [codes, self.const(f"{base}.qweight", w_t),
                                          self.const(f"{base}.zp128", np.uint8(128))], base)
        accf = self.node("Cast", [acc], base, to=1)  # FLOAT
        s_w = self.const(f"{base}.weight_scale", np.asarray(qt.scale, np.float32))
        if per_token:  # ORT fuses MatMulInteger-Cast-Mul into MatMulIntegerToFloat, which gets an (M, N) scale
            # wrong (ORT 1.32): keep the fused Mul per column and apply the per-row scale after it
            return self.node("Mul", [self.node("Mul", [accf, s_w], base), s_x], base, out=out)
        return self.node("Mul", [accf, self.node("Mul", [s_x, s_w], base)], base, out=out)


def _typed(qt: Any) -> tuple[np.ndarray, np.ndarray]:
    """Codes and zero points in the ONNX element type of the format (INT4/UINT4 via ml_dtypes, else 8-bit)."""
    import ml_dtypes

    bits, signed = qt.qtype.bits, qt.qtype.signed
    dtype = {(4, True): ml_dtypes.int4, (4, False): ml_dtypes.uint4, (8, True): np.int8, (8, False): np.uint8}
    dt = dtype[(bits, signed)]
    return np.asarray(qt.codes).astype(dt), np.asarray(qt.zero_point).astype(dt)
