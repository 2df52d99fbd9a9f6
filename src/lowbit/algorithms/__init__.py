"""Weight quantization algorithms: each one file, from a weight (and statistics) to a QTensor.

* :func:`gptq_quantize` (with :class:`HessianAccumulator`): second-order error feedback;
* :func:`hqq_quantize`: data-free half-quadratic optimisation of scale and zero point;
* :func:`awq_quantize` (with :class:`AWQStatistics`): activation-aware column scaling and clipping;
* :func:`smoothquant_scales` (with :class:`ChannelAbsMax`): activation outliers moved into the
  weights before W8A8 quantization.

Example:
    >>> import numpy as np
    >>> from lowbit.algorithms import hqq_quantize
    >>> hqq_quantize(np.ones((2, 64)), "uint4").shape
    (2, 64)
"""

from lowbit.algorithms.awq import AWQStatistics, awq_quantize, awq_scales
from lowbit.algorithms.gptq import HessianAccumulator, gptq_quantize
from lowbit.algorithms.hqq import hqq_quantize
from lowbit.algorithms.smoothquant import ChannelAbsMax, smoothquant_scales

__all__ = [
    "HessianAccumulator",
    "gptq_quantize",
    "hqq_quantize",
    "AWQStatistics",
    "awq_quantize",
    "awq_scales",
    "ChannelAbsMax",
    "smoothquant_scales",
]
