"""Compile the Numba kernels the suite uses, once, before pytest-xdist starts its workers.

Without this, every xdist worker compiles the same kernels for itself on a fresh clone
(about 100 specialisations, several minutes of CPU each), because a kernel is only found
in Numba's on-disk cache once another process has finished writing it.  Here the kernels
listed in ``kernel_signatures.txt`` are compiled by a pool of processes, one kernel
function per task so that no two processes write the same cache index, the largest
first.  Kernels already in the cache load in milliseconds, so a warm run pays about
two seconds.  A signature the list lacks still compiles lazily when a test needs it;
a stale one is skipped.

    python tests/_precompile.py            # compile the listed kernels (2 processes)
    python tests/_precompile.py --write    # rewrite the list from the kernels in the cache

The list is written from a warm cache after a full run of the suite.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import pkgutil
import sys
import time
from collections import defaultdict
from pathlib import Path

MANIFEST = Path(__file__).with_name("kernel_signatures.txt")


def _dispatchers() -> dict[tuple[str, str], object]:
    """Every module-level Numba dispatcher of ``lowbit._kernels``, by (module, name)."""
    from numba.core.registry import CPUDispatcher

    import lowbit._kernels as kernels

    found = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"lowbit._kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__:
                found[(module.__name__, name)] = obj
    return found


def write_manifest() -> int:
    """Write the signatures found in the kernels' on-disk cache indexes; returns how many."""
    lines = []
    for (module, name), dispatcher in sorted(_dispatchers().items()):
        try:
            index = dispatcher._cache._cache_file._load_index()  # type: ignore[attr-defined]
        except Exception:  # no index yet
            continue
        lines += sorted({f"{module}\t{name}\t{key[0]}" for key in index})
    MANIFEST.write_text("".join(line + "\n" for line in lines))
    return len(lines)


def _parse_signature(text: str) -> tuple:
    from numba.core import types

    names = {k: v for k, v in vars(types).items() if not k.startswith("_")}
    names["bool"] = types.boolean
    return eval(text, {"__builtins__": {}}, names)  # the manifest is ours, written by write_manifest


def _compile_function(task: tuple[str, str, list[str]]) -> tuple[str, float, int]:
    module, name, signatures = task
    start, failed = time.perf_counter(), 0
    try:
        dispatcher = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return f"{module}.{name}", 0.0, len(signatures)
    for text in signatures:
        try:
            dispatcher.compile(_parse_signature(text))
        except Exception:  # a stale signature: the test that needs the kernel compiles it lazily
            failed += 1
    return f"{module}.{name}", time.perf_counter() - start, failed


def _tasks() -> list[tuple[str, str, list[str]]]:
    by_function: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in MANIFEST.read_text().splitlines():
        module, name, signature = line.split("\t")
        by_function[(module, name)].append(signature)
    tasks = [(m, n, sigs) for (m, n), sigs in by_function.items()]
    return sorted(tasks, key=lambda t: -len(t[2]))


def precompile(processes: int = 2) -> float:
    """Compile (or load from the cache) every listed kernel; returns the seconds taken."""
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for name, _seconds, failed in pool.imap_unordered(_compile_function, _tasks()):
            if failed:
                print(f"  {name}: {failed} listed signature(s) no longer compile (stale list)")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the list from the on-disk cache")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    if args.write:
        print(f"{write_manifest()} signatures written to {MANIFEST}")
    else:
        print(f"kernels ready in {precompile(args.processes):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
