"""The exact int8 x int8 -> int32 matrix product on the fastest path this machine offers (not public).

Two exact paths:

* ``"int_mm"``: ``torch._int_mm(x, w.t())`` with the weight stored ``(N, K)`` and passed as a
  transposed view (oneDNN's int8 GEMM; with AVX512-VNNI or AMX it ran 5-7x faster than an fp32
  GEMM here, at every batch size).  With a single input feature (``K = 1``) torch 2.13 returns
  garbage, so that shape always takes the fp32 path;
* ``"fp32"``: fp32 GEMMs over chunks of at most 1024 input features, whose partial sums stay
  below ``127 * 127 * 1024 < 2**24`` and are therefore exact, added in int32.  The fallback for
  CPUs whose int8 GEMM is slow (without int8 dot-product instructions).

The path is chosen once per process by a tiny micro-benchmark (a few milliseconds, both paths on a
``64 x 1024 x 1024`` product) and kept; ``LOWBIT_INT8_MATMUL=int_mm`` or ``=fp32`` forces one.

Example:
    >>> import torch
    >>> a = torch.tensor([[127, -127]], dtype=torch.int8)
    >>> w = torch.tensor([[127, 1]], dtype=torch.int8)  # (N, K)
    >>> int8_mm(a, w).tolist(), int8_mm(a, w, path="fp32").tolist()
    ([[16002]], [[16002]])
"""

from __future__ import annotations

import os
import time

import torch

from lowbit.errors import OptionError

__all__ = ["int8_mm", "int8_path", "PATHS", "FP32_CHUNK"]

PATHS = ("int_mm", "fp32")
FP32_CHUNK = 1024  # 127 * 127 * 1024 < 2**24: an fp32 sum of this many code products is exact
_ENV = "LOWBIT_INT8_MATMUL"
_chosen: str | None = None


def _int_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch._int_mm(x, w.t())


def _fp32_chunks(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    k = x.shape[1]
    acc = torch.zeros((x.shape[0], w.shape[0]), dtype=torch.int32)
    for k0 in range(0, k, FP32_CHUNK):
        k1 = min(k, k0 + FP32_CHUNK)
        part = x[:, k0:k1].float() @ w[:, k0:k1].float().t()
        acc += part.to(torch.int32)
    return acc


_IMPLS = {"int_mm": _int_mm, "fp32": _fp32_chunks}


def _time(fn, x: torch.Tensor, w: torch.Tensor) -> float:
    fn(x, w)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(x, w)
        best = min(best, time.perf_counter() - start)
    return best


def _benchmark() -> str:
    """The faster exact path on a 64 x 1024 x 1024 product (``int_mm`` only where it works and is exact)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (64, 1024), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (1024, 1024), dtype=torch.int8, generator=g)
    try:
        if not torch.equal(_int_mm(x, w), _fp32_chunks(x, w)):
            return "fp32"
    except RuntimeError:  # no int8 GEMM in this build
        return "fp32"
    return "int_mm" if _time(_int_mm, x, w) <= _time(_fp32_chunks, x, w) else "fp32"


def int8_path() -> str:
    """The exact int8 GEMM path this process uses (``LOWBIT_INT8_MATMUL`` or the micro-benchmark's choice).

    Raises:
        OptionError: ``LOWBIT_INT8_MATMUL`` names no path.

    Example:
        >>> int8_path() in PATHS
        True
    """
    global _chosen
    forced = os.environ.get(_ENV)
    if forced:
        if forced not in PATHS:
            raise OptionError(f"{_ENV}={forced!r}: use one of {PATHS} (or unset it to let lowbit choose)")
        return forced
    if _chosen is None:
        _chosen = _benchmark()
    return _chosen


def int8_mm(x: torch.Tensor, w: torch.Tensor, path: str | None = None) -> torch.Tensor:
    """Exact int32 ``x @ w.T`` of int8 codes ``x`` ``(M, K)`` and ``w`` ``(N, K)``.

    Args:
        x, w: int8 tensors; ``w`` is best contiguous (the layout ``int_mm`` is fastest with).
        path: one of :data:`PATHS`, or None for :func:`int8_path`.

    Example:
        >>> int8_mm(torch.ones((2, 3), dtype=torch.int8), torch.ones((1, 3), dtype=torch.int8)).tolist()
        [[3], [3]]
    """
    if x.shape[0] == 0:
        return torch.zeros((0, w.shape[0]), dtype=torch.int32)
    chosen = int8_path() if path is None else path
    if chosen not in _IMPLS:
        raise OptionError(f"path must be one of {PATHS}, got {chosen!r}")
    if x.shape[1] < 2:  # torch._int_mm is wrong for K = 1 (torch 2.13, CPU)
        chosen = "fp32"
    return _IMPLS[chosen](x.contiguous(), w)
