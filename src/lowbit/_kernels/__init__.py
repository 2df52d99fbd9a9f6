"""Numba kernels: every loop over elements lives here.

Importing this package imports Numba (about 0.3 s); ``lowbit`` itself imports it
lazily, on the first call that needs a kernel.  Kernels compile on first use
and are cached on disk (``cache=True``).
"""

from lowbit._kernels._bits import pack_codes, unpack_codes
from lowbit._kernels.quant import dequantize_kernel, fake_quantize_kernel, quantize_kernel
from lowbit._kernels.range import block_minmax
from lowbit._kernels.stats import error_stats

__all__ = [
    "block_minmax",
    "quantize_kernel",
    "dequantize_kernel",
    "fake_quantize_kernel",
    "pack_codes",
    "unpack_codes",
    "error_stats",
]
