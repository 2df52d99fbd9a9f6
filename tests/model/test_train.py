"""lowbit.model._train: QAT prepare -> train -> convert beats post-training quantization at 2 bits."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit.model as lm  # noqa: E402


def test_qat_prepare_train_convert():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    student = copy.deepcopy(teacher)
    xs = [torch.randn(64, 16) for _ in range(8)]
    data = [(x, teacher(x).detach()) for x in xs]
    ptq = copy.deepcopy(teacher)
    lm.quantize_(ptq, lm.WeightOnly("int2"))
    lm.quantize_(student, lm.QAT(lm.WeightOnly("int2"), step="prepare"))
    losses = lm.train(student, data, nn.functional.mse_loss, steps=300, lr=3e-3)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    lm.quantize_(student, lm.QAT(lm.WeightOnly("int2"), step="convert"))
    x = torch.randn(256, 16)
    with torch.no_grad():
        err_qat = nn.functional.mse_loss(student(x), teacher(x))
        err_ptq = nn.functional.mse_loss(ptq(x), teacher(x))
    assert err_qat < err_ptq
