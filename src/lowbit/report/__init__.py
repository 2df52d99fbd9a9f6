"""Reports: per-tensor and aggregate tables of quantization error.

Example:
    >>> from lowbit.report import aggregate
    >>> aggregate([])
    []
"""

from lowbit.report.compare import AggregateRow, aggregate, render_compare

__all__ = ["AggregateRow", "aggregate", "render_compare"]
