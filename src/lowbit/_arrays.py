"""Accept NumPy arrays and CPU torch tensors; hand results back in the same kind.

torch is never imported here: a tensor is recognised by its type's module and
viewed as NumPy without a copy where its dtype allows (float32/float64).

Example:
    >>> import numpy as np
    >>> flat, src = as_float_array(np.ones((2, 3), np.float16))
    >>> flat.dtype.name, src.shape, src.dtype
    ('float32', (2, 3), 'float16')
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from lowbit.errors import EmptyInputError, InputTypeError, NonFiniteError, OptionError

__all__ = ["Source", "as_float_array", "restore", "is_torch_tensor", "check_finite", "scale_dtype", "check_out"]

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class Source:
    """Where an array came from: ``kind`` ("numpy"/"torch"), dtype name and shape."""

    kind: str
    dtype: str
    shape: tuple[int, ...]


def is_torch_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch).

    Example:
        >>> is_torch_tensor(np.zeros(3))
        False
    """
    return "torch" in sys.modules and type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _torch_to_numpy(x: Any) -> tuple[np.ndarray, str]:
    if x.device.type != "cpu":
        raise InputTypeError(f"lowbit works on CPU tensors; got a tensor on {x.device}: call .cpu() first")
    layout = str(getattr(x, "layout", "torch.strided")).removeprefix("torch.")
    if layout != "strided":
        raise InputTypeError(
            f"lowbit works on dense tensors; got a {layout} tensor of shape {tuple(x.shape)}: "
            "call .to_dense() first"
        )
    dtype = str(x.dtype).removeprefix("torch.")
    if dtype not in FLOAT_DTYPES:
        raise InputTypeError(
            f"expected a floating-point tensor ({', '.join(FLOAT_DTYPES)}), got torch.{dtype}; cast with .float()"
        )
    x = x.detach()
    if dtype in ("float16", "bfloat16"):
        x = x.float()
    return x.contiguous().numpy(), dtype


def as_float_array(x: Any, *, allow_empty: bool = False) -> tuple[np.ndarray, Source]:
    """Flat, C-contiguous float32/float64 view (or copy) of ``x`` and where it came from.

    float16/bfloat16 inputs are widened to float32 (one copy); float32 and
    float64 are used as they are when already contiguous and in the machine's
    byte order (non-native arrays such as ``x.astype(">f4")`` are converted, one copy).

    Raises:
        InputTypeError: not a floating-point array or dense CPU tensor (a sparse
            tensor: call ``.to_dense()``).
        EmptyInputError: the input has no elements.

    Example:
        >>> as_float_array([0.5, 1.5])[0].dtype.name
        'float64'
    """
    if is_torch_tensor(x):
        arr, dtype = _torch_to_numpy(x)
        kind = "torch"
    else:
        kind = "numpy"
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as err:
            raise InputTypeError(f"cannot read {type(x).__name__} as an array: {err}") from None
        dtype = arr.dtype.name
        if dtype not in FLOAT_DTYPES:
            raise InputTypeError(
                f"expected a floating-point array ({', '.join(FLOAT_DTYPES)}), got dtype {dtype}; "
                "cast with .astype(np.float32)"
            )
        if dtype != "float64" and dtype != "float32":
            arr = arr.astype(np.float32)
        elif not arr.dtype.isnative:  # big-endian data on a little-endian machine (or the reverse)
            arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.size == 0 and not allow_empty:
        raise EmptyInputError(f"cannot quantize an empty tensor (shape {arr.shape})")
    source = Source(kind, dtype, tuple(int(s) for s in arr.shape))
    return np.ascontiguousarray(arr).reshape(-1), source


def restore(flat: np.ndarray, source: Source) -> Any:
    """Reshape a flat result and return it as the kind and dtype recorded in ``source``.

    NumPy has no bfloat16: a NumPy result of a bfloat16 original (a tensor read from a checkpoint)
    stays float32, which holds every bfloat16 value exactly.

    Example:
        >>> restore(np.zeros(4, np.float32), Source("numpy", "float16", (2, 2))).dtype.name
        'float16'
        >>> restore(np.zeros(4, np.float32), Source("numpy", "bfloat16", (4,))).dtype.name
        'float32'
    """
    arr = flat.reshape(source.shape)
    if source.kind == "torch":
        import torch

        return torch.from_numpy(arr).to(getattr(torch, source.dtype))
    if arr.dtype.name != source.dtype and source.dtype != "bfloat16":
        arr = arr.astype(source.dtype)
    return arr


def check_finite(flat: np.ndarray, nonfinite: int, shape: tuple[int, ...]) -> None:
    """Raise NonFiniteError naming how many NaN/Inf values there are and where.

    Example:
        >>> check_finite(np.zeros(2), 0, (2,))
    """
    if not nonfinite:
        return
    bad = np.flatnonzero(~np.isfinite(flat))
    where = [tuple(int(i) for i in np.unravel_index(int(k), shape)) for k in bad[:5]]
    nans = int(np.isnan(flat[bad]).sum())
    raise NonFiniteError(
        f"input of shape {shape} has {nonfinite} non-finite value(s) ({nans} NaN, {nonfinite - nans} Inf), "
        f"first at index {', '.join(map(str, where))}; replace them (e.g. np.nan_to_num) before quantizing"
    )


def scale_dtype(source: Source) -> np.dtype:
    """The dtype scales are computed and kept in for a source: float64 for float64 input, else float32.

    Example:
        >>> scale_dtype(Source("numpy", "float16", (2,))).name
        'float32'
    """
    return np.dtype(np.float64 if source.dtype == "float64" else np.float32)


def check_out(out: Any, dtype: np.dtype, size: int, what: str) -> np.ndarray:
    """``out`` flattened, after checking it is a C-contiguous NumPy array of ``dtype`` with ``size`` elements.

    Raises:
        OptionError: any other buffer, or a read-only one (the message names what is wrong with it).

    Example:
        >>> check_out(np.zeros((2, 2), np.float32), np.dtype(np.float32), 4, "x").shape
        (4,)
    """
    want = f"out= must be a writable, C-contiguous {dtype} NumPy array with {size} elements for {what}"
    if not isinstance(out, np.ndarray):
        raise OptionError(f"{want}; got {type(out).__name__}")
    problems = [f"dtype {out.dtype.str if out.dtype.name == dtype.name else out.dtype}" if out.dtype != dtype else "",
                f"{out.size} elements" if out.size != size else "",
                "not C-contiguous" if not out.flags.c_contiguous else "",
                "read-only (flags.writeable is False; pass a copy, e.g. np.empty_like(out))"
                if not out.flags.writeable else ""]
    if any(problems):
        raise OptionError(f"{want}; got {', '.join(p for p in problems if p)}")
    return out.reshape(-1)
