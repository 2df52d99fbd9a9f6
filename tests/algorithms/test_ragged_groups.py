"""GPTQ, HQQ and AWQ with a group size that does not divide ``in_features`` (ragged groups: the last group
of every row is shorter), checked against round-to-nearest in the same layout and against the algorithm
run on the regular part and the tail separately."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import awq_quantize, gptq_quantize, hqq_quantize

OUT, IN, SIZE = 24, 100, 32  # groups of 32, 32, 32 and 4


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((OUT, IN)).astype(np.float32)
    w[:, -3:] *= 6  # the short last group has its own, wider range
    x = rng.standard_normal((256, IN)) @ (rng.standard_normal((IN, IN)) * 0.3 + np.eye(IN))
    return w, x.astype(np.float32), 2 / len(x) * x.T.astype(np.float64) @ x


def _output_error(x, w, deq):
    return float(np.sum((x.astype(np.float64) @ (w.astype(np.float64) - deq).T) ** 2))


def _check_layout(qt):
    assert qt.granularity == lowbit.PerGroup(SIZE)
    assert qt.scale.shape == (OUT, -(-IN // SIZE))


@pytest.mark.parametrize("qtype", ["uint4", "uint3"])
def test_hqq_ragged_equals_the_regular_part_and_the_tail_apart(layer, qtype):
    w = layer[0]
    qt = hqq_quantize(w, qtype, granularity=f"group:{SIZE}")
    _check_layout(qt)
    full = IN // SIZE * SIZE
    head = hqq_quantize(np.ascontiguousarray(w[:, :full]), qtype, granularity=f"group:{SIZE}")
    tail = hqq_quantize(np.ascontiguousarray(w[:, full:]), qtype, granularity=f"group:{SIZE}")
    np.testing.assert_array_equal(qt.scale, np.concatenate([head.scale, tail.scale], axis=1))
    np.testing.assert_array_equal(qt.zero_point, np.concatenate([head.zero_point, tail.zero_point], axis=1))
    np.testing.assert_array_equal(qt.dequantize(), np.concatenate([head.dequantize(), tail.dequantize()], axis=1))
    rtn = lowbit.fake_quantize(w, qtype, granularity=f"group:{SIZE}", symmetric=False)
    err = ((qt.dequantize().astype(np.float64) - w) ** 2).sum()
    assert err <= ((rtn.astype(np.float64) - w) ** 2).sum()


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_ragged_identity_hessian_is_round_to_nearest(layer, act_order):
    w = layer[0]
    qt = gptq_quantize(w, np.eye(IN), "int4", granularity=f"group:{SIZE}", act_order=act_order, scale_search="none")
    _check_layout(qt)
    np.testing.assert_array_equal(qt.dequantize(), lowbit.fake_quantize(w, "int4", granularity=f"group:{SIZE}"))


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_ragged_beats_round_to_nearest(layer, act_order):
    w, x, h = layer
    qt = gptq_quantize(w, h, "int4", granularity=f"group:{SIZE}", act_order=act_order)
    _check_layout(qt)
    deq = qt.dequantize()
    tail = deq[:, IN // SIZE * SIZE :]  # the short group is on its own grid: codes times its scale
    steps = (tail - 0.0) / qt.scale[:, -1:]
    np.testing.assert_allclose(steps, np.rint(steps), atol=1e-4)
    rtn = lowbit.fake_quantize(w, "int4", granularity=f"group:{SIZE}")
    assert _output_error(x, w, deq) < 0.8 * _output_error(x, w, rtn)


def test_awq_ragged_is_no_worse_than_round_to_nearest(layer):
    w, x, _ = layer
    qt, s = awq_quantize(w, x, "int4", granularity=f"group:{SIZE}")
    _check_layout(qt)
    got = qt.dequantize() / s
    rtn = lowbit.fake_quantize(w, "int4", granularity=f"group:{SIZE}")
    assert _output_error(x, w, got) <= _output_error(x, w, rtn) * (1 + 1e-6)


@pytest.mark.parametrize("options", [{"zero_point": "float", "scale_format": "float16"}, {"activations": True}],
                         ids=["float-zero-point", "activation-aware"])
def test_hqq_options_take_ragged_groups(layer, options):
    """Float zero points and activation-aware weights: every block, the short one too, keeps HQQ's parameters
    only where they lower its (weighted) error against round to nearest in the same form."""
    from lowbit.algorithms.hqq import column_weights

    w, x, _ = layer
    options = dict(options)
    mean_sq = (x.astype(np.float64) ** 2).mean(axis=0) if options.pop("activations", False) else None
    qt = hqq_quantize(w, "uint4", granularity=f"group:{SIZE}", x_mean_sq=mean_sq, **options)
    _check_layout(qt)
    rtn = lowbit.quantize(w, "uint4", granularity=f"group:{SIZE}", symmetric=False, **options)
    cols = np.ones(IN) if mean_sq is None else column_weights(mean_sq, IN)
    err = ((w - qt.dequantize().astype(np.float64)) ** 2 * cols).sum()
    assert err <= ((w - rtn.dequantize().astype(np.float64)) ** 2 * cols).sum() * (1 + 1e-9)


def test_gptq_scale_search_takes_ragged_groups(layer):
    w, x, h = layer
    qt = gptq_quantize(w, h, "uint4", granularity=f"group:{SIZE}", scale_search="mse")
    _check_layout(qt)
    rtn = lowbit.fake_quantize(w, "uint4", granularity=f"group:{SIZE}")
    assert _output_error(x, w, qt.dequantize()) < 0.8 * _output_error(x, w, rtn)
