"""Quantize whole PyTorch models: configs, ``quantize_``, calibration, QAT and reports.

torch is imported by the parts that need it, never by ``import lowbit``.  The
built-in configs' handlers are registered when this package is imported.

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> print(lm.quantize_(net, lm.WeightOnly("int8")).bytes_after < 1300)
    True
"""

from lowbit._deprecation import renamed_attributes
from lowbit.model._calibrate import calibrate
from lowbit.model._load import load_quantized
from lowbit.model._quantize import Summary, SummaryRow, convert, quantize_
from lowbit.model._registry import get_handler, list_handlers, register_handler
from lowbit.model._train import train
from lowbit.model.config import QAT, Config, Dynamic, Static, StatPlan, WeightOnly
from lowbit.model.ladder import Rung, render_ladder, run_ladder
from lowbit.model.presets import PRESETS, Preset, list_presets, preset
from lowbit.model.reports import ErrorReport, LayerErrorRow, SizeReport, error_report, size_report

# isort: split
from lowbit.model import _handlers  # noqa: F401  (registers the built-in configs' handlers)

__all__ = [
    "Config",
    "StatPlan",
    "WeightOnly",
    "Dynamic",
    "Static",
    "QAT",
    "quantize_",
    "convert",
    "calibrate",
    "load_quantized",
    "register_handler",
    "get_handler",
    "list_handlers",
    "Summary",
    "SummaryRow",
    "size_report",
    "error_report",
    "SizeReport",
    "ErrorReport",
    "LayerErrorRow",
    "Rung",
    "run_ladder",
    "render_ladder",
    "train",
    "Preset",
    "PRESETS",
    "preset",
    "list_presets",
]

__getattr__ = renamed_attributes("lowbit.model", {"LayerError": ("lowbit.model.LayerErrorRow", lambda: LayerErrorRow)})
