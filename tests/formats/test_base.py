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
