"""lowbit.formats.integer: the integer formats' ranges, computed from their names (_reference), and int_qtype."""

from __future__ import annotations

import numpy as np
import pytest

import lowbit
from _reference import ALL_NAMES, parse_name, qrange, storage_dtype
from lowbit.formats import get_qtype, int_qtype


@pytest.mark.parametrize("bits", range(1, 17))
def test_signed_narrow_range(bits):
    qt = get_qtype(f"int{bits}")
    if bits == 1:
        assert (qt.qmin, qt.qmax) == (-1, 0)
        assert qt.narrow is False
    else:
        assert (qt.qmin, qt.qmax) == (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1)
        assert qt.qmin == -qt.qmax  # symmetric around zero
        assert qt.narrow is True
    assert qt.bits == bits
    assert qt.signed is True
    assert qt.kind == "int"


@pytest.mark.parametrize("bits", range(2, 17))
def test_signed_full_range(bits):
    qt = get_qtype(f"int{bits}_full")
    assert (qt.qmin, qt.qmax) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    assert qt.levels == 2**bits
    assert qt.narrow is False
    assert qt.signed is True


@pytest.mark.parametrize("bits", range(1, 17))
def test_unsigned_range(bits):
    qt = get_qtype(f"uint{bits}")
    assert (qt.qmin, qt.qmax) == (0, 2**bits - 1)
    assert qt.levels == 2**bits
    assert qt.signed is False
    assert qt.narrow is False


def test_well_known_ranges_by_hand():
    assert (get_qtype("int8").qmin, get_qtype("int8").qmax) == (-127, 127)
    assert (get_qtype("int8_full").qmin, get_qtype("int8_full").qmax) == (-128, 127)  # torch.qint8
    assert (get_qtype("uint8").qmin, get_qtype("uint8").qmax) == (0, 255)  # torch.quint8
    assert (get_qtype("int4").qmin, get_qtype("int4").qmax) == (-7, 7)
    assert (get_qtype("int4_full").qmin, get_qtype("int4_full").qmax) == (-8, 7)
    assert (get_qtype("uint4").qmin, get_qtype("uint4").qmax) == (0, 15)
    assert (get_qtype("int2").qmin, get_qtype("int2").qmax) == (-1, 1)
    assert (get_qtype("int16").qmin, get_qtype("int16").qmax) == (-32767, 32767)
    assert get_qtype("uint16").qmax == 65535


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_name_properties(name):
    qt = get_qtype(name)
    bits, signed, _ = parse_name(name)
    assert qt.name == name
    assert str(qt) == name
    assert (qt.qmin, qt.qmax) == qrange(name)
    assert qt.levels == qrange(name)[1] - qrange(name)[0] + 1
    assert qt.bits == bits
    assert qt.signed is signed
    assert qt.storage_dtype == storage_dtype(name)
    info = np.iinfo(qt.storage_dtype)
    assert info.min <= qt.qmin and qt.qmax <= info.max
    assert qt.packed is (bits not in (8, 16))
    for n in (0, 1, 7, 8, 9, 1000, 1001):
        assert qt.packed_nbytes(n) == -(-n * bits // 8)


@pytest.mark.parametrize("bits", range(1, 17))
def test_int_qtype_returns_the_registered_objects(bits):
    assert int_qtype(bits) is get_qtype(f"int{bits}")
    assert int_qtype(bits, signed=False) is get_qtype(f"uint{bits}")
    if bits >= 2:
        assert int_qtype(bits, narrow=False) is get_qtype(f"int{bits}_full")
        assert int_qtype(bits, narrow=True) is get_qtype(f"int{bits}")
    # narrow is ignored for unsigned formats
    assert int_qtype(bits, signed=False, narrow=True) is get_qtype(f"uint{bits}")


@pytest.mark.parametrize("bits", [0, 17, -1, 32, True, 8.0, "8", None], ids=repr)
def test_int_qtype_rejects_bad_widths(bits):
    with pytest.raises(lowbit.QTypeError, match=r"1\.\.16"):
        int_qtype(bits)


def test_int1_cannot_be_narrow():
    with pytest.raises(lowbit.QTypeError):
        int_qtype(1, narrow=True)
    assert int_qtype(1, narrow=False) is get_qtype("int1")
