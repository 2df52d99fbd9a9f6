"""GPTQ: second-order weight rounding with error feedback (Frantar et al., 2022).

Round-to-nearest (RTN) rounds every weight on its own.  GPTQ quantizes the
columns (input features) of a linear layer's weight ``W`` (out x in) one after
another and, after each column, spreads that column's rounding error over the
columns not yet quantized so that the layer *output* ``X W^T`` changes as little
as possible.  The only statistic it needs from calibration data is the Hessian
of that squared output error, ``H = 2/n * sum_x x x^T`` (in x in), which
:class:`HessianAccumulator` builds from streamed activation batches.

Steps (all in float64; rounding itself follows lowbit's kernels exactly):

1. inputs that never fire (``H_ii == 0``) get ``H_ii = 1`` and zero weights; when
   no input fires at all (all-zero calibration data) the Hessian is replaced by
   the identity instead, with a warning: plain round-to-nearest, not a zero matrix;
2. ``damp * mean(diag H)`` is added to the diagonal; the upper Cholesky factor
   ``U`` of ``H^-1`` is computed (if either Cholesky fails, the dampening is
   multiplied by 10 and a warning says so; as a last resort the Hessian is
   replaced by the identity, which turns GPTQ into plain RTN);
3. with ``act_order`` the columns are visited in order of decreasing ``H_ii``;
4. columns are processed in blocks of ``block_size``: inside a block each
   column is rounded and its error ``e = (w - q) / U_jj`` is subtracted from the
   later columns of the block at once; the later blocks receive the block's
   accumulated error in one matrix product (lazy batch update);
5. with ``PerGroup(size)`` the scale and zero point of a group (``size``
   consecutive input columns in the original order) are chosen from the group's
   *updated* weights when the first of its columns is reached: by min-max
   (:func:`lowbit.choose_qparams`; ``scale_search="none"``), by the shrink of
   that range with the lowest ``H_jj``-weighted squared rounding error over
   :data:`CLIP_FACTORS` (``"mse"``, the reference implementation's ``mse``
   option, with the Hessian's diagonal as weights), or by activation-aware HQQ
   weighted by ``H_jj`` (``"hqq"``).  Scales are chosen as stored
   (``scale_format``), and with ``zero_point="float"`` each group keeps a float
   minimum (``x = code * scale + min``) instead of an integer zero point.
   ``kquant6`` scales share a float16 super-scale per 8 scales, so one group's
   scale cannot be stored before the others are known: there a first pass with
   float32 scales chooses every group's scale, all are stored at once, and a
   second pass rounds with the stored scales (twice GPTQ's time).

The result is an ordinary :class:`lowbit.QTensor` (``PerChannel(0)`` or
``PerGroup(size)``) whose dequantized weight is exactly the weight GPTQ
produced.

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.algorithms import HessianAccumulator, gptq_quantize
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((8, 32))
    >>> x = rng.standard_normal((256, 32)) @ rng.standard_normal((32, 32))
    >>> h = HessianAccumulator(32).partial_fit(x).hessian_
    >>> qt = gptq_quantize(w, h, "int4")
    >>> rtn = lowbit.fake_quantize(w, "int4", granularity=lowbit.PerChannel(0))
    >>> bool(np.sum((x @ (w - qt.dequantize()).T) ** 2) < np.sum((x @ (w - rtn).T) ** 2))
    True
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from lowbit._arrays import as_float_array, check_finite
from lowbit._deprecation import warn_renamed
from lowbit.algorithms._checks import _UNSET, weight_granularity
from lowbit.core import quantize
from lowbit.errors import EmptyInputError, NonFiniteError, NotCalibratedError, OptionError
from lowbit.formats import QType, get_qtype, scale_format_for
from lowbit.granularity import Granularity, PerChannel
from lowbit.qparams import choose_qparams
from lowbit.qtensor import QTensor

__all__ = ["HessianAccumulator", "gptq_quantize", "gptq_solve", "MAX_DAMP_RETRIES", "SCALE_SEARCHES", "CLIP_FACTORS"]

MAX_DAMP_RETRIES = 8
"""How many times the dampening is multiplied by 10 before falling back to RTN."""

_ROWS_ELEMENTS = 1 << 23  # activation elements converted to float64 at a time (64 MiB)
_INVERSE_LEAF = 128  # triangular blocks up to this size are inverted by forward substitution


def _finite_float64(x: Any) -> np.ndarray:
    flat, source = as_float_array(x)
    check_finite(flat, int(flat.size - np.isfinite(flat).sum()), source.shape)
    return flat.astype(np.float64, copy=False).reshape(source.shape)


class HessianAccumulator:
    """Streaming ``H = 2/n * sum x x^T`` over activation batches, in float64.

    Memory is ``O(in_features^2)`` whatever the number of samples: the running
    average is updated batch by batch.

    Args:
        in_features: length of the last axis of every batch.

    Attributes:
        n_samples_: number of activation rows seen so far.

    Raises:
        OptionError: ``in_features`` is not a positive int.

    Example:
        >>> import numpy as np
        >>> acc = HessianAccumulator(2).partial_fit(np.array([[1.0, 0.0], [0.0, 2.0]]))
        >>> acc.hessian_.tolist(), acc.n_samples_
        ([[1.0, 0.0], [0.0, 4.0]], 2)
    """

    def __init__(self, in_features: int) -> None:
        if isinstance(in_features, bool) or not isinstance(in_features, (int, np.integer)) or in_features < 1:
            raise OptionError(f"in_features must be a positive int, got {in_features!r}")
        self.in_features = int(in_features)
        self.n_samples_ = 0
        self._h = np.zeros((self.in_features, self.in_features), np.float64)

    def partial_fit(self, x: Any) -> HessianAccumulator:
        """Fold a batch of activations shaped ``(..., in_features)`` into the average.

        Returns:
            ``self``, so calls chain.

        Raises:
            OptionError: the last axis is not ``in_features`` long.
            EmptyInputError: the batch has no rows. NonFiniteError: NaN/Inf in it, or values so
                large (|x| around 1e154 and up, float64 input only) that ``x x^T`` overflows float64;
                a refused batch leaves the accumulator as it was.
            InputTypeError: not a float array or CPU tensor.

        Example:
            >>> import numpy as np
            >>> HessianAccumulator(3).partial_fit(np.ones((4, 5, 3))).n_samples_
            20
        """
        shape = np.shape(x)
        if len(shape) == 0 or shape[-1] != self.in_features:
            raise OptionError(
                f"activations must be shaped (..., {self.in_features}), got {tuple(shape)}; "
                "pass the inputs of the layer whose weight you will quantize"
            )
        if int(np.prod(shape)) == 0:
            raise EmptyInputError(f"activation batch of shape {tuple(shape)} has no rows")
        flat, source = as_float_array(x)
        check_finite(flat, int(flat.size - np.count_nonzero(np.isfinite(flat))), source.shape)
        rows = flat.reshape(-1, self.in_features)
        m = rows.shape[0]
        step = max(256, _ROWS_ELEMENTS // self.in_features)
        gram = np.zeros_like(self._h)
        with np.errstate(over="ignore", invalid="ignore"):
            for r in range(0, m, step):  # float64 copies of a few MB at a time; x^T x runs as a BLAS syrk
                chunk = rows[r : r + step].astype(np.float64)
                gram += chunk.T @ chunk
            total = self.n_samples_ + m
            keep = self.n_samples_ / total
            gram *= 2.0 / total
            # |H_ij| <= max diag of a Gram matrix, so bounding the new diagonal bounds every entry
            peak = float(np.max(np.diag(self._h))) * keep + float(np.max(np.diag(gram)))
        if not (np.isfinite(gram).all() and peak < np.finfo(np.float64).max):
            raise NonFiniteError(
                f"activations of shape {tuple(shape)} reach |x| = {float(np.abs(rows).max()):.3g}: their squared "
                "sums overflow float64 (keep |x| well below 1e150); the batch was not added. Rescale the "
                "layer's inputs: GPTQ's result does not change when every input is scaled by one factor"
            )
        self._h *= keep
        self._h += gram
        self.n_samples_ = total
        return self

    def add(self, x: Any) -> HessianAccumulator:
        """Deprecated spelling of :meth:`partial_fit`."""
        warn_renamed("HessianAccumulator.add()", "HessianAccumulator.partial_fit()")
        return self.partial_fit(x)

    @property
    def hessian_(self) -> np.ndarray:
        """A copy of the current ``(in_features, in_features)`` Hessian (learned: exists after the first batch).

        Raises:
            NotCalibratedError: no batch was added yet (also an AttributeError).
        """
        if self.n_samples_ == 0:
            raise NotCalibratedError("HessianAccumulator has seen no data; call .partial_fit(activations) first")
        return self._h.copy()

    @property
    def hessian(self) -> np.ndarray:
        """Deprecated spelling of :attr:`hessian_`."""
        warn_renamed("HessianAccumulator.hessian", "HessianAccumulator.hessian_")
        return self.hessian_

    def __repr__(self) -> str:
        return f"HessianAccumulator(in_features={self.in_features}, n_samples_={self.n_samples_})"


def _check_args(w_shape: tuple[int, ...], h: np.ndarray, qt: QType, damp: Any, block_size: Any) -> None:
    n = w_shape[1]
    if h.shape != (n, n):
        raise OptionError(
            f"hessian shape {h.shape} does not match weight shape {w_shape}: expected ({n}, {n}); "
            "accumulate it from the inputs of this layer (HessianAccumulator(in_features))"
        )
    if qt.kind != "int":
        raise OptionError(f"GPTQ rounds to integer formats; got {qt.name} ({qt.kind}); use e.g. 'int4'")
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise OptionError(f"block_size must be a positive int, got {block_size!r}")
    if isinstance(damp, bool) or not isinstance(damp, (int, float, np.floating, np.integer)) or not (
        np.isfinite(damp) and damp >= 0
    ):
        raise OptionError(f"damp must be a finite number >= 0 (fraction of mean diag(H)), got {damp!r}")


def _lower_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix, by halves: ``[[A, 0], [C, B]]^-1 = [[A^-1, 0], [-B^-1 C A^-1, B^-1]]``.

    About ``2/3 n^3`` flops, nearly all in matrix products (NumPy has no triangular inverse).
    """
    n = lower.shape[0]
    if n <= _INVERSE_LEAF:
        from lowbit._kernels.gptq import lower_inverse

        out = np.empty_like(lower)
        lower_inverse(np.ascontiguousarray(lower), out)
        return out
    h = n // 2
    a_inv = _lower_inverse(lower[:h, :h])
    b_inv = _lower_inverse(lower[h:, h:])
    out = np.zeros_like(lower)
    out[:h, :h] = a_inv
    out[h:, h:] = b_inv
    out[h:, :h] = -(b_inv @ (lower[h:, :h] @ a_inv))
    return out


def _upper_from_reversed(rev: np.ndarray) -> np.ndarray:
    """Upper ``U`` with ``U^T U = H^-1``, given ``rev = P H P`` (``P`` reverses the order).

    With ``P H P = L L^T``, ``H^-1 = (P L^-1 P)^T (P L^-1 P)`` and ``P L^-1 P`` is upper
    triangular with a positive diagonal: the Cholesky factor itself.  One Cholesky
    factorisation and one triangular inverse, no explicit ``H^-1``.
    """
    lower = np.linalg.cholesky(rev)
    return np.ascontiguousarray(_lower_inverse(lower)[::-1, ::-1])


def _inverse_cholesky(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of ``(H + damp*mean(diag H) I)^-1``, retrying with more dampening."""
    n = h.shape[0]
    mean_diag = float(np.mean(np.diag(h)))
    rev = np.ascontiguousarray(h[::-1, ::-1])  # a copy: its diagonal is dampened in place
    diag = rev.reshape(-1)[:: n + 1]
    base = diag.copy()
    current = float(damp)
    for attempt in range(MAX_DAMP_RETRIES + 1):
        diag[:] = base + current * mean_diag
        try:
            with np.errstate(all="ignore"):
                upper = _upper_from_reversed(rev)
            if np.all(np.isfinite(upper)) and np.all(np.diag(upper) > 0):
                return upper
            err: str = "non-finite or zero pivot in the Cholesky factor"
        except np.linalg.LinAlgError as exc:
            err = f"LinAlgError: {exc}"
        if attempt == MAX_DAMP_RETRIES:
            break
        nxt = current * 10 if current > 0 else 1e-6
        warnings.warn(
            f"GPTQ: Cholesky of the dampened Hessian failed ({err}) with damp={current:g}; "
            f"retrying with damp={nxt:g}. Collect more calibration samples or pass a larger damp",
            RuntimeWarning,
            stacklevel=3,
        )
        current = nxt
    warnings.warn(
        f"GPTQ: Hessian could not be factored even with damp={current:g}; falling back to the identity "
        "Hessian (plain round-to-nearest) for this weight",
        RuntimeWarning,
        stacklevel=3,
    )
    return np.eye(n)


SCALE_SEARCHES = ("none", "mse", "hqq")
"""How GPTQ picks a group's scale and zero point: min-max, the clip search, or HQQ."""
CLIP_FACTORS = tuple(1.0 - i / 100 for i in range(40))
"""Shrink factors of the range tried by ``scale_search="mse"`` (1.00, 0.99, ..., 0.61)."""


class _Rounder:
    """Per-row scales and zero points of each group, chosen once; kept with ``1/scale`` for the kernel.

    With float zero points, ``zf`` holds ``qmin - offset / scale`` (what the kernel adds before
    rounding, as :func:`lowbit.quantize` does) and ``off`` the offsets."""

    def __init__(self, qt: QType, sym: bool, sdt: np.dtype, out: int, ngroups: int, fmt: Any, float_zero: bool,
                 search: str, hdiag: np.ndarray) -> None:
        from lowbit.core import offset_dtype

        self.qt, self.sym, self.sdt, self.fmt, self.search, self.hdiag = qt, sym, sdt, fmt, search, hdiag
        self.float_zero = float_zero
        self.scale = np.ones((out, ngroups), sdt)
        self.inv = np.ones((out, ngroups), sdt)
        self.zero = np.zeros((out, ngroups), offset_dtype(fmt.name, sdt) if float_zero else np.int64)
        self.zf = np.zeros((out, ngroups), sdt)
        self.off = np.zeros((out, ngroups), sdt) if float_zero else None
        self.chosen = np.zeros(ngroups, bool)
        self.qlim = np.array([qt.qmin, qt.qmax], sdt)

    def _params(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Min-max (scale, zero point or offset) of ranges ``[lo, hi]``, as stored in the scale format."""
        from lowbit.core import offset_dtype
        from lowbit.formats.scales import store_scales
        from lowbit.qparams import affine_zero_points, offset_qparams

        if self.float_zero:
            s, m = offset_qparams(lo, hi, self.qt, self.sdt)
            dec = store_scales(s, self.qt, self.fmt)[1] if self.fmt.name != "float32" else s
            return dec, m.astype(offset_dtype(self.fmt.name, self.sdt))
        s, z = choose_qparams(lo, hi, self.qt, symmetric=self.sym, scale_dtype=self.sdt)
        if self.fmt.name != "float32":
            dec = store_scales(s, self.qt, self.fmt)[1]
            if not self.sym and not np.array_equal(dec, s):
                z = affine_zero_points(lo, dec, self.qt)
            s = dec
        return s, z

    def _clip_search(self, cols: np.ndarray, wts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the shrink of the min-max range with the lowest ``diag(H)``-weighted squared error."""
        from lowbit._kernels.gptq import clip_errors

        factors = np.asarray(CLIP_FACTORS)[:, None]
        lo, hi = cols.min(axis=1)[None] * factors, cols.max(axis=1)[None] * factors
        s, z = self._params(lo, hi)
        s64 = s.astype(np.float64)
        off = z.astype(np.float64) if self.float_zero else None
        zp = z.astype(np.float64) if off is None else -off / s64
        err = np.empty(s.shape)
        clip_errors(np.ascontiguousarray(cols, np.float64), np.ascontiguousarray(wts, np.float64), s64, zp, off,
                    float(self.qt.qmin), float(self.qt.qmax), err)
        best = np.argmin(err, axis=0)  # the first (least shrunk) of equal errors
        rows = np.arange(cols.shape[0])
        return s[best, rows], z[best, rows]

    def _hqq(self, cols: np.ndarray, wts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HQQ's per-row parameters for these columns, weighted by ``diag(H)`` (activation-aware HQQ)."""
        from lowbit.algorithms.hqq import hqq_quantize

        qt = hqq_quantize(cols.astype(self.sdt), self.qt, granularity="channel", x_mean_sq=wts,
                          zero_point="float" if self.float_zero else "int", scale_format=self.fmt.name)
        return np.asarray(qt.scale, self.sdt).reshape(-1), qt.zero_point.reshape(-1)

    def store(self, fmt: Any) -> None:
        """Store every chosen scale at once in ``fmt``, whose scales share stored parameters (kquant6's
        super-scales); integer zero points are refitted to the stored scales."""
        from lowbit.formats.scales import store_scales
        from lowbit.qparams import affine_zero_points

        dec = store_scales(self.scale, self.qt, fmt)[1]
        if not self.sym:  # keep each grid's minimum (qmin - z) * s where the new scale allows
            self.zero = affine_zero_points((self.qt.qmin - self.zero) * self.scale.astype(np.float64), dec, self.qt)
        self.fmt, self.scale = fmt, dec
        self.inv = (self.sdt.type(1) / dec).astype(self.sdt)
        self.zf = self.zero.astype(self.sdt)

    def choose(self, g: int, cols: np.ndarray, members: np.ndarray) -> None:
        """Choose group ``g``'s parameters from its current weights ``cols`` (original columns ``members``)."""
        wts = self.hdiag[members]
        if self.search == "mse":
            s, z = self._clip_search(cols, wts)
        elif self.search == "hqq" and not (self.sym or self.qt.kind != "int"):
            s, z = self._hqq(cols, wts)
        else:
            s, z = self._params(cols.min(axis=1), cols.max(axis=1))
        self.scale[:, g], self.zero[:, g], self.chosen[g] = s, z, True
        self.inv[:, g] = self.sdt.type(1) / self.scale[:, g]  # as lowbit's kernels: x * (1/s) + zp, then rint
        if self.off is None:
            self.zf[:, g] = self.zero[:, g]
        else:
            self.off[:, g] = self.zero[:, g]
            self.zf[:, g] = self.sdt.type(self.qt.qmin) - self.off[:, g] * self.inv[:, g]


def _gptq_core(
    w: np.ndarray, upper: np.ndarray, rounder: _Rounder, group_of: np.ndarray, members: list, block: int
) -> np.ndarray:
    """Quantize the (permuted) columns of ``w`` in order; returns the quantized weight.

    ``w`` is overwritten with the weights GPTQ rounded: each column as it was when its turn came,
    after the error feedback of the columns before it."""
    from lowbit._kernels.gptq import gptq_columns

    n = w.shape[1]
    q = np.zeros_like(w)
    lazy = np.empty((w.shape[0], max(0, n - block)))  # err @ upper of a block, reused
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1 = np.ascontiguousarray(w[:, i1:i2])
        err = np.zeros_like(w1)
        q1 = np.zeros_like(w1)
        u1 = np.ascontiguousarray(upper[i1:i2, i1:i2])
        groups = np.ascontiguousarray(group_of[i1:i2], dtype=np.int64)
        k = 0
        while k < i2 - i1:
            j = i1 + k
            g = group_of[j]
            if not rounder.chosen[g]:
                cols = members[g]  # permuted indices of the group, all >= j (untouched)
                inside, outside = cols[cols < i2], cols[cols >= i2]
                current = np.concatenate(
                    [w1[:, inside - i1], w[:, outside] - err[:, :k] @ upper[i1:j, outside]], axis=1
                )
                rounder.choose(g, current, np.concatenate([inside, outside]))
            stop = k + 1  # run the kernel up to the next column whose group has no scale yet
            while stop < i2 - i1 and rounder.chosen[group_of[i1 + stop]]:
                stop += 1
            gptq_columns(w1, err, q1, u1, k, stop, rounder.scale, rounder.inv, rounder.zf, rounder.off, groups,
                         rounder.qlim)
            k = stop
        q[:, i1:i2] = q1
        w[:, i1:i2] = w1
        if i2 < n:
            upd = lazy[:, : n - i2]
            np.matmul(err, upper[i1:i2, i2:], out=upd)
            w[:, i2:] -= upd
    return q


def gptq_quantize(
    weight: Any,
    hessian: Any,
    qtype: str | QType = "int4",
    *,
    granularity: Granularity | str | None = None,
    symmetric: bool | None = None,
    damp: float = 0.01,
    act_order: bool = False,
    block_size: int = 128,
    zero_point: str = "int",
    scale_format: str | None = None,
    scale_search: str = "mse",
    group_size: Any = _UNSET,
) -> QTensor:
    """Quantize a linear layer's weight with GPTQ.

    Args:
        weight: ``(out_features, in_features)`` float array (or CPU tensor).
        hessian: ``(in_features, in_features)``, e.g. ``HessianAccumulator.hessian_``.
        qtype: integer format name or QType (``"int4"``, ``"uint4"``, ``"int3"`` ...).
        granularity: ``PerChannel(0)`` / ``"channel"`` (one scale per output channel;
            the default, None) or ``PerGroup(size)`` / ``"group:128"`` (groups of input
            columns; a size that does not divide ``in_features`` gives a shorter last group).
        symmetric: default symmetric for signed formats, affine for unsigned ones.
        damp: fraction of ``mean(diag H)`` added to the diagonal (``0`` allowed;
            raised tenfold, with a warning, while the Cholesky fails).
        act_order: visit columns by decreasing ``H_ii`` (groups stay contiguous in
            the original order; a group's scale is chosen when it is first reached).
        block_size: columns per lazy batch update (speed only; the result is the same).
        zero_point: ``"int"`` (default) or ``"float"``: each group stores its minimum as a
            float zero point, ``x = code * scale + min`` (unsigned formats, affine, float32 or
            float16 scales; :func:`lowbit.quantize`'s ``zero_point="float"``).
        scale_format: how the scales (and float zero points) are stored, e.g. ``"float16"``,
            ``"kquant6"`` (two passes, see the module docstring); None for float32. GPTQ rounds
            with the scales as stored, so the result is exact (not ``double8``: storing its scales
            again moves them, OptionError).
        scale_search: how a group's scale and zero point are chosen when its first column
            is reached, from its updated weights: ``"none"`` (min-max), ``"mse"`` (the default:
            the range shrunk by the factor in :data:`CLIP_FACTORS` with the lowest ``H_jj``-weighted
            squared rounding error, as the reference implementation's ``mse`` option) or
            ``"hqq"`` (HQQ's parameters, weighted by ``H_jj``; affine only).
        group_size: deprecated spelling of ``granularity`` (None: per channel).

    Returns:
        A QTensor of float32 (float64 for float64 weights) NumPy source whose
        ``dequantize()`` is the GPTQ weight; weights of dead inputs (``H_ii == 0``) are 0,
        except when every input is dead: then the weight is rounded to nearest (RuntimeWarning).

    Raises:
        OptionError: shapes that do not match, a non-integer format, bad ``damp``/``block_size``,
            an unknown ``scale_search`` (or ``"hqq"`` with symmetric use), ``zero_point="float"``
            with a signed format, ``symmetric=True`` or a scale format other than float32/float16;
            ``scale_format="double8"``.
        GranularityError: not per channel or per group.
        NonFiniteError: NaN/Inf in the weight or Hessian. InputTypeError: not float.

    Example:
        >>> import numpy as np
        >>> w = np.array([[0.5, -1.0, 0.25, 2.0]])
        >>> qt = gptq_quantize(w, np.eye(4), "int8", granularity="group:2", scale_search="none")
        >>> qt.codes.tolist()
        [[64, -127, 16, 127]]
    """
    return gptq_solve(weight, hessian, qtype, granularity=granularity, symmetric=symmetric, damp=damp,
                      act_order=act_order, block_size=block_size, zero_point=zero_point, scale_format=scale_format,
                      scale_search=scale_search, group_size=group_size)[0]


def gptq_solve(
    weight: Any,
    hessian: Any,
    qtype: str | QType = "int4",
    *,
    granularity: Granularity | str | None = None,
    symmetric: bool | None = None,
    damp: float = 0.01,
    act_order: bool = False,
    block_size: int = 128,
    zero_point: str = "int",
    scale_format: str | None = None,
    scale_search: str = "mse",
    group_size: Any = _UNSET,
) -> tuple[QTensor, np.ndarray]:
    """:func:`gptq_quantize`, and the float64 weights GPTQ rounded (each column after the error feedback
    of the columns before it): what learned rounding starts from (``autoround_block(init="gptq")``).

    Rounding the second result with the QTensor's scales and zero points gives the QTensor's codes.

    Example:
        >>> import numpy as np
        >>> h = np.array([[2.0, 1.0], [1.0, 2.0]])
        >>> qt, rounded = gptq_solve(np.array([[0.3, 0.7]]), h, "int4", scale_search="none")
        >>> bool(np.array_equal(np.rint(rounded / qt.scale[:, None]), qt.codes))
        True
    """
    w_flat, w_src = as_float_array(weight)
    check_finite(w_flat, int(w_flat.size - np.isfinite(w_flat).sum()), w_src.shape)
    h = _finite_float64(hessian)
    qt = get_qtype(qtype)
    gran, gs = weight_granularity(granularity, group_size, w_src.shape, "gptq_quantize")
    _check_args(w_src.shape, h, qt, damp, block_size)
    sym = qt.signed if symmetric is None else bool(symmetric)
    fmt, float_zero = _check_storage(qt, symmetric, sym, zero_point, scale_format, scale_search)
    sdt = np.dtype(w_flat.dtype)  # float32, or float64 for float64 weights
    w = w_flat.reshape(w_src.shape).astype(np.float64)
    out, n = w.shape

    dead = np.diag(h) == 0
    if dead.all():  # no input ever fired (all-zero calibration data): nothing to weigh the errors by
        warnings.warn(
            f"GPTQ: the Hessian of this {w.shape} weight is all zero (the calibration inputs of the layer were "
            "all zero); falling back to the identity Hessian (plain round-to-nearest) instead of zeroing every "
            "weight. Calibrate with representative inputs",
            RuntimeWarning,
            stacklevel=2,
        )
        h, dead = np.eye(n), np.zeros(n, bool)
    if dead.any():
        h = h.copy()  # may be the caller's array
        h[dead, dead] = 1.0
        w[:, dead] = 0.0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    inv_perm = np.argsort(perm)
    upper = _inverse_cholesky(h[np.ix_(perm, perm)] if act_order else h, float(damp))

    per_channel = isinstance(gran, PerChannel)
    group_of = perm // gs  # group (original order) of each permuted column
    ngroups = -(-n // gs)  # a size that does not divide n: the last group is shorter
    members = [np.sort(inv_perm[g * gs : (g + 1) * gs]) for g in range(ngroups)]
    static = fmt.shared  # kquant6: scales that share a super-scale are all chosen first, then stored together
    rounder = _Rounder(qt, sym, sdt, out, ngroups, scale_format_for(qt, "float32") if static else fmt, float_zero,
                       scale_search, np.diag(h)[perm])
    if per_channel:  # per-channel: scales from the whole (dead-zeroed) row, as RTN
        rounder.choose(0, w[:, perm], np.arange(n))
    elif static:  # a first pass (float32 scales) chooses each group's scale from its updated weights
        _gptq_core(w[:, perm], upper, rounder, group_of, members, int(block_size))
    if static:
        rounder.store(fmt)
    rounded = w[:, perm]
    q = _gptq_core(rounded, upper, rounder, group_of, members, int(block_size))[:, inv_perm]

    scale = rounder.scale[:, 0] if per_channel else rounder.scale
    zero = rounder.zero[:, 0] if per_channel else rounder.zero
    qtensor = quantize(q.astype(sdt), qt, granularity=gran, symmetric=None if float_zero else sym, scale=scale,
                       zero_point=zero, scale_format=scale_format)
    return qtensor, rounded[:, inv_perm]


def _check_storage(qt: QType, symmetric: Any, sym: bool, zero_point: Any, scale_format: Any,
                   scale_search: Any) -> tuple[Any, bool]:
    """The scale format and whether zero points are float; OptionError for what cannot combine."""
    from lowbit.core import check_float_zero_point
    from lowbit.formats import scale_format_for

    if scale_search not in SCALE_SEARCHES:
        raise OptionError(f"scale_search must be one of {SCALE_SEARCHES}, got {scale_search!r}")
    if scale_search == "hqq" and sym:
        raise OptionError(f"scale_search='hqq' fits an affine scale and zero point; {qt.name} is used symmetric "
                          "here: pass symmetric=False or an unsigned format (e.g. 'uint4')")
    fmt = scale_format_for(qt, scale_format)
    if fmt.name == "double8":
        raise OptionError("gptq_quantize cannot store scales as double8: storing double8 scales again moves the "
                          "small ones (by up to 20%), so the QTensor would not hold GPTQ's weight; use kquant6 "
                          "(8 bits a scale, too) or float16")
    return fmt, check_float_zero_point(zero_point, qt, symmetric, fmt.name, where="gptq_quantize(zero_point='float')")
