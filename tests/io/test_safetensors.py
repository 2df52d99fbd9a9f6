"""lowbit.io._safetensors: round trips against the safetensors package, hostile headers, atomic writes.

Expected values come from the ``safetensors`` package (its NumPy and torch savers and loaders)
and from NumPy; hostile files are built byte by byte here.
"""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from lowbit.errors import FileFormatError
from lowbit.io._safetensors import SafetensorsFile, SafetensorsWriter

torch = pytest.importorskip("torch")
from safetensors.torch import save_file as torch_save_file  # noqa: E402

NUMPY_DTYPES = {
    "F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "U8": np.uint8, "I16": np.int16,
    "I32": np.int32, "I64": np.int64, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64, "BOOL": np.bool_,
}
SHAPES = {"matrix": (3, 5), "empty": (0, 4), "scalar": (), "vector": (7,)}


def _sample(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def _raw_file(path, header, payload: bytes = b"") -> None:
    """A safetensors-shaped file: 8-byte size, the header (a JSON-able object or raw bytes), the payload."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + payload)


# -- reading files the safetensors package wrote ---------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
def test_reads_what_safetensors_numpy_wrote(tmp_path, dtype, shape):
    path = tmp_path / "n.safetensors"
    arrays = {"t": _sample(NUMPY_DTYPES[dtype], shape), "other": _sample(np.float32, (2, 2), seed=1)}
    np_save_file(arrays, str(path))
    f = SafetensorsFile(path)
    got = f.array("t")
    assert sorted(f.names) == ["other", "t"]
    assert (f.dtype("t"), f.shape("t"), f.nbytes("t")) == (dtype, shape, arrays["t"].nbytes)
    assert got.dtype == arrays["t"].dtype and got.shape == shape
    np.testing.assert_array_equal(got, arrays["t"])
    np.testing.assert_array_equal(f.array("other"), arrays["other"])
    assert not got.flags.writeable


@pytest.mark.parametrize("shape", [(6, 4), (0, 3), (), (5,)], ids=["matrix", "empty", "scalar", "vector"])
def test_bf16_from_safetensors_torch_widens_exactly(tmp_path, shape):
    path = tmp_path / "t.safetensors"
    t = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16) * 1e3
    torch_save_file({"w": t, "h": t.to(torch.float16)}, str(path))
    f = SafetensorsFile(path)
    assert f.dtype("w") == "BF16" and f.shape("w") == shape
    expected = t.float().numpy()
    got = f.float32("w")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(f.array("w"), t.view(torch.int16).numpy().view(np.uint16))  # raw bits
    np.testing.assert_array_equal(f.float32("h"), t.to(torch.float16).float().numpy())
    if len(shape) and shape[0] > 2:
        np.testing.assert_array_equal(f.float32("w", rows=slice(1, 4)), expected[1:4])
        np.testing.assert_array_equal(f.float32("w", rows=slice(4, None, 1)), expected[4:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int8, torch.uint8, torch.int16, torch.int32,
                                   torch.int64, torch.bool], ids=str)
def test_reads_what_safetensors_torch_wrote(tmp_path, dtype):
    path = tmp_path / "t.safetensors"
    t = (torch.arange(-6, 6).reshape(3, 4) * 7).to(dtype)
    torch_save_file({"a": t, "empty": torch.zeros((0, 2), dtype=dtype), "s": t[1, 2].clone()}, str(path))
    f = SafetensorsFile(path)
    np.testing.assert_array_equal(f.array("a"), t.numpy())
    assert f.array("empty").shape == (0, 2) and f.array("s").shape == ()
    np.testing.assert_array_equal(f.array("s"), t[1, 2].numpy())


@pytest.mark.parametrize("dtype", ["F32", "F16", "F64"])
def test_float32_reads_row_ranges_of_every_float_dtype(tmp_path, dtype):
    a = _sample(NUMPY_DTYPES[dtype], (7, 3))
    path = tmp_path / "r.safetensors"
    np_save_file({"pad": np.ones(5, np.int8), "w": a}, str(path))
    f = SafetensorsFile(path)
    np.testing.assert_array_equal(f.float32("w"), a.astype(np.float32))
    for rows in (slice(0, 3), slice(2, 7), slice(5, 100), slice(6, 2), slice(-3, None)):
        np.testing.assert_array_equal(f.float32("w", rows), a.astype(np.float32)[rows])
    with pytest.raises(ValueError, match="contiguous rows"):
        f.float32("w", slice(0, 7, 2))


def test_float32_of_a_file_that_shrank_after_opening_is_a_format_error(tmp_path):
    path = tmp_path / "s.safetensors"
    np_save_file({"w": np.ones((64, 64), np.float32)}, str(path))
    f = SafetensorsFile(path)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - 1024)
    with pytest.raises(FileFormatError, match="'w' ends past the end of the file"):
        f.float32("w")


def test_float32_refuses_integer_tensors(tmp_path):
    path = tmp_path / "i.safetensors"
    np_save_file({"ids": np.arange(4)}, str(path))
    with pytest.raises(FileFormatError, match="'ids' is I64, not a float tensor"):
        SafetensorsFile(path).float32("ids")
    with pytest.raises(FileFormatError, match="no tensor 'nope'"):
        SafetensorsFile(path).array("nope")


def test_metadata_round_trips_both_ways(tmp_path):
    meta = {"format": "pt", "note": "ünïcode ✓", "empty": ""}
    theirs = tmp_path / "theirs.safetensors"
    np_save_file({"a": np.ones(2, np.float32)}, str(theirs), metadata=meta)
    assert SafetensorsFile(theirs).metadata == meta
    ours = tmp_path / "ours.safetensors"
    with SafetensorsWriter(ours, [("a", "F32", (2,))], meta) as w:
        w.write("a", np.ones(2, np.float32))
    with safe_open(str(ours), framework="numpy") as fh:
        assert fh.metadata() == meta
    no_meta = tmp_path / "none.safetensors"
    np_save_file({"a": np.ones(2, np.float32)}, str(no_meta))
    assert SafetensorsFile(no_meta).metadata == {}


# -- files SafetensorsWriter wrote, read by the safetensors package ---------------------------------------
def test_writer_output_loads_with_safetensors(tmp_path):
    arrays = {f"{dtype}.{name}": _sample(np_dtype, shape, seed=i)
              for i, (dtype, np_dtype) in enumerate(NUMPY_DTYPES.items()) for name, shape in SHAPES.items()}
    path = tmp_path / "ours.safetensors"
    entries = [(n, n.split(".")[0], a.shape) for n, a in arrays.items()]
    with SafetensorsWriter(path, entries, {"k": "v"}) as w:
        for n, a in arrays.items():
            w.write(n, a)
    loaded = np_load_file(str(path))
    assert set(loaded) == set(arrays)
    for n, a in arrays.items():
        assert loaded[n].dtype == a.dtype and loaded[n].shape == a.shape, n
        np.testing.assert_array_equal(loaded[n], a, err_msg=n)
    with safe_open(str(path), framework="numpy") as fh:
        assert set(fh.keys()) == set(arrays)
        np.testing.assert_array_equal(fh.get_tensor("F64.matrix"), arrays["F64.matrix"])


def test_writer_bf16_bits_load_as_torch_bfloat16(tmp_path):
    t = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    path = tmp_path / "bf.safetensors"
    with SafetensorsWriter(path, [("w", "BF16", (4, 3))]) as w:
        w.write("w", t.view(torch.int16).numpy().view(np.uint16))
    with safe_open(str(path), framework="pt") as fh:
        back = fh.get_tensor("w")
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)


def test_writer_stores_big_endian_arrays_little_endian(tmp_path):
    a = np.array([[1.5, -2.0], [3.25, 1e30]], dtype=">f4")
    path = tmp_path / "be.safetensors"
    with SafetensorsWriter(path, [("a", "F32", a.shape)]) as w:
        w.write("a", a)
    np.testing.assert_array_equal(np_load_file(str(path))["a"], a.astype("<f4"))


@given(
    dtype=st.sampled_from(sorted(NUMPY_DTYPES)),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(tmp_path_factory, dtype, shape, seed):
    folder = tmp_path_factory.mktemp("rt")
    a = _sample(NUMPY_DTYPES[dtype], shape, seed)
    ours, theirs = folder / "ours.safetensors", folder / "theirs.safetensors"
    with SafetensorsWriter(ours, [("x", dtype, shape)]) as w:
        w.write("x", a)
    np_save_file({"x": a}, str(theirs))
    np.testing.assert_array_equal(np_load_file(str(ours))["x"], a)
    back = SafetensorsFile(theirs).array("x")
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)


# -- hostile files ----------------------------------------------------------------------------------------
def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


# (id, header (object or raw bytes) or raw file bytes via "file", payload, message fragment, names tensor 'w')
HOSTILE = [
    ("header-list", b"[]", b"", "must be a JSON object", False),
    ("header-number", b"3", b"", "must be a JSON object", False),
    ("header-string", b'"w"', b"", "must be a JSON object", False),
    ("invalid-json", b'{"w": {"dtype": ', b"", "not valid UTF-8 JSON", False),
    ("invalid-utf8", b'{"\xff\xfe": 1}', b"", "not valid UTF-8 JSON", False),
    ("utf16-json", "{}".encode("utf-16"), b"", "not valid UTF-8 JSON", False),
    ("nested-10000", b"[" * 10000 + b"]" * 10000, b"", "safetensors header", False),
    ("nested-10000-in-entry", b'{"w": ' + b"[" * 10000 + b"]" * 10000 + b"}", b"", "safetensors header", False),
    ("nested-100", b'{"w": ' + b"[" * 100 + b"]" * 100 + b"}", b"", "nests deeper", False),
    ("int-of-5000-digits", b'{"w": ' + b"7" * 5000 + b"}", b"", "not valid UTF-8 JSON", False),
    ("entry-not-object", {"w": [1, 2]}, b"", "must be an object", True),
    ("entry-number", {"w": 3}, b"", "must be an object", True),
    ("no-dtype", {"w": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype None", True),
    ("dtype-int", {"w": _entry(dtype=4)}, b"\0" * 8, "unknown dtype 4", True),
    ("dtype-unknown", {"w": _entry(dtype="F128")}, b"\0" * 8, "unknown dtype 'F128'", True),
    ("dtype-lowercase", {"w": _entry(dtype="f32")}, b"\0" * 8, "unknown dtype 'f32'", True),
    ("shape-string", {"w": {**_entry(), "shape": "2"}}, b"\0" * 8, "shape must be a list", True),
    ("shape-missing", {"w": {"dtype": "F32", "data_offsets": [0, 8]}}, b"\0" * 8, "shape must be a list", True),
    ("shape-negative", {"w": _entry(shape=(-2,))}, b"\0" * 8, "non-negative ints", True),
    ("shape-bool", {"w": _entry(shape=(True, 2))}, b"\0" * 8, "non-negative ints", True),
    ("shape-float", {"w": _entry(shape=(2.0,))}, b"\0" * 8, "non-negative ints", True),
    ("shape-100-dims", {"w": _entry(shape=(0,) * 100, offsets=(0, 0))}, b"", "dimensions", True),
    ("empty-huge-dims", {"w": _entry(shape=(0, 2**70), offsets=(0, 0))}, b"", "more than", True),
    ("offsets-missing", {"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets must be two ints", True),
    ("offsets-one", {"w": _entry(offsets=(0,))}, b"\0" * 8, "data_offsets must be two ints", True),
    ("offsets-three", {"w": _entry(offsets=(0, 4, 8))}, b"\0" * 8, "data_offsets must be two ints", True),
    ("offsets-strings", {"w": _entry(offsets=("0", "8"))}, b"\0" * 8, "data_offsets must be two ints", True),
    ("offsets-floats", {"w": _entry(offsets=(0.0, 8.0))}, b"\0" * 8, "data_offsets must be two ints", True),
    ("offsets-bools", {"w": _entry(offsets=(False, True))}, b"\0" * 8, "data_offsets must be two ints", True),
    ("offsets-past-end", {"w": _entry()}, b"\0" * 5, "outside", True),
    ("offsets-negative", {"w": _entry(offsets=(-4, 4))}, b"\0" * 8, "outside", True),
    ("offsets-reversed", {"w": _entry(offsets=(8, 0))}, b"\0" * 8, "outside", True),
    ("offsets-huge", {"w": _entry(offsets=(0, 2**64 + 8))}, b"\0" * 8, "outside", True),
    ("size-vs-shape", {"w": _entry(shape=(3,), offsets=(0, 8))}, b"\0" * 8, "needs 12", True),
    ("size-vs-dtype", {"w": _entry(dtype="F64", offsets=(0, 8))}, b"\0" * 8, "needs 16", True),
    ("overlap", {"w": _entry(offsets=(0, 8)), "v": _entry(offsets=(4, 12))}, b"\0" * 12, "overlap", True),
    ("overlap-inside", {"w": _entry(shape=(4,), offsets=(0, 16)), "v": _entry(offsets=(4, 12)),
                        "u": _entry(offsets=(16, 24))}, b"\0" * 24, "overlap", True),
    ("metadata-list", {"__metadata__": ["a"], "w": _entry()}, b"\0" * 8, "__metadata__", False),
    ("metadata-empty-list", {"__metadata__": [], "w": _entry()}, b"\0" * 8, "__metadata__", False),
    ("metadata-number", {"__metadata__": 0, "w": _entry()}, b"\0" * 8, "__metadata__", False),
    ("metadata-int-value", {"__metadata__": {"a": 1}, "w": _entry()}, b"\0" * 8, "__metadata__", False),
    ("metadata-nested", {"__metadata__": {"a": {"b": "c"}}, "w": _entry()}, b"\0" * 8, "__metadata__", False),
]


@pytest.mark.parametrize(("header", "payload", "fragment", "names_tensor"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
def test_hostile_header_is_refused(tmp_path, header, payload, fragment, names_tensor):
    path = tmp_path / "hostile.safetensors"
    _raw_file(path, header, payload)
    with pytest.raises(FileFormatError) as info:
        SafetensorsFile(path)
    message = str(info.value)
    assert str(path) in message and fragment in message
    assert "\n" not in message
    if names_tensor:
        assert "'w'" in message


def test_the_package_refuses_the_same_files(tmp_path):
    """Cross-check a few hostile cases against the safetensors package, so the cases are really invalid."""
    for case in ("offsets-past-end", "size-vs-shape", "overlap", "shape-negative", "header-list"):
        _, header, payload, _, _ = next(h for h in HOSTILE if h[0] == case)
        path = tmp_path / f"{case}.safetensors"
        _raw_file(path, header, payload)
        with pytest.raises(Exception):  # noqa: B017 - the package's own error types vary by version
            np_load_file(str(path))


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "too short"),
        (b"\x01\x02\x03", "too short"),
        (struct.pack("<Q", 2**40) + b"{}", "implausible"),
        (struct.pack("<Q", 100) + b"{}", "truncated"),
        (struct.pack("<Q", 2**64 - 1) + b"{}", "implausible"),
    ],
    ids=["empty", "3-bytes", "header-2**40", "header-past-end", "header-2**64-1"],
)
def test_sizes_that_do_not_fit_are_refused(tmp_path, raw, fragment):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(FileFormatError, match=fragment) as info:
        SafetensorsFile(path)
    assert str(path) in str(info.value)


def test_folder_and_missing_file(tmp_path):
    folder = tmp_path / "model.safetensors"
    folder.mkdir()
    with pytest.raises(FileFormatError, match="is a folder") as info:
        SafetensorsFile(folder)
    assert str(folder) in str(info.value)
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FileFormatError, match="cannot read") as info:
        SafetensorsFile(missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("consistent", [False, True], ids=["offsets-small", "offsets-match-shape"])
def test_a_2_to_the_48_element_tensor_is_refused_without_allocating(tmp_path, consistent):
    n = 2**48
    path = tmp_path / "huge.safetensors"
    end = 4 * n if consistent else 16
    _raw_file(path, {"w": _entry(shape=(n,), offsets=(0, end))}, b"\0" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match="'w'") as info:
            SafetensorsFile(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 1 << 20, f"{peak} bytes allocated while refusing"


# -- the writer -------------------------------------------------------------------------------------------
def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writing_out_of_order_is_refused_and_leaves_nothing(tmp_path):
    path, entries = tmp_path / "w.safetensors", [("a", "F32", (2,)), ("b", "F32", (2,))]
    with pytest.raises(FileFormatError, match="written out of order") as info, SafetensorsWriter(path, entries) as w:
        w.write("b", np.zeros(2, np.float32))
    assert str(path) in str(info.value) and "'b'" in str(info.value) and "expected 'a'" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_writing_past_the_last_tensor_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(FileFormatError, match="expected 'nothing'"), SafetensorsWriter(path, [("a", "F32", (2,))]) as w:
        w.write("a", np.zeros(2, np.float32))
        w.write("a", np.zeros(2, np.float32))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("array", [np.zeros(3, np.float32), np.zeros(2, np.float64), np.zeros((2, 2), np.int8)],
                         ids=["too-many", "wrong-dtype-size", "too-few"])
def test_a_wrong_byte_count_is_refused(tmp_path, array):
    path = tmp_path / "w.safetensors"
    with pytest.raises(FileFormatError, match=r"'a' has .* bytes, its entry 8"), \
            SafetensorsWriter(path, [("a", "F32", (2,))]) as w:
        w.write("a", array)
    assert _leftovers(tmp_path) == []


def test_parts_must_add_up_to_the_entry(tmp_path):
    path = tmp_path / "w.safetensors"
    with SafetensorsWriter(path, [("a", "I8", (6,))]) as w:
        w.write_parts("a", [np.array([1, 2], np.int8), np.array([3, 4, 5, 6], np.int8)])
    assert SafetensorsFile(path).array("a").tolist() == [1, 2, 3, 4, 5, 6]
    for parts in ([np.zeros(4, np.int8)], [np.zeros(4, np.int8), np.zeros(4, np.int8)]):
        with pytest.raises(FileFormatError, match=r"'a' has .* bytes, its entry 6"), \
                SafetensorsWriter(tmp_path / "x.safetensors", [("a", "I8", (6,))]) as w:
            w.write_parts("a", parts)
    assert _leftovers(tmp_path) == ["w.safetensors"]  # the refused writes left nothing


def test_forgetting_a_tensor_is_refused_at_commit_and_leaves_nothing(tmp_path):
    path, entries = tmp_path / "w.safetensors", [("a", "F32", (2,)), ("b", "I8", (1,))]
    with pytest.raises(FileFormatError, match=r"1 declared tensor.* not written: \['b'\]"), \
            SafetensorsWriter(path, entries) as w:
        w.write("a", np.zeros(2, np.float32))
    assert _leftovers(tmp_path) == []


def test_an_exception_in_the_block_leaves_neither_file_nor_temp(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(KeyError, match="boom"), SafetensorsWriter(path, [("a", "F32", (2,))]) as w:
        assert _leftovers(tmp_path) != []  # the temporary file exists while writing
        w.write("a", np.zeros(2, np.float32))
        raise KeyError("boom")
    assert _leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "w.safetensors"
    np_save_file({"old": np.arange(3, dtype=np.float32)}, str(path))
    before = path.read_bytes()
    with pytest.raises(RuntimeError), SafetensorsWriter(path, [("a", "F32", (2,))]) as w:
        w.write("a", np.zeros(2, np.float32))
        raise RuntimeError("interrupted")
    assert path.read_bytes() == before and _leftovers(tmp_path) == ["w.safetensors"]


def test_a_commit_leaves_only_the_destination(tmp_path):
    path = tmp_path / "w.safetensors"
    with SafetensorsWriter(path, [("a", "F32", (2,))]) as w:
        w.write("a", np.array([1, 2], np.float32))
    assert _leftovers(tmp_path) == ["w.safetensors"]
    np.testing.assert_array_equal(np_load_file(str(path))["a"], [1, 2])


@pytest.mark.parametrize("name_length", range(1, 10))
@pytest.mark.parametrize("meta", [None, {"m": "xyz"}], ids=["no-meta", "meta"])
def test_the_data_section_starts_8_byte_aligned(tmp_path, name_length, meta):
    path = tmp_path / "w.safetensors"
    name = "n" * name_length
    with SafetensorsWriter(path, [(name, "F64", (1,))], meta) as w:
        w.write(name, np.array([2.5]))
    raw = path.read_bytes()
    (hsize,) = struct.unpack("<Q", raw[:8])
    assert (8 + hsize) % 8 == 0
    assert struct.unpack("<d", raw[8 + hsize:]) == (2.5,)
    json.loads(raw[8 : 8 + hsize])  # the padding keeps the header valid JSON


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([("a", "F128", (2,))], "unknown safetensors dtype 'F128'"),
        ([("a", "F32", (-1,))], "non-negative"),
        ([("a", "F32", ("x",))], "not a sequence of ints"),
        ([("a", "F32", (2,)), ("a", "F32", (2,))], "twice"),
    ],
    ids=["dtype", "negative-shape", "string-shape", "duplicate"],
)
def test_bad_declarations_are_refused_before_any_file(tmp_path, entries, fragment):
    with pytest.raises(FileFormatError, match=fragment):
        SafetensorsWriter(tmp_path / "w.safetensors", entries)
    assert _leftovers(tmp_path) == []


def test_a_missing_folder_is_a_file_format_error(tmp_path):
    path = tmp_path / "nowhere" / "w.safetensors"
    with pytest.raises(FileFormatError, match="folder must exist") as info:
        SafetensorsWriter(path, [("a", "F32", (2,))])
    assert str(path) in str(info.value)


# -- issue 16: hostile inputs --------------------------------------------------------------------------------------
def _issue16_file(tmp_path, header_text: bytes, data: bytes = b""):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(header_text)) + header_text + data)
    return path


@pytest.mark.parametrize(("header_text", "fragment"), [
    (b"[1, 2]", "must be a JSON object, got list"),
    (b"3", "must be a JSON object, got int"),
    (b'{"a": {"shape": [1], "data_offsets": [0, 4]}}', "unknown dtype None"),
    (b'{"a": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}}', "unknown dtype 5"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid UTF-8 JSON"),
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}, '
     b'"b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', "overlap"),
    (b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', "lie outside the 12 data bytes"),
], ids=["list", "number", "no-dtype", "int-dtype", "deep-nesting", "overlap", "past-the-end"])
def test_issue16_headers_are_refused_typed_where_the_package_raises_its_own_error(tmp_path, header_text, fragment):
    path = _issue16_file(tmp_path, header_text, bytes(12))
    with pytest.raises(FileFormatError, match=fragment) as info:
        SafetensorsFile(path)
    assert str(info.value).startswith(str(path))  # the path, not its repr: the error is not wrapped twice
    with pytest.raises(Exception) as theirs:
        safe_open(str(path), "numpy")
    assert not isinstance(theirs.value, FileFormatError)


def test_issue16_an_implausible_header_size_is_reported_once_with_the_path(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 2**48) + b"{}")
    with pytest.raises(FileFormatError) as info:
        SafetensorsFile(path)
    assert str(info.value).startswith(f"{path}: the header size field claims an implausible {2**48} bytes")
    assert "PosixPath" not in str(info.value) and "cannot read" not in str(info.value)
