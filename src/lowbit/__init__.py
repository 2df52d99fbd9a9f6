"""lowbit: quantize tensors and models to low-bit numbers on the CPU, and see what was lost.

Example:
    >>> import numpy as np, lowbit
    >>> x = np.linspace(-1, 1, 256, dtype=np.float32)
    >>> qt = lowbit.quantize(x, "int4", granularity=lowbit.PerGroup(64))
    >>> round(lowbit.metrics.sqnr_db(x, qt.dequantize()), 1) > 20
    True
"""

from lowbit import metrics
from lowbit.core import dequantize, fake_quantize, quantize
from lowbit.errors import (
    EmptyInputError,
    FileFormatError,
    GranularityError,
    InputTypeError,
    LowbitError,
    ModelError,
    NonFiniteError,
    NotCalibratedError,
    OptionError,
    QTypeError,
)
from lowbit.formats import QType, get_qtype, int_qtype, list_qtypes
from lowbit.granularity import Granularity, PerChannel, PerGroup, PerTensor, PerToken, as_granularity
from lowbit.metrics import Scheme, compare
from lowbit.qparams import choose_qparams
from lowbit.qtensor import QTensor

__version__ = "0.2.0"

_LAZY_SUBMODULES = ("calibration", "algorithms", "io", "report", "nn", "model", "zoo")
_LAZY_FUNCTIONS = {"save": "lowbit.io.checkpoint", "load": "lowbit.io.checkpoint"}


def __getattr__(name: str):
    """Import heavier submodules on first use (``lowbit.calibration.MSE`` works after ``import lowbit``);
    ``lowbit.save`` and ``lowbit.load`` are :func:`lowbit.io.save` and :func:`lowbit.io.load`."""
    import importlib

    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"lowbit.{name}")
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(_LAZY_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'lowbit' has no attribute {name!r}")


__all__ = [
    "__version__",
    "quantize",
    "dequantize",
    "fake_quantize",
    "choose_qparams",
    "QTensor",
    "QType",
    "get_qtype",
    "int_qtype",
    "list_qtypes",
    "Granularity",
    "PerTensor",
    "PerChannel",
    "PerGroup",
    "PerToken",
    "as_granularity",
    "metrics",
    "compare",
    "Scheme",
    "save",
    "load",
    "LowbitError",
    "QTypeError",
    "GranularityError",
    "NonFiniteError",
    "EmptyInputError",
    "InputTypeError",
    "FileFormatError",
    "NotCalibratedError",
    "OptionError",
    "ModelError",
]
