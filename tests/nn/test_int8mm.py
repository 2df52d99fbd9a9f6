"""lowbit.nn._int8mm: every exact int8 GEMM path equals an int64 NumPy product, at every shape class."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
import lowbit.nn as lnn  # noqa: E402
from lowbit.nn import _int8mm  # noqa: E402

SHAPES = [(0, 8, 4), (1, 4096, 33), (3, 5, 7), (8, 1024, 16), (17, 1025, 9), (64, 2049, 1), (5, 1, 3)]


def _codes(shape, seed, extreme=False):
    g = torch.Generator().manual_seed(seed)
    if extreme:  # the largest sums: every product is +-127 * 127
        return (torch.randint(0, 2, shape, generator=g) * 254 - 127).to(torch.int8)
    return torch.randint(-127, 128, shape, dtype=torch.int8, generator=g)


@pytest.mark.parametrize("path", _int8mm.PATHS)
@pytest.mark.parametrize("m, k, n", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_every_path_is_exact(path, m, k, n, extreme):
    x, w = _codes((m, k), 1, extreme), _codes((n, k), 2, extreme)
    want = x.numpy().astype(np.int64) @ w.numpy().astype(np.int64).T
    got = _int8mm.int8_mm(x, w, path=path)
    assert got.dtype == torch.int32 and got.shape == (m, n)
    np.testing.assert_array_equal(got.numpy(), want)


def test_the_fp32_path_needs_its_chunks():
    """A single fp32 GEMM over 2049 features of +-127 codes is not exact; the 1024-feature chunks are."""
    x = torch.full((1, 2049), 127, dtype=torch.int8)
    w = torch.full((1, 2049), 127, dtype=torch.int8)
    w[0, ::2] = 125
    exact = int((x.numpy().astype(np.int64) @ w.numpy().astype(np.int64).T).item())
    assert int((x.float() @ w.float().t()).item()) != exact
    assert int(_int8mm.int8_mm(x, w, path="fp32").item()) == exact


def test_the_path_is_chosen_once_and_can_be_forced(monkeypatch):
    monkeypatch.delenv("LOWBIT_INT8_MATMUL", raising=False)
    first = _int8mm.int8_path()
    assert first in _int8mm.PATHS and _int8mm.int8_path() == first
    monkeypatch.setenv("LOWBIT_INT8_MATMUL", "fp32")
    assert _int8mm.int8_path() == "fp32"
    monkeypatch.setenv("LOWBIT_INT8_MATMUL", "float64")
    with pytest.raises(lowbit.OptionError, match="LOWBIT_INT8_MATMUL='float64'"):
        _int8mm.int8_path()
    with pytest.raises(lowbit.OptionError, match="path must be one of"):
        _int8mm.int8_mm(_codes((2, 3), 0), _codes((2, 3), 1), path="bf16")


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_int8_linear_gives_the_same_output_on_every_path(monkeypatch, batch):
    torch.manual_seed(0)
    layer = lnn.Int8Linear.from_float(torch.nn.Linear(1100, 24), act_granularity="token")
    x = torch.randn(batch, 1100)
    outs = []
    for path in _int8mm.PATHS:
        monkeypatch.setenv("LOWBIT_INT8_MATMUL", path)
        outs.append(layer(x))
    assert torch.equal(outs[0], outs[1])


def test_a_state_dict_of_lowbit_0_1_still_loads():
    torch.manual_seed(0)
    layer = lnn.Int8Linear.from_float(torch.nn.Linear(16, 4))
    old = {k: v for k, v in layer.state_dict().items() if k != "weight"}
    old["weight_t"] = layer.weight.t().contiguous()  # 0.1 stored the codes transposed
    fresh = lnn.Int8Linear(16, 4)
    with pytest.deprecated_call(match="weight_t"):
        fresh.load_state_dict(old)
    x = torch.randn(5, 16)
    assert torch.equal(fresh(x), layer(x))
    with pytest.deprecated_call(match=r"Int8Linear\.weight \(stored \(N, K\)\)"):
        assert torch.equal(layer.weight_t, layer.weight.t())
