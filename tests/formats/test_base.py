"""lowbit.formats.base: QType, the format registry, get_qtype and register_qtype."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import lowbit
from _reference import ALL_NAMES
from lowbit.formats import QType, get_qtype, list_qtypes, register_qtype


def test_registry_lists_exactly_the_integer_formats():
    names = list_qtypes()
    assert len(names) == len(set(names))
    assert set(names) >= set(ALL_NAMES)
    assert len(ALL_NAMES) == 47
    assert "int1_full" not in names
    assert "uint8_full" not in names
    assert lowbit.list_qtypes() == names
    for name in names:
        assert get_qtype(name).name == name
    # registration order: widths 1..16 signed/unsigned, then the full-range signed formats
    assert names[:4] == ["int1", "uint1", "int2", "uint2"]


@pytest.mark.parametrize("spelling", ["INT8", " int8 ", "Int8", "int8\n"])
def test_get_qtype_normalises_names(spelling):
    assert get_qtype(spelling) is get_qtype("int8")


def test_get_qtype_passes_qtype_through():
    qt = get_qtype("uint4")
    assert get_qtype(qt) is qt
    custom = QType("mine3", "int", 3, True, True, -3, 3)  # not registered, still accepted as an object
    assert get_qtype(custom) is custom
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    assert lowbit.quantize(x, qt).qtype is qt


@pytest.mark.parametrize("bad", [None, 8, 8.0, b"int8", ["int8"]], ids=repr)
def test_get_qtype_rejects_non_names(bad):
    with pytest.raises(lowbit.QTypeError):
        get_qtype(bad)


def test_register_conflicting_format_is_refused():
    with pytest.raises(lowbit.QTypeError, match="already registered"):
        register_qtype(QType("int4", "int", 4, True, False, -8, 7))
    assert get_qtype("int4").qmin == -7  # unchanged
    assert register_qtype(get_qtype("int4")) is get_qtype("int4")  # same object is fine


def test_qtype_is_frozen_and_hashable():
    qt = get_qtype("int8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        qt.qmax = 1  # type: ignore[misc]
    assert len({get_qtype("int8"), get_qtype("int8"), get_qtype("uint8")}) == 2


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"bits": 0, "qmin": 0, "qmax": 0}, r"bits must be an int in 1\.\.16, got 0"),
        ({"bits": -1, "qmin": 0, "qmax": 1}, r"bits must be an int in 1\.\.16, got -1"),
        ({"bits": 17, "qmin": -1, "qmax": 1}, r"bits must be an int in 1\.\.16, got 17"),
        ({"bits": True}, r"bits must be an int in 1\.\.16, got True"),
        ({"bits": 4, "qmin": 7, "qmax": -8}, r"qmin=7 must be below qmax=-8"),
        ({"bits": 4, "qmin": 3, "qmax": 3}, r"qmin=3 must be below qmax=3"),
        ({"bits": 4, "qmin": -9, "qmax": 7}, r"codes -9\.\.7 do not fit in 4 signed bits \(-8\.\.7\)"),
        ({"bits": 4, "signed": False, "qmin": -1, "qmax": 7}, r"do not fit in 4 unsigned bits \(0\.\.15\)"),
        ({"bits": 4, "qmin": 0.5, "qmax": 3}, r"qmin must be an int, got 0\.5"),
        ({"bits": 4, "kind": "posit"}, r"kind must be one of"),
    ],
    ids=["bits0", "bits-1", "bits17", "bits-bool", "qmin>qmax", "one-code", "too-wide", "unsigned-negative",
         "float-qmin", "kind"],
)
def test_user_qtype_is_validated_when_built(fields, match):
    args = {"name": "user", "kind": "int", "signed": True, **fields}
    with pytest.raises(lowbit.QTypeError, match=match) as info:
        QType(**args)
    assert "invalid QType 'user'" in str(info.value)


def test_user_qtype_lists_every_problem_at_once():
    with pytest.raises(lowbit.QTypeError) as info:
        QType("", "posit", 99, True)
    msg = str(info.value)
    assert "name must be a non-empty str" in msg and "kind must be one of" in msg and "bits must be" in msg


def test_grid_qtype_needs_a_sorted_grid_its_codes_index():
    with pytest.raises(lowbit.QTypeError, match="at least two values"):
        QType("g", "float", 4, False)
    with pytest.raises(lowbit.QTypeError, match="strictly increasing"):
        QType("g", "codebook", 2, False, grid=(0.0, 1.0, 1.0))
    with pytest.raises(lowbit.QTypeError, match=r"qmax=len\(grid\)-1=2, got 0\.\.3"):
        QType("g", "codebook", 2, False, qmin=0, qmax=3, grid=(-1.0, 0.0, 1.0))
    assert QType("g", "codebook", 2, False, grid=(-1.0, 0.0, 1.0)).qmax == 2


@pytest.mark.parametrize("bits,signed,narrow,lo,hi", [(5, True, False, -16, 15), (5, True, True, -15, 15),
                                                      (3, False, False, 0, 7)])
def test_user_qtype_range_defaults_to_its_bits(bits, signed, narrow, lo, hi):
    qt = QType("user", "int", bits, signed, narrow)
    assert (qt.qmin, qt.qmax) == (lo, hi)
    x = np.linspace(-1, 1, 16, dtype=np.float32)
    codes = lowbit.quantize(x, qt, symmetric=signed).codes
    assert codes.min() >= lo and codes.max() <= hi


def test_every_registered_format_passes_the_checks():
    for name in list_qtypes():
        qt = get_qtype(name)
        assert dataclasses.replace(qt) == qt  # rebuilding runs __post_init__ again
