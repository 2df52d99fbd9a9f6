"""lowbit.algorithms.awq: AWQ as a plain function on arrays.

Known answers are plain float computations: the search against round-to-nearest,
scored by the layer's float64 output error on the calibration rows.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit.algorithms import awq_quantize


@pytest.mark.parametrize("group_size", [None, 16])
def test_awq_beats_round_to_nearest_on_salient_channels(group_size, outlier_rows):
    x = outlier_rows()
    w = np.random.default_rng(5).standard_normal((48, 64)).astype(np.float32)
    gran = lowbit.PerChannel(0) if group_size is None else lowbit.PerGroup(group_size)
    rtn = lowbit.fake_quantize(w, "int4", granularity=gran)
    qt, s = awq_quantize(w, x, "int4", granularity=gran)
    awq = qt.dequantize() / s
    err_rtn, err_awq = (float(np.sum((x @ (w - v).T) ** 2)) for v in (rtn, awq))
    print(f"int4 {group_size}: output error RTN {err_rtn:.4g} AWQ {err_awq:.4g}")
    assert err_awq < 0.8 * err_rtn
    assert qt.qtype.name == "int4" and s.shape == (64,) and np.all(s > 0)


def test_awq_with_alpha_zero_and_no_clip_is_round_to_nearest(outlier_rows):
    x = outlier_rows(64, 32)
    w = np.random.default_rng(6).standard_normal((8, 32)).astype(np.float32)
    qt, s = awq_quantize(w, x, "int4", granularity="channel", grid=1, clip=False)
    np.testing.assert_array_equal(s, np.ones(32, np.float32))
    np.testing.assert_array_equal(qt.dequantize(), lowbit.fake_quantize(w, "int4", granularity=lowbit.PerChannel(0)))


def test_awq_errors():
    w = np.ones((4, 8), np.float32)
    with pytest.raises(lowbit.OptionError):
        awq_quantize(w, np.ones((4, 7)), "int4", granularity="channel")
    with pytest.raises(lowbit.GranularityError, match="groups input columns"):
        awq_quantize(w, np.ones((4, 8)), "int4", granularity="group:4:0")
    with pytest.raises(lowbit.EmptyInputError):
        awq_quantize(w, np.ones((0, 8)), "int4", granularity="channel")
    with pytest.raises(lowbit.NonFiniteError):
        awq_quantize(w, np.full((2, 8), np.inf), "int4", granularity="channel")
