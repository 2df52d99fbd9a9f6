"""Fixtures shared by the lowbit.nn tests: a seeded torch, the reference weights and a state-dict round trip."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

import lowbit

# (qtype, granularity, symmetric) of the weight-only layers' tests: every storage kind (int8, packed
# sub-byte, 16-bit) with each granularity and symmetry
SCHEMES = [
    ("int8", None, None),
    ("int4", lowbit.PerGroup(8), None),
    ("uint4", lowbit.PerChannel(0), None),
    ("int3", lowbit.PerTensor(), None),
    ("uint8", "group:16", True),
    ("int2", lowbit.PerChannel(0), False),
    ("uint12", lowbit.PerChannel(0), None),  # 16-bit storage, uint16 codes in an int16 buffer
]
SCHEME_IDS = [f"{q}-{g}-{'sym' if s else 'asym' if s is False else 'default'}" for q, g, s in SCHEMES]


@pytest.fixture(params=SCHEMES, ids=SCHEME_IDS)
def scheme(request: pytest.FixtureRequest) -> tuple[str, Any, bool | None]:
    """One weight-only scheme ``(qtype, granularity, symmetric)``; a test taking it runs for each."""
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)


def _gran(g: Any) -> Any:
    """A layer's weight granularity: None is the layers' default PerChannel(0); strings are parsed."""
    return lowbit.PerChannel(0) if g is None else lowbit.granularity.parse_granularity(g) if isinstance(g, str) else g


@pytest.fixture
def fq_weight() -> Callable[..., Any]:
    """``fq_weight(module, qtype, granularity, symmetric, **kw)``: ``lowbit.fake_quantize`` of the module's
    float32 weight, the reference a weight-only layer must reproduce (one fused quantize+dequantize pass,
    not the layer's unpacking of its stored buffers)."""

    def fq(module: Any, qtype: str, granularity: Any, symmetric: bool | None, **kw: Any) -> Any:
        return lowbit.fake_quantize(module.weight.detach().float(), qtype, granularity=_gran(granularity),
                                    symmetric=symmetric, **kw)

    return fq


@pytest.fixture
def roundtrip() -> Callable[[Any, Any], Any]:
    """``roundtrip(module, fresh)``: ``fresh`` after loading ``module``'s state dict through torch.save/torch.load
    (weights_only=True, as a checkpoint is read)."""
    torch = pytest.importorskip("torch")

    def rt(module: Any, fresh: Any) -> Any:
        buf = io.BytesIO()
        torch.save(module.state_dict(), buf)
        buf.seek(0)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        return fresh

    return rt


def _close(got: Any, want: Any) -> None:
    """``got`` equals ``want`` up to float reassociation: the fused kernels sum in another order than BLAS.

    The bound is relative to the output's scale: 1e-5 for float32/float64, two steps of the dtype
    for float16/bfloat16 (both sides are rounded to it once).
    """
    torch = pytest.importorskip("torch")
    got, want = got.detach(), want.detach()
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = 1e-5 if want.dtype in (torch.float32, torch.float64) else 2 * torch.finfo(want.dtype).eps
    scale = float(want.abs().max()) or 1.0
    assert float((got.double() - want.double()).abs().max()) <= tol * scale


@pytest.fixture
def assert_close() -> Callable[[Any, Any], None]:
    """``assert_close(got, want)``: equal up to float reassociation (see :func:`_close`)."""
    return _close
