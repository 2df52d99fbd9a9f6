"""Loading tensors from files: selection, BF16 safetensors, refusing pickles and bad headers."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from lowbit.errors import FileFormatError
from lowbit.io import SUPPORTED_SUFFIXES, iter_tensors, list_tensors, load_tensors


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


# -- one validating reader: valid files keep loading exactly ----------------------------------------------
def test_safetensors_loads_equal_to_the_package_in_natural_order(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {f"layer.{i}.weight": rng.standard_normal((3, 4)).astype(dt)
              for i, dt in zip((10, 2, 1), (np.float16, np.float32, np.float64), strict=True)}
    arrays["scalar"] = np.array(1.5, np.float32)
    path = tmp_path / "m.safetensors"
    save_file(arrays, str(path))
    oracle = load_file(str(path))
    loaded = load_tensors(path)
    assert list(loaded) == ["layer.1.weight", "layer.2.weight", "layer.10.weight", "scalar"]
    for name, array in loaded.items():
        assert array.dtype == oracle[name].dtype and array.shape == oracle[name].shape
        np.testing.assert_array_equal(array, oracle[name])


def test_bf16_from_torch_is_widened_like_torch_does(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file as torch_save_file

    t = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    path = tmp_path / "bf.safetensors"
    torch_save_file({"w": t}, str(path))
    assert list_tensors(path) == {"w": "bfloat16"}
    np.testing.assert_array_equal(load_tensors(path)["w"], t.float().numpy())


def test_only_the_selected_tensors_are_read(tmp_path):
    big = np.zeros((1024, 2048), np.uint16)  # 4 MiB of BF16, 8 MiB once widened
    header = {"big": {"dtype": "BF16", "shape": [1024, 2048], "data_offsets": [0, big.nbytes]},
              "small": {"dtype": "F32", "shape": [2, 2], "data_offsets": [big.nbytes, big.nbytes + 16]}}
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, header, big.tobytes() + np.arange(4, dtype="<f4").tobytes())
    tracemalloc.start()
    try:
        loaded = load_tensors(path, ["small"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(loaded) == ["small"] and loaded["small"].tolist() == [[0, 1], [2, 3]]
    assert peak < 1 << 20, f"{peak} bytes allocated to load one 16-byte tensor"


def test_iter_tensors_reads_each_tensor_when_its_turn_comes(tmp_path):
    header = {f"t{i}": {"dtype": "BF16", "shape": [512, 1024], "data_offsets": [i << 20, (i + 1) << 20]}
              for i in range(4)}  # 1 MiB each, 2 MiB once widened
    path = tmp_path / "m.safetensors"
    _write_safetensors(path, header, bytes(4 << 20))
    tracemalloc.start()
    try:
        names = []
        for name, array in iter_tensors(path):
            names.append(name)
            assert array.shape == (512, 1024) and array.dtype == np.float32
            del array
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert names == ["t0", "t1", "t2", "t3"]
    assert peak < 4 << 20, f"{peak} bytes held while iterating over four 2 MiB tensors (all four: 8 MiB)"
    assert {n: a.tolist() for n, a in iter_tensors(path, ["t1"])} == {n: a.tolist() for n, a in
                                                                      load_tensors(path, ["t1"]).items()}


def test_iter_tensors_refuses_an_empty_selection_before_yielding(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": np.ones((2, 2), np.float32)}, str(path))
    with pytest.raises(FileFormatError, match="no floating-point tensor matches"):
        iter_tensors(path, ["nope*"])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [">f4", "<f8", "<f2"])
def test_npy_layouts_load_equal_to_numpy(tmp_path, dtype, order):
    a = np.asarray(np.arange(12).reshape(3, 4) * 0.5, dtype=dtype, order=order)
    path = tmp_path / "x.npy"
    np.save(path, a)
    loaded = load_tensors(path)["x"]
    np.testing.assert_array_equal(loaded, np.load(path))
    assert loaded.dtype == np.dtype(dtype).newbyteorder("=") and loaded.dtype.isnative


def test_npz_members_load_equal_to_numpy(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"w": rng.standard_normal((4, 5)), "h": rng.standard_normal(3).astype(np.float16),
              "f": np.asfortranarray(rng.standard_normal((2, 3)).astype(np.float32)), "empty": np.zeros((0, 3)),
              "s": np.float64(2.0), "ids": np.arange(3)}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        with np.load(path) as oracle:
            assert list_tensors(path) == {k: oracle[k].dtype.name for k in oracle.files}
            loaded = load_tensors(path)
            assert list(loaded) == ["w", "h", "f", "empty", "s"]
            for name, array in loaded.items():
                assert array.dtype == oracle[name].dtype and array.shape == oracle[name].shape
                np.testing.assert_array_equal(array, oracle[name])


# -- refusals ---------------------------------------------------------------------------------------------
def _npy(header: str, data: bytes = b"", version: int = 1) -> bytes:
    text = header.encode("latin1")
    size = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes((version, 0)) + size + text + data


def _stored_npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def _npy_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


HUGE = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**48},), }}"


def test_npy_header_claiming_2_to_the_48_elements_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(_npy(HUGE, b"\0" * 64))
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match="truncated") as info:
            load_tensors(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value) and "281474976710656" in str(info.value)
    assert peak < 1 << 20, f"{peak} bytes allocated while refusing"


def test_npz_member_claiming_2_to_the_48_elements_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    path.write_bytes(_stored_npz({"ok.npy": _npy_of(np.ones(2, np.float32)), "w.npy": _npy(HUGE, b"\0" * 64)}))
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match=r"member 'w\.npy'") as info:
            load_tensors(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 1 << 20, f"{peak} bytes allocated while refusing"


NPY_CASES = {
    "truncated-data": (_npy_of(np.arange(12, dtype=np.float32))[:-5], "truncated"),
    "object-array": (_npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\x80\x04N."), "pickles"),
    "not-npy": (b"PK\x03\x04 this is something else", "not a .npy array"),
    "short": (b"\x93NUM", "not a .npy array"),
    "empty": (b"", "not a .npy array"),
    "negative-shape": (_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", b"\0" * 8), "non-negative"),
    "bool-shape": (_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (True,), }", b"\0" * 8), "non-negative"),
    "empty-huge-dims": (_npy(f"{{'descr': '<f4', 'fortran_order': False, 'shape': (0, {2**70}), }}"), "more than"),
    "garbage-header": (_npy("{{{{{{{{"), "unreadable .npy header"),
    "not-a-dict": (_npy("[1, 2, 3]"), "unreadable .npy header"),
    "missing-keys": (_npy("{'descr': '<f4'}"), "unreadable .npy header"),
    "bad-descr": (_npy("{'descr': 'f99', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8), "unreadable"),
    "header-len-4GiB": (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{", "header claims 4294967295"),
    "header-len-past-end": (b"\x93NUMPY\x01\x00" + struct.pack("<H", 500) + b"{}", "truncated"),
    "version-9": (b"\x93NUMPY\x09\x00" + struct.pack("<H", 2) + b"{}", "version 9.0"),
}


@pytest.mark.parametrize(("raw", "fragment"), NPY_CASES.values(), ids=NPY_CASES.keys())
def test_hostile_npy_is_refused(tmp_path, raw, fragment):
    path = tmp_path / "x.npy"
    path.write_bytes(raw)
    for call in (list_tensors, load_tensors):
        with pytest.raises(FileFormatError, match=fragment) as info:
            call(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pickled_npy_message_says_pickles_are_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match="refuses pickles") as info:
        load_tensors(path)
    assert str(path) in str(info.value)


def _corrupt_member_data(raw: bytes, member: bytes, skip: int) -> bytes:
    """Flip 16 bytes ``skip`` bytes into a member's data (the zip directory stays intact)."""
    at = raw.index(member) + len(member) + skip
    return raw[:at] + bytes(b ^ 0x5A for b in raw[at : at + 16]) + raw[at + 16 :]


def _npz_cases() -> dict[str, tuple[bytes, str]]:
    good = _npy_of(np.arange(256, dtype=np.float32))
    plain = _stored_npz({"a.npy": _npy_of(np.ones(3, np.float32)), "w.npy": good})
    packed = _stored_npz({"a.npy": _npy_of(np.ones(3, np.float32)), "w.npy": good}, zipfile.ZIP_DEFLATED)
    obj = _npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\x80\x04N.")
    return {
        "truncated-half": (plain[: len(plain) // 2], "corrupt or truncated"),
        "truncated-end": (plain[:-1], "corrupt or truncated"),
        "not-a-zip": (b"hello, this is not an archive" * 4, "corrupt or truncated"),
        "stored-member-crc": (_corrupt_member_data(plain, b"w.npy", 200), "member 'w.npy'"),
        "deflated-member-corrupt": (_corrupt_member_data(packed, b"w.npy", 20), "member 'w.npy'"),
        "member-truncated-npy": (_stored_npz({"w.npy": good[:-7]}), "member 'w.npy'"),
        "member-object-array": (_stored_npz({"w.npy": obj}), "member 'w.npy'.*pickles"),
        "member-not-npy": (_stored_npz({"w.npy": good, "notes.txt": b"hello"}), "member 'notes.txt' is not a .npy"),
        "member-garbage": (_stored_npz({"w.npy": b"\x93NUMPY\x01\x00\x04\x00{{{{"}), "member 'w.npy'"),
    }


NPZ_CASES = _npz_cases()


@pytest.mark.parametrize(("raw", "fragment"), NPZ_CASES.values(), ids=NPZ_CASES.keys())
def test_hostile_npz_is_refused(tmp_path, raw, fragment):
    path = tmp_path / "x.npz"
    path.write_bytes(raw)
    with pytest.raises(FileFormatError, match=fragment) as info:
        load_tensors(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_npz_bytes_only_ever_raise_file_format_error(tmp_path):
    """Every truncation and many byte flips of real archives: a FileFormatError or the right arrays."""
    rng = np.random.default_rng(7)
    arrays = {"w": rng.standard_normal((16, 8)).astype(np.float32), "b": np.arange(5.0)}
    for save in (np.savez, np.savez_compressed):
        buf = io.BytesIO()
        save(buf, **arrays)
        raw = buf.getvalue()
        variants = [raw[:cut] for cut in range(0, len(raw), 7)]
        for _ in range(150):
            flipped = bytearray(raw)
            flipped[rng.integers(len(raw))] ^= int(rng.integers(1, 256))
            variants.append(bytes(flipped))
        for i, variant in enumerate(variants):
            path = tmp_path / f"{save.__name__}-{i}.npz"
            path.write_bytes(variant)
            try:
                load_tensors(path)
            except FileFormatError as err:
                assert str(path) in str(err) and "\n" not in str(err)


def test_a_folder_is_named_a_folder(tmp_path):
    for suffix in SUPPORTED_SUFFIXES:
        folder = tmp_path / f"model{suffix}"
        folder.mkdir()
        for call in (list_tensors, load_tensors):
            with pytest.raises(FileFormatError, match="is a folder") as info:
                call(folder)
            assert "no such file" not in str(info.value) and str(folder) in str(info.value)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".pkl", ".ckpt", ".PT"])
def test_pickle_checkpoints_are_refused_with_the_conversion(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04N.")  # a pickle of None: it must never be unpickled
    with pytest.raises(FileFormatError) as info:
        load_tensors(path)
    message = str(info.value)
    assert str(path) in message and "pickles" in message
    assert "safetensors.torch.save_file(torch.load(" in message and "weights_only=True" in message


# -- the command line: one line and status 2 for every hostile file ---------------------------------------
def _cli_cases(tmp_path) -> dict[str, object]:
    cases: dict[str, object] = {}
    for suffix, table in ((".npy", NPY_CASES), (".npz", NPZ_CASES)):
        for key, (raw, _) in table.items():
            path = tmp_path / f"{key}{suffix}"
            path.write_bytes(raw)
            cases[f"{suffix}-{key}"] = path
    st = {
        "short": b"\x01\x02",
        "header-2**40": struct.pack("<Q", 2**40) + b"{}",
        "deep": struct.pack("<Q", 20000) + b"[" * 10000 + b"]" * 10000,
        "list": struct.pack("<Q", 2) + b"[]",
        "overlap": None,
        "truncated": None,
    }
    for key, raw in st.items():
        path = tmp_path / f"st-{key}.safetensors"
        if raw is None:
            header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
            _write_safetensors(path, header, b"\0" * (12 if key == "overlap" else 10))
        else:
            path.write_bytes(raw)
        cases[f"st-{key}"] = path
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    cases["folder"] = folder
    cases["missing"] = tmp_path / "missing.npz"
    for suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"):
        (tmp_path / f"model{suffix}").write_bytes(b"\x80\x04N.")
        cases[f"pickle{suffix}"] = tmp_path / f"model{suffix}"
    return cases


def test_cli_prints_one_line_and_returns_2_for_every_hostile_file(tmp_path, capsys):
    from lowbit.cli import main

    cases = _cli_cases(tmp_path)
    assert len(cases) > 30
    for key, path in cases.items():
        assert main(["compare", str(path)]) == 2, key
        captured = capsys.readouterr()
        assert captured.out == "", key
        assert captured.err.startswith("lowbit compare: error: ") and captured.err.count("\n") == 1, (key, captured.err)
        assert str(path) in captured.err and "Traceback" not in captured.err, (key, captured.err)


# -- issue 16: hostile inputs --------------------------------------------------------------------------------------
def test_npz_member_with_an_empty_name_is_a_file_format_error(tmp_path):
    """zipfile's ZipInfo.is_dir() indexes the name: an empty one raised IndexError before the fix."""
    path = tmp_path / "empty-name.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
    with pytest.raises(FileFormatError, match=str(path)):
        load_tensors(path)
    with pytest.raises(FileFormatError):
        list_tensors(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_lowbit_load_points_numpy_files_to_load_tensors(tmp_path, suffix):
    import lowbit

    path = tmp_path / f"w{suffix}"
    (np.save if suffix == ".npy" else np.savez)(path, np.ones(2, np.float32))
    with pytest.raises(FileFormatError, match=r"not a lowbit checkpoint .*lowbit\.io\.load_tensors"):
        lowbit.load(path)
    assert list(load_tensors(path)) == ["w" if suffix == ".npy" else "arr_0"]
