"""LLVM intrinsics that Numba does not expose."""

from __future__ import annotations

from llvmlite import ir
from numba.extending import intrinsic

__all__ = ["fma"]


@intrinsic
def fma(typingctx, a, b, c):  # pragma: no cover - compiled
    """``a * b + c`` with a single rounding (``llvm.fma``), as PyTorch's quantizer computes it."""
    sig = a(a, a, a)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty, ty, ty]))
        return builder.call(fn, args)

    return sig, codegen
