"""``calibrate(model, batches)``: feed data through a prepared model so its observers learn ranges.

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
    >>> _ = lm.quantize_(net, lm.Static(method="percentile", method_options={"percentile": 99.9}))
    >>> lm.calibrate(net, [torch.randn(16, 8) for _ in range(3)], progress=False)
    3
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sized
from typing import Any

from lowbit.errors import InputTypeError, ModelError

__all__ = ["calibrate"]


def run_batch(model: Any, batch: Any) -> Any:
    """Call ``model`` on one batch: a tensor, a tuple/list of positional inputs, or a dict of keyword inputs.

    Example:
        >>> import torch
        >>> run_batch(torch.nn.Identity(), (torch.ones(1),)).tolist()
        [1.0]
    """
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def one_batch_as_list(batches: Any) -> Any:
    """``[batches]`` when ``batches`` is one batch (a tensor or a dict of keyword tensors), else ``batches``:
    a lone tensor must not be iterated row by row, nor a dict key by key.

    Example:
        >>> import torch
        >>> len(one_batch_as_list(torch.ones(4, 3))), len(one_batch_as_list([torch.ones(4, 3)]))
        (1, 1)
    """
    import torch

    return [batches] if isinstance(batches, (dict, torch.Tensor)) else batches


def check_model(model: Any, where: str) -> None:
    """InputTypeError unless ``model`` is a ``torch.nn.Module``.

    Example:
        >>> check_model(None, "calibrate")
        Traceback (most recent call last):
        ...
        lowbit.errors.InputTypeError: calibrate expects a torch.nn.Module as model, got NoneType
    """
    import torch.nn as tnn

    if not isinstance(model, tnn.Module):
        raise InputTypeError(f"{where} expects a torch.nn.Module as model, got {type(model).__name__}")


class Progress:
    """A one-line progress meter on stderr (no dependency): ``calibrating: 3/10 batches (2.1/s)``."""

    def __init__(self, total: int | None, enabled: bool, what: str = "calibrating", unit: str = "batches") -> None:
        self.total, self.enabled, self.start = total, enabled, time.perf_counter()
        self.what, self.unit = what, unit

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        of = f"/{self.total}" if self.total else ""
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        sys.stderr.write(f"\r{self.what}: {done}{of} {self.unit} ({rate:.1f}/s)")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def calibrate(model: Any, batches: Iterable[Any], progress: bool | None = None) -> int:
    """Run ``model`` (in eval mode, without gradients) over ``batches`` to feed its observers.

    Args:
        model: a model prepared with ``quantize_(model, Static(...))``.
        batches: inputs, each a tensor, a tuple of tensors or a dict of keyword tensors (a
            single tensor or dict is one batch).
        progress: show a progress meter on stderr (default: when stderr is a terminal).

    Returns:
        The number of batches run.

    Raises:
        InputTypeError: ``model`` is not a ``torch.nn.Module``.
        ModelError: the model has no observer (calibrate before prepare), is in
            training mode (call ``model.eval()``), or no batch was given.
    """
    import torch

    from lowbit.model._observed import Observed

    check_model(model, "calibrate")
    if not any(isinstance(m, Observed) for m in model.modules()):
        raise ModelError(
            "calibrate before prepare: the model has no observers; run "
            "lowbit.model.quantize_(model, lowbit.model.Static(...)) first"
        )
    if model.training:
        raise ModelError("the model is in training mode (dropout and batch-norm would skew ranges); call model.eval()")
    batches = one_batch_as_list(batches)
    total = len(batches) if isinstance(batches, Sized) else None
    meter = Progress(total, sys.stderr.isatty() if progress is None else progress)
    done = 0
    with torch.no_grad():
        for batch in batches:
            run_batch(model, batch)
            done += 1
            meter.update(done)
    meter.close()
    if not done:
        raise ModelError("calibrate got no batches; pass an iterable of model inputs")
    return done
