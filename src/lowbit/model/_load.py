"""``load_quantized(path, model)``: put a lowbit checkpoint's layers and weights into a float model skeleton.

The skeleton gives the architecture (for example a transformers model built from its config, even
on the ``meta`` device); the checkpoint gives every tensor. Each lowbit layer recorded in the
checkpoint (``modules`` of its metadata, written by :func:`lowbit.save`) is rebuilt from its
configuration; a quantized ``<name>.weight`` of a checkpoint made from a file (``lowbit quantize``)
becomes the weight-only layer for the skeleton's ``nn.Linear``, ``nn.Conv2d`` or ``nn.Embedding``
``<name>``. Each layer is filled with its quantized weight and its other tensors and swapped in place
of the skeleton's module; every other tensor is assigned to the skeleton's parameter or buffer of
that name.

Example:
    >>> import copy, tempfile, torch, lowbit, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> _ = lm.quantize_(net, lm.WeightOnly("int4", "group:32"), include=["0"])
    >>> path = tempfile.mkdtemp()
    >>> _ = lowbit.save(net, path)
    >>> with torch.device("meta"):
    ...     skeleton = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> back = lm.load_quantized(path, skeleton)
    >>> x = torch.randn(3, 64)
    >>> type(back[0]).__name__, torch.equal(back(x), net(x))
    ('WeightOnlyLinear', True)
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from lowbit.errors import ModelError, error_context

__all__ = ["load_quantized"]


def _tensor(ckpt: Any, entry: str) -> Any:
    """A torch tensor holding one plain entry exactly (bfloat16 from its bits)."""
    import torch

    raw = np.array(ckpt.array(entry))
    if ckpt.dtype(entry) == "BF16":
        return torch.from_numpy(raw.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(raw)


def _swap(model: Any, name: str, new: Any) -> None:
    """Put ``new`` at ``name``, after checking that the skeleton's module there holds a weight of that size."""
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        raise ModelError(f"the skeleton has no module {parent_name!r} to hold layer {name!r}") from None
    old = getattr(parent, child, None)
    if old is None:
        raise ModelError(f"the skeleton has no module {name!r}; build it with the checkpoint's architecture")
    weight = getattr(old, "weight", None)
    want = tuple(new.weight_qtensor().shape)
    if weight is not None and hasattr(weight, "shape") and not isinstance(old, type(new)) and (
            weight.shape[0] != want[0] or weight.numel() != math.prod(want)):
        raise ModelError(f"the skeleton's {name!r} ({type(old).__name__}) has a weight of shape {tuple(weight.shape)}, "
                         f"the checkpoint's layer {want}")
    setattr(parent, child, new)


def _inferred(model: Any, name: str, info: dict[str, Any]) -> dict[str, Any]:
    """The layer description of a quantized weight from a file: the skeleton's float module, made weight-only."""
    from torch import nn

    from lowbit.nn._conv import ConvSettings

    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ModelError(f"quantized tensor {name}.weight has no module {name!r} in the skeleton") from None
    fmt = {k: info[k] for k in ("qtype", "granularity", "symmetric", "scale_format")}
    if info.get("zero_point_kind") == "float":
        fmt["zero_point"] = "float"
    if isinstance(module, nn.Linear):
        return {"class": "WeightOnlyLinear", "config": {"in_features": module.in_features, "out_features":
                module.out_features, "bias": module.bias is not None, **fmt}}
    if isinstance(module, nn.Conv2d):
        return {"class": "WeightOnlyConv2d", "config": {**ConvSettings.kwargs_of(module, "WeightOnlyConv2d"), **fmt}}
    if isinstance(module, nn.Embedding):
        return {"class": "WeightOnlyEmbedding", "config": {
            "num_embeddings": module.num_embeddings, "embedding_dim": module.embedding_dim,
            "padding_idx": module.padding_idx, "max_norm": module.max_norm, "norm_type": module.norm_type,
            "scale_grad_by_freq": module.scale_grad_by_freq, "sparse": module.sparse, **fmt}}
    raise ModelError(f"quantized tensor {name}.weight belongs to a {type(module).__name__}; lowbit rebuilds "
                     "Linear, Conv2d and Embedding layers")


def _build_layer(ckpt: Any, name: str, info: dict[str, Any], plain: dict[str, Any]) -> Any:
    """The lowbit layer ``name``: rebuilt from its configuration, weight and other tensors loaded."""
    from lowbit.io._layers import layer_classes

    cls = layer_classes().get(str(info.get("class")))
    if cls is None:
        raise ModelError(f"layer {name!r} is a {info.get('class')!r}, which this lowbit cannot rebuild")
    prefix = f"{name}." if name else ""
    with error_context(f"layer {name!r} ({cls.__name__})"):
        layer = cls(**info["config"])
        qt = ckpt.qtensor(f"{prefix}weight")
        if tuple(qt.shape) != tuple(layer.weight_qtensor().shape):
            raise ModelError(f"the checkpoint's weight is {tuple(qt.shape)}, the skeleton's layer holds "
                             f"{tuple(layer.weight_qtensor().shape)}")
        layer.load_qtensor(qt)
    own = {k[len(prefix):]: plain.pop(k) for k in list(plain) if k.startswith(prefix) and "." not in k[len(prefix):]}
    missing, unexpected = layer.load_state_dict(own, strict=False)
    from lowbit.io._layers import layer_weight_keys

    missing = [k for k in missing if k not in layer_weight_keys(layer)]
    if missing or unexpected:
        raise ModelError(f"layer {name!r}: the checkpoint lacks {missing} / has unexpected {unexpected}")
    return layer


def _fill_non_persistent(model: Any, plain: dict[str, Any]) -> None:
    """Tensors saved for buffers the skeleton keeps out of its state dict (``position_ids``): set them there."""
    state = set(model.state_dict())
    for key in [k for k in plain if k not in state]:
        owner, _, leaf = key.rpartition(".")
        try:
            module = model.get_submodule(owner) if owner else model
        except AttributeError:
            continue
        if leaf in module._buffers and leaf in module._non_persistent_buffers_set:
            module.register_buffer(leaf, plain.pop(key), persistent=False)


def load_quantized(path: str | os.PathLike[str], model: Any) -> Any:
    """Fill a float model skeleton from a lowbit checkpoint, swapping in its lowbit layers; returns the model.

    Args:
        path: a checkpoint written by :func:`lowbit.save` or ``lowbit quantize`` (file or folder).
        model: a ``torch.nn.Module`` of the same architecture (parameters may be on ``meta``).

    Raises:
        FileFormatError: an unreadable checkpoint. ModelError: a layer or tensor of the checkpoint
            that the skeleton has no place for, or a skeleton tensor the checkpoint lacks (all named).

    Example:
        >>> import torch, tempfile, lowbit, lowbit.model as lm
        >>> net = torch.nn.Sequential(torch.nn.Linear(16, 4))
        >>> _ = lm.quantize_(net, lm.Dynamic())
        >>> p = tempfile.mkdtemp(); _ = lowbit.save(net, p)
        >>> type(lm.load_quantized(p, torch.nn.Sequential(torch.nn.Linear(16, 4)))[0]).__name__
        'Int8Linear'
    """
    from lowbit.io.checkpoint import open_checkpoint

    ckpt = open_checkpoint(path)
    plain = {n: _tensor(ckpt, n) for n in ckpt.plain_names()}
    plain.update({alias: plain[target] for alias, target in ckpt.aliases.items()})  # tied weights share one tensor
    layers = dict(ckpt.modules)
    for tensor in sorted(set(ckpt.tensors) - {f"{m}.weight" if m else "weight" for m in layers}):
        owner, _, leaf = tensor.rpartition(".")
        if leaf != "weight" or not owner:
            raise ModelError(f"quantized tensor {tensor!r} is no layer's weight; read it with lowbit.load instead")
        layers[owner] = _inferred(model, owner, ckpt.tensors[tensor])
    for name, info in layers.items():
        _swap(model, name, _build_layer(ckpt, name, info, plain))
    _fill_non_persistent(model, plain)
    missing, unexpected = model.load_state_dict(plain, strict=False, assign=True)
    from lowbit.io._layers import lowbit_layers

    lowbit_prefixes = tuple(f"{n}." for n in lowbit_layers(model))
    missing = [k for k in missing if not k.startswith(lowbit_prefixes)]
    if missing or unexpected:
        raise ModelError(f"the checkpoint and the model differ: missing {missing[:8]}, unexpected {unexpected[:8]}")
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise ModelError(
            f"the checkpoint holds no value for {still_meta[:8]}, still on the meta device: buffers a model computes "
            "in its constructor are not saved; build the skeleton with accelerate.init_empty_weights() (parameters "
            "on meta, buffers real) or on the CPU"
        )
    return model
