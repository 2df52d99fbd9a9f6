"""Reports: per-tensor and aggregate tables of quantization error, and the HTML report with plots.

``lowbit.report.html(source, "report.html", schemes)`` writes one self-contained page (and its PNGs
beside it) for a tensor file, a lowbit checkpoint or a model; matplotlib (the ``report`` extra) is
imported only when a figure is drawn.

Example:
    >>> from lowbit.report import aggregate
    >>> aggregate([])
    []
"""

from lowbit.report.compare import AggregateRow, aggregate, render_compare
from lowbit.report.data import ModelResult, ReportData, checkpoint_data, tensor_file_data
from lowbit.report.models import Evaluator, model_data
from lowbit.report.page import html, report_data
from lowbit.report.summary import short_summary

__all__ = [
    "AggregateRow",
    "aggregate",
    "render_compare",
    "html",
    "report_data",
    "ReportData",
    "ModelResult",
    "Evaluator",
    "tensor_file_data",
    "checkpoint_data",
    "model_data",
    "short_summary",
]
