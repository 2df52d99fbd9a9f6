"""Loading tensors from files: selection, BF16 safetensors, refusing pickles and bad headers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from lowbit.errors import FileFormatError
from lowbit.io import list_tensors, load_tensors


def test_selection_by_glob_exclude_and_ndim(tmp_path):
    arrays = {
        "a.weight": np.ones((2, 3), np.float32),
        "a.bias": np.ones(3, np.float32),
        "b.weight": np.ones((4, 4), np.float64),
        "ids": np.arange(4, dtype=np.int64),
    }
    path = tmp_path / "m.safetensors"
    save_file(arrays, str(path))
    assert list_tensors(path) == {"a.bias": "float32", "a.weight": "float32", "b.weight": "float64", "ids": "int64"}
    assert list(load_tensors(path)) == ["a.bias", "a.weight", "b.weight"]
    assert list(load_tensors(path, ["*.weight"], exclude=["b.*"])) == ["a.weight"]
    assert list(load_tensors(path, min_ndim=2)) == ["a.weight", "b.weight"]
    with pytest.raises(FileFormatError, match="not floating point"):
        load_tensors(path, ["ids"])


def _write_safetensors(path, header: dict, payload: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)


def test_bf16_entries_are_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 0.15625, 3.0e38], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    path = tmp_path / "bf.safetensors"
    _write_safetensors(path, {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bf16.tobytes())
    loaded = load_tensors(path)["w"]
    expected = (bf16.astype(np.uint32) << 16).view(np.float32).reshape(2, 2)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, expected)


def test_corrupt_headers_are_refused(tmp_path):
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(FileFormatError, match="too short"):
        load_tensors(short)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(FileFormatError, match="implausible"):
        load_tensors(huge)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 5) + b"notjs")
    with pytest.raises(FileFormatError, match="unreadable"):
        load_tensors(garbage)


def test_pickled_npy_is_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match="cannot read"):
        load_tensors(path)
