"""Peer quantizers for ``quality_peers.py``: HQQ, bitsandbytes, torchao and optimum-quanto on the CPU.

Each :class:`PeerMethod` quantizes one ``torch.nn.Linear`` through the peer's public API and
returns a :class:`PeerWeight`: the float32 weight the peer's own dequantization gives back,
and the bytes of the tensors the peer stores for it (codes, scales, zero points, quantization
maps, packed state), read from its packed tensors, never from a formula.  Biases stay float
and are not counted, for peers and lowbit alike.

How each peer runs on the CPU (installed with ``pip install -c constraints.txt '.[peers]'``):

* ``hqq``: ``HQQLinear(layer, BaseQuantizeConfig(nbits, group_size, axis), compute_dtype=float16,
  device="cpu")``; scales and zero points are stored in float16 (HQQ's documented storage;
  the weights themselves are optimized in float32); weights from ``HQQLinear.dequantize()``.
* ``bitsandbytes``: ``Linear4bit`` with ``Params4bit(quant_type, blocksize)`` moved to the CPU
  (its CPU backend quantizes there); weights from ``functional.dequantize_4bit``.  Stored:
  the packed codes plus every tensor of ``QuantState.as_dict(packed=True)`` (absmax, the
  16-entry code map, nested statistics, the packed state).  ``Linear8bitLt`` for int8.
* ``torchao``: ``quantize_(layer, IntxWeightOnlyConfig(...))`` (its CPU path; the codes are
  stored unpacked, one int8 per code, which :attr:`PeerWeight.packed_bytes` replaces by the
  code width).  ``Int4WeightOnlyConfig`` needs CUDA kernels in this version; its row shows why.
* ``optimum-quanto``: ``quantize(module, weights=qint4)`` then ``freeze``; quanto stores scales
  and shifts in the layer's dtype, so rows run it on a float16 copy of the layer (its usual
  setting) and on the float32 layer.

Example:
    >>> [m.label for m in PEER_METHODS][:2]
    ['hqq int8 g64', 'hqq int4 g64']
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PACKAGES = {"hqq": "hqq", "bitsandbytes": "bitsandbytes", "torchao": "torchao", "quanto": "optimum-quanto"}
"""Peer name -> distribution name (for versions and install hints)."""
MODULES = {"hqq": "hqq", "bitsandbytes": "bitsandbytes", "torchao": "torchao", "quanto": "optimum.quanto"}
"""Peer name -> the module its methods import."""


@dataclass(frozen=True)
class PeerWeight:
    """One quantized layer as a peer stores it."""

    weight: Any  # float32 (out, in) tensor from the peer's own dequantization
    stored_bytes: int  # bytes of the tensors the peer keeps for this weight
    packed_bytes: int  # the same with codes counted at their bit width (differs only for unpacked codes)


@dataclass(frozen=True)
class PeerMethod:
    """A peer's configuration: ``quantize(linear) -> PeerWeight`` (a float32 ``nn.Linear``, left unchanged)."""

    label: str
    peer: str  # key of PACKAGES
    bits: int  # code width: 8, 4, 3 or 2
    quantize: Callable[[Any], PeerWeight]
    extra: bool = False  # slow on the CPU and never a budget's best: only with --all-peer-rows or --peer-match


def versions() -> dict[str, str]:
    """Installed versions of the peers (``"not installed"`` where missing)."""
    out = {}
    for dist in PACKAGES.values():
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def tensor_bytes(t: Any) -> int:
    """Bytes of a tensor, recursing into tensor subclasses (torchao, quanto) through ``__tensor_flatten__``."""
    if hasattr(t, "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def _linear_copy(linear: Any, dtype: Any = None) -> Any:
    """A detached copy of ``linear`` (weight only: biases stay float outside the peers)."""
    import torch

    out = torch.nn.Linear(linear.in_features, linear.out_features, bias=False)
    out.weight = torch.nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
    return out if dtype is None else out.to(dtype)


def _plain(weight: Any, stored: int) -> PeerWeight:
    return PeerWeight(weight.detach().float().contiguous(), stored, stored)


# --------------------------------------------------------------------------- hqq


def _hqq(nbits: int, group: int, axis: int) -> Callable[[Any], PeerWeight]:
    def run(linear: Any) -> PeerWeight:
        import torch
        from hqq.core.quantize import BaseQuantizeConfig, HQQLinear

        layer = HQQLinear(_linear_copy(linear), BaseQuantizeConfig(nbits=nbits, group_size=group, axis=axis),
                          compute_dtype=torch.float16, device="cpu")
        state = layer.state_dict()
        stored = sum(tensor_bytes(state[k]) for k in ("W_q", "scale", "zero", "zero_q", "scale_q") if k in state)
        return _plain(layer.dequantize(), stored)

    return run


# --------------------------------------------------------------------------- bitsandbytes


def _bnb4(quant_type: str, blocksize: int, double_quant: bool) -> Callable[[Any], PeerWeight]:
    def run(linear: Any) -> PeerWeight:
        import bitsandbytes as bnb
        import torch
        from bitsandbytes.functional import dequantize_4bit

        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=False, compute_dtype=torch.float32,
                                  quant_type=quant_type, compress_statistics=double_quant)
        layer.weight = bnb.nn.Params4bit(linear.weight.detach().clone(), requires_grad=False, quant_type=quant_type,
                                         blocksize=blocksize, compress_statistics=double_quant)
        layer = layer.to("cpu")
        state = layer.weight.quant_state
        if state is None:
            raise RuntimeError("Params4bit was not quantized on the CPU")
        extra = [v for v in state.as_dict(packed=True).values() if isinstance(v, torch.Tensor)]
        stored = tensor_bytes(layer.weight.data) + sum(tensor_bytes(v) for v in extra)
        return _plain(dequantize_4bit(layer.weight.data, state), stored)

    return run


def _bnb8(linear: Any) -> PeerWeight:
    import bitsandbytes as bnb
    from bitsandbytes.functional import int8_vectorwise_dequant

    layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=False, has_fp16_weights=False)
    layer.load_state_dict({"weight": linear.weight.detach().clone()}, strict=False)
    layer = layer.to("cpu")
    codes, row_scales = layer.weight.data, layer.weight.SCB
    if row_scales is None:
        raise RuntimeError("Int8Params was not quantized on the CPU")
    return _plain(int8_vectorwise_dequant(codes, row_scales), tensor_bytes(codes) + tensor_bytes(row_scales))


# --------------------------------------------------------------------------- torchao


def _torchao_intx(bits: int, group: int | None, symmetric: bool) -> Callable[[Any], PeerWeight]:
    def run(linear: Any) -> PeerWeight:
        import torch
        from torchao.quantization import IntxWeightOnlyConfig, MappingType, PerAxis, PerGroup, quantize_

        layer = _linear_copy(linear)
        quantize_(layer, IntxWeightOnlyConfig(
            weight_dtype=getattr(torch, f"int{bits}"), granularity=PerAxis(0) if group is None else PerGroup(group),
            mapping_type=MappingType.SYMMETRIC if symmetric else MappingType.ASYMMETRIC, scale_dtype=torch.float16))
        w = layer.weight
        stored = tensor_bytes(w)
        codes = w.qdata  # IntxUnpackedToInt8Tensor: one int8 per code on the CPU
        packed = stored - tensor_bytes(codes) + -(-codes.numel() * bits // 8)
        return PeerWeight(w.dequantize().float().contiguous(), stored, packed)

    return run


def _torchao_int4(group: int, packing: str) -> Callable[[Any], PeerWeight]:
    def run(linear: Any) -> PeerWeight:
        import torch
        from torchao.quantization import Int4WeightOnlyConfig, quantize_

        layer = _linear_copy(linear, torch.bfloat16)
        quantize_(layer, Int4WeightOnlyConfig(group_size=group, int4_packing_format=packing))
        return _plain(layer.weight.dequantize(), tensor_bytes(layer.weight))

    return run


def _torchao_int8(linear: Any) -> PeerWeight:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = _linear_copy(linear)
    quantize_(layer, Int8WeightOnlyConfig())
    return _plain(layer.weight.dequantize(), tensor_bytes(layer.weight))


# --------------------------------------------------------------------------- optimum-quanto


def _quanto(qtype: str, dtype_name: str) -> Callable[[Any], PeerWeight]:
    def run(linear: Any) -> PeerWeight:
        import torch
        from optimum import quanto

        holder = torch.nn.Sequential(_linear_copy(linear, getattr(torch, dtype_name)))
        quanto.quantize(holder, weights=getattr(quanto, qtype))
        quanto.freeze(holder)
        w = holder[0].weight
        return _plain(w.dequantize(), tensor_bytes(w))

    return run


PEER_METHODS: list[PeerMethod] = [
    # ~8 bits
    PeerMethod("hqq int8 g64", "hqq", 8, _hqq(8, 64, 1), extra=True),
    # <= 4.5 bits
    PeerMethod("hqq int4 g64", "hqq", 4, _hqq(4, 64, 1)),
    PeerMethod("hqq int4 g64 axis0", "hqq", 4, _hqq(4, 64, 0)),
    # <= 3.5 bits (HQQ packs ten 3-bit codes per int32: 3.2 bits per code)
    PeerMethod("hqq int3 g64", "hqq", 3, _hqq(3, 64, 1)),
    PeerMethod("hqq int3 g64 axis0", "hqq", 3, _hqq(3, 64, 0)),
    # 2 bits
    PeerMethod("hqq int2 g16", "hqq", 2, _hqq(2, 16, 1)),
    PeerMethod("hqq int2 g16 axis0", "hqq", 2, _hqq(2, 16, 0)),
    PeerMethod("hqq int2 g64", "hqq", 2, _hqq(2, 64, 1), extra=True),
    PeerMethod("bnb int8 (LLM.int8 rows)", "bitsandbytes", 8, _bnb8),
    PeerMethod("bnb nf4 b64", "bitsandbytes", 4, _bnb4("nf4", 64, False)),
    PeerMethod("bnb nf4 b64 double-quant", "bitsandbytes", 4, _bnb4("nf4", 64, True)),
    PeerMethod("bnb fp4 b64", "bitsandbytes", 4, _bnb4("fp4", 64, False)),
    PeerMethod("torchao int8 channel", "torchao", 8, _torchao_int8),
    PeerMethod("torchao Int4WeightOnly g64 (plain)", "torchao", 4, _torchao_int4(64, "plain")),
    PeerMethod("torchao Int4WeightOnly g64 (tinygemm)", "torchao", 4, _torchao_int4(64, "tile_packed_to_4d")),
    PeerMethod("torchao intx int4 g64 sym", "torchao", 4, _torchao_intx(4, 64, True)),
    PeerMethod("torchao intx int4 g64 asym", "torchao", 4, _torchao_intx(4, 64, False)),
    PeerMethod("torchao intx int3 g64 asym", "torchao", 3, _torchao_intx(3, 64, False)),
    PeerMethod("torchao intx int2 g16 asym", "torchao", 2, _torchao_intx(2, 16, False)),
    PeerMethod("quanto qint8", "quanto", 8, _quanto("qint8", "float32")),
    PeerMethod("quanto qint4 (fp16 model)", "quanto", 4, _quanto("qint4", "float16")),
    PeerMethod("quanto qint4 (fp32 model)", "quanto", 4, _quanto("qint4", "float32")),
    PeerMethod("quanto qint2 (fp16 model)", "quanto", 2, _quanto("qint2", "float16")),
]
"""The peer rows, in table order."""


def peer_methods(peers: list[str] | None = None, match: list[str] | None = None,
                 extra: bool = False) -> list[PeerMethod]:
    """The methods of the chosen peers (all by default) whose label is one of ``match`` or, for a ``match``
    item that is no label, contains it (without ``match``, the ``extra`` rows only when ``extra`` is true)."""
    chosen = [m for m in PEER_METHODS if peers is None or m.peer in peers]
    if match:
        labels = {m.label for m in PEER_METHODS}
        return [m for m in chosen if any(s == m.label or (s not in labels and s in m.label) for s in match)]
    return [m for m in chosen if extra or not m.extra]


def missing(peer: str) -> str | None:
    """None when the peer's package imports, else a one-line reason."""
    import importlib

    try:
        importlib.import_module(MODULES[peer])
    except Exception as err:  # ImportError, or a package that fails while importing
        return f"{PACKAGES[peer]} does not import ({type(err).__name__}: {str(err).splitlines()[0][:100]}); " \
               f"pip install -c constraints.txt '.[peers]'"
    return None

