"""GGUF files (llama.cpp): export a llama-architecture model with lowbit's codes, and read GGUF tensors back.

* :func:`export_gguf`: a float or lowbit-quantized ``LlamaForCausalLM`` (or its folder) as a GGUF file;
  float matrices are quantized by llama.cpp's reference rules (bytes identical to gguf-py and llama.cpp),
  lowbit's codes are kept where a block type holds them exactly.
* :func:`read_gguf`: the tensors of a GGUF file as QTensors (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K) or
  float arrays, dequantizing bit for bit as gguf-py does; ``lowbit.load("x.gguf")`` calls it.

Needs the ``gguf`` package (``pip install lowbit[gguf]``).

Example:
    >>> from lowbit.io.gguf import GGUF_TYPES
    >>> GGUF_TYPES[:3]
    ('q8_0', 'q4_0', 'q4_1')
"""

from lowbit.io.gguf._types import GGUF_TYPES
from lowbit.io.gguf.reader import read_gguf
from lowbit.io.gguf.writer import ExportSummary, export_gguf

__all__ = ["GGUF_TYPES", "export_gguf", "read_gguf", "ExportSummary"]
