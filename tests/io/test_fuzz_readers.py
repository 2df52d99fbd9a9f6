"""Fuzz the file readers and QTensor.from_dict with mutated valid inputs (a hypothesis-driven byte mutator).

Each test starts from small valid files (a lowbit checkpoint, a plain safetensors file, ``.npy``, ``.npz``,
a GGUF file written by gguf-py) and applies byte flips, truncations, insertions, deletions, integer
rewrites with huge or boundary values and header-aware rewrites of JSON fields. Every reader must then
either return consistent results or raise a :class:`~lowbit.errors.LowbitError`; anything else
(KeyError, zipfile.BadZipFile, RecursionError, SafetensorError, ...) fails the test, and so does a read
whose traced allocations exceed the file's size plus a few MB (``tracemalloc``).

``make test`` runs a bounded, derandomized set (2,400 inputs in all). A longer, random run::

    FUZZ_EXAMPLES=20000 pytest -p no:cacheprovider tests/io/test_fuzz_readers.py

(``FUZZ_EXAMPLES`` is the number of inputs per test; set, it also draws new random inputs each run.)
atheris (coverage-guided) is not used: it is not a dependency, and hypothesis shrinks a failure to a
minimal input, which is what a regression test needs.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowbit
from lowbit.errors import LowbitError
from lowbit.io import list_tensors, load_tensors, open_checkpoint
from lowbit.io._safetensors import SafetensorsWriter
from lowbit.qtensor import QTensor

_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
_SLACK = 4 << 20  # what a read may allocate beyond the file's size: parsed headers, small arrays, NumPy's state


def _settings(default: int) -> settings:
    return settings(max_examples=_EXAMPLES or default, deadline=None, database=None, derandomize=not _EXAMPLES,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# -- seed files ---------------------------------------------------------------------------------------------------
def _checkpoint(path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 64)).astype(np.float32)
    lowbit.save({
        "int4": lowbit.quantize(w, "int4", granularity="group:32"),
        "uint4": lowbit.quantize(w, "uint4", granularity="channel"),
        "nf4": lowbit.quantize(w, "nf4", granularity="group:32", scale_format="float16"),
        "fp8": lowbit.quantize(w[:1], "fp8_e4m3"),
        "mx": lowbit.quantize(w[:1], "mxfp4"),
        "offset": lowbit.quantize(w[:2], "uint4", granularity="group:32", zero_point="float"),
        "bias": np.ones(4, np.float32),
    }, path)


def _safetensors(path: Path) -> None:
    with SafetensorsWriter(path, [("a", "F32", (2, 3)), ("b", "BF16", (4,)), ("c", "I8", (3,)),
                                  ("layer.2.w", "F16", (2, 2))], {"note": "seed"}) as w:
        w.write("a", np.arange(6, dtype=np.float32).reshape(2, 3))
        w.write("b", np.array([0x3F80, 0x4000, 0xC040, 0], np.uint16))
        w.write("c", np.array([1, -2, 3], np.int8))
        w.write("layer.2.w", np.ones((2, 2), np.float16))


def _npy(path: Path) -> None:
    np.save(path, np.arange(12, dtype=np.float32).reshape(3, 4))


def _npz(path: Path) -> None:
    np.savez(path, a=np.ones((2, 2), np.float32), b=np.arange(5, dtype=np.float64), n=np.arange(3))


def _gguf(path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint32("general.alignment", 32)
    w.add_array("tokenizer.ggml.tokens", ["a", "bc", "d"])
    w.add_array("some.ints", [1, 2, 3])
    w.add_string("general.name", "seed")
    w.add_tensor("f32", rng.standard_normal((2, 32)).astype(np.float32))
    for name, t in (("q8", gguf.GGMLQuantizationType.Q8_0), ("q4", gguf.GGMLQuantizationType.Q4_0),
                    ("q41", gguf.GGMLQuantizationType.Q4_1)):
        x = rng.standard_normal((2, 64)).astype(np.float32)
        w.add_tensor(name, gguf.quants.quantize(x, t), raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


_SEEDS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "checkpoint": (".safetensors", _checkpoint), "safetensors": (".safetensors", _safetensors),
    "npy": (".npy", _npy), "npz": (".npz", _npz), "gguf": (".gguf", _gguf),
}


class _Seeds(dict):
    def __repr__(self) -> str:  # a failing example is printed with its arguments: not the seed bytes
        return f"<seed files {sorted(self)}>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The seed files' bytes, after one unmeasured read of each (so kernels compile outside the memory bound)."""
    folder = tmp_path_factory.mktemp("seeds")
    out = _Seeds()
    for kind, (suffix, make) in _SEEDS.items():
        path = folder / f"seed{suffix}"
        make(path)
        out[kind] = path.read_bytes()
        for read in _READERS[kind]:
            _check_result(read(path), path)
    return out


# -- mutations ----------------------------------------------------------------------------------------------------
_HUGE = [0, 1, 7, 8, 255, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**48, 2**62, 2**63 - 1, 2**63,
         2**64 - 1]
_JSON_VALUES = [None, True, 2.5, -1, 0, 3, 200, 2**48, 2**64, 1e308, "x", "F32", "int4", "tensorflow", [], [1],
                [2**40, 2**40], [-1, 4], [0, 2**63], {}, {"a": 1}, "[" * 50]


@st.composite
def _mutation(draw: st.DrawFn, size: int) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "int", "int", "json", "json"]))
    pos = draw(st.integers(0, max(size - 1, 0)))
    if kind == "flip":
        return kind, pos, draw(st.integers(0, 255))
    if kind == "truncate":
        return kind, pos
    if kind == "insert":
        return kind, pos, draw(st.binary(min_size=1, max_size=16))
    if kind == "delete":
        return kind, pos, draw(st.integers(1, 64))
    if kind == "int":
        return kind, pos, draw(st.sampled_from([4, 8])), draw(st.sampled_from(_HUGE) | st.integers(0, 2**64 - 1))
    path = draw(st.lists(st.integers(0, 64), min_size=1, max_size=4))
    value = draw(st.sampled_from(_JSON_VALUES) | st.sampled_from(["delete", "swap"]))
    return kind, path, value


def _apply(data: bytes, m: tuple[Any, ...]) -> bytes:
    kind = m[0]
    if kind == "flip":
        return data[: m[1]] + bytes([m[2]]) + data[m[1] + 1 :]
    if kind == "truncate":
        return data[: m[1]]
    if kind == "insert":
        return data[: m[1]] + m[2] + data[m[1] :]
    if kind == "delete":
        return data[: m[1]] + data[m[1] + m[2] :]
    if kind == "int":
        _, pos, width, value = m
        value %= 1 << (8 * width)
        return data[:pos] + value.to_bytes(width, "little") + data[pos + width :]
    return _rewrite_json(data, m[1], m[2])


def _rewrite_json(data: bytes, path: list[int], value: Any) -> bytes:
    """Rewrite one field of a safetensors header (or of the lowbit metadata inside it), re-serialized."""
    if len(data) < 8:
        return data
    (hsize,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + hsize])
    except (ValueError, RecursionError):
        return data
    lowbit_meta = None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("lowbit"), str) and path[0] % 2:
        try:
            lowbit_meta = json.loads(meta["lowbit"])
        except (ValueError, RecursionError):
            return data
        _set(lowbit_meta, path[1:] or [0], value)
        meta["lowbit"] = json.dumps(lowbit_meta)
    else:
        _set(header, path, value)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + hsize :]


def _set(node: Any, path: list[int], value: Any) -> None:
    """Walk ``path`` (indexes into keys or items, modulo their count) and replace, delete or swap the last one."""
    for i, step in enumerate(path):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            return
        key = keys[step % len(keys)]
        child = node[key]
        if i + 1 < len(path) and isinstance(child, dict | list) and child:
            node = child
            continue
        if value == "delete":
            del node[key]
        elif value == "swap" and isinstance(child, list):
            node[key] = child[::-1]
        else:
            node[key] = value
        return


# -- readers and what their results must satisfy ------------------------------------------------------------------
def _gguf_read(path: Path) -> Any:
    from lowbit.io.gguf import read_gguf

    return read_gguf(path)


def _checkpoint_open(path: Path) -> Any:
    ckpt = open_checkpoint(path)
    return {name: ckpt.qtensor(name) for name in ckpt.tensors} | {n: ckpt.plain(n) for n in ckpt.plain_names()}


_READERS: dict[str, list[Callable[[Path], Any]]] = {
    "checkpoint": [lowbit.load, _checkpoint_open, list_tensors],
    "safetensors": [load_tensors, list_tensors, lowbit.load],
    "npy": [load_tensors, list_tensors],
    "npz": [load_tensors, list_tensors],
    "gguf": [_gguf_read, lowbit.load],
}


def _check_qtensor(qt: QTensor) -> None:
    """A QTensor that was accepted holds exactly the codes its shape needs and dequantizes to finite values."""
    numel = math.prod(qt.shape)
    want = qt.qtype.packed_nbytes(numel) if qt.qtype.packed else numel
    assert qt.data.ndim == 1 and qt.data.size == want, (qt, qt.data.shape)
    values = np.asarray(qt.dequantize())
    assert values.shape == qt.shape
    assert np.isfinite(values).all(), qt


def _check_result(result: Any, path: Path) -> None:
    if not isinstance(result, dict):
        return
    for name, value in result.items():
        if isinstance(value, QTensor):
            _check_qtensor(value)
        elif isinstance(value, np.ndarray):
            assert value.nbytes <= 2 * path.stat().st_size, (name, value.shape)  # BF16 widens to float32
    if path.suffix == ".safetensors" and result and all(isinstance(v, np.ndarray) for v in result.values()):
        _agrees_with_safetensors(result, path)
    if path.suffix == ".npy" and result and isinstance(next(iter(result.values())), np.ndarray):
        _agrees_with_numpy(result, path)


def _agrees_with_safetensors(result: dict[str, np.ndarray], path: Path) -> None:
    """Where the safetensors library also reads the file, shapes and values agree (an independent oracle)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "numpy") as f:
            theirs = {k: f.get_tensor(k) for k in f.keys() if k in result}  # noqa: SIM118
    except (SafetensorError, TypeError, ValueError, OSError):  # it refuses BF16 in NumPy, holes between tensors...
        return
    for k, a in theirs.items():
        assert a.shape == result[k].shape, k
        assert np.array_equal(a, result[k], equal_nan=True), k


def _agrees_with_numpy(result: dict[str, np.ndarray], path: Path) -> None:
    try:
        theirs = np.load(path, allow_pickle=False)
    except Exception:
        return
    (ours,) = result.values()
    assert theirs.shape == ours.shape
    assert np.array_equal(theirs, ours, equal_nan=True)


def _run(kind: str, data: bytes, folder: Path) -> None:
    path = folder / f"fuzzed{_SEEDS[kind][0]}"
    path.write_bytes(data)
    for read in _READERS[kind]:
        tracemalloc.start()
        try:
            result = read(path)
        except LowbitError:
            result = None
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < len(data) + _SLACK, f"{read.__name__} allocated {peak} bytes for a {len(data)}-byte file"
        _check_result(result, path)


def _fuzz(kind: str, count: int) -> Callable[..., None]:
    @_settings(count)
    @given(data=st.data())
    def test(seeds: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
        raw = seeds[kind]
        for m in data.draw(st.lists(_mutation(len(raw)), min_size=1, max_size=3), label="mutations"):
            raw = _apply(raw, m)
        _run(kind, raw, _folder(tmp_path_factory))

    test.__name__ = f"test_fuzz_{kind}"
    return test


_FOLDERS: dict[int, Path] = {}


def _folder(factory: pytest.TempPathFactory) -> Path:
    key = id(factory)
    if key not in _FOLDERS:
        _FOLDERS[key] = factory.mktemp("fuzz")
    return _FOLDERS[key]


test_fuzz_checkpoint = _fuzz("checkpoint", 400)
test_fuzz_safetensors = _fuzz("safetensors", 400)
test_fuzz_npy = _fuzz("npy", 300)
test_fuzz_npz = _fuzz("npz", 300)
test_fuzz_gguf = _fuzz("gguf", 400)


# -- QTensor.from_dict on mutated dictionaries --------------------------------------------------------------------
def _qtensors() -> list[QTensor]:
    w = np.random.default_rng(2).standard_normal((2, 64)).astype(np.float32)
    return [lowbit.quantize(w, "int4", granularity="group:32"), lowbit.quantize(w, "uint4", granularity="channel"),
            lowbit.quantize(w, "nf4", granularity="group:64", scale_format="double8"),
            lowbit.quantize(w, "fp4_bnb"), lowbit.quantize(w, "mxfp4"),
            lowbit.quantize(w, "uint4", granularity="group:32", zero_point="float"),
            lowbit.quantize(w, "int8", scale_format="bfloat16")]


_ARRAYS = st.sampled_from([
    np.zeros(0, np.uint8), np.full(1, 255, np.uint8), np.full(64, 200, np.uint8), np.full(2, np.nan, np.float32),
    np.array([-1.0, 1.0], np.float32), np.zeros(2, np.float32), np.full((2, 2), np.inf, np.float16),
    np.array([object()]), np.array(["x"]), np.zeros((2, 2), np.int8), np.zeros(10**5, np.uint8),
    np.float32(1.0), np.uint8(7),
])


@_settings(600)
@given(choice=st.integers(0, 6), edits=st.lists(st.tuples(st.booleans(), st.integers(0, 20), st.sampled_from(
    [*_JSON_VALUES, "delete"]) | _ARRAYS), min_size=1, max_size=3))
def test_fuzz_qtensor_from_dict(choice: int, edits: list[tuple[bool, int, Any]]) -> None:
    d = _qtensors_cache()[choice].to_dict()
    d["meta"] = dict(d["meta"])
    for in_meta, index, value in edits:
        target = d["meta"] if in_meta and isinstance(d.get("meta"), dict) and d["meta"] else d
        if not target:
            break
        key = sorted(target)[index % len(target)]
        if isinstance(value, str) and value == "delete":
            del target[key]
        else:
            target[key] = value
    tracemalloc.start()
    try:
        qt = QTensor.from_dict(d)
    except LowbitError:
        return
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < _SLACK
    _check_qtensor(qt)


_CACHE: list[QTensor] = []


def _qtensors_cache() -> list[QTensor]:
    if not _CACHE:
        _CACHE.extend(_qtensors())
    return _CACHE


# -- the mutator itself can fail: a few of its rewrites must reach the readers as intended -------------------------
def test_json_rewrite_reaches_the_header(seeds: dict[str, bytes]) -> None:
    raw = _rewrite_json(seeds["safetensors"], [1, 0], 5)  # tensor "a"'s first field, its dtype
    (hsize,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8 : 8 + hsize])["a"]["dtype"] == 5
    assert raw[8 + hsize :] == seeds["safetensors"][-len(raw[8 + hsize :]) :]  # the data is kept


def test_mutated_seed_fails_typed(seeds: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(_apply(seeds["safetensors"], ("int", 0, 8, 2**63)))  # the header size field
    with pytest.raises(lowbit.FileFormatError, match="header size"):
        load_tensors(path)


def test_memory_bound_catches_an_allocation(tmp_path: Path) -> None:
    """The bound the fuzz tests apply is tight enough to see a reader that allocates what a header claims."""
    def greedy(p: Path) -> Any:
        return {"x": np.ones(_SLACK // 8 + 4096, np.float64)}  # what a reader trusting a header would do

    _READERS["greedy"] = [greedy]
    _SEEDS["greedy"] = (".npy", _npy)
    try:
        with pytest.raises(AssertionError, match="allocated"):
            _run("greedy", b"\x93NUMPY", tmp_path)
    finally:
        del _READERS["greedy"], _SEEDS["greedy"]
