"""Parsing candidate spellings."""

from __future__ import annotations

import pytest

from lowbit.errors import OptionError
from lowbit.granularity import PerChannel, PerGroup
from lowbit.plan import parse_candidate, parse_candidates


@pytest.mark.parametrize(("spec", "qtype", "gran", "sym", "fmt", "algo"), [
    ("int8", "int8", PerChannel(0), None, None, "rtn"),
    ("int4:g64", "int4", PerGroup(64), None, None, "rtn"),
    ("int3:g32:asym", "int3", PerGroup(32), False, None, "rtn"),
    ("int2:g16:float16", "int2", PerGroup(16), None, "float16", "rtn"),
    ("uint4:g64:hqq", "uint4", PerGroup(64), None, None, "hqq"),
    (" int4 : g128 : sym ", "int4", PerGroup(128), True, None, "rtn"),
])
def test_fields(spec, qtype, gran, sym, fmt, algo):
    cfg = parse_candidate(spec).config
    assert (cfg.qtype, cfg.granularity, cfg.symmetric, cfg.scale_format, cfg.algorithm) == (qtype, gran, sym, fmt,
                                                                                              algo)
    assert cfg.embeddings is False


def test_float_keeps_layer():
    c = parse_candidate("float")
    assert c.is_float and c.config is None


def test_list_and_string_agree():
    assert [c.spec for c in parse_candidates("int8,int4:g64")] == [c.spec for c in parse_candidates(["int8",
                                                                                                      "int4:g64"])]


@pytest.mark.parametrize(("spec", "match"), [
    ("int99", "int99"),
    ("int4:g0", "group size"),
    ("int4:x7", "unknown candidate option"),
    ("int4:g64:g32", "given twice"),
    ("int4:gptq", "not a planner candidate"),
    ("", "non-empty"),
    ("int4:hqq:sym", "hqq"),
])
def test_bad_specs_are_typed(spec, match):
    with pytest.raises(OptionError, match=match):
        parse_candidate(spec)


def test_repeats_and_empty_lists():
    with pytest.raises(OptionError, match="repeated"):
        parse_candidates("int8,int8")
    with pytest.raises(OptionError, match="at least one"):
        parse_candidates([])
