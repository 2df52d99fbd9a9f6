"""Quantize whole PyTorch models: configs, ``quantize_``, calibration, QAT and reports.

torch is imported by the parts that need it, never by ``import lowbit``.

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> print(lm.quantize_(net, lm.WeightOnly("int8")).bytes_after < 1300)
    True
"""

from lowbit.model.calibrate import calibrate
from lowbit.model.config import QAT, Config, Dynamic, Static, WeightOnly
from lowbit.model.ladder import Rung, render_ladder, run_ladder
from lowbit.model.quantize import Summary, SummaryRow, convert, quantize_, register_handler
from lowbit.model.reports import ErrorReport, LayerError, SizeReport, error_report, size_report
from lowbit.model.train import train

__all__ = [
    "WeightOnly",
    "Dynamic",
    "Static",
    "QAT",
    "Config",
    "quantize_",
    "convert",
    "calibrate",
    "register_handler",
    "Summary",
    "SummaryRow",
    "size_report",
    "error_report",
    "SizeReport",
    "ErrorReport",
    "LayerError",
    "Rung",
    "run_ladder",
    "render_ladder",
    "train",
]
