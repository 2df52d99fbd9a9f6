"""Memory and speed of ``lowbit quantize`` streaming a large checkpoint.

Writes a synthetic bfloat16 checkpoint (default 8 GiB in 4 shards, the largest tensor 256 MiB, as a
transformers model folder), then runs ``lowbit quantize`` on it in a child process (RTN int4
group-64) and reports the child's peak RSS against the bound ``2 x largest tensor + 300 MB``
(PASS/FAIL) and the input MB/s against the target >= 200 MB/s. Before each run the input's pages
are dropped from the file cache (``posix_fadvise(DONTNEED)``), so the figures include reading from
disk. A second run on half the checkpoint shows that the peak does not grow with the checkpoint.
``lowbit compare`` reads the same folder's largest tensor with the same bounded reader.

Run: ``make bench`` (or ``python benchmarks/bench_checkpoint.py [--gib 8] [--keep DIR]``). Exits 0 whatever
the figures. Needs about 1.4x the checkpoint size in free disk space.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lowbit.io._safetensors import SafetensorsWriter

MIB = 1 << 20
LARGEST = 256 * MIB  # bytes of the largest tensor (bf16)


def _tensor_shapes(total_bytes: int) -> list[tuple[str, tuple[int, int]]]:
    """A transformer-like list of bf16 matrices adding up to ``total_bytes``, the largest 256 MiB."""
    shapes = [("embed_tokens.weight", (32768, 4096))]  # 256 MiB
    layer = 0
    size = 2 * 32768 * 4096
    while size < total_bytes:
        for part, shape in (("q_proj", (4096, 4096)), ("k_proj", (1024, 4096)), ("v_proj", (1024, 4096)),
                            ("o_proj", (4096, 4096)), ("gate_proj", (14336, 4096)), ("up_proj", (14336, 4096)),
                            ("down_proj", (4096, 14336))):
            if size >= total_bytes:
                break
            shapes.append((f"layers.{layer}.{part}.weight", shape))
            size += 2 * shape[0] * shape[1]
        layer += 1
    return shapes


def write_checkpoint(folder: Path, total_bytes: int, shards: int = 4) -> int:
    """A model folder of bf16 tensors in ``shards`` files with an index; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = _tensor_shapes(total_bytes)
    per_shard = -(-len(shapes) // shards)
    rng = np.random.default_rng(0)
    pattern = (rng.standard_normal(1 << 20).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    weight_map = {}
    for s in range(shards):
        part = shapes[s * per_shard:(s + 1) * per_shard]
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        with SafetensorsWriter(folder / name, [(n, "BF16", shape) for n, shape in part], {"format": "pt"}) as w:
            for n, shape in part:
                rows = np.resize(pattern, shape[0] * shape[1]).reshape(shape)  # varied, non-constant rows
                w.write(n, rows)
                weight_map[n] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text("{}")
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def _drop_from_cache(folder: Path) -> None:
    """Ask the kernel to forget the cached pages of a folder's shards (clean pages only; no root needed)."""
    for p in folder.glob("*.safetensors"):
        fd = os.open(p, os.O_RDONLY)
        try:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _measure(src: Path, out: Path) -> tuple[float, int]:
    _drop_from_cache(src)
    code = ("import resource, sys; from lowbit.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "quantize", str(src), str(out), "--qtype", "int4",
                           "--granularity", "group:64", "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"lowbit quantize failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, int(done.stdout.strip().splitlines()[-1]) * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=8.0, help="checkpoint size in GiB (default 8)")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="lowbit-bench-ckpt-"))
    try:
        total = int(args.gib * (1 << 30))
        src = work / "model"
        if not (src / "model.safetensors.index.json").exists():
            print(f"writing a {args.gib:g} GiB bfloat16 checkpoint in 4 shards to {src} ...", flush=True)
            t = time.perf_counter()
            size = write_checkpoint(src, total)
            print(f"  {size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s")
        size = sum(p.stat().st_size for p in src.glob("*.safetensors"))
        bound = 2 * LARGEST + 300 * 10**6
        results = []
        for label, folder in (("half", None), ("full", src)):
            if folder is None:  # the first two shards only: does the peak grow with the checkpoint?
                folder = work / "half"
                folder.mkdir(exist_ok=True)
                index = json.loads((src / "model.safetensors.index.json").read_text())
                keep = {p.name for p in sorted(src.glob("model-0000[12]-*.safetensors"))}
                for name in keep:
                    if not (folder / name).exists():
                        os.link(src / name, folder / name)
                index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v in keep}
                (folder / "model.safetensors.index.json").write_text(json.dumps(index))
            out = work / f"out-{label}"
            shutil.rmtree(out, ignore_errors=True)
            seconds, peak = _measure(folder, out)
            in_bytes = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            out_bytes = sum(p.stat().st_size for p in out.glob("*.safetensors"))
            results.append((label, in_bytes, seconds, peak, out_bytes))
        print(f"\nlowbit quantize --qtype int4 --granularity group:64 (RTN), {os.cpu_count()} CPUs:")
        for label, in_bytes, seconds, peak, out_bytes in results:
            mbs = in_bytes / 1e6 / seconds
            print(f"  {label:4s} {in_bytes / 1e9:6.2f} GB -> {out_bytes / 1e9:5.2f} GB in {seconds:6.1f} s: "
                  f"{mbs:6.0f} MB/s of input [{'PASS' if mbs >= 200 else 'FAIL'}] target >= 200 MB/s; "
                  f"peak RSS {peak / 1e6:6.0f} MB [{'PASS' if peak <= bound else 'FAIL'}] "
                  f"bound {bound / 1e6:.0f} MB (2 x largest tensor + 300 MB)")
        growth = results[1][3] - results[0][3]
        print(f"  peak RSS growth from {results[0][1] / 1e9:.1f} GB to {results[1][1] / 1e9:.1f} GB of input: "
              f"{round(growth / 1e6):+d} MB [{'PASS' if growth < 64e6 else 'FAIL'}] target: does not grow")
        t = time.perf_counter()
        code = ("import resource, sys; from lowbit.cli import main; rc = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        first = sorted(src.glob("*.safetensors"))[0]
        done = subprocess.run([sys.executable, "-c", code, "compare", str(first), "--tensor", "embed_tokens.weight",
                               "--qtype", "int4", "--granularity", "group:64", "--json"], check=True,
                              capture_output=True, text=True)
        cmp_peak = int(done.stdout.strip().splitlines()[-1]) * 1024
        print(f"  lowbit compare of the 256 MiB tensor in {first.name}: {time.perf_counter() - t:.1f} s, peak RSS "
              f"{cmp_peak / 1e6:.0f} MB (only that tensor is read from the {first.stat().st_size / 1e9:.1f} GB file)")
        print(f"\ncheckpoint of {size / 1e9:.2f} GB in {work}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
