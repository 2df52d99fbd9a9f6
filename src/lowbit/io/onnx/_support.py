"""Which lowbit layers ONNX Runtime can run, and how each one is written (not public).

:func:`plan_layers` looks at every lowbit module of a model once, before anything is
traced or written, and returns one :class:`LayerPlan` per quantized layer, or raises
one :class:`~lowbit.errors.OptionError` that lists every layer it cannot export and
what is supported.  The plan says which ONNX form the layer gets:

* ``"matmulnbits"``: a weight-only Linear in a 4- or 8-bit integer format, groups of a
  multiple of 16 along the input (or per channel / per tensor): ``com.microsoft``
  ``MatMulNBits`` holding lowbit's own codes and scales.  Ragged groups (a size that does
  not divide the inputs) are padded: the row's last block is filled with its zero point's
  code, which dequantizes to 0, so the product is unchanged;
* ``"dq"``: a weight-only Conv2d (per channel or per tensor) or Embedding (also groups
  along the row, ragged ones included: ONNX's blocked ``DequantizeLinear`` has
  ``ceil(D / block_size)`` scales per row, the last block shorter): ``DequantizeLinear`` of
  the codes, then ``Conv`` / ``Gather``;
* ``"w8a8-static"``: QDQ (``QuantizeLinear``/``DequantizeLinear`` with lowbit's
  calibrated activation scale, int8 per-channel weights);
* ``"w8a8-dynamic"``: lowbit's dynamic int8 activation codes computed in the graph
  (``absmax / 127``, round half to even), an exact ``MatMulInteger`` and the scales.

Example:
    >>> SUPPORTED_QTYPES
    ('int4', 'int4_full', 'uint4', 'int8', 'int8_full', 'uint8')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lowbit.errors import OptionError
from lowbit.granularity import PerChannel, PerGroup, PerTensor, PerToken

__all__ = ["SUPPORTED_QTYPES", "LayerPlan", "plan_layers", "supported_text"]

#: weight formats ONNX Runtime runs from their codes (4-bit in MatMulNBits/INT4 tensors, 8-bit everywhere)
SUPPORTED_QTYPES = ("int4", "int4_full", "uint4", "int8", "int8_full", "uint8")
#: MatMulNBits needs a power-of-two block of at least 16 codes; lowbit's groups must be made of such blocks
NBITS_BLOCK = 16


@dataclass(frozen=True)
class LayerPlan:
    """How one lowbit layer is written: its module name, kind and ONNX form."""

    name: str
    module: Any
    kind: str  # "linear", "conv", "embedding"
    form: str  # "matmulnbits", "dq", "w8a8-static", "w8a8-dynamic"


def supported_text() -> str:
    """One paragraph listing what the ONNX export supports (used in error messages and the CLI help).

    Example:
        >>> "MatMulNBits" in supported_text()
        True
    """
    return (
        f"supported: weight-only {', '.join(SUPPORTED_QTYPES)} Linear (MatMulNBits; per channel, per tensor "
        f"or groups of a multiple of {NBITS_BLOCK} along the input), Conv2d (per channel or per tensor) and "
        "Embedding (per channel, per tensor or groups along the row), with any integer-valued scale format; "
        "W8A8 Int8Linear (static or dynamic, per tensor or per token) and Int8Conv2d (static or dynamic per "
        "tensor)"
    )


def _weight_problem(module: Any, kind: str) -> str | None:
    """Why a weight-only layer cannot be exported, or None."""
    qt, gran = module.qtype, module.granularity
    if qt.name not in SUPPORTED_QTYPES:
        return f"weight format {qt.name} ({qt.kind}, {qt.bits} bits) has no ONNX Runtime kernel"
    if getattr(module, "weight_zero_point", None) is not None and module.weight_zero_point.dtype.is_floating_point:
        return "float zero points have no ONNX form"
    if isinstance(gran, (PerTensor, PerChannel)):
        if isinstance(gran, PerChannel) and gran.axis not in (0, -len(module.weight_shape)):
            return f"granularity {gran} (only per output channel, axis 0)"
        return None
    if isinstance(gran, PerGroup) and gran.axis in (-1, len(module.weight_shape) - 1):
        if kind == "conv":
            return f"granularity {gran} on a convolution (use per channel)"
        if kind == "linear" and gran.size % NBITS_BLOCK:
            return f"group size {gran.size} (MatMulNBits needs a multiple of {NBITS_BLOCK})"
        return None
    return f"granularity {gran}"


def _int8_problem(module: Any, kind: str) -> str | None:
    """Why a W8A8 layer cannot be exported, or None."""
    if kind == "conv" and module.act_scale is None and isinstance(module.act_granularity, PerToken):
        return "per-token dynamic activations of a convolution (use act_granularity='tensor')"
    return None


def _classify(module: Any) -> tuple[str, str] | None:
    """(kind, form) of a lowbit layer, ("unsupported", why) for other lowbit modules, None for the rest."""
    from lowbit import nn as lnn

    if isinstance(module, lnn.WeightOnlyLinear):
        return "linear", "matmulnbits"
    if isinstance(module, lnn.WeightOnlyConv2d):
        return "conv", "dq"
    if isinstance(module, lnn.WeightOnlyEmbedding):
        return "embedding", "dq"
    if isinstance(module, (lnn.Int8Linear, lnn.Int8Conv2d)):
        kind = "linear" if isinstance(module, lnn.Int8Linear) else "conv"
        return kind, "w8a8-dynamic" if module.act_scale is None else "w8a8-static"
    if type(module).__module__.startswith("lowbit."):
        return "unsupported", f"{type(module).__name__} is not an inference layer (convert or remove it first)"
    return None


def plan_layers(model: Any) -> list[LayerPlan]:
    """One plan per lowbit quantized layer of ``model``; every problem raised at once.

    Raises:
        OptionError: a layer's format, granularity or kind has no ONNX Runtime form, or
            the model holds an unconverted lowbit module (observer, QAT layer); the
            message lists each layer and what is supported.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> net = torch.nn.Sequential(lnn.WeightOnlyLinear.from_float(torch.nn.Linear(32, 4), "int4"))
        >>> [(p.name, p.kind, p.form) for p in plan_layers(net)]
        [('0', 'linear', 'matmulnbits')]
    """
    plans, problems = [], []
    for name, module in model.named_modules():
        found = _classify(module)
        if found is None:
            continue
        kind, form = found
        if kind == "unsupported":
            problems.append(f"{name or '<model>'}: {form}")
            continue
        why = _int8_problem(module, kind) if form.startswith("w8a8") else _weight_problem(module, kind)
        if why is not None:
            problems.append(f"{name} ({type(module).__name__}): {why}")
            continue
        plans.append(LayerPlan(name, module, kind, form))
    if problems:
        raise OptionError(
            f"cannot export {len(problems)} layer(s) to ONNX: " + "; ".join(problems) + f". {supported_text()}; "
            "quantize those layers with a supported scheme or exclude them (quantize_(..., exclude=[...]))"
        )
    return plans
