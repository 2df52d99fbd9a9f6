"""Write tests/io/data/kquant_vectors.npz: inputs and the Q4_K / Q6_K bytes llama.cpp's C code makes of them.

The bytes come from llama.cpp itself: ``quantize_row_q4_K_ref`` and
``quantize_row_q6_K_ref`` in ``libggml-base.so`` as installed by
llama-cpp-python 0.3.36 (``pip install llama-cpp-python==0.3.36``, built from
its sdist with the default CMake flags: ggml-base is compiled with ``-O3``,
no ``-march``, so no fused multiply-add), called through ctypes.  lowbit's own
quantizers are not involved.  The file was produced by::

    .venv/bin/python scripts/make_kquant_vectors.py

(``--lib PATH`` points at another ``libggml-base.so``; ``--out PATH`` writes elsewhere.)

The file holds, for every case ``NAME``: ``x_NAME`` (float32, (n, 256): the
input, n super-blocks), ``q4_k_NAME`` (uint8, (n, 144)) and ``q6_k_NAME``
(uint8, (n, 210)); plus ``cases`` (the names) and ``source`` (the library and
its version).  The inputs are generated from a fixed seed.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

QK_K = 256
OUT = Path(__file__).resolve().parents[1] / "tests" / "io" / "data" / "kquant_vectors.npz"
FORMATS = {"q4_k": ("quantize_row_q4_K_ref", 144), "q6_k": ("quantize_row_q6_K_ref", 210)}


def _gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, QK_K))


def _student_t(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_t(3, size=(n, QK_K)) * 0.02


def _outliers(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, QK_K)) * 0.05
    hit = rng.random((n, QK_K)) < 0.01
    return np.where(hit, x * 60.0, x)


def _one_huge_outlier(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, QK_K))
    x[np.arange(n), rng.integers(0, QK_K, n)] = rng.choice([-1.0, 1.0], n) * 5000.0
    return x


def _zeros(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.zeros((n, QK_K))


def _partly_zero(rng: np.random.Generator, n: int) -> np.ndarray:
    """Whole sub-blocks of zeros (both formats' sub-block sizes) beside ordinary ones."""
    x = rng.normal(size=(n, QK_K))
    x[:, :32] = 0.0
    x[:, 96:112] = 0.0
    return x


def _constant(rng: np.random.Generator, n: int) -> np.ndarray:
    values = np.array([1.0, -1.0, 0.37, -2.5e-3, 7.0, -300.0, 1e-20, 0.0])
    return np.repeat(values[:n], QK_K).reshape(n, QK_K)


def _constant_sub_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Each sub-block of 16 one value: different per sub-block, mixed signs."""
    return np.repeat(rng.normal(size=(n, QK_K // 16)), 16, axis=1)


def _tiny(rng: np.random.Generator, n: int) -> np.ndarray:
    """Values whose fp16 super-block scales are subnormal or flush to zero."""
    return rng.normal(size=(n, QK_K)) * np.logspace(-3, -9, n)[:, None]


def _float32_subnormal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, QK_K)) * 1e-40


def _negative(rng: np.random.Generator, n: int) -> np.ndarray:
    return -np.abs(rng.normal(size=(n, QK_K)))


def _positive_offset(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.abs(rng.normal(size=(n, QK_K))) + 2.0


def _sparse(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, QK_K))
    return np.where(rng.random((n, QK_K)) < 0.9, 0.0, x)


def _mixed_scales(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sub-blocks of 16 whose magnitudes differ by orders of magnitude inside one super-block."""
    return rng.normal(size=(n, QK_K)) * np.repeat(10.0 ** rng.uniform(-4, 2, size=(n, 16)), 16, axis=1)


def _small_integers(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ties: values that land exactly halfway between codes for some candidate scales."""
    return rng.integers(-8, 8, size=(n, QK_K)).astype(np.float64) * 0.5


CASES: dict[str, tuple[Callable[[np.random.Generator, int], np.ndarray], int]] = {
    "gaussian": (_gaussian, 16),
    "student_t3": (_student_t, 16),
    "outliers": (_outliers, 8),
    "one_huge_outlier": (_one_huge_outlier, 8),
    "zeros": (_zeros, 2),
    "partly_zero": (_partly_zero, 4),
    "constant": (_constant, 8),
    "constant_sub_blocks": (_constant_sub_blocks, 4),
    "tiny": (_tiny, 8),
    "float32_subnormal": (_float32_subnormal, 2),
    "negative": (_negative, 8),
    "positive_offset": (_positive_offset, 8),
    "sparse": (_sparse, 4),
    "mixed_scales": (_mixed_scales, 8),
    "small_integers": (_small_integers, 4),
}


def _default_lib() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise SystemExit("llama_cpp is not installed: pip install llama-cpp-python==0.3.36, or pass --lib")
    return Path(spec.origin).parent / "lib" / "libggml-base.so"


def _quantizer(lib: ctypes.CDLL, symbol: str, width: int) -> Callable[[np.ndarray], np.ndarray]:
    fn = getattr(lib, symbol)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros((x.size // QK_K, width), np.uint8)
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", type=Path, default=None, help="libggml-base.so (default: llama_cpp's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    lib_path = args.lib or _default_lib()
    lib = ctypes.CDLL(str(lib_path))
    quantizers = {name: _quantizer(lib, symbol, width) for name, (symbol, width) in FORMATS.items()}
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    rng = np.random.default_rng(20240611)
    arrays: dict[str, np.ndarray] = {
        "cases": np.array(list(CASES)),
        "source": np.array(f"llama-cpp-python {version}, {lib_path.name}, quantize_row_q4_K_ref/quantize_row_q6_K_ref"),
    }
    for case, (make, n) in CASES.items():
        x = make(rng, n).astype(np.float32)
        arrays[f"x_{case}"] = x
        for name, quantize in quantizers.items():
            arrays[f"{name}_{case}"] = quantize(x)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(CASES)} cases) from {lib_path} ({version})")


if __name__ == "__main__":
    main()
