"""docs/FORMAT.md is enough to read a lowbit checkpoint: spec_decoder.py (NumPy, json, struct; lowbit
blocked from import) decodes files lowbit wrote, value for value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lowbit

DECODER = Path(__file__).with_name("spec_decoder.py")

CASES = [  # (qtype, granularity, scale_format, symmetric)
    ("int4", "group:64", "float16", None),
    ("uint4", "channel", None, None),
    ("int3", "group:32", "bfloat16", None),
    ("int5", "group:16", "e8m0", False),
    ("nf4", "group:64", "double8", None),
    ("int4", "group:32", "kquant6", None),
    ("int8", "tensor", None, None),
    ("uint8", "token", None, True),
    ("uint12", "channel:1", None, None),
    ("fp8_e4m3", "channel", None, None),
    ("fp4_bnb", "group:16", None, None),
    ("mxfp4", None, None, None),
    ("mxint8", None, None, None),
    ("int2", "group:8:0", "float16", False),
    ("uint4", "group:24", "float16", None),  # ragged: groups of 24, 24, 16 along the 64 columns
    ("int3", "group:5:0", None, None),  # ragged along axis 0: 3 groups of 5 rows and one of 1
    ("nf4", "group:48", "double8", None),  # ragged, grid format, two-level scales
]


def _decode(path: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / "decoded.npz"
    code = (f"import sys, runpy; sys.modules['lowbit'] = None; sys.argv = ['d', {str(path)!r}, {str(out)!r}]; "
            f"runpy.run_path({str(DECODER)!r}, run_name='__main__')")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_the_decoder_cannot_import_lowbit(tmp_path):
    code = "import sys; sys.modules['lowbit'] = None; import lowbit"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_format_family_decodes_by_the_document(tmp_path, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 64)).astype(dtype)
    tensors = {f"t{i}": lowbit.quantize(x, q, granularity=g, scale_format=f, symmetric=s)
               for i, (q, g, f, s) in enumerate(CASES)}
    tensors["float_zp_f16"] = lowbit.quantize(x, "uint4", granularity="group:32", scale_format="float16",
                                              zero_point="float")
    tensors["float_zp"] = lowbit.quantize(x, "uint5", granularity="channel", zero_point="float")
    tensors["float_zp_ragged"] = lowbit.quantize(x, "uint4", granularity="group:40", zero_point="float")
    tensors["plain"] = x[:2]
    lowbit.save(tensors, tmp_path / "m.safetensors")
    decoded = _decode(tmp_path / "m.safetensors", tmp_path)
    for name, qt in tensors.items():
        want = qt if isinstance(qt, np.ndarray) else np.asarray(qt.dequantize(), np.float64)
        np.testing.assert_array_equal(decoded[name], want, err_msg=name)


def test_a_sharded_model_checkpoint_decodes(tmp_path):
    torch = pytest.importorskip("torch")
    import lowbit.model as lm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).to(torch.bfloat16)
    lm.quantize_(net, lm.WeightOnly("uint4", "group:32", scale_format="float16"), include=["0"])
    lowbit.save(net, tmp_path / "m", max_shard_size=600)
    assert (tmp_path / "m" / "model.safetensors.index.json").exists()
    decoded = _decode(tmp_path / "m", tmp_path)
    np.testing.assert_array_equal(decoded["0.weight"], net[0].dequantized_weight().double().numpy())
    np.testing.assert_array_equal(decoded["2.weight"], net[2].weight.detach().float().numpy())  # BF16 widened


def test_tied_weights_decode_by_the_document(tmp_path):
    torch = pytest.importorskip("torch")

    net = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 10, bias=False))
    net[1].weight = net[0].weight
    lowbit.save(net, tmp_path / "t.safetensors")
    decoded = _decode(tmp_path / "t.safetensors", tmp_path)
    np.testing.assert_array_equal(decoded["1.weight"], net[0].weight.detach().numpy())
