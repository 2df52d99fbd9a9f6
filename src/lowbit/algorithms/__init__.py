"""Weight quantization algorithms: each one file, from a weight (and statistics) to a QTensor.

Example:
    >>> import numpy as np
    >>> from lowbit.algorithms import hqq_quantize
    >>> hqq_quantize(np.ones((2, 64)), "uint4").shape
    (2, 64)
"""

from lowbit.algorithms.gptq import HessianAccumulator, gptq_quantize
from lowbit.algorithms.hqq import hqq_quantize

__all__ = ["HessianAccumulator", "gptq_quantize", "hqq_quantize"]
