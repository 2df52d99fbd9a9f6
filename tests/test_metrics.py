"""lowbit.metrics against a float64 NumPy reference, and compare()."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lowbit
from _reference import ref_metrics
from lowbit import PerChannel, PerGroup, PerTensor, Scheme, metrics

METRICS = ["sse", "mse", "rmse", "sqnr_db", "max_abs_error", "cosine_similarity"]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", [1, 17, 1000, 200_003], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=["float32", "float64", "float16"])
def test_metric_matches_reference(metric, n, dtype, rng):
    x = (rng.standard_normal(n) * 3).astype(dtype)
    y = (x.astype(np.float64) + rng.standard_normal(n) * 0.01).astype(dtype)
    got = getattr(metrics, metric)(x, y)
    assert isinstance(got, float)
    assert got == pytest.approx(ref_metrics(x, y)[metric], rel=1e-9, abs=1e-12)


def test_metrics_by_hand():
    assert metrics.sse(np.array([1.0, 2.0]), np.array([1.0, 1.5])) == 0.25
    assert metrics.mse(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 0.5
    assert metrics.rmse(np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(math.sqrt(12.5))
    assert metrics.sqnr_db(np.array([1.0, 1.0]), np.array([1.1, 0.9])) == pytest.approx(20.0, rel=1e-12)
    assert metrics.max_abs_error(np.array([1.0, -2.0]), np.array([1.5, -2.75])) == 0.75
    assert metrics.cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert metrics.cosine_similarity(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(1.0)


def test_error_stats_bundle(rng):
    x = rng.standard_normal((30, 40))
    y = x + rng.standard_normal((30, 40)) * 0.1
    st = metrics.error_stats(x, y)
    ref = ref_metrics(x, y)
    assert st.numel == 1200
    assert st.signal == pytest.approx(float(np.sum(x * x)), rel=1e-12)
    for name in ("sse", "mse", "rmse", "sqnr_db", "max_abs_error"):
        assert getattr(st, name) == pytest.approx(ref[name], rel=1e-12)
    assert st.cosine == pytest.approx(ref["cosine_similarity"], rel=1e-12)


def test_metrics_accept_mixed_kinds_and_shapes(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = x + np.float32(0.125)
    t = torch.from_numpy(y).to(torch.bfloat16)
    ref = ref_metrics(x, t.float().numpy())
    assert metrics.sse(x, t) == pytest.approx(ref["sse"], rel=1e-9)
    assert metrics.sse(torch.from_numpy(x), y) == pytest.approx(ref_metrics(x, y)["sse"], rel=1e-12)


def test_exact_reconstruction_conventions():
    x = np.array([3.0, -4.0, 0.5])
    assert metrics.sse(x, x) == 0.0
    assert metrics.mse(x, x) == 0.0
    assert metrics.max_abs_error(x, x) == 0.0
    assert metrics.sqnr_db(x, x) == math.inf
    assert metrics.cosine_similarity(x, x) == pytest.approx(1.0)


def test_zero_signal_conventions():
    z = np.zeros(5)
    ones = np.ones(5)
    assert metrics.cosine_similarity(z, z) == 1.0  # two all-zero tensors are identical
    assert metrics.sqnr_db(z, z) == math.inf  # no error at all
    assert metrics.cosine_similarity(z, ones) == 0.0
    assert metrics.cosine_similarity(ones, z) == 0.0
    assert metrics.sqnr_db(z, ones) == -math.inf  # no signal, some noise
    assert metrics.sqnr_db(ones, z) == pytest.approx(0.0)  # noise == signal
    assert metrics.cosine_similarity(ones, -ones) == pytest.approx(-1.0)


def test_cosine_is_clamped_to_unit_interval(rng):
    x = rng.standard_normal(10_000) * 1e-3
    assert -1.0 <= metrics.cosine_similarity(x, x * 3) <= 1.0
    assert -1.0 <= metrics.cosine_similarity(x, -x) <= 1.0


def test_shape_mismatch_is_an_input_type_error():
    with pytest.raises(lowbit.InputTypeError, match="shapes"):
        metrics.sse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(lowbit.InputTypeError):
        metrics.mse(np.zeros(3), np.zeros(4))


def test_metrics_reject_integer_inputs():
    with pytest.raises(lowbit.InputTypeError):
        metrics.sse(np.arange(3), np.arange(3))


def test_empty_inputs_do_not_crash():
    e = np.zeros(0, np.float32)
    assert metrics.sse(e, e) == 0.0
    for fn in (metrics.mse, metrics.rmse):
        try:
            v = fn(e, e)
        except lowbit.LowbitError:
            continue
        assert v == 0.0 or math.isnan(v)


# --------------------------------------------------------------------------- compare


def test_compare_rows_in_order_and_monotone_in_bits(rng):
    x = rng.standard_normal(20_000).astype(np.float32)
    table = lowbit.compare(x, ["int8", "int4", "int2"], name="gauss")
    assert [r.scheme for r in table.rows] == ["int8 tensor sym", "int4 tensor sym", "int2 tensor sym"]
    assert [r.qtype for r in table.rows] == ["int8", "int4", "int2"]
    assert [r.bits for r in table.rows] == [8, 4, 2]
    assert all(r.tensor == "gauss" for r in table.rows)
    sq = [r.sqnr_db for r in table.rows]
    assert sq[0] > sq[1] > sq[2]
    # roughly 6 dB per bit between int8 and int4 on Gaussian data
    assert 15 < sq[0] - sq[1] < 35
    mse = [r.mse for r in table.rows]
    assert mse[0] < mse[1] < mse[2]


def test_compare_per_channel_beats_per_tensor_on_uneven_rows(rng):
    x = (rng.standard_normal((16, 256)) * np.logspace(-3, 1, 16)[:, None]).astype(np.float32)
    table = lowbit.compare(
        x, [Scheme("int8", PerTensor()), Scheme("int8", PerChannel(0)), Scheme("int8", PerGroup(32))]
    )
    tensor, channel, group = table.rows
    assert channel.sqnr_db > tensor.sqnr_db + 3
    assert group.sqnr_db >= channel.sqnr_db - 0.5
    assert channel.granularity == "channel"
    assert group.granularity == "group:32"


def test_compare_row_values_are_independent_metrics(rng):
    x = rng.standard_normal((8, 64)).astype(np.float32)
    schemes = [
        Scheme("uint4", PerGroup(16)),
        Scheme("int8", PerChannel(0), symmetric=False),
        "int3",
        lowbit.get_qtype("uint8"),
    ]
    table = lowbit.compare(x, schemes)
    assert len(table.rows) == 4
    for row, s in zip(table.rows, schemes, strict=True):
        s = s if isinstance(s, Scheme) else Scheme(s)
        qt = lowbit.quantize(x, s.qtype, granularity=s.granularity, symmetric=s.symmetric)
        ref = ref_metrics(x, qt.dequantize())
        assert row.sse == pytest.approx(ref["sse"], rel=1e-9)
        assert row.mse == pytest.approx(ref["mse"], rel=1e-9)
        assert row.sqnr_db == pytest.approx(ref["sqnr_db"], rel=1e-9)
        assert row.max_abs_error == pytest.approx(ref["max_abs_error"], rel=1e-9)
        assert row.cosine == pytest.approx(ref["cosine_similarity"], rel=1e-9)
        assert row.numel == 512
        assert row.nbytes == qt.nbytes
        assert row.original_nbytes == 512 * 4
        assert row.compression == pytest.approx(2048 / qt.nbytes)
        assert row.bits_per_element == pytest.approx(8 * qt.nbytes / 512)
        assert row.symmetric is qt.symmetric
    assert table.rows[1].symmetric is False
    assert table.rows[1].scheme == "int8 channel asym"
    assert table.rows[3].scheme == "uint8 tensor asym"


@pytest.mark.parametrize("dtype,itemsize", [("float16", 2), ("bfloat16", 2), ("float32", 4), ("float64", 8)])
def test_compare_original_bytes(dtype, itemsize):
    torch = pytest.importorskip("torch")
    x = torch.randn(10, 12, generator=torch.Generator().manual_seed(0)).to(getattr(torch, dtype))
    row = lowbit.compare(x, ["int4"]).rows[0]
    assert row.original_nbytes == 120 * itemsize
    assert row.nbytes == 60 + (8 if dtype == "float64" else 4)


def test_compare_renderings(rng):
    x = rng.standard_normal((4, 32)).astype(np.float32)
    const = np.full(8, 2.5, np.float32)  # exact: sqnr inf
    table = lowbit.compare(x, ["int8", Scheme("int4", PerGroup(8))])
    doc = json.loads(table.to_json())
    assert len(doc["rows"]) == 2
    assert doc["rows"][0]["scheme"] == "int8 tensor sym"
    assert doc["rows"][1]["granularity"] == "group:8"
    assert doc["rows"][0]["sqnr_db"] == pytest.approx(table.rows[0].sqnr_db)
    assert {"compression", "bits_per_element", "nbytes"} <= set(doc["rows"][0])

    md = table.to_markdown().splitlines()
    assert len(md) == 2 + 2
    header = [c.strip() for c in md[0].strip("|").split("|")]
    assert header[:3] == ["tensor", "scheme", "bits/el"]
    assert "sqnr_db" in header
    assert set(md[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    assert all(line.startswith("|") and line.endswith("|") for line in md)
    assert "int4 group:8 sym" in md[3]

    text = table.to_text().splitlines()
    assert text[0].split()[:2] == ["tensor", "scheme"]
    assert len(text) == 4
    assert str(table) == table.to_text()

    inf_doc = json.loads(lowbit.compare(const, ["int8"]).to_json())
    assert inf_doc["rows"][0]["sqnr_db"] == "inf"


def test_scheme_names():
    assert Scheme("int4", PerGroup(128), symmetric=False).name == "int4 group:128 asym"
    assert Scheme("uint8").name == "uint8 tensor asym"
    assert Scheme("int8", PerChannel(0)).name == "int8 channel sym"
    assert Scheme("uint4", symmetric=True).resolved_symmetric is True
    assert Scheme("int4").resolved_symmetric is True


def test_grid_formats_are_labelled_symmetric():
    rows = lowbit.compare(np.linspace(-1, 1, 64, dtype=np.float32), ["nf4", "fp8_e4m3"]).rows
    assert [r.scheme for r in rows] == ["nf4 tensor sym", "fp8_e4m3 tensor sym"]
    assert all(r.symmetric for r in rows)


def test_huge_values_give_finite_cosine_and_sqnr_and_inf_only_where_true():
    x = np.array([1e308, -1e308, 1e200])
    st = metrics.error_stats(x, x * 0.5)
    assert st.sse == math.inf and st.mse == math.inf  # 0.5e616: beyond float64 (true value)
    assert st.cosine == 1.0
    assert st.sqnr_db == pytest.approx(10 * math.log10(4.0))
    assert metrics.max_abs_error(x, x * 0.5) == 5e307
    assert metrics.sqnr_db(x, x) == math.inf and metrics.sse(x, x) == 0.0
    assert metrics.cosine_similarity(x, -x) == -1.0
    row = lowbit.compare(np.array([1e308, -1e308, 3.0, 5e307]), ["int8"]).rows[0]
    assert math.isfinite(row.sqnr_db) and math.isfinite(row.cosine)


def test_non_finite_inputs_raise_instead_of_nan():
    with pytest.raises(lowbit.NonFiniteError, match="reference"):
        metrics.sse(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(lowbit.NonFiniteError, match="approximation"):
        metrics.cosine_similarity(np.array([1.0, 2.0]), np.array([np.inf, 2.0]))
