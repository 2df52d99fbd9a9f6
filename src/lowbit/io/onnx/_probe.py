"""Does this ONNX Runtime compute asymmetric 4-bit ``MatMulNBits`` right at batch 1 on this CPU? (not public)

onnxruntime issue #29853 (open): with 4-bit weights *and zero points*, a single input row
(batch 1, one token) gives wrong results on CPUs with AVX2 but without AVX-512.  Rather than
guess from CPU flags, :func:`asymmetric_nbits_ok` runs a small asymmetric 4-bit
``MatMulNBits`` on one row and on several rows and compares both with NumPy (once per
process).  The exporter refuses asymmetric 4-bit weights where the probe fails, naming the
issue and the fix; symmetric formats (no zero-point input) are not affected.

Example:
    >>> asymmetric_nbits_ok() in (True, False)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["asymmetric_nbits_ok", "ISSUE"]

ISSUE = "https://github.com/microsoft/onnxruntime/issues/29853"


def _model(k: int, n: int, block: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """A one-node MatMulNBits model with random asymmetric 4-bit weights, and its float weight ``(n, k)``."""
    from onnx import TensorProto, helper, numpy_helper

    from lowbit.io.onnx._nodes import pack_nibbles

    nb = k // block
    u = rng.integers(0, 16, (n, k)).astype(np.uint8)
    zp = rng.integers(0, 16, (n, nb)).astype(np.uint8)
    scale = rng.uniform(0.01, 0.1, (n, nb)).astype(np.float32)
    weight = (u.astype(np.float32) - np.repeat(zp, block, 1)) * np.repeat(scale, block, 1)
    inits = [numpy_helper.from_array(pack_nibbles(u).reshape(n, nb, block // 2), "B"),
             numpy_helper.from_array(scale.reshape(-1), "S"), numpy_helper.from_array(pack_nibbles(zp), "Z")]
    node = helper.make_node("MatMulNBits", ["x", "B", "S", "Z"], ["y"], domain="com.microsoft", K=k, N=n, bits=4,
                            block_size=block)
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])], inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model.SerializeToString(), weight


@functools.cache
def asymmetric_nbits_ok() -> bool:
    """True when ONNX Runtime's asymmetric 4-bit MatMulNBits matches NumPy at batch 1 and batch 4 on this CPU."""
    import onnxruntime as ort

    rng = np.random.default_rng(29853)
    model, weight = _model(256, 64, 32, rng)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    for rows in (1, 4):
        x = rng.standard_normal((rows, 256)).astype(np.float32)
        want = x.astype(np.float64) @ weight.T.astype(np.float64)
        got = session.run(None, {"x": x})[0]
        if not np.allclose(got, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max())):
            return False
    return True
