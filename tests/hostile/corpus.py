"""The hostile-input corpus: every public entry point fed what a careless or hostile user would give it.

Each case is ``(entry point, label, thunk)``. Running a case classifies what happened:

* ``OK``: a result, all finite where the input was finite (and the case's own check passed);
* ``TYPED``: a :class:`lowbit.LowbitError` (what lowbit promises for bad input);
* ``UNTYPED``: any other exception;
* ``SILENT-NAN``: a result holding NaN/inf that the input did not ask for, or a wrong result a case's
  check caught (``Wrong``);
* ``CRASH`` / ``HANG``: the worker process died or ran past its time (the parent sees this).

``python tests/hostile/corpus.py`` runs every case in this process and prints one JSON line per case
(``{"id", "entry", "outcome", "detail"}``) after a ``START`` line, so a parent can tell which case
crashed or hung; ``--counts`` prints the counts per entry point instead.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import lowbit

OUTCOMES = ("OK", "TYPED", "UNTYPED", "SILENT-NAN", "CRASH", "HANG")


class Wrong(Exception):
    """A case's own check found a silently wrong result."""


Case = tuple[str, str, Callable[[], Any]]


def _finite(value: Any) -> bool:
    """No NaN/inf anywhere in a result (arrays, tensors, QTensors, tables, tuples)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return bool(np.isfinite(value))
    if isinstance(value, lowbit.QTensor):
        return _finite(value.dequantize()) and _finite(value.scale)
    if hasattr(value, "detach"):
        value = value.detach().float().numpy() if value.is_floating_point() else value.detach().numpy()
    if isinstance(value, np.ndarray):
        return value.dtype.kind not in "fc" or bool(np.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    if hasattr(value, "rows"):  # CompareTable: inf SQNR of an exact scheme is right, NaN never is
        return all(not np.isnan(r.mse) and not np.isnan(r.cosine) for r in value.rows)
    return True


class _Hang(BaseException):
    """Raised by the per-case alarm."""


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def classify(thunk: Callable[[], Any], seconds: int = 30) -> tuple[str, str]:
    """Run one case: (outcome, detail); a case still running after ``seconds`` is a HANG."""
    import signal

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = thunk()
    except _Hang:
        return "HANG", f"still running after {seconds} s"
    except Wrong as err:
        return "SILENT-NAN", f"wrong result: {err}"
    except lowbit.LowbitError as err:
        return "TYPED", f"{type(err).__name__}: {str(err)[:160]}"
    except Exception as err:
        return "UNTYPED", f"{type(err).__name__}: {str(err)[:160]}"
    finally:
        signal.alarm(0)
    if not _finite(result):
        return "SILENT-NAN", f"non-finite result {type(result).__name__}"
    return "OK", ""


# ---------------------------------------------------------------- arrays a user might pass

def _arrays() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "normal": rng.standard_normal((8, 64)).astype(np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.float32(3.0),
        "nan": np.array([1.0, np.nan, 2.0], np.float32),
        "inf": np.array([1.0, np.inf], np.float32),
        "fp32-max": np.array([0.0, 3.4028235e38], np.float32),
        "fp32-both-max": np.array([-3.4028235e38, 3.4028235e38], np.float32),
        "fp16-max": np.array([-65504, 65504, 1], np.float16),
        "f64-huge": np.array([-1e308, 1e308, 1.0]),
        "subnormal": np.array([1e-45, -1e-45, 0.0], np.float32),
        "zeros": np.zeros((4, 64), np.float32),
        "constant": np.full((4, 64), -2.5, np.float32),
        "big-endian": rng.standard_normal((4, 64)).astype(">f4"),
        "ints": np.arange(8),
        "bools": np.ones(4, bool),
        "complex": np.ones(4, np.complex64),
        "objects": np.array([1.0, "a"], object),
        "list": [1.0, 2.0],
        "string": "weights",
        "none": None,
    }


def _expect_finite_dequant(x: Any, qtype: str, **kw: Any) -> Any:
    """quantize + dequantize; the extremes of a finite input must come back finite."""
    qt = lowbit.quantize(x, qtype, **kw)
    return qt.dequantize()


def core_cases() -> Iterator[Case]:
    arrays = _arrays()
    for name, x in arrays.items():
        for qtype in ("int8", "uint4", "nf4", "fp8_e4m3", "mxfp4"):
            yield "quantize", f"{name} {qtype}", lambda x=x, q=qtype: _expect_finite_dequant(x, q)
        yield "fake_quantize", f"{name} int8", lambda x=x: lowbit.fake_quantize(x, "int8")
        yield "fake_quantize", f"{name} uint4 channel", lambda x=x: lowbit.fake_quantize(x, "uint4",
                                                                                          granularity="channel")
        yield "compare", name, lambda x=x: lowbit.compare(x, ["int8", "int4"])
        yield "metrics.error_stats", name, lambda x=x: lowbit.metrics.error_stats(x, x)
    x = arrays["normal"]
    ro = np.empty(x.size, np.int8)
    ro.flags.writeable = False
    bad_kwargs: dict[str, dict[str, Any]] = {
        "typo keyword": {"granulrity": "tensor"}, "axis keyword": {"axis": 0}, "bad method": {"method": "bogus"},
        "scale 0": {"scale": 0.0}, "scale -1": {"scale": -1.0}, "scale nan": {"scale": float("nan")},
        "zero point 200": {"scale": 0.1, "zero_point": 200}, "bad rounding": {"rounding": "up"},
        "bad rng": {"rounding": "stochastic", "rng": "seed"}, "group 0": {"granularity": "group:0"},
        "group 7": {"granularity": "group:7"}, "bad granularity": {"granularity": "rows"},
        "channel axis 5": {"granularity": "channel:5"}, "read-only out": {"out": ro},
        "wrong out dtype": {"out": np.empty(x.size, np.float32)}, "bad scale format": {"scale_format": "f12"},
        "float zp signed": {"zero_point": "float"}, "method nf4 mse": {"method": "mse"},
    }
    for label, kw in bad_kwargs.items():
        qtype = "nf4" if label == "method nf4 mse" else "int8"
        yield "quantize", label, lambda kw=kw, q=qtype: lowbit.quantize(x, q, **kw)
    for qtype in ("int99", "", None, 4, "INT8 ", "fp4"):
        yield "quantize", f"qtype {qtype!r}", lambda q=qtype: lowbit.quantize(x, q)
    yield "dequantize", "not a QTensor", lambda: lowbit.dequantize(np.ones(3))
    yield "get_qtype", "int99", lambda: lowbit.get_qtype("int99")
    yield "int_qtype", "np.int64(4)", lambda: lowbit.int_qtype(np.int64(4))
    yield "int_qtype", "17 bits", lambda: lowbit.int_qtype(17)
    for bits, lo, hi in ((0, 0, 0), (-1, 0, 1), (17, -1, 1), (4, 7, -8)):
        yield "QType", f"bits={bits} qmin={lo} qmax={hi}", lambda b=bits, lo=lo, hi=hi: _user_qtype(b, lo, hi)
    for g in ("group:0", "bogus", "channel:x", "group:-3", 3.5):
        yield "as_granularity", repr(g), lambda g=g: lowbit.as_granularity(g)
    yield "PerGroup", "size 0", lambda: lowbit.PerGroup(0)
    yield "choose_qparams", "nan range", lambda: lowbit.choose_qparams(np.array([np.nan]), np.array([1.0]), "int8",
                                                                       symmetric=True)


def _user_qtype(bits: int, qmin: int, qmax: int) -> Any:
    qt = lowbit.QType(name=f"user{bits}", kind="int", bits=bits, signed=True, narrow=False, qmin=qmin, qmax=qmax)
    lowbit.quantize(np.ones(8, np.float32), qt).dequantize()
    raise Wrong(f"a {bits}-bit QType with codes {qmin}..{qmax} was accepted")


def qtensor_cases() -> Iterator[Case]:
    from lowbit.qtensor import QTensor

    good = lowbit.quantize(np.random.default_rng(1).standard_normal(64).astype(np.float32), "uint4")

    def mutated(**changes: Any) -> Any:
        d = good.to_dict()
        meta = dict(d["meta"])
        for k, v in changes.items():
            if k in meta:
                meta[k] = v
            else:
                d[k] = v
        d["meta"] = meta
        return QTensor.from_dict(d).dequantize()

    yield "QTensor.from_dict", "3 scales per tensor", lambda: mutated(scale=np.ones(3, np.float32))
    yield "QTensor.from_dict", "uint4 zero point 200", lambda: mutated(zero_point=np.array(200, np.uint8))
    yield "QTensor.from_dict", "negative scale", lambda: mutated(scale=np.array(-1.0, np.float32))
    yield "QTensor.from_dict", "zero scale", lambda: mutated(scale=np.array(0.0, np.float32))
    yield "QTensor.from_dict", "nan scale", lambda: mutated(scale=np.array(np.nan, np.float32))
    yield "QTensor.from_dict", "version 2.5", lambda: mutated(format_version=2.5)
    yield "QTensor.from_dict", "kind tensorflow", lambda: mutated(kind="tensorflow")
    yield "QTensor.from_dict", "short data", lambda: mutated(data=np.zeros(3, np.uint8))
    yield "QTensor.from_dict", "not a dict", lambda: QTensor.from_dict([1, 2])  # type: ignore[arg-type]
    yield "QTensor", "1 byte for 1e8 int4 codes", lambda: _tiny_buffer_qtensor()


def _tiny_buffer_qtensor() -> Any:
    from lowbit._arrays import Source
    from lowbit.qtensor import QTensor

    qt = QTensor(np.zeros(1, np.uint8), np.ones((), np.float32), np.zeros((), np.int8), lowbit.get_qtype("int4"),
                 lowbit.PerTensor(), True, Source("numpy", "float32", (10**8,)))
    return qt.codes[:4]


def calibration_cases() -> Iterator[Case]:
    from lowbit import calibration as cal

    arrays = _arrays()
    for est_name in ("MinMax", "Percentile", "MSE", "Entropy", "ACIQ"):
        cls = getattr(cal, est_name)
        yield f"calibration.{est_name}", "clip_range before fit", lambda c=cls: c().clip_range("int8")
        for name in ("normal", "nan", "fp32-max", "f64-huge", "zeros", "constant", "subnormal", "empty", "string"):
            yield (f"calibration.{est_name}", name,
                   lambda c=cls, x=arrays[name]: c().partial_fit(x).clip_range("int8"))
        yield f"calibration.{est_name}", "one value", lambda c=cls: c().partial_fit(np.array([2.0])).clip_range(
            "int8")
    yield "calibration.MSE", "nf4 target", lambda: _mse_nf4()


def _mse_nf4() -> Any:
    from lowbit import calibration as cal

    x = np.random.default_rng(2).standard_normal(4096).astype(np.float32)
    lo, hi = cal.MSE(qtype="nf4").partial_fit(x).clip_range("nf4")
    if max(abs(float(np.min(lo))), abs(float(np.max(hi)))) < 0.5:
        raise Wrong(f"MSE(qtype='nf4') clips N(0, 1) at {hi}")
    return lo, hi


def torch_cases() -> Iterator[Case]:
    import torch

    import lowbit.model as lm
    import lowbit.nn as lnn
    from lowbit.algorithms import HessianAccumulator

    def mlp() -> Any:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16)).eval()

    yield "quantize_", "model None", lambda: lm.quantize_(None, lm.WeightOnly("int8"))
    yield "quantize_", "config None", lambda: lm.quantize_(mlp(), None)
    yield "quantize_", "PerGroup(0)", lambda: lm.quantize_(mlp(), lm.WeightOnly("int4", granularity=lowbit.PerGroup(0)))
    yield "quantize_", "exclude as one string", lambda: _exclude_string()
    yield "quantize_", "batches a tensor", lambda: lm.quantize_(mlp(), lm.Static(), batches=torch.randn(4, 16))
    yield "quantize_", "same Linear twice", lambda: _shared_linear()
    yield "WeightOnly", "qtype bogus", lambda: lm.WeightOnly("bogus")
    yield "WeightOnly", "algorithm bogus", lambda: lm.WeightOnly("int4", algorithm="bogus")
    yield "WeightOnlyLinear", "in_features -1", lambda: lnn.WeightOnlyLinear(-1, 4)
    yield "WeightOnlyLinear", "out_features 0", lambda: lnn.WeightOnlyLinear(4, 0)(torch.randn(2, 4))
    yield "WeightOnlyLinear", "int input", lambda: lnn.WeightOnlyLinear(4, 2)(torch.ones(2, 4, dtype=torch.long))
    yield "WeightOnlyConv2d", "kernel -1", lambda: lnn.WeightOnlyConv2d(3, 4, -1)
    yield "Int8Linear", "in_features -1", lambda: lnn.Int8Linear(-1, 4)
    for s in (0.0, -1.0, float("nan")):
        yield "quantize_activations", f"scale {s}", lambda s=s: lnn.quantize_activations(torch.randn(4, 8), scale=s)
    yield "HessianAccumulator", "rows of 1e200", lambda: HessianAccumulator(4).partial_fit(
        torch.full((8, 4), 1e200, dtype=torch.float64)).hessian_
    yield "gptq_quantize", "all-zero Hessian", lambda: _gptq_zero()
    for method in ("minmax", "percentile", "mse", "entropy"):
        for label, data in (("one value", torch.tensor([2.5])), ("zeros", torch.zeros(16)),
                            ("nan", torch.tensor([1.0, float("nan")])), ("subnormal", torch.full((8,), 1e-45))):
            yield "nn.Observer", f"{method} saw {label}", lambda m=method, d=data: _observed(m, d)
    yield "nn.Observer", "never fed", lambda: lnn.Observer().qparams("int8")
    yield from _export_cases(mlp)
    yield "quantize", "sparse tensor", lambda: lowbit.quantize(torch.eye(4).to_sparse(), "int8")
    yield "quantize", "torch int tensor", lambda: lowbit.quantize(torch.ones(4, dtype=torch.int32), "int8")
    yield "quantize", "torch bfloat16 max", lambda: lowbit.quantize(
        torch.tensor([-3.38e38, 3.38e38], dtype=torch.bfloat16), "int8").dequantize()


def _export_cases(mlp: Callable[[], Any]) -> Iterator[Case]:
    import torch

    import lowbit.model as lm
    from lowbit.io.gguf import export_gguf

    tmp = Path(tempfile.mkdtemp())

    def nf4_mlp() -> Any:
        model = mlp()
        lm.quantize_(model, lm.WeightOnly("nf4", "group:16"))
        return model

    yield "export_gguf", "not a llama model", lambda: export_gguf(mlp(), tmp / "a.gguf", "q8_0")
    yield "export_gguf", "missing folder", lambda: export_gguf(tmp / "nowhere", tmp / "b.gguf", "q8_0")
    yield "export_gguf", "bad type", lambda: export_gguf(mlp(), tmp / "c.gguf", "q3_x")
    yield "export_onnx", "nf4 layers", lambda: _export_onnx(nf4_mlp(), tmp / "d.onnx", torch.randn(2, 16))
    yield "export_onnx", "not a module", lambda: _export_onnx("model", tmp / "e.onnx", torch.randn(2, 16))
    yield "lowbit.save", "an object", lambda: lowbit.save(object(), tmp / "f.safetensors")
    yield "lowbit.save", "a NaN tensor", lambda: lowbit.save({"w": np.array([np.nan], np.float32)},
                                                             tmp / "g.safetensors")


def _export_onnx(model: Any, path: Path, example: Any) -> Any:
    from lowbit.io.onnx import export_onnx

    return export_onnx(model, path, example)


def _observed(method: str, data: Any) -> Any:
    import lowbit.nn as lnn

    obs = lnn.Observer(method)
    obs(data)
    return obs.qparams("int8"), obs.qparams("uint8")


def _exclude_string() -> Any:
    import torch

    import lowbit.model as lm

    model = torch.nn.Sequential()
    model.add_module("lm_head", torch.nn.Linear(8, 8))
    model.add_module("body", torch.nn.Linear(8, 8))
    lm.quantize_(model, lm.WeightOnly("int8"), exclude="lm_head")
    if type(model.lm_head).__name__ != "Linear":
        raise Wrong("exclude='lm_head' quantized lm_head")
    return None


def _shared_linear() -> Any:
    import torch

    import lowbit.model as lm

    shared = torch.nn.Linear(8, 8)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared).eval()
    lm.quantize_(model, lm.WeightOnly("int8"))
    kinds = {type(model[0]).__name__, type(model[2]).__name__}
    if len(kinds) != 1:
        raise Wrong(f"the same Linear became {sorted(kinds)} at its two places")
    return None


def _gptq_zero() -> Any:
    import torch

    from lowbit.algorithms import HessianAccumulator, gptq_quantize

    w = torch.randn(8, 32)
    acc = HessianAccumulator(32).partial_fit(torch.zeros(16, 32))
    qt = gptq_quantize(w, acc.hessian_, "int4", granularity="channel")
    if not np.any(np.asarray(qt.dequantize())):
        raise Wrong("GPTQ on all-zero calibration data zeroed the weight")
    return qt


def io_cases(tmp: Path) -> Iterator[Case]:
    from lowbit.io import list_tensors, load_tensors

    files = _hostile_files(tmp)
    for name, path in files.items():
        yield "io.load_tensors", name, lambda p=path: load_tensors(p)
        yield "io.list_tensors", name, lambda p=path: list_tensors(p)
        if path.suffix in (".safetensors", "") or path.is_dir():
            yield "lowbit.load", name, lambda p=path: lowbit.load(p)
        yield "cli compare", name, lambda p=path: _cli(["compare", str(p)])
        yield "cli inspect", name, lambda p=path: _cli(["inspect", str(p)])
    garbage = tmp / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + os.urandom(64))
    yield "lowbit.load", "garbage gguf", lambda: lowbit.load(garbage)
    wrong_magic = tmp / "magic.gguf"
    wrong_magic.write_bytes(b"FUGG" + b"\x00" * 64)
    yield "lowbit.load", "wrong gguf magic", lambda: lowbit.load(wrong_magic)
    yield "cli compare", "gguf without reference", lambda: _cli(["compare", str(garbage)])


def _cli(argv: list[str]) -> Any:
    import contextlib
    import io

    from lowbit.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        status = main(argv)
    if status not in (0, 2):
        raise RuntimeError(f"exit status {status}")
    if status == 2:  # the CLI's report of a LowbitError
        raise lowbit.FileFormatError(err.getvalue().strip()[:160])
    return None


def _safetensors(header: Any, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return len(raw).to_bytes(8, "little") + raw + data


def _hostile_files(tmp: Path) -> dict[str, Path]:
    import io
    import zipfile

    out: dict[str, Path] = {}

    def put(name: str, payload: bytes) -> None:
        p = tmp / name
        p.write_bytes(payload)
        out[name] = p

    put("header-list.safetensors", _safetensors([1, 2, 3]))
    put("header-number.safetensors", _safetensors(7))
    put("no-dtype.safetensors", _safetensors({"w": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8))
    put("int-dtype.safetensors", _safetensors({"w": {"dtype": 5, "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8))
    put("nested.safetensors", _safetensors(b"[" * 100000 + b"]" * 100000))
    put("offsets-out.safetensors", _safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}},
                                                b"\0" * 8))
    put("overlap.safetensors", _safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                            b"\0" * 12))
    put("huge-header.safetensors", (2**60).to_bytes(8, "little") + b"{}")
    put("truncated.safetensors", _safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})[:-2])
    put("truncated.npz", b"PK\x03\x04" + b"\0" * 20)
    buf = io.BytesIO()
    np.savez(buf, w=np.array([1.0, "x"], object))
    put("object.npz", buf.getvalue())
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (281474976710656,), }"
    header += " " * (118 - len(header)) + "\n"
    put("huge.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    put("empty.npy", b"")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("w.npy", b"not an npy")
    put("bad-member.npz", zbuf.getvalue())
    folder = tmp / "a-folder.npy"
    folder.mkdir()
    out["directory named .npy"] = folder
    out["missing.safetensors"] = tmp / "missing.safetensors"
    return out


def all_cases(tmp: Path) -> list[tuple[str, str, str, Callable[[], Any]]]:
    """``(id, entry point, label, thunk)`` of every case."""
    groups: list[Iterator[Case]] = [core_cases(), qtensor_cases(), calibration_cases(), io_cases(tmp)]
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - the corpus runs torch cases where torch is installed
        pass
    else:
        groups.append(torch_cases())
    cases = []
    for group in groups:
        for entry, label, thunk in group:
            cases.append((f"{entry} | {label}", entry, label, thunk))
    return cases


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cases = all_cases(Path(tmp))
        only = os.environ.get("HOSTILE_ONLY")
        start = int(os.environ.get("HOSTILE_FROM", "0"))
        counts: dict[str, Counter] = {}
        for cid, entry, _, thunk in cases[start:]:
            if only and only not in cid:
                continue
            if "--counts" not in argv:
                print(json.dumps({"start": cid}), flush=True)
            outcome, detail = classify(thunk)
            counts.setdefault(entry, Counter())[outcome] += 1
            if "--counts" not in argv:
                print(json.dumps({"id": cid, "entry": entry, "outcome": outcome, "detail": detail}), flush=True)
        if "--counts" in argv:
            for entry, c in sorted(counts.items()):
                print(f"{entry:28s} " + "  ".join(f"{o} {c[o]}" for o in OUTCOMES if c[o]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
