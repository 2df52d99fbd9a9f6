"""Put lowbit's quantized layers into a traced float ONNX graph (not public).

The float stand-ins of :mod:`lowbit.io.onnx._trace` hold each layer's dequantized weight,
so the exporter's initializers can be matched by value: ``W.T`` for a ``MatMul`` (inputs
with more than two axes), ``W`` for a ``Gemm`` with ``transB=1`` (2-d inputs), for a
``Conv`` and as the table of a ``Gather``.  Each matched node is replaced (``MatMul``,
``Gemm``) or rewired (``Conv``, ``Gather``) to use the quantized form; the float
initializers that no node reads any more are dropped.  A layer whose weight is found
nowhere raises ModelError rather than exporting a float copy silently.

Example:
    >>> import numpy as np
    >>> _key(np.ones((2, 3), np.float32)) == _key(np.ones((2, 3), np.float32))
    True
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lowbit.errors import ModelError
from lowbit.io.onnx._nodes import Builder
from lowbit.io.onnx._support import LayerPlan
from lowbit.io.onnx._trace import dequantized_weight

__all__ = ["rewrite"]

# the node types whose weight input (index) a stand-in's weight can reach
_WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1, "Gather": 0}


def _key(array: np.ndarray) -> tuple[tuple[int, ...], str]:
    a = np.ascontiguousarray(array, np.float32)
    return tuple(a.shape), hashlib.sha1(a.tobytes()).hexdigest()


def _targets(plans: Sequence[LayerPlan]) -> dict[tuple[str, tuple[tuple[int, ...], str]], LayerPlan]:
    """(node type, weight key) -> plan, for each form the exporter may have written the weight in."""
    found: dict[tuple[str, tuple[tuple[int, ...], str]], LayerPlan] = {}
    for p in plans:
        w = dequantized_weight(p.module)
        if p.kind == "linear":
            found[("MatMul", _key(w.T))] = p
            found[("Gemm", _key(w))] = p
        elif p.kind == "conv":
            found[("Conv", _key(w))] = p
        else:
            found[("Gather", _key(w))] = p
    return found


def _gemm_ok(node: Any) -> bool:
    attrs = {a.name: a for a in node.attribute}
    return (attrs["transB"].i if "transB" in attrs else 0) == 1 and (
        attrs["transA"].i if "transA" in attrs else 0) == 0 and all(
        (attrs[k].f if k in attrs else 1.0) == 1.0 for k in ("alpha", "beta"))


def _linear(b: Builder, node: Any, p: LayerPlan, accuracy_level: int) -> None:
    """``y = x @ W.T (+ C)`` in the plan's form, writing the node's output."""
    m, x, base = p.module, node.input[0], p.name or "layer"
    out = node.output[0]
    bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
    y = b.name(f"{base}.matmul") if bias else out
    qt = m.weight_qtensor()
    if p.form == "matmulnbits":
        b.matmul_nbits(x, y, base, qt, accuracy_level)
    elif p.form == "w8a8-dynamic":
        b.int8_matmul(x, y, base, qt, per_token=type(m.act_granularity).__name__ == "PerToken")
    else:
        b.node("MatMul", [b.qdq(x, base, float(m.act_scale)), b.dequantize(base, qt, transpose=True)], base, out=y)
    if bias:
        b.node("Add", [y, bias], base, out=out)


def _rewire(b: Builder, node: Any, p: LayerPlan) -> None:
    """Conv and Gather keep their node: the weight (and for W8A8 the input) become quantized forms."""
    m, base = p.module, p.name or "layer"
    weight = b.dequantize(base, m.weight_qtensor())
    if p.kind == "embedding":
        node.input[0] = weight
        return
    if m.weight_qtensor().shape != tuple(m.conv.weight_shape):  # Int8Conv2d stores (N, C*kh*kw)
        weight = b.node("Reshape", [weight, b.const(f"{base}.shape", np.array(m.conv.weight_shape, np.int64))],
                        base)
    node.input[1] = weight
    if p.form == "w8a8-static":
        node.input[0] = b.qdq(node.input[0], base, float(m.act_scale))
    elif p.form == "w8a8-dynamic":
        node.input[0] = b.dynamic_qdq(node.input[0], base)


def rewrite(proto: Any, plans: Sequence[LayerPlan], *, accuracy_level: int) -> dict[str, str]:
    """Replace every planned layer's float weight in ``proto`` (in place); returns layer name -> ONNX form.

    Raises:
        ModelError: a layer's weight is not in the traced graph (or is read by an unexpected node).
    """
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    targets = _targets(plans)
    b = Builder({*inits, *(o for n in graph.node for o in n.output), *(n.name for n in graph.node),
                 *(i.name for i in graph.input)})
    keys = {name: _key(_array(t)) for name, t in inits.items() if t.data_type == 1}  # FLOAT
    kept, done = [], {}
    for node in graph.node:
        idx = _WEIGHT_INPUT.get(node.op_type)
        w = node.input[idx] if idx is not None and len(node.input) > idx else None
        p = targets.get((node.op_type, keys[w])) if w in keys else None
        if p is None or (node.op_type == "Gemm" and not _gemm_ok(node)):
            kept.append(node)
            continue
        if p.kind == "linear":
            _linear(b, node, p, accuracy_level)
            kept.extend(b.nodes)
        else:
            _rewire(b, node, p)
            kept.extend([*b.nodes, node])  # the new producers first: the graph stays topologically sorted
        b.nodes.clear()
        done[p.name] = _form_label(p)
    missing = [p.name for p in plans if p.name not in done]
    if missing:
        raise ModelError(f"the traced graph has no float weight of layer(s) {missing} to replace (the exporter "
                         "folded them into other nodes); export was stopped rather than writing float weights")
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(b.initializers)
    _drop_unused(graph)
    return done


def _form_label(p: LayerPlan) -> str:
    """``"matmulnbits int4 group:32"``, ``"w8a8-dynamic int8 channel"``: the form and the weight format."""
    m = p.module
    if p.form.startswith("w8a8"):
        return f"{p.form} int8 {m.weight_granularity}"
    return f"{p.form} {m.qtype.name} {m.granularity}"


def _array(t: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


def _drop_unused(graph: Any) -> None:
    used = Counter(i for n in graph.node for i in n.input) + Counter(o.name for o in graph.output)
    keep = [t for t in graph.initializer if used[t.name]]
    del graph.initializer[:]
    graph.initializer.extend(keep)
