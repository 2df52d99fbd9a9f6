"""Handlers of the built-in configs: how each layer is replaced (registered on import of lowbit.model).

Each handler takes ``(module, name, config, statistic)`` and returns the new
module and the scheme label the summary shows.  ``statistic`` is what the
config's :class:`~lowbit.model.StatPlan` collected from calibration batches for
that layer (a Hessian for GPTQ, channel means and sampled rows for AWQ, channel
maxima for SmoothQuant), or None.

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8)).eval()
    >>> batches = [torch.randn(16, 8) for _ in range(2)]
    >>> lm.quantize_(net, lm.WeightOnly("int4", algorithm="gptq"), batches=batches, progress=False).rows[0].scheme
    'W4 int4 channel gptq'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowbit.formats import get_qtype
from lowbit.granularity import Granularity, PerChannel, PerGroup, as_granularity
from lowbit.model._registry import register_handler
from lowbit.model.config import COLLECT_OPTIONS, DATA_ALGORITHMS, QAT, Dynamic, Static, WeightOnly

__all__: list[str] = []


def _is_linear(module: Any) -> bool:
    import torch.nn as tnn

    return isinstance(module, tnn.Linear)


def _algorithm_options(cfg: WeightOnly) -> dict[str, Any]:
    """The options for the algorithm's function (without the calibration ones)."""
    return {k: v for k, v in cfg.algorithm_options.items() if k not in COLLECT_OPTIONS.get(cfg.algorithm, {})}


def _group_fallback(module: Any, cfg: WeightOnly) -> tuple[Granularity | None, str]:
    """The granularity a layer gets, and its summary label.  A group size that does not divide a
    Linear or Embedding layer gives a shorter last group (ragged groups).  MX formats, whose blocks are
    fixed, keep such a layer float; a conv, whose last weight axis is the kernel width, gets one scale
    per output channel; the label says so."""
    gran = as_granularity(cfg.granularity)  # already an object: WeightOnly normalises it
    if isinstance(gran, PerGroup) and module.weight.shape[gran.axis] % gran.size:
        length = module.weight.shape[gran.axis]
        if get_qtype(cfg.qtype).is_mx:
            return None, f"{cfg.scheme} -> kept float (blocks of {gran.size} do not divide {length})"
        if module.weight.dim() > 2:
            return PerChannel(0), f"{cfg.scheme} -> channel (group {gran.size} does not divide {length})"
    return gran, cfg.scheme


def _stored(qt: Any, cfg: WeightOnly) -> Any:
    """An algorithm's QTensor (float32 scales) re-stored with the config's scale format, if any."""
    if cfg.scale_format is None or cfg.scale_format == qt.scale_format:
        return qt
    from lowbit.core import quantize

    return quantize(qt.dequantize(), qt.qtype, granularity=qt.granularity, symmetric=qt.symmetric, scale=qt.scale,
                    zero_point=qt.zero_point, scale_format=cfg.scale_format)


@register_handler(WeightOnly)
def _weight_only(module: Any, name: str, cfg: WeightOnly, stat: Any) -> Any:
    new, scheme = _weight_only_layer(module, name, cfg, stat)
    if cfg.activations != "float" and hasattr(new, "activations"):  # WeightOnlyLinear's int8 activations
        new.activations = cfg.activations
    return new, scheme


def _weight_only_layer(module: Any, name: str, cfg: WeightOnly, stat: Any) -> Any:
    import torch.nn as tnn

    from lowbit.nn import WeightOnlyConv2d, WeightOnlyEmbedding, WeightOnlyLinear

    classes: dict[type, Any] = {
        tnn.Linear: WeightOnlyLinear, tnn.Conv2d: WeightOnlyConv2d, tnn.Embedding: WeightOnlyEmbedding
    }
    cls = classes[type(module)]
    gran, scheme = _group_fallback(module, cfg)
    if gran is None:
        return module, scheme
    if cfg.algorithm == "hqq" and not isinstance(module, tnn.Conv2d):
        return _record(_hqq_layer(cls, module, cfg, gran, stat), "hqq", cfg.algorithm_options), scheme
    if cfg.algorithm in DATA_ALGORITHMS and stat is not None:
        layer = {"gptq": _gptq_layer, "awq": _awq_layer, "autoround": _autoround_layer}[cfg.algorithm]
        return _record(layer(module, cfg, gran, stat), cfg.algorithm, cfg.algorithm_options), scheme
    if cfg.algorithm != "rtn":
        takes = "Linear and Embedding layers" if cfg.algorithm == "hqq" else "Linear layers that ran on the batches"
        scheme = f"{scheme} -> rtn ({cfg.algorithm} takes {takes})"
    new = cls.from_float(module, qtype=cfg.qtype, granularity=gran, symmetric=cfg.symmetric, method=cfg.method,
                         scale_format=cfg.scale_format, method_options=cfg.method_options, zero_point=cfg.zero_point)
    return _record(new, "rtn", {}), scheme


def _record(layer: Any, algorithm: str, options: dict[str, Any]) -> Any:
    """Note on the layer which algorithm chose its weight (written with it by lowbit.save)."""
    layer.algorithm = (algorithm, dict(options))
    return layer


def _hqq_layer(cls: Any, module: Any, cfg: WeightOnly, gran: Granularity, stat: Any) -> Any:
    """A weight-only layer whose weight HQQ optimised (affine, per group or per output channel), weighted by
    the layer's mean ``x_j^2`` where calibration fed it (``stat``)."""
    from lowbit.algorithms import hqq_quantize

    qt = hqq_quantize(module.weight.detach().float(), cfg.qtype, granularity=gran, zero_point=cfg.zero_point,
                      scale_format=cfg.scale_format, x_mean_sq=None if stat is None else stat.mean_sq_,
                      **_algorithm_options(cfg))
    new = cls.from_float(module, qtype=cfg.qtype, granularity=qt.granularity, symmetric=False,
                         scale_format=qt.scale_format, zero_point=cfg.zero_point)
    new.load_qtensor(qt)
    return new


def _linear_from_qtensor(module: Any, qt: Any, smooth_scale: Any = None) -> Any:
    """A WeightOnlyLinear with ``module``'s bias holding the weight ``qt`` (and an input divisor)."""
    from lowbit.nn import WeightOnlyLinear

    new = WeightOnlyLinear(module.in_features, module.out_features, module.bias is not None, qtype=qt.qtype,
                           granularity=qt.granularity, symmetric=qt.symmetric, scale_format=qt.scale_format,
                           smooth=smooth_scale is not None, zero_point="float" if qt.float_zero_point else "int")
    new.load_qtensor(qt)
    if smooth_scale is not None:
        new.set_smooth_scale(smooth_scale)
    if module.bias is not None and new.bias is not None:
        new.bias.data.copy_(module.bias.detach())
    return new


def _gptq_layer(module: Any, cfg: WeightOnly, gran: Granularity, hessian: Any) -> Any:
    """A WeightOnlyLinear holding the GPTQ weight computed from the layer's input Hessian."""
    from lowbit.algorithms import gptq_quantize

    qt = gptq_quantize(module.weight.detach().float(), hessian.hessian_, cfg.qtype, granularity=gran,
                       symmetric=cfg.symmetric, zero_point=cfg.zero_point, scale_format=cfg.scale_format,
                       **_algorithm_options(cfg))
    return _linear_from_qtensor(module, qt)


def _autoround_layer(module: Any, cfg: WeightOnly, gran: Granularity, stat: Any) -> Any:
    """A WeightOnlyLinear holding the weight AutoRound learned: in its block (``stat`` is then the QTensor
    :func:`lowbit.algorithms.autoround.block_step` made), or on its own from sampled input rows (a layer
    outside the blocks)."""
    from lowbit.algorithms import autoround_quantize
    from lowbit.qtensor import QTensor

    if isinstance(stat, QTensor):
        return _linear_from_qtensor(module, stat)
    qt = autoround_quantize(module.weight.detach().float(), stat.sample_, cfg.qtype, granularity=gran,
                            symmetric=cfg.symmetric, scale_format=cfg.scale_format, zero_point=cfg.zero_point,
                            **_algorithm_options(cfg))
    return _linear_from_qtensor(module, qt)


def _awq_layer(module: Any, cfg: WeightOnly, gran: Granularity, stats: Any) -> Any:
    """A WeightOnlyLinear holding AWQ's column-scaled weight and, as its input divisor, the scales."""
    from lowbit.algorithms import awq_quantize

    qt, s = awq_quantize(module.weight.detach().float(), stats.sample_, cfg.qtype, granularity=gran,
                         symmetric=cfg.symmetric, x_mean_abs=stats.mean_abs_, **_algorithm_options(cfg))
    return _linear_from_qtensor(module, _stored(qt, cfg), s)


def _smooth_factors(module: Any, cfg: Dynamic | Static, stat: Any) -> tuple[np.ndarray | None, str]:
    """SmoothQuant factors for a Linear that ran on the batches (else None, and a note)."""
    from lowbit.algorithms import search_smoothing, smoothquant_scales

    if cfg.smoothquant is None:
        return None, cfg.scheme
    if stat is None:
        return None, f"{cfg.scheme} -> not smoothed (SmoothQuant takes Linear layers that ran on the batches)"
    weight = module.weight.detach().float()
    if not isinstance(cfg.smoothquant, str):
        return smoothquant_scales(stat.absmax_, weight, cfg.smoothquant), cfg.scheme
    s, alpha = search_smoothing(weight, stat.sample_, stat.absmax_, act_granularity=cfg.act_granularity,
                                static=isinstance(cfg, Static), weight_granularity=cfg.weight_granularity)
    return s, f"{cfg.scheme}: alpha {'none' if alpha is None else alpha}"


@register_handler(Dynamic)
def _dynamic(module: Any, name: str, cfg: Dynamic, stat: Any) -> Any:
    from lowbit.nn import Int8Conv2d, Int8Linear

    s, scheme = _smooth_factors(module, cfg, stat)
    if not _is_linear(module):
        return Int8Conv2d.from_float(
            module, act_scale=None, act_granularity=cfg.act_granularity, weight_granularity=cfg.weight_granularity
        ), scheme
    new = Int8Linear.from_float(
        module, act_scale=None, act_granularity=cfg.act_granularity, weight_granularity=cfg.weight_granularity,
        smooth_scale=s,
    )
    return new, scheme


@register_handler(Static)
def _static(module: Any, name: str, cfg: Static, stat: Any) -> Any:
    from lowbit.model._observed import Observed

    s, scheme = _smooth_factors(module, cfg, stat)
    return Observed(module, cfg, smooth_scale=s), f"{scheme} (observing; calibrate, then convert)"


@register_handler(QAT)
def _qat(module: Any, name: str, cfg: QAT, stat: Any) -> Any:
    import torch.nn as tnn

    from lowbit.nn import QATConv2d, QATLinear

    if cfg.step == "convert":
        return module.to_quantized(), cfg.base.scheme
    cls = QATLinear if isinstance(module, tnn.Linear) else QATConv2d
    if isinstance(cfg.base, WeightOnly):
        return cls.from_float(module, weight_qtype=cfg.base.qtype, act_qtype=None), f"{cfg.scheme} (training)"
    return cls.from_float(module, weight_qtype="int8", act_qtype="int8"), f"{cfg.scheme} (training)"
