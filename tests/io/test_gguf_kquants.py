"""llama.cpp K-quants: bytes identical to llama.cpp's C reference, decoding identical to gguf-py's."""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from lowbit.errors import GranularityError, InputTypeError, NonFiniteError
from lowbit.io.gguf._kquants import decode_q4_k, decode_q6_k, quantize_q4_k, quantize_q6_k

VECTORS = Path(__file__).parent / "data" / "kquant_vectors.npz"
QUANTIZE = {"q4_k": quantize_q4_k, "q6_k": quantize_q6_k}
GGML_TYPE = {"q4_k": GGMLQuantizationType.Q4_K, "q6_k": GGMLQuantizationType.Q6_K}
WIDTH = {"q4_k": 144, "q6_k": 210}


def _load_vectors() -> dict[str, np.ndarray]:
    with np.load(VECTORS, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


REFERENCE = _load_vectors()
CASES = [str(c) for c in REFERENCE["cases"]]


def _decoded(fmt: str, blocks: np.ndarray) -> np.ndarray:
    """x as lowbit's decode describes it: scale * code (- minimum) per sub-block, in float32."""
    n = blocks.shape[0]
    if fmt == "q4_k":
        codes, scale, minimum = decode_q4_k(blocks)
        sub = codes.reshape(n, 8, 32).astype(np.float32)
        return (scale[:, :, None] * sub - minimum[:, :, None]).reshape(n, 256)
    codes6, scale6 = decode_q6_k(blocks)
    return (scale6[:, :, None] * codes6.reshape(n, 16, 16).astype(np.float32)).reshape(n, 256)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))


def test_vectors_cover_the_cases():
    assert len(CASES) >= 10
    assert "llama-cpp-python 0.3.36" in str(REFERENCE["source"])
    blocks = sum(REFERENCE[f"x_{c}"].shape[0] for c in CASES)
    assert blocks >= 100


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
@pytest.mark.parametrize("case", CASES)
def test_bytes_match_llama_cpp(fmt, case):
    x = REFERENCE[f"x_{case}"]
    expected = REFERENCE[f"{fmt}_{case}"]
    got = QUANTIZE[fmt](x)
    assert got.dtype == np.uint8 and got.shape == (x.shape[0], WIDTH[fmt])
    differing = np.flatnonzero((got != expected).any(axis=1))
    assert differing.size == 0, f"{fmt} {case}: super-blocks {differing.tolist()} differ from llama.cpp"


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
@pytest.mark.parametrize("case", CASES)
def test_decode_reproduces_gguf_dequantize_on_reference_bytes(fmt, case):
    blocks = REFERENCE[f"{fmt}_{case}"]
    expected = dequantize(blocks, GGML_TYPE[fmt]).reshape(blocks.shape[0], 256)
    assert _same_bits(_decoded(fmt, blocks), expected)


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
def test_decode_reproduces_gguf_dequantize_on_random_bytes(fmt):
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, size=(64, WIDTH[fmt]), dtype=np.uint8)
    # keep the fp16 super-block scales finite (random bits are otherwise NaN/Inf 1 time in 32)
    heads = [0, 2] if fmt == "q4_k" else [208]
    for h in heads:
        blocks[:, h + 1] &= 0x7B
    with np.errstate(all="ignore"):
        expected = dequantize(blocks, GGML_TYPE[fmt]).reshape(64, 256)
    assert _same_bits(_decoded(fmt, blocks), expected)


def test_decode_shapes_and_ranges():
    rng = np.random.default_rng(6)
    codes4, scale4, min4 = decode_q4_k(rng.integers(0, 256, size=3 * 144, dtype=np.uint8))
    assert (codes4.dtype, codes4.shape, scale4.shape, min4.shape) == (np.uint8, (3, 256), (3, 8), (3, 8))
    assert codes4.max() <= 15
    codes6, scale6 = decode_q6_k(rng.integers(0, 256, size=(3, 210), dtype=np.uint8))
    assert (codes6.dtype, codes6.shape, scale6.shape) == (np.int8, (3, 256), (3, 16))
    assert codes6.min() >= -32 and codes6.max() <= 31
    assert scale4.dtype == min4.dtype == scale6.dtype == np.float32


def _sqnr_db(x: np.ndarray, fmt: str) -> float:
    blocks = QUANTIZE[fmt](x)
    y = dequantize(blocks, GGML_TYPE[fmt]).reshape(-1).astype(np.float64)
    ref = x.reshape(-1).astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((y - ref) ** 2)))


# About 6 dB per bit: Q4_K (4.5 bits/weight) reaches ~23 dB on Gaussian data, Q6_K (6.56) ~35 dB.
@pytest.mark.parametrize(
    ("fmt", "dist", "floor_db"),
    [
        ("q4_k", "gaussian", 22.0),
        ("q6_k", "gaussian", 34.0),
        ("q4_k", "student_t3", 19.5),
        ("q6_k", "student_t3", 30.5),
    ],
)
def test_error_is_what_the_format_allows(fmt, dist, floor_db):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(64, 1024)) if dist == "gaussian" else rng.standard_t(3, size=(64, 1024))
    assert _sqnr_db(x.astype(np.float32), fmt) > floor_db


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
def test_every_value_stays_within_its_sub_block_range(fmt):
    x = np.random.default_rng(12).normal(size=(32, 256)).astype(np.float32)
    y = dequantize(QUANTIZE[fmt](x), GGML_TYPE[fmt]).reshape(32, 256)
    sub = 32 if fmt == "q4_k" else 16
    span = np.ptp(x.reshape(-1, sub), axis=1).repeat(sub).reshape(32, 256)
    assert np.all(np.abs(y - x) <= 0.5 * span)


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
def test_all_zero_input_is_all_zero_bytes_and_decodes_to_zero(fmt):
    blocks = QUANTIZE[fmt](np.zeros((2, 256), np.float32))
    assert blocks.shape == (2, WIDTH[fmt]) and not blocks.any()
    assert not _decoded(fmt, blocks).any()


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
def test_any_float_input_is_quantized_as_float32(fmt):
    x = np.random.default_rng(13).normal(size=(2, 512))
    expected = QUANTIZE[fmt](x.astype(np.float32))
    assert np.array_equal(QUANTIZE[fmt](x), expected)
    assert np.array_equal(QUANTIZE[fmt](x.astype(np.float32).reshape(4, 4, 64)), expected)


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
@pytest.mark.parametrize("size", [255, 300, 1000])
def test_size_not_a_multiple_of_256_is_refused(fmt, size):
    with pytest.raises(GranularityError, match=f"{size} values.*multiple of 256"):
        QUANTIZE[fmt](np.zeros(size, np.float32))


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused(fmt, bad):
    x = np.zeros(512, np.float32)
    x[300] = bad
    with pytest.raises(NonFiniteError, match=r"index \(300,\)"):
        QUANTIZE[fmt](x)


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
def test_values_beyond_the_fp16_scale_are_refused(fmt):
    x = np.zeros(512, np.float32)
    x[256:] = np.float32(3e9)
    x[257] = -3e9
    with pytest.raises(NonFiniteError, match="block 1"):
        QUANTIZE[fmt](x)


def test_decode_refuses_bad_bytes():
    with pytest.raises(GranularityError, match="144"):
        decode_q4_k(np.zeros(145, np.uint8))
    with pytest.raises(GranularityError, match="210"):
        decode_q6_k(np.zeros(200, np.uint8))
    with pytest.raises(InputTypeError, match="uint8"):
        decode_q6_k(np.zeros(210, np.float32))


def _llama_cpp_quantizers():
    """llama.cpp's reference quantizers when llama-cpp-python is installed, else None."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "lib" / "libggml-base.so"
    if not path.exists():
        return None
    lib = ctypes.CDLL(str(path))
    found = {}
    for fmt, symbol in (("q4_k", "quantize_row_q4_K_ref"), ("q6_k", "quantize_row_q6_K_ref")):
        fn = getattr(lib, symbol)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        found[fmt] = fn
    return found


@pytest.mark.parametrize("fmt", ["q4_k", "q6_k"])
def test_bytes_match_installed_llama_cpp_on_fresh_data(fmt):
    quantizers = _llama_cpp_quantizers()
    if quantizers is None:
        pytest.skip("llama-cpp-python is not installed; the committed vectors still cover this")
    rng = np.random.default_rng(2024)
    n = 512
    x = rng.standard_t(rng.choice([2, 5, 50], size=(n, 1)), size=(n, 256))
    x *= 10.0 ** rng.uniform(-7, 3, size=(n, 1))
    x = np.where(rng.random((n, 1)) < 0.1, np.where(rng.random((n, 256)) < 0.8, 0.0, x), x).astype(np.float32)
    expected = np.zeros((n, WIDTH[fmt]), np.uint8)
    quantizers[fmt](x.ctypes.data, expected.ctypes.data, x.size)
    differing = np.flatnonzero((QUANTIZE[fmt](x) != expected).any(axis=1))
    assert differing.size == 0, f"super-blocks {differing[:10].tolist()} differ; first input: {x[differing[0]]!r}"
