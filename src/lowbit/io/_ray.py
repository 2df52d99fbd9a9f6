"""The Ray executor of ``lowbit quantize --ray``: one Ray task per input shard (not public; ``lowbit[ray]``).

Each task runs the shard function the local loop runs (``lowbit.io.convert._quantize_and_digest``, handed
in by the driver) on a worker node, so the output bytes are the local run's by construction. The driver
(``quantize_checkpoint``) keeps the plan, the manifest and the index; this module only schedules shards and
brings back their results:

* before any work, one check task on every node that has CPUs reads the first bytes of every input and
  looks for a probe file the driver wrote into the output folder: a node that cannot see IN or OUT (no
  shared filesystem) stops the run with a :class:`~lowbit.errors.FileFormatError` naming node and path;
* every shard task declares ``memory=`` (the local run's bound, :func:`shard_memory`) so Ray never packs a
  node beyond its memory, and ``max_retries`` (a killed worker or a lost node reruns the shard from the
  start; the half-written temporary file of the dead attempt is removed when the run ends);
* a task that fails on every attempt fails the run with a :class:`~lowbit.errors.LowbitError` naming the
  shard and the tensor it was on; errors of the data itself (NaN, bad header) are not retried and come
  back with their own type and message;
* progress: each task reports every finished tensor to a small actor; the driver polls it and moves the
  same :class:`~lowbit.io._progress.Progress` bar as the local run (bytes, shards done, MB/s, ETA).

Shards are the unit of work. A shard larger than a node's memory budget would be split into groups of
tensors that write their planned byte ranges of the one output file (the header is planned before any
tensor is quantized); docs/SCALING.md describes it, and checkpoints as published (<= 5-10 GB shards) do
not need it.

Example:
    >>> shard_memory(0) == MEMORY_BASE
    True
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lowbit.errors import FileFormatError, LowbitError, OptionError
from lowbit.io._progress import Progress

__all__ = ["MAX_RETRIES", "MEMORY_BASE", "shard_memory", "ray_executor"]

MAX_RETRIES = 3  # attempts after the first, when a worker dies (SIGKILL, OOM killer, lost node)
MEMORY_BASE = 300 * 10**6  # a worker's own footprint (Python, NumPy, Numba kernels), as in bench_checkpoint's bound
_POLL_S = 0.25  # how often the driver looks at the progress reports


def shard_memory(largest_tensor_bytes: int) -> int:
    """Bytes of memory a shard task declares to Ray: the local run's bound, 2 x largest tensor + 300 MB.

    The streaming writer holds one tensor's stored arrays and one block of rows at a time, so a
    shard needs what its largest tensor needs, whatever the shard's size (``benchmarks/bench_checkpoint.py``
    checks the bound on an 8 GiB checkpoint).

    Example:
        >>> shard_memory(256 * 2**20) / 1e6
        836.870912
    """
    return MEMORY_BASE + 2 * int(largest_tensor_bytes)


def _largest_tensor(path: Path) -> int:
    from lowbit.io._safetensors import SafetensorsFile

    f = SafetensorsFile(path)
    return max((f.nbytes(n) for n in f.names), default=0)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise OptionError("executor='ray' (--ray) needs Ray: pip install 'lowbit[ray]'") from None
    return ray


def _connect(ray: Any, address: str | None) -> bool:
    """Join (or start) a cluster unless this process already has one; True when this call started the session."""
    if ray.is_initialized():
        return False
    ray.init(address=address or None, logging_level="WARNING", log_to_driver=False)
    return True


# --------------------------------------------------------------------------- worker side


def _node_check(inputs: list[tuple[str, int]], probe: str) -> list[str]:
    """On one node: the inputs it cannot read (or sees with another size), an output folder it cannot see or write."""
    host = socket.gethostname()
    problems = []
    for path, size in inputs:
        try:
            with open(path, "rb") as fh:
                fh.read(8)
            seen = os.stat(path).st_size
        except OSError as err:
            problems.append(f"node {host} cannot read {path} ({type(err).__name__}: {err.strerror or err})")
            continue
        if seen != size:
            problems.append(f"node {host} sees {path} with {seen} bytes, the driver {size} (not the same file)")
    folder = os.path.dirname(probe)
    if not os.path.exists(probe):
        problems.append(f"node {host} does not see the output folder {folder} (the driver's probe file "
                        f"{os.path.basename(probe)} is missing there)")
        return problems
    mine = f"{probe}.{host}.{os.getpid()}"
    try:
        with open(mine, "wb"):
            pass
        os.unlink(mine)
    except OSError as err:
        problems.append(f"node {host} cannot write into the output folder {folder} ({type(err).__name__}: "
                        f"{err.strerror or err})")
    return problems


def _shard_task(work: Any, src: str, dst: str, sink: Any, run: str, index: int, threads: int) -> Any:
    """One shard on a worker: the local run's shard function ``work``, reporting each finished tensor to ``sink``.

    The kernels run on ``threads`` threads, the CPUs the task holds (Numba would take every core of the node,
    and 32 tasks x 32 threads on a 32-core node only thrash)."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    done = [0, 0]  # input bytes, tensors

    def advance(nbytes: int, tensor: str) -> None:
        done[0] += nbytes
        done[1] += 1
        sink.report.remote(run, index, done[0], done[1])

    return work(Path(src), Path(dst), advance)


class _ProgressSink:
    """An actor that keeps, per run and shard, the input bytes and tensors the shard's current attempt finished.

    One per driver process, reused by its runs: starting an actor starts a worker process (~1 s on 2 cores).
    """

    def __init__(self) -> None:
        self.latest: dict[str, dict[int, tuple[int, int]]] = {}

    def report(self, run: str, index: int, nbytes: int, tensors: int) -> None:
        self.latest.setdefault(run, {})[index] = (nbytes, tensors)

    def snapshot(self, run: str) -> dict[int, tuple[int, int]]:
        return dict(self.latest.get(run, {}))

    def forget(self, run: str) -> None:
        self.latest.pop(run, None)


_SINK: list[Any] = []  # this process's progress actor, kept between runs (a handle dropped ends the actor)


def _sink(ray: Any) -> Any:
    """This driver's progress actor: the one of an earlier run while its cluster still answers, else a new one."""
    if _SINK:
        try:
            ray.get(_SINK[0].snapshot.remote(""), timeout=10)
            return _SINK[0]
        except Exception:  # Ray raises a bare Exception for an actor of an earlier session
            _SINK.clear()
    _SINK.append(ray.remote(num_cpus=0)(_ProgressSink).remote())
    return _SINK[0]


# --------------------------------------------------------------------------- driver side


def _check_nodes(ray: Any, inputs: list[tuple[str, int]], out_folder: Path) -> None:
    """Run :func:`_node_check` on every alive node with CPUs for the inputs (path, size as the driver sees it)
    and the output folder; raise once, listing every problem."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = out_folder / f".lowbit-probe-{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    try:
        check = ray.remote(num_cpus=0, max_retries=0)(_node_check)
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote(inputs, str(probe)) for node in nodes]
        problems = [msg for found in ray.get(refs) for msg in found]
    finally:
        probe.unlink(missing_ok=True)
    if problems:
        raise FileFormatError("every Ray node must see IN and OUT at the same paths (a shared filesystem): "
                              + "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10
                                                            else ""))


def _fit_memory(ray: Any, needs: list[tuple[Path, int]]) -> list[int]:
    """The memory each shard declares, after checking that some node has that much (else Ray would wait forever)."""
    largest = max((n.get("Resources", {}).get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    too_big = [f"{src.name} needs {need / 1e9:.1f} GB" for src, need in needs if need > largest]
    if too_big:
        raise OptionError(f"no Ray node has the memory a shard needs (largest node: {largest / 1e9:.1f} GB for "
                          f"tasks): {', '.join(too_big[:5])}; add bigger nodes or quantize locally")
    return [need for _, need in needs]


def _cpus_per_task(ray: Any, tasks: int) -> int:
    """CPUs per shard task: the cluster's CPUs shared among the tasks, at least 1, at most one node's."""
    per_node = [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return max(1, min(max(per_node, default=1), sum(per_node) // max(tasks, 1)))


def _failure(ray: Any, err: Exception, src: Path, tensors_done: int) -> Exception:
    """The error a failed shard task ends the run with: the task's own LowbitError, or one naming the tensor."""
    cause = getattr(err, "cause", None)
    if isinstance(err, ray.exceptions.RayTaskError) and isinstance(cause, LowbitError):
        return cause
    from lowbit.io._safetensors import SafetensorsFile

    names = SafetensorsFile(src).names
    at = f"tensor {names[tensors_done]!r}" if tensors_done < len(names) else "its checksum"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return LowbitError(f"{src.name}: {at}: the Ray task failed on all {MAX_RETRIES + 1} attempts "
                       f"({type(err).__name__}: {reason})")


def _remove_dead_attempts(outs: list[Path]) -> None:
    """Temporary files of attempts whose worker died (every task is finished when this runs)."""
    from lowbit.io._safetensors import temps_beside

    for out in outs:
        for tmp in temps_beside(out):
            tmp.unlink(missing_ok=True)


def ray_executor(address: str | None = None) -> Any:
    """The executor ``quantize_checkpoint(..., executor="ray")`` uses: runs shard jobs as Ray tasks.

    Args:
        address: the cluster to join (None: ``RAY_ADDRESS``, a cluster started on this machine, or a new one).

    Returns:
        A function ``run(jobs, work, bar)`` yielding ``(job index, summary part, sha256)`` as shards finish.

    Raises:
        OptionError: Ray is not installed.

    Example:
        >>> run = ray_executor()  # doctest: +SKIP
    """
    _import_ray()

    def run(jobs: list[tuple[Path, Path]], work: Any, bar: Progress) -> Iterator[tuple[int, Any, str]]:
        if not jobs:
            return
        ray = _import_ray()
        started = _connect(ray, address)
        try:
            yield from _run_tasks(ray, jobs, work, bar)
        finally:
            if started:
                _SINK.clear()
                ray.shutdown()

    return run


def _run_tasks(ray: Any, jobs: list[tuple[Path, Path]], work: Any, bar: Progress) -> Iterator[tuple[int, Any, str]]:
    jobs = [(src.resolve(), dst.resolve()) for src, dst in jobs]  # the same paths on every node
    sizes = [src.stat().st_size for src, _ in jobs]
    _check_nodes(ray, [(str(src), size) for (src, _), size in zip(jobs, sizes, strict=True)], jobs[0][1].parent)
    sink, run = _sink(ray), uuid.uuid4().hex
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=[OSError])(_shard_task)
    work_ref = ray.put(work)  # sent once, not with every task
    memory = _fit_memory(ray, [(src, shard_memory(_largest_tensor(src))) for src, _ in jobs])
    cpus = _cpus_per_task(ray, len(jobs))
    refs = {task.options(memory=memory[i], num_cpus=cpus, name=f"lowbit quantize {src.name}")
            .remote(work_ref, str(src), str(dst), sink, run, i, cpus): i for i, (src, dst) in enumerate(jobs)}
    pending, shown, finished = list(refs), [0] * len(jobs), 0
    start = time.perf_counter()
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_S)
            latest = ray.get(sink.snapshot.remote(run))
            for i, (nbytes, _) in latest.items():  # a retried shard starts again from 0: never move back
                _show(bar, i, max(shown[i], min(nbytes, sizes[i])), shown, f"{finished}/{len(jobs)} shards")
            for ref in ready:
                i = refs[ref]
                try:
                    part, digest = ray.get(ref)
                except ray.exceptions.RayError as err:
                    raise _failure(ray, err, jobs[i][0], latest.get(i, (0, 0))[1]) from None
                finished += 1
                _show(bar, i, sizes[i], shown, f"{finished}/{len(jobs)} shards ({time.perf_counter() - start:.0f} s)")
                yield i, part, digest
    finally:
        for ref in pending:
            ray.cancel(ref)
        sink.forget.remote(run)
    _remove_dead_attempts([dst for _, dst in jobs])


def _show(bar: Progress, i: int, nbytes: int, shown: list[int], label: str) -> None:
    if nbytes > shown[i]:
        bar.advance(nbytes - shown[i], label)
        shown[i] = nbytes
