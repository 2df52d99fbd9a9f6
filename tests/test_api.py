"""One vocabulary: every public entry point takes the same granularity spellings and raises the same error
for the same mistake, and every deprecated spelling still works, with a warning that names the new one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402
import lowbit.nn as lnn  # noqa: E402
from lowbit import PerChannel, PerGroup, PerTensor, PerToken  # noqa: E402
from lowbit.algorithms import (  # noqa: E402
    ActivationStatistics,
    HessianAccumulator,
    awq_quantize,
    gptq_quantize,
    hqq_quantize,
    search_smoothing,
)
from lowbit.cli import main  # noqa: E402

SPELLINGS = {"tensor": PerTensor(), "channel": PerChannel(0), "group:16": PerGroup(16), "token": PerToken()}
ALL = set(SPELLINGS)
WEIGHT = {"tensor", "channel", "group:16"}
ROWS = {"channel", "group:16"}  # what the weight algorithms take
INT8_WEIGHT = {"tensor", "channel"}
ACT = {"tensor", "token"}

_rng = np.random.default_rng(0)
W = _rng.standard_normal((8, 32)).astype(np.float32)
X = _rng.standard_normal((64, 32)).astype(np.float32)
H = (X.T @ X / len(X)).astype(np.float64)


def _linear() -> Any:
    torch.manual_seed(0)
    return torch.nn.Linear(32, 8)


def _cli(g: Any, tmp_path_factory: Any) -> Any:
    path = tmp_path_factory.mktemp("api") / "w.npy"
    np.save(path, W)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["compare", str(path), "--qtype", "int4", "--granularity", str(g), "--json"])
    if code != 0:
        raise lowbit.GranularityError(f"exit status {code}")
    return json.loads(out.getvalue())["rows"][0]["granularity"]


# name -> (the spellings it takes, fn(granularity) -> a result to compare between spellings)
ENTRY_POINTS: dict[str, tuple[set[str], Callable[..., Any]]] = {
    "lowbit.quantize": (ALL, lambda g: lowbit.quantize(W, "int4", granularity=g).granularity),
    "lowbit.fake_quantize": (ALL, lambda g: lowbit.fake_quantize(W, "int4", granularity=g).tobytes()),
    "lowbit.Scheme": (ALL, lambda g: lowbit.Scheme("int4", g).name),
    "lowbit.compare": (ALL, lambda g: lowbit.compare(W, [lowbit.Scheme("int4", g)]).rows[0].sqnr_db),
    "granularity.plan": (ALL, lambda g: lowbit.granularity.plan(g, W.shape)),
    "lm.WeightOnly": (WEIGHT, lambda g: lm.WeightOnly("int4", g).granularity),
    "lnn.WeightOnlyLinear": (WEIGHT, lambda g: lnn.WeightOnlyLinear(32, 8, qtype="int4", granularity=g).granularity),
    "lnn.WeightOnlyLinear.from_float": (
        WEIGHT, lambda g: lnn.WeightOnlyLinear.from_float(_linear(), "int4", g).dequantized_weight().numpy().tobytes()
    ),
    "lnn.WeightOnlyConv2d": (WEIGHT, lambda g: lnn.WeightOnlyConv2d(4, 8, 3, granularity=g).granularity),
    "lnn.WeightOnlyEmbedding": (WEIGHT, lambda g: lnn.WeightOnlyEmbedding(8, 32, granularity=g).granularity),
    "gptq_quantize": (ROWS, lambda g: gptq_quantize(W, H, "int4", granularity=g).codes.tobytes()),
    "awq_quantize": (ROWS, lambda g: awq_quantize(W, X, "int4", granularity=g, grid=2)[0].codes.tobytes()),
    "hqq_quantize": (ROWS, lambda g: hqq_quantize(W, "uint4", granularity=g, iterations=2).codes.tobytes()),
    "lm.Dynamic(weight_granularity)": (INT8_WEIGHT, lambda g: lm.Dynamic(weight_granularity=g).weight_granularity),
    "lm.Dynamic(act_granularity)": (ACT, lambda g: lm.Dynamic(act_granularity=g).act_granularity),
    "lm.Static(weight_granularity)": (INT8_WEIGHT, lambda g: lm.Static(weight_granularity=g).weight_granularity),
    "lm.Static(act_granularity)": ({"tensor"}, lambda g: lm.Static(act_granularity=g).act_granularity),
    "lnn.Int8Linear(weight_granularity)": (
        INT8_WEIGHT, lambda g: lnn.Int8Linear.from_float(_linear(), weight_granularity=g).weight_granularity
    ),
    "lnn.Int8Linear(act_granularity)": (ACT, lambda g: lnn.Int8Linear(32, 8, act_granularity=g).act_granularity),
    "lnn.quantize_activations": (
        ACT, lambda g: lnn.quantize_activations(torch.from_numpy(X), granularity=g)[1].numpy().tobytes()
    ),
    "search_smoothing(act_granularity)": (
        ACT, lambda g: search_smoothing(W, X, np.abs(X).max(axis=0), act_granularity=g, static=False, alphas=(0.5,))
    ),
}


def _other(spelling: str) -> Any:
    return SPELLINGS[spelling]


CASES = [(name, spelling) for name in ENTRY_POINTS for spelling in SPELLINGS]


@pytest.mark.parametrize("name, spelling", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_object_and_string_spellings_agree_or_fail_alike(name, spelling):
    takes, fn = ENTRY_POINTS[name]
    if spelling in takes:
        by_string, by_object = fn(spelling), fn(SPELLINGS[spelling])
        if isinstance(by_string, tuple):  # search_smoothing: (factors or None, alpha)
            assert by_string[1] == by_object[1]
        else:
            assert by_string == by_object
    else:
        for g in (spelling, SPELLINGS[spelling]):
            with pytest.raises(lowbit.GranularityError):
                fn(g)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", ["grop:16", "group:0", "group:x", 16, PerGroup],
                         ids=["typo", "zero", "text", "int", "class"])
def test_the_same_mistake_raises_the_same_error_everywhere(name, bad):
    with pytest.raises(lowbit.GranularityError):
        ENTRY_POINTS[name][1](bad)


def test_cli_takes_every_granularity_string(tmp_path_factory):
    for spelling in ALL:
        assert _cli(spelling, tmp_path_factory) == spelling
    with pytest.raises(lowbit.GranularityError):
        _cli("grop:16", tmp_path_factory)


# --------------------------------------------------------------------------- deprecated spellings


def _x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)


def _pairs() -> list[tuple[str, Callable[[], Any], Callable[[], Any], str]]:
    """(id, old spelling, new spelling, the new name the warning must give); both must agree."""
    x = _x()
    est = lambda: lowbit.calibration.Percentile(99.0).fit([x])  # noqa: E731
    w, h = W, H
    return [
        ("quantize-options", lambda: lowbit.quantize(x, "int8", method="percentile", percentile=99.0).scale,
         lambda: lowbit.quantize(x, "int8", method="percentile", method_options={"percentile": 99.0}).scale,
         "method_options="),
        ("fake_quantize-options", lambda: lowbit.fake_quantize(x, "int8", method="mse", bins=2048).tobytes(),
         lambda: lowbit.fake_quantize(x, "int8", method="mse", method_options={"bins": 2048}).tobytes(),
         "method_options="),
        ("from_float-options",
         lambda: lnn.WeightOnlyLinear.from_float(_linear(), method="percentile", percentile=99.0).weight_scale,
         lambda: lnn.WeightOnlyLinear.from_float(_linear(), method="percentile",
                                                 method_options={"percentile": 99.0}).weight_scale,
         "method_options="),
        ("range_", lambda: est().range_(), lambda: est().clip_range(), "clip_range()"),
        ("Observer-estimator", lambda: repr(lnn.Observer(estimator="mse").estimator),
         lambda: repr(lnn.Observer("mse").estimator), "Observer(method=...)"),
        ("Observer-options", lambda: repr(lnn.Observer("percentile", percentile=99.0).estimator),
         lambda: repr(lnn.Observer("percentile", {"percentile": 99.0}).estimator), "method_options"),
        ("FakeQuantize-init", lambda: lnn.FakeQuantize("int4", init="mse").method,
         lambda: lnn.FakeQuantize("int4", method="mse").method, "FakeQuantize(method=...)"),
        ("QATLinear-init", lambda: lnn.QATLinear(8, 2, init="minmax").weight_fake_quant.method,
         lambda: lnn.QATLinear(8, 2, method="minmax").weight_fake_quant.method, "QATLinear(method=...)"),
        ("QATConv2d-init", lambda: lnn.QATConv2d(2, 2, 1, init="minmax").weight_fake_quant.method,
         lambda: lnn.QATConv2d(2, 2, 1, method="minmax").weight_fake_quant.method, "QATConv2d(method=...)"),
        ("gptq-group_size", lambda: gptq_quantize(w, h, "int4", group_size=16).codes.tobytes(),
         lambda: gptq_quantize(w, h, "int4", granularity="group:16").codes.tobytes(), "granularity=PerGroup(16)"),
        ("gptq-group_size-none", lambda: gptq_quantize(w, h, "int4", group_size=None).codes.tobytes(),
         lambda: gptq_quantize(w, h, "int4", granularity="channel").codes.tobytes(), "granularity=PerChannel(0)"),
        ("awq-group_size", lambda: awq_quantize(w, X, "int4", group_size=16, grid=2)[0].codes.tobytes(),
         lambda: awq_quantize(w, X, "int4", granularity="group:16", grid=2)[0].codes.tobytes(), "granularity="),
        ("hqq-group_size", lambda: hqq_quantize(w, "uint4", group_size=16).codes.tobytes(),
         lambda: hqq_quantize(w, "uint4", granularity="group:16").codes.tobytes(), "granularity="),
        ("search_smoothing-activations",
         lambda: search_smoothing(w, X, np.abs(X).max(axis=0), activations="token", alphas=(0.5,))[1],
         lambda: search_smoothing(w, X, np.abs(X).max(axis=0), act_granularity="token", static=False,
                                  alphas=(0.5,))[1], "act_granularity= and static="),
        ("search_smoothing-weights",
         lambda: search_smoothing(w, X, np.abs(X).max(axis=0), weights="tensor", alphas=(0.5,))[1],
         lambda: search_smoothing(w, X, np.abs(X).max(axis=0), weight_granularity="tensor", alphas=(0.5,))[1],
         "weight_granularity="),
        ("Dynamic-activations", lambda: lm.Dynamic(activations="token"), lambda: lm.Dynamic(act_granularity="token"),
         "Dynamic(act_granularity=...)"),
        ("Dynamic-weights", lambda: lm.Dynamic(weights="int8"), lambda: lm.Dynamic(weight_qtype="int8"),
         "Dynamic(weight_qtype=...)"),
        ("Static-observer", lambda: lm.Static(observer="percentile", observer_options={"percentile": 99.0}),
         lambda: lm.Static(method="percentile", method_options={"percentile": 99.0}), "Static(method=...)"),
        ("Static-activations", lambda: lm.Static(activations="int8"), lambda: lm.Static(act_qtype="int8"),
         "Static(act_qtype=...)"),
        ("Static-weights", lambda: lm.Static(weights="int8"), lambda: lm.Static(weight_qtype="int8"),
         "Static(weight_qtype=...)"),
        ("list_methods", lambda: lowbit.calibration.list_methods(), lambda: lowbit.calibration.list_estimators(),
         "list_estimators"),
        ("ESTIMATORS", lambda: list(lowbit.calibration.ESTIMATORS), lambda: lowbit.calibration.list_estimators(),
         "list_estimators"),
        ("Hessian-add", lambda: HessianAccumulator(32).add(X).hessian_.tobytes(),
         lambda: HessianAccumulator(32).partial_fit(X).hessian_.tobytes(), "HessianAccumulator.partial_fit()"),
        ("Hessian-hessian", lambda: HessianAccumulator(32).partial_fit(X).hessian.tobytes(),
         lambda: HessianAccumulator(32).partial_fit(X).hessian_.tobytes(), "HessianAccumulator.hessian_"),
        ("ActivationStatistics-add", lambda: ActivationStatistics(32).add(X).absmax_.tobytes(),
         lambda: ActivationStatistics(32).partial_fit(X).absmax_.tobytes(), "ActivationStatistics.partial_fit()"),
        ("LayerError", lambda: lm.LayerError, lambda: lm.LayerErrorRow, "LayerErrorRow"),
        ("reports.LayerError", lambda: lm.reports.LayerError, lambda: lm.LayerErrorRow, "LayerErrorRow"),
    ]


PAIRS = _pairs()


@pytest.mark.parametrize("old, new, name", [p[1:] for p in PAIRS], ids=[p[0] for p in PAIRS])
def test_deprecated_spellings_warn_and_agree(old, new, name):
    with pytest.deprecated_call() as record:
        got = old()
    messages = [str(w.message) for w in record if issubclass(w.category, DeprecationWarning)]
    assert any(name in m and "deprecated in lowbit 0.2" in m for m in messages), messages
    want = new()
    if isinstance(want, np.ndarray) or torch.is_tensor(want):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    else:
        assert got == want


def test_deprecation_points_at_the_callers_line():
    with pytest.deprecated_call() as record:
        lowbit.quantize(_x(), "int8", method="percentile", percentile=99.0)
    assert record[0].filename == __file__


# Hostile arrays (issue 16): every entry point reads them through lowbit._arrays.


@pytest.mark.parametrize("order", [">f4", ">f8", "<f4"])
def test_non_native_byte_order_is_converted(order):
    x = np.random.default_rng(5).standard_normal((4, 64))
    swapped = x.astype(order)
    native = swapped.astype(swapped.dtype.newbyteorder("="))
    qt = lowbit.quantize(swapped, "int4", granularity="group:32")
    np.testing.assert_array_equal(qt.codes, lowbit.quantize(native, "int4", granularity="group:32").codes)
    fq = lowbit.fake_quantize(swapped, "int8")
    assert fq.dtype.isnative and fq.dtype.name == native.dtype.name
    np.testing.assert_array_equal(fq, lowbit.fake_quantize(native, "int8"))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["to_sparse", "to_sparse_csr"])
def test_sparse_tensor_is_refused_naming_to_dense(layout):
    x = getattr(torch.eye(4), layout)()
    with pytest.raises(lowbit.InputTypeError, match=r"sparse.*\.to_dense\(\)"):
        lowbit.quantize(x, "int8")


def test_read_only_out_is_refused():
    x = _x()
    out = np.empty(x.size, np.int8)
    out.flags.writeable = False
    with pytest.raises(lowbit.OptionError, match="read-only"):
        lowbit.quantize(x, "int8", out=out)
    dq = np.empty(x.shape, np.float32)
    dq.flags.writeable = False
    with pytest.raises(lowbit.OptionError, match="read-only"):
        lowbit.dequantize(lowbit.quantize(x, "int8"), out=dq)


def test_axis_keyword_points_at_granularity():
    x = _x()
    options: list[dict[str, Any]] = [{}, {"method": "percentile"}]
    for kwargs in options:
        with pytest.raises(lowbit.OptionError, match=r"axis=0.*granularity=PerChannel\(0\)"):
            lowbit.quantize(x, "int8", axis=0, **kwargs)
