"""A lowbit checkpoint decoder written from docs/FORMAT.md alone: NumPy, json and struct, no lowbit.

``python spec_decoder.py CHECKPOINT OUT.npz`` writes every tensor of the checkpoint, dequantized to
float64 (quantized tensors) or as stored (plain ones; BF16 widened to float32), into ``OUT.npz``.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


def read_file(path: Path) -> tuple[dict, dict, bytes]:
    raw = path.read_bytes()
    (h,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + h])
    meta = header.pop("__metadata__", {})
    return header, meta, raw[8 + h :]


def entry(header: dict, data: bytes, name: str) -> np.ndarray:
    e = header[name]
    begin, end = e["data_offsets"]
    return np.frombuffer(data[begin:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])


def files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    index = root / "model.safetensors.index.json"
    if index.exists():
        return [root / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [root / "model.safetensors"]


def unpack(data: np.ndarray, n: int, bits: int, signed: bool) -> np.ndarray:
    if bits in (8, 16):
        return data.reshape(-1)[:n].astype(np.int64)
    stream = np.unpackbits(data.astype(np.uint8), bitorder="little")  # bit k of byte j at index 8j + k
    codes = stream[: n * bits].reshape(n, bits).astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64))
    if signed:
        codes = np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes)
    return codes


def param_shape(gran: str, shape: list[int]) -> tuple[tuple[int, ...], object]:
    """(parameter shape, a function from element index tuples to parameter index tuples)."""
    parts = gran.split(":")
    nd = len(shape)
    if parts[0] == "tensor":
        return (), lambda idx: ()
    if parts[0] == "channel":
        a = (int(parts[1]) if len(parts) > 1 else 0) % nd
        return (shape[a],), lambda idx: (idx[a],)
    if parts[0] == "token":
        return tuple(shape[:-1]), lambda idx: tuple(idx[:-1])
    size = int(parts[1])
    a = (int(parts[2]) if len(parts) > 2 else -1) % nd
    p = list(shape)
    p[a] = -(-p[a] // size)  # ceil: the last group is shorter when size does not divide the axis
    return tuple(p), lambda idx: (*idx[:a], idx[a] // size, *idx[a + 1 :])


def positive(v: np.ndarray, sdt: np.dtype, keep_negative: bool = False) -> np.ndarray:
    info = np.finfo(sdt)
    v = np.asarray(v, np.float64)
    out = np.where(np.isnan(v) | (v <= 0), float(info.tiny), np.minimum(v, float(info.max)))
    if keep_negative:  # float32/float16 keep negative finite values (GGUF's signed block scales)
        out = np.where(np.isfinite(v) & (v < 0), v, out)
    return out.astype(sdt)


def scales(fmt: str, arrays: dict, pshape: tuple[int, ...], sdt: np.dtype) -> np.ndarray:
    m = math.prod(pshape)
    if fmt == "float32":
        s = positive(arrays["scale"], sdt, keep_negative=True)
    elif fmt == "float16":
        s = positive(arrays["scale_f16"].astype(np.float64), sdt, keep_negative=True)
    elif fmt == "bfloat16":
        s = positive((arrays["scale_bf16"].astype(np.uint32) << 16).view(np.float32), sdt)
    elif fmt == "e8m0":
        b = arrays["scale_e8m0"].astype(np.int64)
        s = np.ldexp(1.0, np.where(b == 255, -127, b - 127)).astype(sdt)
    elif fmt == "double8":
        codes = arrays["scale_codes"].astype(np.float64).reshape(-1)
        bs = np.repeat(arrays["scale_block_scale"].astype(np.float64), 256)[:m]
        s = positive(float(arrays["scale_mean"]) + codes * bs, sdt)
    elif fmt == "kquant6":
        codes = unpack(arrays["scale_codes"], m, 6, False).astype(np.float64)
        sup = np.repeat(arrays["scale_super"].astype(np.float64), 8)[:m]
        s = positive(codes * sup, sdt)
    else:
        raise ValueError(f"unknown scale format {fmt}")
    return np.asarray(s).reshape(pshape)


def decode(info: dict, arrays: dict) -> np.ndarray:
    shape = info["shape"]
    n = math.prod(shape)
    sdt = np.dtype(np.float64 if info["dtype"] == "float64" else np.float32)
    pshape, block_of = param_shape(info["granularity"], shape)
    s = scales(info["scale_format"], arrays, pshape, sdt).astype(np.float64) * 2.0 ** info["implicit_exp"]
    s = s.astype(sdt)
    if info.get("zero_point_kind") == "float":
        offsets = np.asarray(arrays["zero_point"]).astype(sdt)
    zp = (np.full(pshape, info["zero_point"]) if info["symmetric"] else arrays["zero_point"]).astype(np.int64)
    codes = unpack(arrays["data"], n, info["bits"], info["signed"]).reshape(shape)
    idx = np.indices(shape).reshape(len(shape), -1).T
    blocks = [block_of(tuple(i)) for i in idx]
    s_el = np.array([s[b] for b in blocks], sdt).reshape(shape)
    if info.get("zero_point_kind") == "float":
        m_el = np.array([offsets[b] for b in blocks], sdt).reshape(shape)
        return (codes.astype(sdt) * s_el + m_el).astype(np.float64)
    if info["kind"] == "int":
        z_el = np.array([zp[b] for b in blocks], np.int64).reshape(shape)
        return ((codes - z_el).astype(sdt) * s_el).astype(np.float64)
    grid = np.asarray(info["grid"], np.float64).astype(sdt)
    return (grid[codes] * s_el).astype(np.float64)


def main(root: str, out: str) -> None:
    result: dict[str, np.ndarray] = {}
    for path in files(Path(root)):
        header, meta, data = read_file(path)
        doc = json.loads(meta["lowbit"]) if "lowbit" in meta else {"format_version": 1, "tensors": {}}
        assert doc["format_version"] <= 1
        owned = {k for info in doc["tensors"].values() for k in info["arrays"].values()}
        for name, info in doc["tensors"].items():
            result[name] = decode(info, {key: entry(header, data, e) for key, e in info["arrays"].items()})
        for name, e in header.items():
            if name not in owned:
                a = entry(header, data, name)
                result[name] = (a.astype(np.uint32) << 16).view(np.float32) if e["dtype"] == "BF16" else a
        for alias, target in doc.get("aliases", {}).items():
            result[alias] = result[target]
    np.savez(out, **result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
