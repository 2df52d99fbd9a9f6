"""Aggregation over tensors sums signal and error (not dB), and names the worst tensor."""

from __future__ import annotations

import json
import math

import numpy as np

import lowbit
from lowbit.metrics import CompareTable
from lowbit.report import aggregate, render_compare


def test_aggregate_sums_energy_not_decibels():
    rng = np.random.default_rng(3)
    small = rng.standard_normal(64).astype(np.float32)
    big = (rng.standard_normal(4096) * 10).astype(np.float32)
    rows = lowbit.compare(small, ["int4"], name="small").rows + lowbit.compare(big, ["int4"], name="big").rows
    (agg,) = aggregate(rows)
    signal = sum(float(np.sum(np.square(x, dtype=np.float64))) for x in (small, big))
    noise = sum(float(np.sum((x.astype(np.float64) - lowbit.fake_quantize(x, "int4")) ** 2)) for x in (small, big))
    assert math.isclose(agg.sqnr_db, 10 * math.log10(signal / noise), rel_tol=1e-9)
    assert agg.worst_tensor == min(rows, key=lambda r: r.sqnr_db).tensor
    assert agg.nbytes == sum(r.nbytes for r in rows) and agg.tensors == 2


def test_exact_results_render_as_strict_json():
    table = lowbit.compare(np.zeros(16, np.float32), ["int8"], name="z")
    doc = json.loads(render_compare(table, "json"), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert doc["rows"][0]["sqnr_db"] == "inf" and doc["aggregate"][0]["sqnr_db"] == "inf"


def test_markdown_and_long_text():
    table = CompareTable(lowbit.compare(np.linspace(-1, 1, 32), ["int8", "uint8"], name="t").rows)
    md = render_compare(table, "markdown").splitlines()
    assert md[0].startswith("| tensor") and set(md[1]) <= {"|", "-", ":", " "}
    assert len(md) == 4
    assert "uint8 tensor asym" in render_compare(table, "text", long=True)


def test_aggregate_text_shows_bits_per_weight_with_stored_scales():
    rng = np.random.default_rng(5)
    rows = []
    for name in ("a", "b"):
        x = rng.standard_normal((8, 256)).astype(np.float32)
        rows += lowbit.compare(x, [lowbit.Scheme("nf4", lowbit.PerGroup(64), scale_format="double8"), "mxfp4"],
                               name=name).rows
    text = render_compare(CompareTable(rows), "text")
    agg = {" ".join(line.split()[:4]): line.split()[4] for line in text.splitlines()
           if line.startswith(("nf4 group:64 sym double8 ", "mxfp4 group:32 sym e8m0 "))}
    # nf4: 4 bits + one int8 code per 64 weights + per tensor one float32 block scale and one float32 mean
    assert agg == {"nf4 group:64 sym double8": f"{4 + 8 / 64 + 64 / 2048:.3f}", "mxfp4 group:32 sym e8m0": "4.250"}
    assert "stored bits per weight" in text
