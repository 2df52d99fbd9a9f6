"""Handlers of the built-in configs: how each layer is replaced (registered on import).

Each handler takes ``(module, name, config, statistic)`` and returns the new
module and the scheme label the summary shows.  ``statistic`` is what the
config's :class:`~lowbit.model.quantize.StatPlan` collected from calibration
batches for that layer (a Hessian for GPTQ, channel means and sampled rows for
AWQ, channel maxima for SmoothQuant), or None.

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
from lowbit.granularity import PerChannel, PerGroup, PerTensor
from lowbit.model.config import COLLECT_OPTIONS, DATA_ALGORITHMS, QAT, Dynamic, Static, WeightOnly
from lowbit.model.quantize import StatPlan, register_handler

__all__: list[str] = []


def _float_layers(embeddings: bool) -> tuple[type, ...]:
    import torch.nn as tnn

    return (tnn.Linear, tnn.Conv2d, tnn.Embedding) if embeddings else (tnn.Linear, tnn.Conv2d)


def _is_linear(module: Any) -> bool:
    import torch.nn as tnn

    return isinstance(module, tnn.Linear)


def _collect_options(cfg: WeightOnly) -> dict[str, Any]:
    """The calibration options of a data-driven algorithm: its defaults, updated by the config."""
    defaults = COLLECT_OPTIONS.get(cfg.algorithm, {})
    return {k: cfg.algorithm_options.get(k, v) for k, v in defaults.items()}


def _algorithm_options(cfg: WeightOnly) -> dict[str, Any]:
    """The options for the algorithm's function (without the calibration ones)."""
    return {k: v for k, v in cfg.algorithm_options.items() if k not in COLLECT_OPTIONS.get(cfg.algorithm, {})}


def _weight_only_plan(cfg: WeightOnly) -> StatPlan | None:
    """GPTQ needs each Linear's input Hessian, AWQ its channel means and a sample of rows."""
    from lowbit.algorithms import ActivationStatistics, HessianAccumulator

    opts = _collect_options(cfg)
    if cfg.algorithm == "gptq":
        return StatPlan(lambda name, m: HessianAccumulator(m.in_features), sequential=True, wants=_is_linear,
                        sink_weight=float(opts["sink_weight"]))
    if cfg.algorithm == "awq":
        rows = int(opts["max_rows"])
        return StatPlan(lambda name, m: ActivationStatistics(m.in_features, max_rows=rows), sequential=True,
                        wants=_is_linear, sink_weight=float(opts["sink_weight"]))
    return None


def _group_fallback(module: Any, cfg: WeightOnly) -> tuple[Any, str]:
    """The granularity a layer gets, and its summary label: a group size that does not divide the
    layer (or a conv, whose last weight axis is the kernel width) falls back to one scale per output
    channel (None for MX formats, whose blocks are fixed: the layer stays float), and the label says so."""
    gran = cfg.granularity
    if isinstance(gran, PerGroup) and module.weight.shape[gran.axis] % gran.size:
        length = module.weight.shape[gran.axis]
        if get_qtype(cfg.qtype).is_mx:
            return None, f"{cfg.scheme} -> kept float (blocks of {gran.size} do not divide {length})"
        return PerChannel(0), f"{cfg.scheme} -> channel (group {gran.size} does not divide {length})"
    return gran, cfg.scheme


def _stored(qt: Any, cfg: WeightOnly) -> Any:
    """An algorithm's QTensor (float32 scales) re-stored with the config's scale format, if any."""
    if cfg.scale_format is None or cfg.scale_format == qt.scale_format:
        return qt
    from lowbit.core import quantize

    return quantize(qt.dequantize(), qt.qtype, granularity=qt.granularity, symmetric=qt.symmetric, scale=qt.scale,
                    zero_point=qt.zero_point, scale_format=cfg.scale_format)


@register_handler(WeightOnly, lambda cfg: _float_layers(cfg.embeddings), _weight_only_plan)
def _weight_only(module: Any, name: str, cfg: WeightOnly, stat: Any) -> Any:
    import torch.nn as tnn

    from lowbit.nn import WeightOnlyConv2d, WeightOnlyEmbedding, WeightOnlyLinear

    classes: dict[type, Any] = {
        tnn.Linear: WeightOnlyLinear, tnn.Conv2d: WeightOnlyConv2d, tnn.Embedding: WeightOnlyEmbedding
    }
    cls = classes[type(module)]
    gran, scheme = _group_fallback(module, cfg)
    if gran is None:
        return module, scheme
    group_size = gran.size if isinstance(gran, PerGroup) else None
    if cfg.algorithm == "hqq" and not isinstance(module, tnn.Conv2d):
        return _hqq_layer(cls, module, cfg, group_size), scheme
    if cfg.algorithm in DATA_ALGORITHMS and stat is not None:
        layer = _gptq_layer if cfg.algorithm == "gptq" else _awq_layer
        return layer(module, cfg, group_size, stat), scheme
    if cfg.algorithm != "rtn":
        takes = "Linear and Embedding layers" if cfg.algorithm == "hqq" else "Linear layers that ran on the batches"
        scheme = f"{scheme} -> rtn ({cfg.algorithm} takes {takes})"
    new = cls.from_float(module, qtype=cfg.qtype, granularity=gran, symmetric=cfg.symmetric, method=cfg.method,
                         scale_format=cfg.scale_format, **cfg.method_options)
    return new, scheme


def _hqq_layer(cls: Any, module: Any, cfg: WeightOnly, group_size: int | None) -> Any:
    """A weight-only layer whose weight HQQ optimised (affine, per group or per output channel)."""
    from lowbit.algorithms import hqq_quantize

    qt = _stored(hqq_quantize(module.weight.detach().float(), cfg.qtype, group_size=group_size,
                              **cfg.algorithm_options), cfg)
    new = cls.from_float(module, qtype=cfg.qtype, granularity=qt.granularity, symmetric=False,
                         scale_format=qt.scale_format)
    new.load_qtensor(qt)
    return new


def _linear_from_qtensor(module: Any, qt: Any, smooth_scale: Any = None) -> Any:
    """A WeightOnlyLinear with ``module``'s bias holding the weight ``qt`` (and an input divisor)."""
    from lowbit.nn import WeightOnlyLinear

    new = WeightOnlyLinear(module.in_features, module.out_features, module.bias is not None, qtype=qt.qtype,
                           granularity=qt.granularity, symmetric=qt.symmetric, scale_format=qt.scale_format,
                           smooth=smooth_scale is not None)
    new.load_qtensor(qt)
    if smooth_scale is not None:
        new.set_smooth_scale(smooth_scale)
    if module.bias is not None and new.bias is not None:
        new.bias.data.copy_(module.bias.detach())
    return new


def _gptq_layer(module: Any, cfg: WeightOnly, group_size: int | None, hessian: Any) -> Any:
    """A WeightOnlyLinear holding the GPTQ weight computed from the layer's input Hessian."""
    from lowbit.algorithms import gptq_quantize

    qt = gptq_quantize(module.weight.detach().float(), hessian.hessian, cfg.qtype, group_size=group_size,
                       symmetric=cfg.symmetric, **_algorithm_options(cfg))
    return _linear_from_qtensor(module, _stored(qt, cfg))


def _awq_layer(module: Any, cfg: WeightOnly, group_size: int | None, stats: Any) -> Any:
    """A WeightOnlyLinear holding AWQ's column-scaled weight and, as its input divisor, the scales."""
    from lowbit.algorithms import awq_quantize

    qt, s = awq_quantize(module.weight.detach().float(), stats.sample_, cfg.qtype, group_size=group_size,
                         symmetric=cfg.symmetric, x_mean_abs=stats.mean_abs_, **_algorithm_options(cfg))
    return _linear_from_qtensor(module, _stored(qt, cfg), s)


_SMOOTH_ROWS = 512  # calibration rows per layer that score SmoothQuant's alpha (smoothquant="auto")


def _smooth_plan(cfg: Dynamic | Static) -> StatPlan | None:
    """SmoothQuant needs the per-channel max |x| of every Linear's input (one float pass), and for
    ``"auto"`` a sample of rows to score each alpha on."""
    from lowbit.algorithms import ActivationStatistics

    if cfg.smoothquant is None:
        return None
    rows = _SMOOTH_ROWS if cfg.smoothquant == "auto" else 0
    return StatPlan(lambda name, m: ActivationStatistics(m.in_features, max_rows=rows), sequential=False,
                    wants=_is_linear)


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
    activations = cfg.activations if isinstance(cfg, Dynamic) else "static"
    weights = "tensor" if isinstance(cfg.weight_granularity, PerTensor) else "channel"
    s, alpha = search_smoothing(weight, stat.sample_, stat.absmax_, activations=activations, weights=weights)
    return s, f"{cfg.scheme}: alpha {'none' if alpha is None else alpha}"


@register_handler(Dynamic, lambda cfg: _float_layers(False), _smooth_plan)
def _dynamic(module: Any, name: str, cfg: Dynamic, stat: Any) -> Any:
    from lowbit.nn import Int8Conv2d, Int8Linear

    s, scheme = _smooth_factors(module, cfg, stat)
    if not _is_linear(module):
        return Int8Conv2d.from_float(
            module, act_scale=None, act_granularity=cfg.activations, weight_granularity=cfg.weight_granularity
        ), scheme
    new = Int8Linear.from_float(
        module, act_scale=None, act_granularity=cfg.activations, weight_granularity=cfg.weight_granularity,
        smooth_scale=s,
    )
    return new, scheme


@register_handler(Static, lambda cfg: _float_layers(False), _smooth_plan)
def _static(module: Any, name: str, cfg: Static, stat: Any) -> Any:
    from lowbit.model.observed import Observed

    s, scheme = _smooth_factors(module, cfg, stat)
    return Observed(module, cfg, smooth_scale=s), f"{scheme} (observing; calibrate, then convert)"


def _qat_targets(cfg: QAT) -> tuple[type, ...]:
    if cfg.step == "prepare":
        return _float_layers(False)
    from lowbit.nn import QATConv2d, QATLinear

    return (QATLinear, QATConv2d)


@register_handler(QAT, _qat_targets)
def _qat(module: Any, name: str, cfg: QAT, stat: Any) -> Any:
    import torch.nn as tnn

    from lowbit.nn import QATConv2d, QATLinear

    if cfg.step == "convert":
        return module.to_quantized(), cfg.base.scheme
    cls = QATLinear if isinstance(module, tnn.Linear) else QATConv2d
    if isinstance(cfg.base, WeightOnly):
        return cls.from_float(module, weight_qtype=cfg.base.qtype, act_qtype=None), f"{cfg.scheme} (training)"
    return cls.from_float(module, weight_qtype="int8", act_qtype="int8"), f"{cfg.scheme} (training)"
