"""ONNX export of lowbit-quantized PyTorch models, for ONNX Runtime on the CPU.

:func:`export_onnx` writes weight-only layers as ``MatMulNBits`` (Linear) or
``DequantizeLinear`` + ``Conv``/``Gather`` with lowbit's own codes and scales, W8A8 layers
as QDQ (static) or exact in-graph int8 activation codes + ``MatMulInteger`` (dynamic).
Needs torch, onnx and onnxruntime (the ``onnx`` extra); importing this package imports none
of them.  On the command line: ``lowbit export onnx MODEL_DIR OUT.onnx --scheme w8a8-dynamic``.

Example:
    >>> from lowbit.io.onnx import ACCURACY_LEVELS, SUPPORTED_QTYPES
    >>> ACCURACY_LEVELS, "int4" in SUPPORTED_QTYPES
    ((0, 1, 2, 3, 4), True)
"""

from lowbit.io.onnx._support import SUPPORTED_QTYPES, supported_text
from lowbit.io.onnx.export import ACCURACY_LEVELS, DEFAULT_OPSET, ExportSummary, export_onnx

__all__ = ["export_onnx", "ExportSummary", "ACCURACY_LEVELS", "DEFAULT_OPSET", "SUPPORTED_QTYPES", "supported_text"]
