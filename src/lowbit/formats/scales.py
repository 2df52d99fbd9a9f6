"""Scale formats: how per-block scales are *stored* (float32, float16, bfloat16, e8m0, double8, kquant6).

A scale format turns the positive float scales a quantizer chose into stored
arrays (``encode``) and back (``decode``).  lowbit always quantizes the data
with the *decoded* scales (choose float scales -> encode -> decode -> quantize),
so ``dequantize(quantize(x))`` is exactly what the stored bytes mean.

=========== ================================================================= =====================
name        stored arrays (keys of ``QTensor.scale_arrays`` / ``to_dict``)   bits per scale
=========== ================================================================= =====================
float32     ``scale``: float32 (float64 for float64 input), as chosen          32 (64)
float16     ``scale_f16``: float16, round to nearest even                      16
bfloat16    ``scale_bf16``: bfloat16 bit patterns (uint16), nearest even       16
e8m0        ``scale_e8m0``: uint8 biased exponent ``2^(byte - 127)``; a        8
            chosen scale is rounded *up* to a power of two (MX formats pick
            exact powers of two, see :mod:`lowbit.formats.mx`)
double8     QLoRA double quantization: ``scale_mean`` (float32) is             ~8.1
            subtracted, the rest quantized to int8 ``scale_codes`` (symmetric
            -127..127) in blocks of 256 consecutive scales (C order, the last
            may be shorter) with one float32 absmax-scale each
            (``scale_block_scale``): ``s = mean + code * block_scale``
            (evaluated in float64, rounded to the scale dtype)
kquant6     llama.cpp k-quant two-level scales: 6-bit codes 1..63            6 + 16/8 = 8
            (``scale_codes``, bit-packed) under one float16 super-scale per 8
            consecutive scales (``scale_super``, rounded up so the largest
            code is at most 63): ``s = code * super``
=========== ================================================================= =====================

double8 never writes a code whose scale would decode to 0 or below (a scale
far below the mean gets the smallest code that decodes positive: coarser, but
usable).  Its residual codes have an absolute step (the block's spread / 254),
so scales much smaller than their neighbours lose relative precision; weights
whose block scales vary by orders of magnitude are better stored as float16.
It quantizes the residuals to int8 rather than fp8 e4m3 because that loses
less on weights: the RMS relative scale error on N(0, 1) nf4 block-64 scales is 1.4e-3
(int8) vs 4.3e-3 (e4m3), on all-MiniLM-L6-v2 5.0e-3 vs 7.9e-3 (the data's SQNR
differs by under 0.003 dB either way).  kquant6 rounds codes to nearest and
never below 1, so a scale never decodes to 0.

Decoding is total and deterministic: every stored bit pattern means a scale.
Stored values that would decode to 0, a negative number or NaN (an e8m0 0xFF,
a double8 residual below the mean, a tampered float) decode to the smallest
positive normal number of the scale dtype; +Inf decodes to its largest finite
number.  Encoding clamps to the storage range first (float16: 2^-24..65504;
bfloat16: 2^-126..3.39e38; e8m0: 2^-127..2^127), so a block whose scale does
not fit saturates instead of becoming Inf.

Example:
    >>> import numpy as np
    >>> fmt = get_scale_format("e8m0")
    >>> arrays = fmt.encode(np.array([0.3, 1.0]), np.dtype(np.float32))
    >>> arrays["scale_e8m0"].tolist(), fmt.decode(arrays, (2,), np.dtype(np.float32)).tolist()
    ([126, 127], [0.5, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from lowbit.errors import OptionError
from lowbit.formats.base import QType

__all__ = [
    "ScaleFormat",
    "register_scale_format",
    "get_scale_format",
    "list_scale_formats",
    "scale_format_for",
    "DEFAULT_SCALE_FORMAT",
    "DOUBLE8_BLOCK",
    "KQUANT_SUPER",
]

DEFAULT_SCALE_FORMAT = "float32"
DOUBLE8_BLOCK = 256
KQUANT_SUPER = 8
KQUANT_BITS = 6

Specs = dict[str, tuple[np.dtype, tuple[int, ...]]]
_REGISTRY: dict[str, ScaleFormat] = {}


def _positive(values: np.ndarray, sdt: np.dtype) -> np.ndarray:
    """``values`` in ``sdt`` with NaN/<=0 replaced by the smallest normal and +Inf by the largest finite."""
    info = np.finfo(sdt)
    v = np.asarray(values, np.float64)
    v = np.where(np.isnan(v) | (v <= 0), float(info.tiny), np.minimum(v, float(info.max)))
    return v.astype(sdt)


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


class ScaleFormat:
    """How a tensor's per-block scales are stored; subclasses define the arrays.

    Example:
        >>> get_scale_format("float16").specs((2, 3), np.dtype(np.float32))
        {'scale_f16': (dtype('float16'), (2, 3))}
    """

    name = ""
    summary = ""
    shared = True
    """Whether scales share stored parameters (a block absmax, a super-scale), so that one scale cannot be
    stored on its own, only a whole tensor's at once. True unless a format says otherwise (the safe
    default for a registered format: its scales are then chosen first and stored together)."""

    def specs(self, param_shape: tuple[int, ...], sdt: np.dtype) -> Specs:
        """Names, dtypes and shapes of the stored arrays for scales shaped ``param_shape``."""
        raise NotImplementedError

    def encode(self, scales: np.ndarray, sdt: np.dtype) -> dict[str, np.ndarray]:
        """Stored arrays for positive finite ``scales`` (any shape, read in C order)."""
        raise NotImplementedError

    def decode(self, arrays: Mapping[str, np.ndarray], param_shape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
        """Positive finite scales in ``sdt``, shaped ``param_shape``, that the stored arrays mean."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"ScaleFormat({self.name!r})"


class _Float(ScaleFormat):
    """One IEEE float per scale (float32 keeps the scale dtype, float16 rounds to nearest even)."""

    shared = False

    def __init__(self, name: str, key: str, dtype: type | None, lo: float, hi: float, summary: str) -> None:
        self.name, self.key, self.dtype, self.lo, self.hi, self.summary = name, key, dtype, lo, hi, summary

    def _dtype(self, sdt: np.dtype) -> np.dtype:
        return np.dtype(sdt if self.dtype is None else self.dtype)

    def specs(self, param_shape: tuple[int, ...], sdt: np.dtype) -> Specs:
        return {self.key: (self._dtype(sdt), tuple(param_shape))}

    def encode(self, scales: np.ndarray, sdt: np.dtype) -> dict[str, np.ndarray]:
        s = np.asarray(scales)
        if self.dtype is not None:  # magnitudes into the format's range; a negative scale keeps its sign
            s64 = s.astype(np.float64)
            s = np.where(s64 < 0, -np.clip(-s64, self.lo, self.hi), np.clip(s64, self.lo, self.hi))
        return {self.key: s.astype(self._dtype(sdt))}

    def decode(self, arrays: Mapping[str, np.ndarray], param_shape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
        # negative finite scales are kept: GGUF's Q4_0/Q5_0/Q8_0/Q6_K store them, and files are validated first
        stored = np.asarray(arrays[self.key])
        negative = np.isfinite(stored) & (stored < 0)
        return np.where(negative, stored.astype(sdt), _positive(stored, sdt)).astype(sdt).reshape(param_shape)


_BF16_MAX = float(np.ldexp(255.0, 120))  # (2 - 2^-7) * 2^127


class _BFloat16(ScaleFormat):
    shared = False
    name = "bfloat16"
    summary = "one bfloat16 per scale (bit patterns in uint16), round to nearest even"
    key = "scale_bf16"

    def specs(self, param_shape: tuple[int, ...], sdt: np.dtype) -> Specs:
        return {self.key: (np.dtype(np.uint16), tuple(param_shape))}

    def encode(self, scales: np.ndarray, sdt: np.dtype) -> dict[str, np.ndarray]:
        s = np.clip(np.asarray(scales, np.float64), 2.0**-126, _BF16_MAX)
        m, e = np.frexp(s)  # 8 significant bits: round m * 2^8 to an integer, ties to even
        v = np.minimum(np.ldexp(np.rint(m * 256.0), e - 8), _BF16_MAX)
        return {self.key: (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)}

    def decode(self, arrays: Mapping[str, np.ndarray], param_shape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
        bits = np.asarray(arrays[self.key], np.uint16).astype(np.uint32) << 16
        return _positive(bits.view(np.float32), sdt).reshape(param_shape)


class _E8M0(ScaleFormat):
    shared = False
    name = "e8m0"
    summary = "one power of two per scale, 8-bit biased exponent (bias 127; OCP MX), rounded up"
    key = "scale_e8m0"

    def specs(self, param_shape: tuple[int, ...], sdt: np.dtype) -> Specs:
        return {self.key: (np.dtype(np.uint8), tuple(param_shape))}

    def encode(self, scales: np.ndarray, sdt: np.dtype) -> dict[str, np.ndarray]:
        s = np.asarray(scales, np.float64)
        m, e = np.frexp(s)  # s = m * 2^e, m in [0.5, 1): ceil(log2 s) = e, or e - 1 for a power of two
        exps = np.clip(np.where(m == 0.5, e - 1, e), -127, 127)
        return {self.key: (exps + 127).astype(np.uint8)}

    def decode(self, arrays: Mapping[str, np.ndarray], param_shape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
        b = np.asarray(arrays[self.key], np.uint8).astype(np.int64)
        exps = np.where(b == 255, -127, b - 127)  # 0xFF is NaN in the spec: the smallest scale here
        return np.ldexp(1.0, exps).astype(sdt).reshape(param_shape)


class _Double8(ScaleFormat):
    name = "double8"
    summary = "QLoRA double quantization: mean (float32) + int8 codes in blocks of 256 with float32 absmax scales"

    def specs(self, param_shape: tuple[int, ...], sdt: np.dtype) -> Specs:
        nblocks = -(-_size(param_shape) // DOUBLE8_BLOCK)
        return {
            "scale_codes": (np.dtype(np.int8), tuple(param_shape)),
            "scale_block_scale": (np.dtype(np.float32), (nblocks,)),
            "scale_mean": (np.dtype(np.float32), ()),
        }

    @staticmethod
    def _blocks(flat: np.ndarray) -> np.ndarray:
        """``flat`` zero-padded to whole blocks, shaped (nblocks, 256)."""
        nblocks = -(-flat.size // DOUBLE8_BLOCK)
        padded = np.zeros(nblocks * DOUBLE8_BLOCK, np.float64)
        padded[: flat.size] = flat
        return padded.reshape(nblocks, DOUBLE8_BLOCK)

    def encode(self, scales: np.ndarray, sdt: np.dtype) -> dict[str, np.ndarray]:
        s = np.asarray(scales, np.float64)
        mean = np.float32(s.mean())
        resid = self._blocks(s.reshape(-1) - np.float64(mean))
        absmax = np.abs(resid).max(axis=1)
        block_scale = np.where(absmax > 0, absmax / 127, 1.0).astype(np.float32)
        step = block_scale.astype(np.float64)[:, None]
        codes = np.clip(np.rint(resid / step), -127, 127)
        # a scale far below the mean could round to a code whose decoded scale is <= 0: raise it to the
        # smallest code that decodes to a positive scale (coarser for that block, never destroyed)
        codes = np.maximum(codes, np.floor(-float(mean) / step) + 1)
        return {
            "scale_codes": codes.reshape(-1)[: s.size].astype(np.int8).reshape(s.shape),
            "scale_block_scale": block_scale,
            "scale_mean": np.asarray(mean, np.float32),
        }

    def decode(self, arrays: Mapping[str, np.ndarray], param_shape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
        codes = np.asarray(arrays["scale_codes"], np.float64).reshape(-1)
        bscale = np.asarray(arrays["scale_block_scale"], np.float64)
        per_scale = np.repeat(bscale, DOUBLE8_BLOCK)[: codes.size]
        mean = float(np.asarray(arrays["scale_mean"], np.float64))
        return _positive(mean + codes * per_scale, sdt).reshape(param_shape)


_F16_TINY = 2.0**-24
_F16_MAX = 65504.0


class _KQuant6(ScaleFormat):
    name = "kquant6"
    summary = "llama.cpp k-quant scales: 6-bit codes under one float16 super-scale per 8 scales"

    def specs(self, param_shape: tuple[int, ...], sdt: np.dtype) -> Specs:
        n = _size(param_shape)
        return {
            "scale_codes": (np.dtype(np.uint8), ((n * KQUANT_BITS + 7) // 8,)),
            "scale_super": (np.dtype(np.float16), (-(-n // KQUANT_SUPER),)),
        }

    def encode(self, scales: np.ndarray, sdt: np.dtype) -> dict[str, np.ndarray]:
        from lowbit._kernels import pack_codes

        flat = np.asarray(scales, np.float64).reshape(-1)
        nsuper = -(-flat.size // KQUANT_SUPER)
        padded = np.zeros(nsuper * KQUANT_SUPER, np.float64)
        padded[: flat.size] = flat
        target = np.clip(padded.reshape(nsuper, KQUANT_SUPER).max(axis=1) / 63, _F16_TINY, _F16_MAX)
        sup = target.astype(np.float16)
        low = sup.astype(np.float64) < target  # round up, so that no code exceeds 63
        sup[low] = np.nextafter(sup[low], np.float16(np.inf))
        per_scale = np.repeat(sup.astype(np.float64), KQUANT_SUPER)[: flat.size]
        codes = np.clip(np.rint(flat / per_scale), 1, 63).astype(np.uint8)
        return {"scale_codes": pack_codes(codes, KQUANT_BITS), "scale_super": sup.astype(np.float16)}

    def decode(self, arrays: Mapping[str, np.ndarray], param_shape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
        from lowbit._kernels import unpack_codes

        n = _size(param_shape)
        codes = unpack_codes(np.asarray(arrays["scale_codes"], np.uint8), n, KQUANT_BITS, False)
        sup = np.asarray(arrays["scale_super"], np.float16).astype(np.float64)
        per_scale = np.repeat(sup, KQUANT_SUPER)[:n]
        return _positive(codes.astype(np.float64) * per_scale, sdt).reshape(param_shape)


def register_scale_format(fmt: ScaleFormat) -> ScaleFormat:
    """Add a scale format to the registry under ``fmt.name`` and return it.

    Raises:
        OptionError: another format is already registered under that name.

    Example:
        >>> register_scale_format(get_scale_format("kquant6")).name
        'kquant6'
    """
    known = _REGISTRY.get(fmt.name)
    if known is not None and known is not fmt:
        raise OptionError(f"a different scale format is already registered as {fmt.name!r}")
    _REGISTRY[fmt.name] = fmt
    return fmt


def list_scale_formats() -> list[str]:
    """Names of the registered scale formats (the default first).

    Example:
        >>> list_scale_formats()
        ['float32', 'float16', 'bfloat16', 'e8m0', 'double8', 'kquant6']
    """
    return list(_REGISTRY)


def get_scale_format(name: str | ScaleFormat) -> ScaleFormat:
    """Look a scale format up by name (or pass one through).

    Raises:
        OptionError: unknown name; the message lists the registered ones.

    Example:
        >>> get_scale_format("double8").summary.split(":")[0]
        'QLoRA double quantization'
    """
    if isinstance(name, ScaleFormat):
        return name
    found = _REGISTRY.get(name.strip().lower()) if isinstance(name, str) else None
    if found is None:
        raise OptionError(f"unknown scale_format {name!r}; registered scale formats are: {', '.join(_REGISTRY)}")
    return found


def scale_format_for(qtype: QType, name: str | ScaleFormat | None) -> ScaleFormat:
    """The scale format to use for ``qtype``: ``name``, or the default (MX: e8m0, else float32).

    Raises:
        OptionError: unknown name, or a format other than the one an MX qtype requires.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> scale_format_for(get_qtype("mxfp4"), None).name, scale_format_for(get_qtype("nf4"), "double8").name
        ('e8m0', 'double8')
    """
    if name is None:
        return get_scale_format(qtype.scale_format or DEFAULT_SCALE_FORMAT)
    fmt = get_scale_format(name)
    if qtype.scale_format and fmt.name != qtype.scale_format:
        raise OptionError(
            f"{qtype.name} stores its block scales as {qtype.scale_format}; got scale_format={fmt.name!r}: "
            f"drop scale_format= (or pass {qtype.scale_format!r}), or use a non-MX format for {fmt.name} scales"
        )
    return fmt


def store_scales(
    scale: np.ndarray, qtype: QType, fmt: ScaleFormat
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Encode effective scales and decode them again: (stored arrays, the scales they mean).

    The stored value is ``scale / 2^qtype.implicit_exp`` (the spec's ``X`` for
    ``mxint8``); the returned scales are in ``scale``'s dtype and shape.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> arrays, dec = store_scales(np.array([0.3], np.float32), get_qtype("int4"), get_scale_format("float16"))
        >>> arrays["scale_f16"].dtype.name, float(dec[0])
        ('float16', 0.300048828125)
    """
    sdt = np.asarray(scale).dtype
    stored = np.ldexp(np.asarray(scale, np.float64), -qtype.implicit_exp)
    arrays = fmt.encode(stored, sdt)
    return arrays, decode_scales(arrays, qtype, fmt, np.shape(scale), sdt)


def decode_scales(
    arrays: Mapping[str, np.ndarray], qtype: QType, fmt: ScaleFormat, param_shape: tuple[int, ...], sdt: np.dtype
) -> np.ndarray:
    """The effective scales (``decoded * 2^qtype.implicit_exp``) that stored arrays mean.

    Example:
        >>> from lowbit.formats import get_qtype
        >>> decode_scales({"scale_e8m0": np.array([127], np.uint8)}, get_qtype("mxint8"),
        ...               get_scale_format("e8m0"), (1,), np.dtype(np.float32)).tolist()
        [0.015625]
    """
    dec = fmt.decode(arrays, tuple(param_shape), np.dtype(sdt))
    if qtype.implicit_exp:
        dec = np.ldexp(dec.astype(np.float64), qtype.implicit_exp).astype(sdt)
    return dec


def _register_defaults() -> None:
    register_scale_format(_Float("float32", "scale", None, 0.0, math.inf,
                                 "float32 scales (float64 for float64 input), as chosen"))
    register_scale_format(_Float("float16", "scale_f16", np.float16, _F16_TINY, _F16_MAX,
                                 "one float16 per scale, round to nearest even"))
    register_scale_format(_BFloat16())
    register_scale_format(_E8M0())
    register_scale_format(_Double8())
    register_scale_format(_KQuant6())


_register_defaults()
