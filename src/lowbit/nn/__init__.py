"""PyTorch modules: weight-only and W8A8 quantized layers, QAT fake quantizers, observers.

This subpackage imports torch; ``import lowbit`` alone never does.

* :class:`WeightOnlyLinear`, :class:`WeightOnlyConv2d`, :class:`WeightOnlyEmbedding`:
  packed low-bit weights (any lowbit integer format and granularity), float compute;
* :class:`Int8Linear`, :class:`Int8Conv2d`: int8 weights and activations, int32 GEMM;
* :class:`FakeQuantize`, :class:`QATLinear`, :class:`QATConv2d`: quantization-aware
  training with learned (LSQ) scales, converted with ``to_quantized()``;
* :class:`Observer`: a module that calibrates a lowbit range estimator.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> layer = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(32, 8), "int4", granularity="group:16")
    >>> layer(torch.randn(2, 32)).shape
    torch.Size([2, 8])
"""

from lowbit.nn.embedding import WeightOnlyEmbedding
from lowbit.nn.fake_quant import FakeQuantize, lsq_fake_quantize, lsq_init_scale
from lowbit.nn.int8 import Int8Conv2d, Int8Linear, int8_matmul, quantize_activations
from lowbit.nn.observer import Observer
from lowbit.nn.qat import QATConv2d, QATLinear
from lowbit.nn.weight_only import WeightOnlyConv2d, WeightOnlyLinear

__all__ = [
    "WeightOnlyLinear",
    "WeightOnlyConv2d",
    "WeightOnlyEmbedding",
    "Int8Linear",
    "Int8Conv2d",
    "quantize_activations",
    "int8_matmul",
    "FakeQuantize",
    "lsq_fake_quantize",
    "lsq_init_scale",
    "QATLinear",
    "QATConv2d",
    "Observer",
]
