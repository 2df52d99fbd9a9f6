"""``export_onnx``: a lowbit-quantized PyTorch model as an ONNX file that ONNX Runtime runs on the CPU.

W8A8 parity.  Each int8 quantizer of a W8A8 export gives lowbit's activation codes exactly on the
input it is fed (dynamic: ``absmax / 127``, ``round_half_even(x * (1 / s))``; static: lowbit's
scale, clipped to -127).  On all-MiniLM-L6-v2 (64 sentences, batches of 32) all 24 quantizers
agree with :func:`lowbit.nn.quantize_activations` of ONNX Runtime's own inputs to the last code,
yet the sentence embeddings reach only min/mean cosine 0.984/0.995 (dynamic per tensor),
0.972/0.999 (static), 0.993/0.9994 (dynamic per token) against lowbit's, while int4 reaches
0.9999998.  The cause is not in the export: ONNX Runtime's attention (MatMul, Softmax) differs
from torch's by ~3e-7 relative, which puts one value on the other side of a rounding tie (static,
first at layer 0's attention output: ``x / s`` = -12.4999962 in torch, -12.5000010 in ONNX
Runtime, 1 code of 565k; dynamic: 4 codes at layer 1's).  A flipped code moves its whole output
row, the next quantizers turn that into more flips, about 5x per quantizer (dynamic: 4, 106,
1.7k, ..., 26 % of the codes at layer 3, 79 % at layer 5), and a per-tensor dynamic scale is an
absmax over the whole padded batch, so a change anywhere rescales every code.  lowbit's own model
shows the same when only torch's float rounding changes: sdpa against eager attention gives
min/mean 0.984/0.996 (dynamic), 0.9966/0.99992 (static), the same first flips and flip counts per
layer; one ulp of noise on the embeddings gives min 0.988 (dynamic); and batch 1 against batch 32
gives min 0.932 (dynamic per tensor), 0.992 (per token).  A cosine of 0.9999 would need bit-for-bit
torch float operators; what the export does keep is the quality: against fp32, ONNX Runtime's
embeddings score the same as lowbit's (mean 0.9771 vs 0.9772 dynamic, 0.9781 vs 0.9779 static).

Example:
    >>> import tempfile, pathlib, torch, lowbit.model as lm
    >>> from lowbit.io.onnx import export_onnx
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> _ = lm.quantize_(net, lm.WeightOnly("int4", "group:32"))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.onnx"
    >>> summary = export_onnx(net, path, torch.randn(2, 64))
    >>> summary.nodes["MatMulNBits"], sorted(summary.layers.values())
    (2, ['matmulnbits int4 group:32', 'matmulnbits int4 group:32'])
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowbit.errors import FileFormatError, InputTypeError, ModelError, OptionError
from lowbit.io.onnx._support import LayerPlan, plan_layers

__all__ = ["ExportSummary", "export_onnx", "ACCURACY_LEVELS", "DEFAULT_OPSET"]

#: MatMulNBits ``accuracy_level``: 0 computes in float32 from the exact dequantized weight; 4 quantizes the
#: activations to int8 per block (more error; on MiniLM batch 32 here it was not faster, see bench_onnx)
ACCURACY_LEVELS = (0, 1, 2, 3, 4)
#: opset 21 (IR version 10): INT4/UINT4 tensors and blocked DequantizeLinear
DEFAULT_OPSET = 21
_MIN_COSINE = 0.99


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ONNX file.
        nbytes: its size in bytes.
        nodes: node count per operator type, e.g. ``{"MatMulNBits": 36, ...}``.
        layers: lowbit layer name -> its ONNX form (``"matmulnbits int4 group:32"``, ``"w8a8-dynamic int8 channel"``).
        accuracy_level: MatMulNBits accuracy level used.
        cosine: the lowest cosine similarity between ONNX Runtime's outputs and lowbit's on the
            example inputs (None when not verified).
    """

    path: Path
    nbytes: int
    nodes: dict[str, int]
    layers: dict[str, str]
    accuracy_level: int
    cosine: float | None = field(default=None)

    def __str__(self) -> str:
        forms = Counter(self.layers.values())
        lines = [f"wrote {self.path} ({self.nbytes / 1e6:.2f} MB)",
                 "layers: " + (", ".join(f"{n} x {f}" for f, n in sorted(forms.items())) or "none quantized"),
                 "nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.nodes.items(), key=lambda kv: -kv[1])),
                 f"MatMulNBits accuracy_level: {self.accuracy_level}"]
        if self.cosine is not None:
            lines.append(f"ONNX Runtime vs lowbit on the example inputs: cosine {self.cosine:.6f}")
        return "\n".join(lines)


def _check_options(path: Path, accuracy_level: int, opset: int) -> None:
    if accuracy_level not in ACCURACY_LEVELS:
        raise OptionError(f"accuracy_level must be one of {ACCURACY_LEVELS} (0: float32 from the exact weights, "
                          f"4: int8 activations), got {accuracy_level!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < DEFAULT_OPSET:
        raise OptionError(f"opset must be an int >= {DEFAULT_OPSET} (INT4 tensors and blocked DequantizeLinear), "
                          f"got {opset!r}")
    if not path.parent.is_dir():
        raise FileFormatError(f"the folder of {str(path)!r} does not exist; create it first")
    if path.is_dir():
        raise FileFormatError(f"{str(path)!r} is a folder; give a file name such as model.onnx")


def _check_zero_points(plans: Sequence[LayerPlan]) -> None:
    """Refuse asymmetric 4-bit MatMulNBits where this ONNX Runtime gets batch 1 wrong (onnxruntime#29853)."""
    from lowbit.io.onnx._nodes import unsigned_codes
    from lowbit.io.onnx._probe import ISSUE, asymmetric_nbits_ok

    affine = [p.name for p in plans if p.form == "matmulnbits" and p.module.qtype.bits == 4
              and bool((unsigned_codes(p.module.weight_qtensor())[1] != 8).any())]
    if affine and not asymmetric_nbits_ok():
        raise OptionError(
            f"ONNX Runtime on this CPU computes 4-bit MatMulNBits with zero points wrong for a single input row "
            f"({ISSUE}); layers {affine[:5]}{' ...' if len(affine) > 5 else ''} are asymmetric. Quantize with a "
            "symmetric format (WeightOnly('int4', symmetric=True), scheme int4:group:32) or 8 bits, or export on a CPU "
            "with AVX-512"
        )


def _reference(model: Any, example_inputs: Any) -> list[np.ndarray]:
    """lowbit's own outputs for the example, in eval mode (the modes are restored)."""
    import torch

    from lowbit.io.onnx._trace import _as_inputs, _output_names, _select

    keywords, tensors, _ = _as_inputs(example_inputs)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            out = model(**dict(zip(keywords, tensors, strict=True))) if keywords else model(*tensors)
    finally:
        for m, mode in modes.items():
            m.training = mode
    keys, _ = _output_names(out)
    return [t.detach().float().numpy() for t in _select(out, keys)]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if den == 0 and not a.any() and not b.any() else float(a @ b) / den if den else 0.0


class _Verifier:
    """Runs the written model on the example inputs and compares every output with lowbit's."""

    def __init__(self, feeds: dict[str, np.ndarray], want: list[np.ndarray], min_cosine: float) -> None:
        self.feeds, self.want, self.min_cosine = feeds, want, min_cosine
        self.cosine: float | None = None

    def __call__(self, session: Any) -> None:
        names = {i.name for i in session.get_inputs()}
        got = session.run(None, {k: v for k, v in self.feeds.items() if k in names})
        self.cosine = min(_cosine(g, w) for g, w in zip(got, self.want, strict=True))
        if not self.cosine >= self.min_cosine:
            raise ModelError(f"ONNX Runtime's outputs differ from lowbit's on the example inputs (cosine "
                             f"{self.cosine:.6f} < {self.min_cosine}); nothing was written")


def _finish(proto: Any, layers: Mapping[str, str], opset: int) -> None:
    """IR version, opsets and provenance metadata of the rewritten model."""
    from onnx import helper

    import lowbit

    proto.ir_version = max(proto.ir_version, 10)
    uses_ms = any(n.domain == "com.microsoft" for n in proto.graph.node)
    if uses_ms and not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    proto.producer_name, proto.producer_version = "lowbit", lowbit.__version__
    helper.set_model_props(proto, {"lowbit.layers": ";".join(f"{k}={v}" for k, v in layers.items()),
                                   "lowbit.opset": str(opset)})


def export_onnx(model: Any, path: str | os.PathLike[str], example_inputs: Any, *, accuracy_level: int = 0,
                opset: int = DEFAULT_OPSET, dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
                output_names: Sequence[str] | None = None, verify: bool = True) -> ExportSummary:
    """Write a lowbit-quantized model as ONNX for ONNX Runtime (CPU), keeping lowbit's codes and scales.

    Weight-only Linear layers become ``MatMulNBits`` (com.microsoft); weight-only Conv2d and
    Embedding layers ``DequantizeLinear`` + ``Conv``/``Gather``; W8A8 static layers QDQ
    (``QuantizeLinear``/``DequantizeLinear`` with lowbit's activation scale, int8 per-channel
    weights); W8A8 dynamic Linear layers lowbit's dynamic int8 activation codes computed in the
    graph and an exact ``MatMulInteger``.  Float layers stay float.  The graph is traced with
    torch's TorchScript exporter (no ``onnxscript`` needed), checked with ``onnx.checker``, loaded
    and (``verify``) run in ONNX Runtime on ``example_inputs`` and compared with the model's own
    outputs, then written atomically.  Axis 0 of every input and output is dynamic ("batch"), and
    axis 1 of 2-d integer inputs ("sequence": token ids, masks) and of outputs of that length.

    Args:
        model: a torch model quantized with :func:`lowbit.model.quantize_` (not changed).
        path: the ``.onnx`` file to write (replaced if it exists); its folder must exist.
        example_inputs: a tensor, a tuple of tensors (positional inputs named ``input`` or
            ``input_0``, ``input_1``...) or a dict of tensors (keyword inputs, named by their keys:
            ``tokenizer(..., return_tensors="pt")`` works as it is).
        accuracy_level: MatMulNBits ``accuracy_level`` (0: float32 from the exact weights; 4: int8
            activations: more error, and not faster at MiniLM batch 32 here).
        opset: ONNX opset (>= 21).
        dynamic_axes: input/output name -> {axis: name}, replacing the default above.
        output_names: names of the model's tensor outputs (default: the keys of a dict-like output,
            ``output`` for a tensor, ``output_0``... for a tuple).
        verify: run the file in ONNX Runtime on ``example_inputs`` and refuse it when an output's
            cosine similarity with lowbit's is below 0.99: a gross error (int8 activation codes that
            flip because ONNX Runtime's float operators round differently from torch's stay above it
            on a small example; see "W8A8 parity" above for large batches).

    Returns:
        An :class:`ExportSummary` (path, bytes, nodes per type, each layer's form, the cosine).

    Raises:
        OptionError: a layer ONNX Runtime cannot run (nf4, fp8, MX, int3, unsupported grouping,
            unconverted observers: all listed at once, with what is supported), a bad
            ``accuracy_level`` or ``opset``, or asymmetric 4-bit weights on a CPU where ONNX
            Runtime computes them wrong (onnxruntime#29853).
        InputTypeError: ``example_inputs`` is not tensors.
        ModelError: tracing failed, the graph is invalid, ONNX Runtime cannot load it, or its
            outputs differ from lowbit's.
        FileFormatError: the destination folder does not exist or ``path`` is a folder.
        In every case no file is left at ``path`` (an earlier file there is kept).

    Example:
        >>> import tempfile, pathlib, torch, lowbit.model as lm
        >>> net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> _ = lm.quantize_(net, lm.Dynamic())
        >>> s = export_onnx(net, pathlib.Path(tempfile.mkdtemp()) / "w8a8.onnx", torch.randn(3, 16))
        >>> s.nodes["MatMulInteger"], s.cosine > 0.9999
        (2, True)
    """
    import torch

    from lowbit.io.onnx._rewrite import rewrite
    from lowbit.io.onnx._trace import trace
    from lowbit.io.onnx._write import write_checked

    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"export_onnx expects a torch.nn.Module quantized by lowbit, got {type(model).__name__}")
    path = Path(path)
    _check_options(path, accuracy_level, opset)
    plans = plan_layers(model)
    _check_zero_points(plans)
    traced = trace(model, plans, example_inputs, opset=opset, dynamic_axes=dynamic_axes, output_names=output_names)
    layers = rewrite(traced.proto, plans, accuracy_level=accuracy_level)
    _finish(traced.proto, layers, opset)
    verifier = None
    if verify:
        feeds = dict(zip(traced.input_names, traced.inputs, strict=True))
        verifier = _Verifier(feeds, _reference(model, example_inputs), _MIN_COSINE)
    nbytes = write_checked(traced.proto, path, verifier)
    nodes = dict(Counter(n.op_type for n in traced.proto.graph.node))
    return ExportSummary(path, nbytes, nodes, dict(layers), accuracy_level,
                         None if verifier is None else verifier.cosine)
