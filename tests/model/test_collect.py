"""lowbit.model._collect: layer_statistics, the per-layer input statistics of the data-driven algorithms.

Known answers are plain float computations on the same inputs: the Hessian 2 X^T X / n of the rows each
layer reads (in the sequential order, with the blocks before it already quantized).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
from lowbit.algorithms import ActivationStatistics, HessianAccumulator  # noqa: E402
from lowbit.model._collect import layer_statistics  # noqa: E402


def test_sequential_blocks_see_the_quantized_blocks_before_them(stack, stack_batches):
    """The Hessian GPTQ used for block 2 comes from block 2's inputs with blocks 0 and 1 already quantized
    (and block 2 itself, and the layers outside the blocks, still float)."""
    D = stack.inp.out_features
    model = copy.deepcopy(stack)
    batches = stack_batches(3)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    seen = {}
    for name, module, stat in layer_statistics(model, layers, batches, lambda n, m: HessianAccumulator(m.in_features),
                                               sequential=True, progress=False):
        seen[name] = stat.hessian_
        new = lowbit.nn.WeightOnlyLinear.from_float(module, "int3")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    assert list(seen)[-2:] == ["inp", "head"]  # layers outside the blocks come last

    def up_inputs(net: nn.Module) -> np.ndarray:
        inputs = []
        hook = net.blocks[2].up.register_forward_pre_hook(lambda m, a: inputs.append(a[0].reshape(-1, D)))
        with torch.no_grad():
            for b in batches:
                net(b)
        hook.remove()
        return torch.cat(inputs).double().numpy()

    expected = copy.deepcopy(stack)
    expected.blocks[0], expected.blocks[1] = model.blocks[0], model.blocks[1]
    x = up_inputs(expected)
    np.testing.assert_allclose(seen["blocks.2.up"], 2 * x.T @ x / x.shape[0], rtol=1e-9, atol=1e-9)
    x_float = up_inputs(stack)
    assert not np.allclose(seen["blocks.2.up"], 2 * x_float.T @ x_float / x.shape[0], rtol=1e-3)  # could fail


def test_layers_reading_one_tensor_share_one_statistic(stack, stack_batches):
    layers = [(n, m) for n, m in stack.named_modules() if isinstance(m, nn.Linear)]
    factory = lambda n, m: ActivationStatistics(m.in_features, max_rows=0)  # noqa: E731
    stats = {n: s for n, _, s in layer_statistics(stack, layers, stack_batches(2), factory, progress=False)}
    assert stats["blocks.1.q"] is stats["blocks.1.k"] is stats["blocks.1.v"]
    assert stats["blocks.1.up"] is not stats["blocks.1.q"] and stats["blocks.1.down"] is not stats["blocks.1.up"]
    assert stats["blocks.1.q"].n_samples_ == 64  # each input counted once per batch


def test_parallel_module_list_falls_back_to_one_float_pass():
    """A ModuleList whose members all read the same input is not a chain: stats come from the float model."""

    class Parallel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.heads = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return sum(head(x) for head in self.heads)

    model = Parallel().eval()
    layers = list((f"heads.{i}", h) for i, h in enumerate(model.heads))
    x = torch.randn(10, 8)
    factory = lambda n, m: ActivationStatistics(8, max_rows=0)  # noqa: E731
    out = list(layer_statistics(model, layers, [x], factory, sequential=True, progress=False))
    for _, _, stat in out:
        np.testing.assert_allclose(stat.absmax_, x.abs().amax(0).double().numpy())


def test_sink_weight_counts_the_first_position_of_each_sequence_more():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 4)).eval()
    x = torch.randn(3, 5, 8)
    (_, _, stat), = layer_statistics(net, [("0", net[0])], [x], lambda n, m: HessianAccumulator(8),
                                     progress=False, sink_weight=4.0)
    w = torch.ones(3, 5, 1)
    w[:, 0] = 4.0
    rows, weights = x.reshape(-1, 8).double().numpy(), w.reshape(-1).double().numpy()
    expected = 2 * (rows * weights[:, None]).T @ rows / rows.shape[0]
    np.testing.assert_allclose(stat.hessian_, expected, rtol=1e-12)


def test_a_module_called_twice_feeds_both_inputs():
    torch.manual_seed(0)
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared).eval()
    x = torch.randn(5, 4)
    [(_, _, stat)] = list(layer_statistics(model, [("0", shared)], [x], lambda n, m: HessianAccumulator(4)))
    with torch.no_grad():
        rows = torch.cat([x, torch.tanh(shared(x))]).double().numpy()
    assert stat.n_samples_ == 10
    np.testing.assert_allclose(stat.hessian_, 2 / 10 * rows.T @ rows, rtol=1e-6)
