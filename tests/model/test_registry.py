"""lowbit.model._registry and plans: a user's own config is a first-class citizen; one call applies a plan."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lowbit  # noqa: E402
import lowbit.model as lm  # noqa: E402
import lowbit.nn as lnn  # noqa: E402
from lowbit.algorithms import ActivationStatistics  # noqa: E402


@dataclass(frozen=True)
class ClipToInputRange(lm.Config):
    """A user's data-driven config: int8 weight-only layers whose input is clipped to the range seen in
    calibration (a toy, but it needs statistics, a target type and a handler, like a real one)."""

    bits: int = 8

    @property
    def scheme(self) -> str:
        return f"clipped W{self.bits}"

    def targets(self) -> tuple[type, ...]:
        return (nn.Linear,)

    def statistics(self) -> lm.StatPlan:
        return lm.StatPlan(lambda name, module: ActivationStatistics(module.in_features, max_rows=0))


class Clipped(nn.Module):
    def __init__(self, inner: nn.Module, bound: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("bound", bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.maximum(torch.minimum(x, self.bound), -self.bound))


SEEN: list[str] = []


@lm.register_handler(ClipToInputRange)
def _clip_handler(module: Any, name: str, config: ClipToInputRange, stat: Any) -> tuple[Any, str]:
    SEEN.append(name)
    inner = lnn.WeightOnlyLinear.from_float(module, f"int{config.bits}")
    return Clipped(inner, torch.as_tensor(stat.absmax_, dtype=torch.float32)), config.scheme


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def test_user_config_registers_and_quantizes_a_model():
    net, ref = _net(), _net()
    batches = [torch.randn(8, 16) for _ in range(3)]
    SEEN.clear()
    summary = lm.quantize_(net, ClipToInputRange(), batches=batches, progress=False)
    assert SEEN == ["0", "2"] and [r.scheme for r in summary.rows] == ["clipped W8", "clipped W8"]
    assert "ClipToInputRange" in lm.list_handlers()
    assert lm.get_handler(ClipToInputRange()).replace is _clip_handler
    want_bound = torch.cat(batches).abs().amax(dim=0)
    assert torch.equal(net[0].bound, want_bound)
    x = torch.cat(batches)
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(net(x).flatten(), ref(x).flatten(), dim=0)
    assert cos > 0.999
    with pytest.raises(lowbit.ModelError, match="needs calibration data"):
        lm.quantize_(_net(), ClipToInputRange())


def test_a_subclass_uses_its_parents_handler_and_unknown_configs_are_refused():
    @dataclass(frozen=True)
    class Seven(ClipToInputRange):
        bits: int = 7

    assert lm.get_handler(Seven()).config_type is ClipToInputRange

    @dataclass(frozen=True)
    class Orphan(lm.Config):
        scheme = "orphan"

        def targets(self) -> tuple[type, ...]:
            return (nn.Linear,)

    with pytest.raises(lowbit.ModelError, match="no handler for config Orphan; known configs: WeightOnly"):
        lm.quantize_(_net(), Orphan())
    with pytest.raises(lowbit.OptionError, match=r"subclass of lowbit\.model\.Config"):
        lm.register_handler(dict)
    with pytest.raises(TypeError):  # abstract: no scheme, no targets
        lm.Config()  # type: ignore[abstract]


def test_plan_applies_one_config_per_pattern_first_match_wins():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    ref = copy.deepcopy(net)
    plan = {"4": None, "2": lm.WeightOnly("int8"), "*": lm.WeightOnly("int4", "group:16")}
    summary = lm.quantize_(net, plan)
    assert [(r.name, r.scheme) for r in summary.rows] == [("0", "W4 int4 group:16"), ("2", "W8 int8 channel")]
    assert type(net[4]) is nn.Linear  # None keeps it float
    x = torch.randn(8, 16)
    with torch.no_grad():
        assert nn.functional.cosine_similarity(net(x).flatten(), ref(x).flatten(), dim=0) > 0.99


def test_plan_mixes_data_driven_and_data_free_configs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    batches = iter([torch.randn(32, 16) for _ in range(2)])  # an iterator: read once, used by every config
    summary = lm.quantize_(net, {"0": lm.WeightOnly("int4", algorithm="gptq"), "2": lm.Dynamic()},
                           batches=batches, progress=False)
    assert [r.scheme for r in summary.rows] == ["W4 int4 channel gptq", "W8A8 dynamic per-tensor"]
    assert isinstance(net[2], lnn.Int8Linear)


def test_bad_plans_name_the_fix_and_leave_the_model_alone():
    net = _net()
    with torch.no_grad():
        net[2].weight[0, 0] = float("nan")  # the second config's layer fails
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(lowbit.ModelError, match=r"plan pattern 'decoder\.\*' matches no module"):
        lm.quantize_(net, {"decoder.*": lm.WeightOnly("int4"), "*": lm.WeightOnly("int8")})
    with pytest.raises(lowbit.OptionError, match="empty plan"):
        lm.quantize_(net, {})
    with pytest.raises(lowbit.OptionError, match="glob patterns"):
        lm.quantize_(net, {"*": "int4"})
    with pytest.raises(lowbit.OptionError, match="uses no calibration data"):
        lm.quantize_(net, {"*": lm.WeightOnly("int4")}, batches=[torch.randn(2, 16)])
    with pytest.raises(lowbit.ModelError, match="selects no module"):
        lm.quantize_(net, {"*": None})
    with pytest.raises(lowbit.OptionError, match="config must be"):
        lm.quantize_(net, "int4")  # type: ignore[arg-type]
    # a failure in the second config puts the first config's layers back
    with pytest.raises(lowbit.NonFiniteError, match=r"^module '2' \(Linear\): WeightOnlyLinear.from_float"):
        lm.quantize_(net, {"0": lm.WeightOnly("int4"), "2": lm.WeightOnly("int8")})
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Sequential) for m in net.modules())
    assert all(torch.allclose(before[k], v, equal_nan=True) for k, v in net.state_dict().items())
    assert np.isfinite(net[0](torch.randn(2, 16)).detach().numpy()).all()


def test_the_old_three_argument_register_handler_still_works_with_a_warning():
    @dataclass(frozen=True)
    class OldStyle:  # 0.1: any type, with targets and statistics given to register_handler
        scheme: str = "old style int8"

    with pytest.deprecated_call(match=r"lowbit\.model\.Config subclass with targets\(\) and statistics\(\)"):
        @lm.register_handler(OldStyle, lambda cfg: (nn.Linear,), lambda cfg: None)
        def _old(module: Any, name: str, config: OldStyle, stat: Any) -> tuple[Any, str]:
            return lnn.WeightOnlyLinear.from_float(module, "int8"), config.scheme

    net = _net()
    assert [r.scheme for r in lm.quantize_(net, OldStyle()).rows] == ["old style int8"] * 2
    assert [r.scheme for r in lm.quantize_(_net(), {"0": OldStyle(), "2": None}).rows] == ["old style int8"]
    with pytest.raises(lowbit.OptionError, match="uses no calibration data"):
        lm.quantize_(_net(), OldStyle(), batches=[torch.randn(2, 16)])
