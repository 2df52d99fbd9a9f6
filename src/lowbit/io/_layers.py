"""Which modules of a model are lowbit layers, and which of their buffers hold the quantized weight.

Used by :func:`lowbit.save` (a model's quantized weights are written as quantized tensors) and by
:func:`lowbit.model.load_quantized` (the layers are rebuilt from their recorded configuration).
torch is imported only by these functions.

Example:
    >>> import torch, lowbit.nn as lnn
    >>> net = torch.nn.Sequential(lnn.WeightOnlyLinear(8, 2, qtype="int4"), torch.nn.ReLU())
    >>> list(lowbit_layers(net)), sorted(layer_weight_keys(net[0]))
    (['0'], ['weight_data', 'weight_scale'])
"""

from __future__ import annotations

from typing import Any

from lowbit.errors import ModelError

__all__ = ["layer_classes", "lowbit_layers", "layer_weight_keys"]

_UNFINISHED = {"Observed": "run lowbit.model.calibrate and convert first",
               "QATLinear": "convert it with quantize_(model, QAT(..., step='convert')) first",
               "QATConv2d": "convert it with quantize_(model, QAT(..., step='convert')) first"}


def layer_classes() -> dict[str, type]:
    """The lowbit layer classes a checkpoint can hold, by class name.

    Example:
        >>> sorted(layer_classes())[:2]
        ['Int8Conv2d', 'Int8Linear']
    """
    from lowbit import nn as lnn

    classes = (lnn.WeightOnlyLinear, lnn.WeightOnlyConv2d, lnn.WeightOnlyEmbedding, lnn.Int8Linear, lnn.Int8Conv2d)
    return {cls.__name__: cls for cls in classes}


def lowbit_layers(model: Any) -> dict[str, Any]:
    """``{module name: layer}`` of every lowbit layer in ``model``.

    Raises:
        ModelError: a layer still being trained or observed (QAT before convert, Static before convert).
    """
    classes = tuple(layer_classes().values())
    unfinished = [f"{n or '(model)'} ({type(m).__name__}: {_UNFINISHED[type(m).__name__]})"
                  for n, m in model.named_modules() if type(m).__name__ in _UNFINISHED]
    if unfinished:
        raise ModelError("cannot save layers that are not quantized yet: " + "; ".join(unfinished))
    return {n: m for n, m in model.named_modules() if isinstance(m, classes)}


def layer_weight_keys(module: Any) -> list[str]:
    """State-dict keys (within the layer) of the buffers that hold its quantized weight."""
    from lowbit.nn import Int8Conv2d, Int8Linear

    if isinstance(module, (Int8Linear, Int8Conv2d)):
        return ["weight", "weight_scale"]
    return [k for k, v in module.named_buffers(recurse=False)
            if k.startswith("weight_") and k != "weight_shape" and v is not None]
