"""Scaled-down ``lowbit quantize --ray``: the measured inputs of docs/SCALING.md, and its extrapolation.

Measures on this machine, then extrapolates to a 400B-parameter bf16 checkpoint (~800 GB, 160 shards):

1. per-core throughput of the streaming quantizer (RTN int4 group-64, HQQ uint4 group-64), MB/s of bf16
   input from the page cache, with the kernels on 1 thread and on every core (the parallel fraction);
2. bytes moved per parameter: read, written, read again for the manifest's checksum;
3. Ray's per-task cost on a local cluster: a no-op task, and a lowbit shard task on many tiny shards
   (one 64 x 64 tensor each), whose work is negligible, so the wall time is the scheduling and the
   per-shard fixed costs (open, header, atomic write, fsync, checksum, progress report);
4. Ray against the local run on a ~256 MB checkpoint (on 2 cores parity is the honest target).

Run: ``python benchmarks/sim_scale.py [--cpus 2] [--tiny 400] [--mb 256]`` (needs ``lowbit[ray]``; ~1-2 min on
2 cores). Prints the figures and the table of docs/SCALING.md; ``--json`` prints them as one document. The
hardware figures the extrapolation assumes (NIC, storage) are options, printed with the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lowbit.io import convert
from lowbit.io._safetensors import SafetensorsWriter

MB = 1e6


def write_checkpoint(folder: Path, shards: int, shapes: list[tuple[int, ...]]) -> int:
    """A model folder of bf16 tensors, ``shapes`` in every shard, with its index; returns the input bytes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pattern = (rng.standard_normal(1 << 20).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    weight_map = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        entries = [(f"layers.{s}.t{k}.weight", "BF16", shape) for k, shape in enumerate(shapes)]
        with SafetensorsWriter(folder / name, entries, {"format": "pt"}) as w:
            for k, (n, _, shape) in enumerate(entries):
                w.write(n, np.roll(np.resize(pattern, math.prod(shape)), 7919 * (s + k)).reshape(shape))
                weight_map[n] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def best_of(n: int, fn, *args, **kwargs) -> tuple[float, object]:
    runs = [timed(fn, *args, **kwargs) for _ in range(n)]
    return min(r[0] for r in runs), runs[-1][1]


def quantize(src: Path, dst: Path, **kw) -> convert.ConvertSummary:
    return convert.quantize_checkpoint(src, dst, overwrite=True, progress=False, **kw)


def per_core(root: Path, mb: int) -> dict:
    """Throughput of the local run, kernels on 1 thread and on every core (interleaved, best of 3), RTN and HQQ.

    HQQ (iterative) is ~70x slower than RTN: it runs on a checkpoint 1/32 the size."""
    import numba

    cores = numba.config.NUMBA_NUM_THREADS
    out: dict = {"cores": cores}
    for algo, kw, size in (("rtn", {"qtype": "int4"}, mb), ("hqq", {"qtype": "uint4", "algorithm": "hqq"}, mb // 32)):
        src = root / f"core-{algo}"
        nbytes = write_checkpoint(src, 4, [(1024, 1024)] * max(1, size // 8))
        quantize(src, root / "warm", granularity="group:64", **kw)  # the page cache and Numba's cached kernels
        best = {1: math.inf, cores: math.inf}
        for _ in range(3):
            for threads in best:
                numba.set_num_threads(threads)
                seconds, summary = timed(quantize, src, root / f"o-{algo}", granularity="group:64", **kw)
                best[threads] = min(best[threads], seconds)
        numba.set_num_threads(cores)
        for threads, seconds in best.items():
            out[f"{algo}_mb_s_{threads}t"] = nbytes / MB / seconds
        out[f"{algo}_input_mb"] = nbytes / MB
        out[f"{algo}_bits_per_weight"] = summary.bits_per_weight
    return out


def ray_overhead(ray, root: Path, tiny: int, cpus: int) -> dict:
    """Per-task cost: Ray's no-op task, and lowbit's shard task on shards too small to take any time."""

    @ray.remote(num_cpus=1)
    def noop() -> None:
        return None

    ray.get([noop.remote() for _ in range(4 * cpus)])  # workers started
    t_noop, _ = timed(lambda: ray.get([noop.remote() for _ in range(2000)]))
    src = root / "tiny"
    write_checkpoint(src, tiny, [(64, 64)])
    t_local, _ = best_of(2, quantize, src, root / "tiny-local")
    quantize(src, root / "tiny-ray", executor="ray")  # the workers import lowbit once
    t_ray, _ = best_of(2, quantize, src, root / "tiny-ray", executor="ray")
    return {"noop_tasks_per_s": 2000 / t_noop, "noop_ms_per_task": 1e3 * t_noop / 2000, "tiny_shards": tiny,
            "tiny_local_s": t_local, "tiny_ray_s": t_ray, "local_ms_per_shard": 1e3 * t_local / tiny,
            "ray_ms_per_shard_wall": 1e3 * t_ray / tiny}


def ray_vs_local(ray, root: Path, mb: int) -> dict:
    src = root / "mid"
    nbytes = write_checkpoint(src, 8, [(2048, 4096), (1024, 4096), (4096, 1024)] * max(1, mb // 256))
    t_local, _ = best_of(2, quantize, src, root / "mid-local")
    quantize(src, root / "mid-ray", executor="ray")
    t_ray, _ = best_of(2, quantize, src, root / "mid-ray", executor="ray")
    same = all((root / "mid-local" / p.name).read_bytes() == p.read_bytes()
               for p in (root / "mid-ray").glob("*.safetensors"))
    return {"input_mb": nbytes / MB, "local_s": t_local, "ray_s": t_ray, "ray_over_local": t_ray / t_local,
            "same_bytes": same}


# --------------------------------------------------------------------------- extrapolation


def extrapolate(m: dict, args: argparse.Namespace) -> list[dict]:
    """Time for a 400B bf16 checkpoint on 1, 8 and 64 nodes of ``args.node_cores`` cores (docs/SCALING.md).

    Each part is the time it would take alone; the run takes about the largest (they overlap: every task
    reads, computes and writes at once), which names the bottleneck.
    """
    core = m["per_core"]
    input_mb = args.params * 2 / MB
    rows = []
    for algo in ("rtn", "hqq"):
        r1 = core[f"{algo}_mb_s_1t"]  # MB/s of input per core, kernels on one thread
        output_mb = args.params * core[f"{algo}_bits_per_weight"] / 8 / MB
        moved = input_mb + 2 * output_mb  # read the input, write the output, read it again for the checksum
        for nodes in (1, 8, 64):
            cores = nodes * args.node_cores
            slots = min(cores, args.shards)  # one task per shard, one CPU each at least
            threads = max(1, min(args.node_cores, cores // args.shards))
            rate_task = r1 * _amdahl(core, algo, threads)  # MB/s of one task
            waves = math.ceil(args.shards / slots)  # whole shards: the last wave counts in full
            compute = waves * input_mb / args.shards / rate_task
            # the driver submits, collects and records shards one after the other: its per-shard time, measured
            # on tiny shards (an upper bound: it includes the tiny shards' own work), is serial at any size
            sched = args.shards * m["ray"]["ray_ms_per_shard_wall"] / 1e3
            if nodes == 1:
                parts = {"compute": compute, "disk": moved / (args.disk_gb_s * 1e3), "network": 0.0,
                         "scheduler": sched}
            else:
                parts = {"compute": compute, "disk": moved / (args.storage_gb_s * 1e3),
                         "network": moved / (nodes * args.nic_gb_s * 1e3), "scheduler": sched}
            rows.append({"algorithm": algo, "nodes": nodes, "cores": cores, "tasks": args.shards,
                         "threads_per_task": threads, **parts, "hours": max(parts.values()) / 3600,
                         "bottleneck": max(parts, key=parts.get)})
    return rows


def _amdahl(core: dict, algo: str, threads: int) -> float:
    """Speed-up of one task on ``threads`` threads, from the measured 1-thread and all-core runs (Amdahl)."""
    n = core["cores"]
    s = core[f"{algo}_mb_s_{n}t"] / core[f"{algo}_mb_s_1t"]
    p = min(max((1 - 1 / s) / (1 - 1 / n), 0.0), 1.0) if n > 1 else 0.0  # parallel fraction
    return 1 / ((1 - p) + p / threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (2)")
    ap.add_argument("--tiny", type=int, default=400, help="tiny shards for the per-task overhead (400)")
    ap.add_argument("--mb", type=int, default=256, help="MB of the checkpoints (256)")
    ap.add_argument("--params", type=float, default=400e9, help="parameters of the extrapolated checkpoint (400e9)")
    ap.add_argument("--shards", type=int, default=160, help="its shards (160, ~5 GB each)")
    ap.add_argument("--node-cores", type=int, default=32)
    ap.add_argument("--nic-gb-s", type=float, default=3.1, help="assumed per-node network GB/s (25 GbE: 3.1)")
    ap.add_argument("--storage-gb-s", type=float, default=20.0, help="assumed shared storage GB/s, all nodes (20)")
    ap.add_argument("--disk-gb-s", type=float, default=3.0, help="assumed local NVMe GB/s for 1 node (3)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m = {"per_core": per_core(root, args.mb)}
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            m["ray"] = ray_overhead(ray, root, args.tiny, args.cpus)
            m["ray_vs_local"] = ray_vs_local(ray, root, args.mb)
        finally:
            ray.shutdown()
    m["extrapolation"] = extrapolate(m, args)
    m["assumed"] = {k: getattr(args, k) for k in ("nic_gb_s", "storage_gb_s", "disk_gb_s", "node_cores", "shards",
                                                  "params")}
    if args.json:
        print(json.dumps(m, indent=2))
        return
    _print(m, args)


def _print(m: dict, args: argparse.Namespace) -> None:
    c, r, v = m["per_core"], m["ray"], m["ray_vs_local"]
    n = c["cores"]
    print(f"machine: {os.cpu_count()} cores; best of 3 (per core) or 2 (the rest), noisy on a shared machine")
    print(f"per core (kernels on 1 thread), from the page cache: RTN int4 g64 {c['rtn_mb_s_1t']:.0f} MB/s, "
          f"HQQ uint4 g64 {c['hqq_mb_s_1t']:.0f} MB/s of bf16 input")
    local_h = {a: args.params * 2 / MB / c[f"{a}_mb_s_{n}t"] / 3600 for a in ("rtn", "hqq")}
    print(f"all {n} cores, one process: RTN {c[f'rtn_mb_s_{n}t']:.0f} MB/s, HQQ {c[f'hqq_mb_s_{n}t']:.0f} MB/s")
    print(f"bytes per parameter: read 2 (bf16), written {c['rtn_bits_per_weight'] / 8:.4f} (RTN, "
          f"{c['rtn_bits_per_weight']:.2f} bits/weight), read again {c['rtn_bits_per_weight'] / 8:.4f} (checksum)")
    print(f"Ray no-op task: {r['noop_ms_per_task']:.2f} ms each ({r['noop_tasks_per_s']:.0f}/s, {args.cpus} CPUs)")
    print(f"lowbit shard task on {r['tiny_shards']} tiny shards: local {r['local_ms_per_shard']:.2f} ms/shard, "
          f"Ray {r['ray_ms_per_shard_wall']:.2f} ms/shard wall on {args.cpus} CPUs (bounds the driver's serial cost)")
    print(f"{v['input_mb']:.0f} MB checkpoint: local {v['local_s']:.2f} s, Ray {v['ray_s']:.2f} s, "
          f"ray/local {v['ray_over_local']:.2f}, same bytes: {v['same_bytes']}")
    print(f"\n{args.params / 1e9:.0f}B parameters ({args.params * 2 / 1e9:.0f} GB bf16) in {args.shards} shards, "
          f"nodes of {args.node_cores} cores; assumed NIC {args.nic_gb_s} GB/s/node, shared storage "
          f"{args.storage_gb_s} GB/s, local disk {args.disk_gb_s} GB/s")
    print(f"local executor (one process, this machine's {n} cores, page cache): RTN {local_h['rtn']:.1f} h, "
          f"HQQ {local_h['hqq']:.0f} h")
    print(f"{'algo':>4} {'nodes':>5} {'cores':>6} {'thr/task':>8} {'compute s':>9} {'disk s':>8} {'network s':>9} "
          f"{'sched s':>8} {'total':>8}  bottleneck")
    for row in m["extrapolation"]:
        total = row["hours"] * 3600
        print(f"{row['algorithm']:>4} {row['nodes']:>5} {row['cores']:>6} {row['threads_per_task']:>8} "
              f"{row['compute']:>9.0f} {row['disk']:>8.0f} {row['network']:>9.0f} {row['scheduler']:>8.1f} "
              f"{total / 60:>6.1f} min  {row['bottleneck']}")


if __name__ == "__main__":
    sys.exit(main())
