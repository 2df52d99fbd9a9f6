"""Trace a lowbit model to an ONNX graph with float stand-ins for its quantized layers (not public).

Each quantized layer is replaced, in a deep copy of the model, by a plain ``nn.Linear``,
``nn.Conv2d`` or ``nn.Embedding`` holding exactly its dequantized weight (and its bias; a
smoothing divisor becomes a division in front).  torch's TorchScript exporter
(``dynamo=False``: it needs no ``onnxscript`` and runs offline) writes that float graph;
:mod:`lowbit.io.onnx._rewrite` then finds each stand-in's weight by value and puts the
quantized form in its place.  The caller's model is not touched (not even its train/eval mode).

Example:
    >>> import torch, lowbit.nn as lnn
    >>> q = lnn.WeightOnlyLinear.from_float(torch.nn.Linear(32, 4), "int4")
    >>> type(float_stand_in(q)).__name__
    'Linear'
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lowbit.errors import InputTypeError, ModelError
from lowbit.io.onnx._support import LayerPlan

__all__ = ["TracedGraph", "float_stand_in", "dequantized_weight", "trace"]


class _Smoothed(nn.Module):
    """``inner(x / smooth_scale)``: the float form of a layer with an AWQ/SmoothQuant divisor."""

    smooth_scale: torch.Tensor

    def __init__(self, inner: nn.Module, smooth: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("smooth_scale", smooth.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x / self.smooth_scale)


def dequantized_weight(module: Any) -> np.ndarray:
    """The float32 weight a quantized layer computes with, in ``nn.Linear``/``Conv2d``/``Embedding`` shape.

    Example:
        >>> import torch, lowbit.nn as lnn
        >>> dequantized_weight(lnn.Int8Conv2d.from_float(torch.nn.Conv2d(2, 4, 3))).shape
        (4, 2, 3, 3)
    """
    qt = module.weight_qtensor()
    w = np.asarray(qt.dequantize(), np.float32)
    shape = module.conv.weight_shape if hasattr(module, "conv") else tuple(qt.shape)
    return np.ascontiguousarray(w.reshape(shape))


def float_stand_in(module: Any) -> nn.Module:
    """A float torch layer with exactly the quantized layer's dequantized weight and its bias."""
    weight = torch.from_numpy(dequantized_weight(module))
    bias = getattr(module, "bias", None)
    if hasattr(module, "conv"):
        c = module.conv
        layer: nn.Module = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                                     c.dilation, c.groups, bias is not None)
    elif hasattr(module, "num_embeddings"):
        layer = nn.Embedding(module.num_embeddings, module.embedding_dim, module.padding_idx)
    else:
        layer = nn.Linear(module.in_features, module.out_features, bias is not None)
    with torch.no_grad():
        layer.get_parameter("weight").copy_(weight)
        if bias is not None:
            layer.get_parameter("bias").copy_(bias.detach().float())
    smooth = getattr(module, "smooth_scale", None)
    return layer if smooth is None else _Smoothed(layer, smooth)


def _swap(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if not name:
        return new
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


class _Flat(nn.Module):
    """Positional tensors in, a tuple of tensors out: what the TorchScript exporter traces."""

    def __init__(self, model: nn.Module, keywords: Sequence[str] | None, keys: Sequence[Any]) -> None:
        super().__init__()
        self.model, self.keywords, self.keys = model, keywords, list(keys)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.keywords, xs, strict=True))) if self.keywords else self.model(*xs)
        return tuple(_select(out, self.keys))


def _select(out: Any, keys: Sequence[Any]) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [out[k] for k in keys]


def _output_names(out: Any) -> tuple[list[Any], list[str]]:
    """(keys to pick, names) of a model's tensor outputs: a tensor, a tuple/list, or a dict-like (HF ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [None], ["output"]
    if isinstance(out, Mapping):
        keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        return keys, [str(k) for k in keys]
    if isinstance(out, (tuple, list)):
        keys = [i for i, v in enumerate(out) if isinstance(v, torch.Tensor)]
        return keys, [f"output_{i}" for i in keys]
    raise ModelError(f"the model returned {type(out).__name__}; ONNX export needs a tensor, a tuple or a dict of them")


@dataclass(frozen=True)
class TracedGraph:
    """The float graph and what the rewrite needs: input/output names and the torch outputs of the example."""

    proto: Any  # onnx.ModelProto
    input_names: list[str]
    output_names: list[str]
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]


def _as_inputs(example_inputs: Any) -> tuple[list[str] | None, list[torch.Tensor], list[str]]:
    """(keywords or None, tensors, ONNX input names) of a tensor, tuple/list or dict of example inputs."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(example_inputs, Mapping):
        items = [(str(k), v) for k, v in example_inputs.items() if v is not None]
        keywords: list[str] | None = [k for k, _ in items]
        tensors = [v for _, v in items]
        names = list(keywords or [])
    elif isinstance(example_inputs, (tuple, list)):
        keywords, tensors = None, list(example_inputs)
        names = ["input"] if len(tensors) == 1 else [f"input_{i}" for i in range(len(tensors))]
    else:
        raise InputTypeError(f"example_inputs must be a tensor, a tuple or a dict of tensors, got "
                             f"{type(example_inputs).__name__}")
    bad = [n for n, t in zip(names, tensors, strict=True) if not isinstance(t, torch.Tensor)]
    if bad or not tensors:
        raise InputTypeError(f"example_inputs must hold CPU tensors; not tensors: {bad or 'none given'}")
    return keywords, tensors, names


def default_dynamic_axes(names: Sequence[str], tensors: Sequence[torch.Tensor], out_names: Sequence[str],
                         outputs: Sequence[torch.Tensor]) -> dict[str, dict[int, str]]:
    """Axis 0 of every input and output is ``batch``; axis 1 of a 2-d integer input (token ids, masks) is
    ``sequence``, and so is axis 1 of an output of that length.

    Example:
        >>> ids = torch.zeros(2, 7, dtype=torch.long)
        >>> default_dynamic_axes(["input_ids"], [ids], ["last_hidden_state"], [torch.zeros(2, 7, 8)])
        {'input_ids': {0: 'batch', 1: 'sequence'}, 'last_hidden_state': {0: 'batch', 1: 'sequence'}}
    """
    axes: dict[str, dict[int, str]] = {}
    seq = None
    for n, t in zip(names, tensors, strict=True):
        axes[n] = {0: "batch"} if t.dim() else {}
        if t.dim() == 2 and not t.is_floating_point():
            axes[n][1] = "sequence"
            seq = t.shape[1]
    for n, t in zip(out_names, outputs, strict=True):
        axes[n] = {0: "batch"} if t.dim() else {}
        if seq is not None and t.dim() >= 2 and t.shape[1] == seq:
            axes[n][1] = "sequence"
    return axes


def trace(model: nn.Module, plans: Sequence[LayerPlan], example_inputs: Any, *, opset: int,
          dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
          output_names: Sequence[str] | None = None) -> TracedGraph:
    """Export the float stand-in of ``model`` with torch's TorchScript exporter; the example's outputs come along.

    Raises:
        InputTypeError: ``example_inputs`` is not a tensor, tuple or dict of tensors.
        ModelError: the model's outputs are not tensors, or the exporter failed (its message is kept).
    """
    import onnx

    keywords, tensors, names = _as_inputs(example_inputs)
    twin = copy.deepcopy(model).eval()
    for p in plans:
        twin = _swap(twin, p.name, float_stand_in(p.module))
    with torch.no_grad():
        out = twin(**dict(zip(keywords, tensors, strict=True))) if keywords else twin(*tensors)
    keys, default_out = _output_names(out)
    out_names = list(output_names) if output_names is not None else default_out
    if len(out_names) != len(keys):
        raise ModelError(f"output_names has {len(out_names)} names, the model returns {len(keys)} tensors")
    flat = _Flat(twin, keywords, keys).eval()
    outputs = [t.detach() for t in _select(out, keys)]
    axes = dict(dynamic_axes) if dynamic_axes is not None else default_dynamic_axes(names, tensors, out_names,
                                                                                    outputs)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(flat, tuple(tensors), buffer,  # type: ignore[arg-type]  # a file object works
                              dynamo=False, opset_version=opset, input_names=names, output_names=out_names,
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as err:  # the exporter raises many types; keep its message
        raise ModelError(f"torch.onnx.export could not trace the model: {type(err).__name__}: {err}") from err
    proto = onnx.load_from_string(buffer.getvalue())
    return TracedGraph(proto, names, out_names, [t.numpy() for t in tensors], [o.float().numpy() for o in outputs])
