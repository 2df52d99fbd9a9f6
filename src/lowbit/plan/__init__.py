"""Mixed precision under a size budget: which layers can take fewer bits.

:func:`plan_model` measures, for each Linear/Conv2d layer and each candidate scheme, how much
the model's output changes when only that layer is quantized (:mod:`lowbit.plan.sensitivity`),
then picks one candidate per layer to minimise the summed error within a budget of bits per
weight or bytes (:mod:`lowbit.plan.solve`, an exact knapsack).  The :class:`Plan` is a mapping
that ``lowbit.model.quantize_`` applies, is saved as JSON and read back by :func:`load_plan`.
``lowbit plan MODEL --budget 4.5`` does the same from the command line.  torch is imported
only when a function runs.

Example:
    >>> import torch, lowbit.model as lm
    >>> from lowbit.plan import plan_model
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    >>> plan = plan_model(net, "int8,int4,int2", [torch.randn(16, 32)], budget_bits=6.0, metric="mse")
    >>> sorted(plan.layers), plan.bits_per_weight <= 6.0
    (['0', '2'], True)
"""

from lowbit.plan.candidates import DEFAULT_CANDIDATES, Candidate, parse_candidate, parse_candidates
from lowbit.plan.plan_file import LayerChoice, Plan, load_plan
from lowbit.plan.planner import plan_from_table, plan_model
from lowbit.plan.sensitivity import LayerSensitivity, SensitivityTable, measure_sensitivity
from lowbit.plan.solve import solve

__all__ = [
    "DEFAULT_CANDIDATES",
    "Candidate",
    "LayerChoice",
    "LayerSensitivity",
    "Plan",
    "SensitivityTable",
    "load_plan",
    "measure_sensitivity",
    "parse_candidate",
    "parse_candidates",
    "plan_from_table",
    "plan_model",
    "solve",
]
