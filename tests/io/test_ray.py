"""lowbit.io._ray on a real local Ray cluster (2 CPUs): the local run's bytes, a killed worker, resume, refusals.

One cluster for the module, on a synthetic ~260 MB bf16 checkpoint in 8 shards; the local run's output is the
reference every Ray run is compared with, file by file (sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit import cli
from lowbit.io import _ray, convert
from lowbit.io._safetensors import SafetensorsWriter

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]  # one cluster: the module runs in one worker

SHARDS = 8
# per shard: three bf16 matrices (16 + 8 + 8 MB), one whose rows a group of 64 does not divide (ragged), and a bias
SHAPES = [("up.weight", (2048, 4096)), ("q.weight", (1024, 4096)), ("o.weight", (4096, 1024)),
          ("odd.weight", (96, 1000)), ("bias", (4096,))]


def _write_checkpoint(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    pattern = (rng.standard_normal(1 << 20).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    weight_map = {}
    for s in range(SHARDS):
        name = f"model-{s + 1:05d}-of-{SHARDS:05d}.safetensors"
        entries = [(f"layers.{s}.{t}", "BF16", shape) for t, shape in SHAPES]
        with SafetensorsWriter(folder / name, entries, {"format": "pt"}) as w:
            for k, (n, _, shape) in enumerate(entries):
                w.write(n, np.roll(np.resize(pattern, int(np.prod(shape))), 7919 * (s * 5 + k)).reshape(shape))
                weight_map[n] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {},
                                                                                            "weight_map": weight_map}))
    (folder / "config.json").write_text("{}")


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The checkpoint and the local run's output, its digests (index and manifest included) and summary."""
    root = tmp_path_factory.mktemp("ray")
    _write_checkpoint(root / "src")
    summary = convert.quantize_checkpoint(root / "src", root / "local", progress=False)
    return root, _digests(root / "local"), summary


def test_ray_run_writes_the_local_runs_bytes(cluster, local):
    root, want, ref = local
    times = []
    for run in range(2):  # the first run also starts the workers (imports, Numba's cached kernels)
        start = time.perf_counter()
        got = convert.quantize_checkpoint(root / "src", root / "ray", executor="ray", overwrite=run > 0,
                                          progress=False)
        times.append(time.perf_counter() - start)
        assert _digests(root / "ray") == want
    assert (got.quantized, got.kept, got.output_bytes, got.notes) == (ref.quantized, ref.kept, ref.output_bytes,
                                                                       ref.notes)
    assert not got.notes and got.quantized == 4 * SHARDS  # odd.weight: ragged groups (15 x 64 + 40), no fallback
    print(f"\n[ray] {ref.input_bytes / 1e6:.0f} MB, {SHARDS} shards: local {ref.seconds:.2f} s, ray {times[0]:.2f} s "
          f"(cold), {times[1]:.2f} s (warm): ray/local = {times[1] / ref.seconds:.2f}")
    assert times[1] < 5 * ref.seconds + 5  # parity is the target on 2 cores; this only catches a serialised run


def _holder_of(pattern: str, folder: Path) -> int | None:
    """The process that has a file matching ``pattern`` in ``folder`` open (a worker in the middle of a shard)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith(str(folder)) and Path(target).match(pattern):
                    return int(proc.name)
        except OSError:
            continue
    return None


def _run_and_kill_a_worker(src: Path, out: Path) -> tuple[int | None, dict[str, object]]:
    """Quantize on Ray in a thread; SIGKILL the first worker seen holding a shard's temporary file."""
    result: dict[str, object] = {}

    def drive() -> None:
        try:
            result["summary"] = convert.quantize_checkpoint(src, out, executor="ray", overwrite=True, progress=False)
        except Exception as err:  # handed to the test thread
            result["error"] = err

    driver = threading.Thread(target=drive)
    driver.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and driver.is_alive() and time.monotonic() < deadline:
        pid = _holder_of(".model-*.safetensors.*.tmp", out.resolve()) if out.exists() else None
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.005)
    driver.join(120)
    return killed, result


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the worker through /proc")
def test_a_worker_killed_mid_shard_is_retried_and_the_bytes_are_the_same(cluster, local):
    root, want, _ = local
    out = root / "killed"
    for _ in range(3):  # on a loaded machine the run may end before a worker is caught: try again
        killed, result = _run_and_kill_a_worker(root / "src", out)
        if killed is not None:
            break
    assert killed is not None, "no worker was caught in the middle of a shard"
    assert "error" not in result, result.get("error")
    assert _digests(out) == want
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # the dead attempt's file is gone


def test_resume_on_ray_skips_the_complete_shards(cluster, local, capsys):
    root, want, _ = local
    out = root / "resumed"
    convert.quantize_checkpoint(root / "src", out, progress=False)  # a local run ...
    for name in ("model.safetensors.index.json", "model-00002-of-00008.safetensors",
                 "model-00007-of-00008.safetensors"):
        (out / name).unlink()  # ... interrupted: two shards and the index missing
    (out / "model-00005-of-00008.safetensors").write_bytes(b"torn")  # one shard torn
    assert cli.main(["quantize", str(root / "src"), str(out), "--resume", "--quiet", "--json", "--ray"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_shards"] == SHARDS - 3 and summary["quantized"] == 3 * 4
    assert _digests(out) == want


def test_a_node_that_cannot_read_the_input_is_refused(cluster, local, tmp_path):
    root, _, _ = local
    shard = root / "src" / "model-00001-of-00008.safetensors"
    missing = tmp_path / "only-on-the-driver.safetensors"  # as if the driver had it on a local disk
    inputs = [(str(shard), shard.stat().st_size), (str(missing), 1234)]
    with pytest.raises(lowbit.FileFormatError, match=r"cannot read .*only-on-the-driver\.safetensors"):
        _ray._check_nodes(ray, inputs, tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe file is removed


def test_a_node_that_sees_another_file_or_no_output_folder_is_refused(cluster, local, tmp_path):
    root, _, _ = local
    shard = root / "src" / "model-00001-of-00008.safetensors"
    size = shard.stat().st_size
    with pytest.raises(lowbit.FileFormatError, match=f"sees .* with {size} bytes, the driver {size + 1}"):
        _ray._check_nodes(ray, [(str(shard), size + 1)], tmp_path)
    on_a_worker = ray.get(ray.remote(_ray._node_check).remote([], str(tmp_path / ".lowbit-probe-never-written")))
    assert len(on_a_worker) == 1 and "does not see the output folder" in on_a_worker[0]
    read_only = ray.get(ray.remote(_ray._node_check).remote([], "/proc/self/status"))  # /proc/self: no new files
    assert len(read_only) == 1 and "cannot write into the output folder /proc/self" in read_only[0]


def test_a_shard_with_bad_data_fails_the_run_naming_shard_and_tensor(cluster, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    bad = np.ones((16, 64), np.float32)
    bad[3, 5] = np.nan
    for i, w in enumerate([np.ones((16, 64), np.float32), bad]):
        entries = [("fine", "F32", (16, 64)), (f"w{i}", "F32", (16, 64))]
        with SafetensorsWriter(src / f"part-{i}.safetensors", entries) as f:
            f.write("fine", np.ones((16, 64), np.float32))
            f.write(f"w{i}", w)
    (src / "model.safetensors.index.json").write_text(
        '{"weight_map": {"fine": "part-0.safetensors", "w0": "part-0.safetensors", "w1": "part-1.safetensors"}}')
    with pytest.raises(lowbit.NonFiniteError, match=r"part-1\.safetensors: tensor 'w1'"):
        convert.quantize_checkpoint(src, tmp_path / "out", executor="ray", progress=False)
    assert not (tmp_path / "out" / "model.safetensors.index.json").exists()


def test_a_task_that_keeps_dying_names_the_shard_and_the_tensor(cluster, local):
    root, _, _ = local
    shard = root / "src" / "model-00003-of-00008.safetensors"
    err = _ray._failure(ray, ray.exceptions.WorkerCrashedError(), shard, tensors_done=1)
    assert isinstance(err, lowbit.LowbitError)
    assert "model-00003-of-00008.safetensors: tensor 'layers.2.q.weight'" in str(err)
    assert f"all {_ray.MAX_RETRIES + 1} attempts" in str(err) and "WorkerCrashedError" in str(err)


def test_a_shard_larger_than_any_node_is_refused_before_it_waits_forever(cluster, local):
    root, _, _ = local
    shard = root / "src" / "model-00001-of-00008.safetensors"
    with pytest.raises(lowbit.OptionError, match=r"model-00001-of-00008\.safetensors needs 1000000\.0 GB"):
        _ray._fit_memory(ray, [(shard, 10**15)])


@pytest.mark.parametrize("options", [{"scale_format": "double8"}, {"qtype": "uint4", "algorithm": "hqq"},
                                     {"qtype": "mxfp4"}], ids=["two-pass-double8", "hqq", "mxfp4"])
def test_other_schemes_and_a_single_file_give_the_local_bytes_too(cluster, tmp_path, options):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    weight_map = {}
    for s, shape in enumerate([(64, 512), (48, 100)]):  # 100: a group of 32 or 64 does not divide it
        name = f"part-{s}.safetensors"
        with SafetensorsWriter(src / name, [(f"w{s}", "F32", shape), (f"b{s}", "F32", shape[:1])]) as f:
            f.write(f"w{s}", rng.standard_normal(shape).astype(np.float32))
            f.write(f"b{s}", rng.standard_normal(shape[:1]).astype(np.float32))
        weight_map |= {f"w{s}": name, f"b{s}": name}
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for out, executor in ((tmp_path / "local", "local"), (tmp_path / "ray", "ray"),
                          (tmp_path / "local.safetensors", "local"), (tmp_path / "ray.safetensors", "ray")):
        source = src if out.suffix != ".safetensors" else src / "part-1.safetensors"
        convert.quantize_checkpoint(source, out, executor=executor, progress=False, **options)
    assert _digests(tmp_path / "ray") == _digests(tmp_path / "local")
    assert (tmp_path / "ray.safetensors").read_bytes() == (tmp_path / "local.safetensors").read_bytes()
