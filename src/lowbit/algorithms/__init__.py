"""Weight quantization algorithms: each one file, from a weight (and statistics) to a QTensor.

* :func:`gptq_quantize` (with :class:`HessianAccumulator`): second-order error feedback;
* :func:`hqq_quantize`: data-free half-quadratic optimisation of scale and zero point;
* :func:`awq_quantize`: activation-aware column scaling and clipping;
* :func:`smoothquant_scales`, :func:`search_smoothing`: activation outliers moved into the
  weights before W8A8 quantization (a fixed migration strength, or the best per layer);
* :func:`autoround_block`, :func:`autoround_quantize`: learned rounding offsets and clipping
  (AutoRound, signed gradient descent) matching a transformer block's (or a layer's) output;
* :class:`ActivationStatistics`: what AWQ and SmoothQuant need from a layer's inputs, streamed.

Example:
    >>> import numpy as np
    >>> from lowbit.algorithms import hqq_quantize
    >>> hqq_quantize(np.ones((2, 64)), "uint4").shape
    (2, 64)
"""

from lowbit.algorithms._statistics import ActivationStatistics
from lowbit.algorithms.autoround import RoundingScheme, autoround_block, autoround_quantize
from lowbit.algorithms.awq import awq_quantize, awq_scales
from lowbit.algorithms.gptq import HessianAccumulator, gptq_quantize
from lowbit.algorithms.hqq import hqq_quantize
from lowbit.algorithms.smoothquant import search_smoothing, smoothquant_scales

__all__ = [
    "HessianAccumulator",
    "gptq_quantize",
    "hqq_quantize",
    "ActivationStatistics",
    "awq_quantize",
    "awq_scales",
    "RoundingScheme",
    "autoround_block",
    "autoround_quantize",
    "smoothquant_scales",
    "search_smoothing",
]
