"""A small, seeded training loop for quantization-aware training (fine-tuning after ``QAT`` prepare).

Example:
    >>> import torch, lowbit.model as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 1))
    >>> data = [(torch.randn(32, 4), torch.randn(32, 1)) for _ in range(4)]
    >>> losses = lm.train(net, data, torch.nn.functional.mse_loss, steps=8)
    >>> len(losses)
    8
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from lowbit.errors import OptionError

__all__ = ["train"]


def train(
    model: Any,
    batches: Iterable[tuple[Any, Any]],
    loss_fn: Callable[[Any, Any], Any],
    steps: int,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """Adam on ``loss_fn(model(x), y)`` for ``steps`` steps over ``(x, y)`` batches (cycled).

    The model is left in eval mode afterwards.

    Returns:
        The loss of every step.

    Raises:
        OptionError: ``steps`` < 1 or no trainable parameter.
    """
    import torch

    if steps < 1:
        raise OptionError(f"steps must be >= 1, got {steps}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise OptionError("the model has no trainable parameter; run quantize_(model, QAT(..., step='prepare'))")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for x, y in itertools.islice(itertools.cycle(batches), steps):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
