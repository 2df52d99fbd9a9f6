"""GPTQ: second-order weight rounding with error feedback (Frantar et al., 2022).

Round-to-nearest (RTN) rounds every weight on its own.  GPTQ quantizes the
columns (input features) of a linear layer's weight ``W`` (out x in) one after
another and, after each column, spreads that column's rounding error over the
columns not yet quantized so that the layer *output* ``X W^T`` changes as little
as possible.  The only statistic it needs from calibration data is the Hessian
of that squared output error, ``H = 2/n * sum_x x x^T`` (in x in), which
:class:`HessianAccumulator` builds from streamed activation batches.

Steps (all in float64; rounding itself follows lowbit's kernels exactly):

1. inputs that never fire (``H_ii == 0``) get ``H_ii = 1`` and zero weights;
2. ``damp * mean(diag H)`` is added to the diagonal; the upper Cholesky factor
   ``U`` of ``H^-1`` is computed (if either Cholesky fails, the dampening is
   multiplied by 10 and a warning says so; as a last resort the Hessian is
   replaced by the identity, which turns GPTQ into plain RTN);
3. with ``act_order`` the columns are visited in order of decreasing ``H_ii``;
4. columns are processed in blocks of ``block_size``: inside a block each
   column is rounded and its error ``e = (w - q) / U_jj`` is subtracted from the
   later columns of the block at once; the later blocks receive the block's
   accumulated error in one matrix product (lazy batch update);
5. with ``group_size`` the scale and zero point of a group (``group_size``
   consecutive input columns in the original order) are chosen by min-max
   (:func:`lowbit.choose_qparams`) from the group's *updated* weights when the
   first of its columns is reached.

The result is an ordinary :class:`lowbit.QTensor` (``PerChannel(0)`` or
``PerGroup(group_size)``) whose dequantized weight is exactly the weight GPTQ
produced.

Example:
    >>> import numpy as np, lowbit
    >>> from lowbit.algorithms import HessianAccumulator, gptq_quantize
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((8, 32))
    >>> x = rng.standard_normal((256, 32)) @ rng.standard_normal((32, 32))
    >>> h = HessianAccumulator(32).add(x).hessian
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
from lowbit.core import quantize
from lowbit.errors import EmptyInputError, NotCalibratedError, OptionError
from lowbit.formats import QType, get_qtype
from lowbit.granularity import PerChannel, PerGroup
from lowbit.qparams import choose_qparams
from lowbit.qtensor import QTensor

__all__ = ["HessianAccumulator", "gptq_quantize", "MAX_DAMP_RETRIES"]

MAX_DAMP_RETRIES = 8
"""How many times the dampening is multiplied by 10 before falling back to RTN."""


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
        >>> acc = HessianAccumulator(2).add(np.array([[1.0, 0.0], [0.0, 2.0]]))
        >>> acc.hessian.tolist(), acc.n_samples_
        ([[1.0, 0.0], [0.0, 4.0]], 2)
    """

    def __init__(self, in_features: int) -> None:
        if isinstance(in_features, bool) or not isinstance(in_features, (int, np.integer)) or in_features < 1:
            raise OptionError(f"in_features must be a positive int, got {in_features!r}")
        self.in_features = int(in_features)
        self.n_samples_ = 0
        self._h = np.zeros((self.in_features, self.in_features), np.float64)

    def add(self, x: Any) -> HessianAccumulator:
        """Fold a batch of activations shaped ``(..., in_features)`` into the average.

        Returns:
            ``self``, so calls chain.

        Raises:
            OptionError: the last axis is not ``in_features`` long.
            EmptyInputError: the batch has no rows. NonFiniteError: NaN/Inf in it.
            InputTypeError: not a float array or CPU tensor.

        Example:
            >>> import numpy as np
            >>> HessianAccumulator(3).add(np.ones((4, 5, 3))).n_samples_
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
        rows = _finite_float64(x).reshape(-1, self.in_features)
        m = rows.shape[0]
        total = self.n_samples_ + m
        self._h *= self.n_samples_ / total
        self._h += (2.0 / total) * (rows.T @ rows)
        self.n_samples_ = total
        return self

    partial_fit = add

    @property
    def hessian(self) -> np.ndarray:
        """A copy of the current ``(in_features, in_features)`` Hessian.

        Raises:
            NotCalibratedError: no batch was added yet.
        """
        if self.n_samples_ == 0:
            raise NotCalibratedError("HessianAccumulator has seen no data; call .add(activations) first")
        return self._h.copy()

    def __repr__(self) -> str:
        return f"HessianAccumulator(in_features={self.in_features}, n_samples_={self.n_samples_})"


def _check_args(
    w_shape: tuple[int, ...], h: np.ndarray, qt: QType, group_size: Any, damp: Any, block_size: Any
) -> None:
    if len(w_shape) != 2:
        raise OptionError(f"weight must be 2-d (out_features, in_features), got shape {w_shape}")
    n = w_shape[1]
    if h.shape != (n, n):
        raise OptionError(
            f"hessian shape {h.shape} does not match weight shape {w_shape}: expected ({n}, {n}); "
            "accumulate it from the inputs of this layer (HessianAccumulator(in_features))"
        )
    if qt.kind != "int":
        raise OptionError(f"GPTQ rounds to integer formats; got {qt.name} ({qt.kind}); use e.g. 'int4'")
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise OptionError(f"group_size must be None or a positive int, got {group_size!r}")
        if n % group_size:
            raise OptionError(
                f"group_size={group_size} does not divide in_features={n} (weight shape {w_shape}); "
                f"pick a divisor of {n} or group_size=None for per-channel scales"
            )
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise OptionError(f"block_size must be a positive int, got {block_size!r}")
    if isinstance(damp, bool) or not isinstance(damp, (int, float, np.floating, np.integer)) or not (
        np.isfinite(damp) and damp >= 0
    ):
        raise OptionError(f"damp must be a finite number >= 0 (fraction of mean diag(H)), got {damp!r}")


def _inverse_cholesky(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of ``(H + damp*mean(diag H) I)^-1``, retrying with more dampening."""
    n = h.shape[0]
    mean_diag = float(np.mean(np.diag(h)))
    eye = np.eye(n)
    current = float(damp)
    for attempt in range(MAX_DAMP_RETRIES + 1):
        try:
            lower = np.linalg.cholesky(h + current * mean_diag * eye)
            lower_inv = np.linalg.solve(lower, eye)
            upper = np.linalg.cholesky(lower_inv.T @ lower_inv).T
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
    return eye


class _Rounder:
    """Rounds columns exactly as lowbit's per-channel/per-group kernel does."""

    def __init__(self, qt: QType, sym: bool, sdt: np.dtype, out: int, ngroups: int) -> None:
        self.qt, self.sym, self.sdt = qt, sym, sdt
        self.scale = np.ones((out, ngroups), sdt)
        self.zero = np.zeros((out, ngroups), np.int64)
        self.chosen = np.zeros(ngroups, bool)

    def choose(self, g: int, cols: np.ndarray) -> None:
        s, z = choose_qparams(cols.min(axis=1), cols.max(axis=1), self.qt, symmetric=self.sym, scale_dtype=self.sdt)
        self.scale[:, g], self.zero[:, g], self.chosen[g] = s, z, True

    def __call__(self, w: np.ndarray, g: int) -> np.ndarray:
        dt = self.sdt.type
        s = self.scale[:, g]
        zf = self.zero[:, g].astype(self.sdt)
        codes = np.clip(np.rint(w.astype(self.sdt) * (dt(1) / s) + zf), self.qt.qmin, self.qt.qmax)
        return ((codes - zf) * s).astype(np.float64)


def _gptq_core(
    w: np.ndarray, upper: np.ndarray, rounder: _Rounder, group_of: np.ndarray, members: list, block: int
) -> np.ndarray:
    """Quantize the (permuted) columns of ``w`` in place order; returns the quantized weight."""
    n = w.shape[1]
    w = w.copy()
    q = np.zeros_like(w)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        w1 = w[:, i1:i2].copy()
        err = np.zeros_like(w1)
        for k in range(i2 - i1):
            j = i1 + k
            g = group_of[j]
            if not rounder.chosen[g]:
                cols = members[g]  # permuted indices of the group, all >= j (untouched)
                inside, outside = cols[cols < i2], cols[cols >= i2]
                current = np.concatenate(
                    [w1[:, inside - i1], w[:, outside] - err[:, :k] @ upper[i1:j, outside]], axis=1
                )
                rounder.choose(g, current)
            col = w1[:, k]
            q[:, j] = rounder(col, g)
            e = (col - q[:, j]) / upper[j, j]
            w1[:, k + 1 :] -= np.outer(e, upper[j, j + 1 : i2])
            err[:, k] = e
        w[:, i2:] -= err @ upper[i1:i2, i2:]
    return q


def gptq_quantize(
    weight: Any,
    hessian: Any,
    qtype: str | QType = "int4",
    *,
    group_size: int | None = None,
    symmetric: bool | None = None,
    damp: float = 0.01,
    act_order: bool = False,
    block_size: int = 128,
) -> QTensor:
    """Quantize a linear layer's weight with GPTQ.

    Args:
        weight: ``(out_features, in_features)`` float array (or CPU tensor).
        hessian: ``(in_features, in_features)``, e.g. ``HessianAccumulator.hessian``.
        qtype: integer format name or QType (``"int4"``, ``"uint4"``, ``"int3"`` ...).
        group_size: ``None`` for one scale per output channel (``PerChannel(0)``),
            or the size of input-column groups (``PerGroup(group_size)``); must divide
            ``in_features``.
        symmetric: default symmetric for signed formats, affine for unsigned ones.
        damp: fraction of ``mean(diag H)`` added to the diagonal (``0`` allowed;
            raised tenfold, with a warning, while the Cholesky fails).
        act_order: visit columns by decreasing ``H_ii`` (groups stay contiguous in
            the original order; a group's scale is chosen when it is first reached).
        block_size: columns per lazy batch update (speed only; the result is the same).

    Returns:
        A QTensor of float32 (float64 for float64 weights) NumPy source whose
        ``dequantize()`` is the GPTQ weight; weights of dead inputs are 0.

    Raises:
        OptionError: shapes that do not match, a group size that does not divide
            ``in_features``, a non-integer format, bad ``damp``/``block_size``.
        NonFiniteError: NaN/Inf in the weight or Hessian. InputTypeError: not float.

    Example:
        >>> import numpy as np
        >>> w = np.array([[0.5, -1.0, 0.25, 2.0]])
        >>> qt = gptq_quantize(w, np.eye(4), "int8", group_size=2)
        >>> qt.codes.tolist()
        [[64, -127, 16, 127]]
    """
    w_flat, w_src = as_float_array(weight)
    check_finite(w_flat, int(w_flat.size - np.isfinite(w_flat).sum()), w_src.shape)
    h = _finite_float64(hessian)
    qt = get_qtype(qtype)
    _check_args(w_src.shape, h, qt, group_size, damp, block_size)
    sdt = np.dtype(w_flat.dtype)  # float32, or float64 for float64 weights
    w = w_flat.reshape(w_src.shape).astype(np.float64)
    out, n = w.shape
    sym = qt.signed if symmetric is None else bool(symmetric)

    h = h.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    inv_perm = np.argsort(perm)
    upper = _inverse_cholesky(h[np.ix_(perm, perm)], float(damp))

    gs = n if group_size is None else int(group_size)
    group_of = perm // gs  # group (original order) of each permuted column
    members = [np.sort(inv_perm[g * gs : (g + 1) * gs]) for g in range(n // gs)]
    rounder = _Rounder(qt, sym, sdt, out, n // gs)
    if group_size is None:  # per-channel: scales from the whole (dead-zeroed) row, as RTN
        rounder.choose(0, w)
    q = _gptq_core(w[:, perm], upper, rounder, group_of, members, int(block_size))[:, inv_perm]

    gran = PerChannel(0) if group_size is None else PerGroup(gs)
    scale = rounder.scale if group_size is not None else rounder.scale[:, 0]
    zero = rounder.zero if group_size is not None else rounder.zero[:, 0]
    return quantize(q.astype(sdt), qt, granularity=gran, symmetric=sym, scale=scale, zero_point=zero)
