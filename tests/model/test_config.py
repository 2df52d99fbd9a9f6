"""lowbit.model.config: WeightOnly, Dynamic and Static validate their options when built, naming the fix."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402


def test_bad_configs_name_the_fix():
    with pytest.raises(lowbit.OptionError):
        lm.WeightOnly("int4", algorithm="gptq-ish")
    with pytest.raises(lowbit.QTypeError):
        lm.WeightOnly("int33")
    with pytest.raises(lowbit.OptionError, match="weight_qtype='int4' is not int8"):
        lm.Dynamic(weight_qtype="int4")
    with pytest.raises(lowbit.GranularityError, match="act_granularity 'channel' is not taken here"):
        lm.Dynamic(act_granularity="channel")
    with pytest.raises(lowbit.GranularityError, match="act_granularity 'token' is not taken here; use tensor"):
        lm.Static(act_granularity="token")
    with pytest.raises(lowbit.OptionError, match="unknown method 'median'"):
        lm.Static(method="median")
    with pytest.raises(lowbit.OptionError, match="no option"):
        lm.Static(method="percentile", method_options={"percentil": 99.0})


def test_bad_algorithm_configs_name_the_fix():
    with pytest.raises(lowbit.OptionError, match="integer formats"):
        lm.WeightOnly("nf4", lowbit.PerGroup(64), algorithm="gptq")
    with pytest.raises(lowbit.OptionError, match=r"PerChannel\(0\) or PerGroup"):
        lm.WeightOnly("int4", lowbit.PerTensor(), algorithm="awq")
    with pytest.raises(lowbit.OptionError, match="it takes: damp, act_order, block_size, scale_search, sink_weight"):
        lm.WeightOnly("int4", algorithm="gptq", algorithm_options={"dampening": 0.1})
    with pytest.raises(lowbit.OptionError, match="alpha in"):
        lm.Static(smoothquant=1.5)
    with pytest.raises(lowbit.OptionError, match="algorithm='hqq' optimises"):
        lm.WeightOnly("uint4", algorithm="hqq", method="mse")
    with pytest.raises(lowbit.OptionError, match="sink_weight must be"):
        lm.WeightOnly("int4", algorithm="gptq", algorithm_options={"sink_weight": 0})


def test_granularity_spellings_of_weight_only():
    assert lm.WeightOnly("int4", granularity="group:16") == lm.WeightOnly("int4", lowbit.PerGroup(16))
    with pytest.raises(lowbit.GranularityError, match="granularity 'token' is not taken here"):
        lm.WeightOnly("int4", granularity="token")


@pytest.mark.parametrize("granularity", ["group:0", "group:-4"])
def test_zero_or_negative_group_size_is_refused_when_the_config_is_built(granularity):
    with pytest.raises(lowbit.GranularityError, match="PerGroup size must be an int >= 1"):
        lm.WeightOnly("int4", granularity)
