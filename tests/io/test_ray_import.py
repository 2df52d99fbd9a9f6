"""The Ray executor's edges that need no cluster: Ray stays unimported without --ray, options, the CLI flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lowbit
from lowbit import cli
from lowbit.io import convert
from lowbit.io._safetensors import SafetensorsWriter


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "in.safetensors"
    with SafetensorsWriter(path, [("w", "F32", (8, 64))]) as f:
        f.write("w", np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32))
    return path


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_without_ray_nothing_imports_ray(small, tmp_path):
    code = ("import sys; from lowbit.cli import main; from lowbit.io.convert import quantize_checkpoint\n"
            "quantize_checkpoint(sys.argv[1], sys.argv[2], progress=False)\n"
            "assert main(['quantize', sys.argv[1], sys.argv[3], '--quiet']) == 0\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = _run(code, str(small), str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_ray_missing_is_a_clear_error_before_any_output(small, tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
            "from lowbit.cli import main; sys.exit(main(['quantize', sys.argv[1], sys.argv[2], '--ray']))")
    done = _run(code, str(small), str(tmp_path / "out.safetensors"))
    assert done.returncode == 2
    assert "needs Ray: pip install 'lowbit[ray]'" in done.stderr
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("kwargs, message", [({"executor": "dask"}, "executor must be one of"),
                                             ({"ray_address": "auto"}, "needs executor='ray'")],
                         ids=["unknown-executor", "address-without-ray"])
def test_bad_executor_options_fail_before_any_output(small, tmp_path, kwargs, message):
    with pytest.raises(lowbit.OptionError, match=message):
        convert.quantize_checkpoint(small, tmp_path / "out.safetensors", progress=False, **kwargs)
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("flags, want", [([], None), (["--ray"], ""), (["--ray", "ray://head:10001"], "ray://head:10001"),
                                         (["--ray=auto"], "auto")], ids=["local", "ray", "address", "equals"])
def test_the_ray_flag_takes_an_optional_address(flags, want):
    args = cli.build_parser().parse_args(["quantize", "in", "out", *flags])
    assert args.ray == want
