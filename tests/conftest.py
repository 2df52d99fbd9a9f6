"""Shared test configuration.

* Hypothesis runs with modest example counts and no deadline (the first call of
  each Numba kernel compiles it, which would trip a deadline).
* OpenMP threads (Numba's threading layer here) are told to sleep rather than
  spin between parallel regions: with pytest-xdist several processes share the
  cores, and spinning threads slow the many tiny kernel calls down five-fold.
  This must be set before Numba or torch load libgomp, hence at import time.
* A session fixture calls every kernel once per worker so that compilation (or
  loading from Numba's on-disk cache) happens before the timed property tests.
* Under pytest-xdist the controller first compiles the kernels the suite uses
  (``_precompile.py``), so that the workers load them from the cache instead of
  each compiling all of them (``LOWBIT_PRECOMPILE=0`` skips it).
"""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "lowbit",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    # CI checks a fixed set of examples, so a submission cannot pass or fail by the draw;
    # local runs draw new examples every time (and LOWBIT_HYPOTHESIS_PROFILE=lowbit-thorough, 500).
    derandomize=os.environ.get("CI") == "true",
)
settings.register_profile(
    "lowbit-thorough", parent=settings.get_profile("lowbit"), max_examples=500, derandomize=False
)
settings.load_profile(os.environ.get("LOWBIT_HYPOTHESIS_PROFILE", "lowbit"))


def pytest_configure(config: pytest.Config) -> None:
    is_controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")
    if is_controller and os.environ.get("LOWBIT_PRECOMPILE", "1") != "0":
        script = os.path.join(os.path.dirname(__file__), "_precompile.py")
        subprocess.run([sys.executable, script], check=False)


@pytest.fixture(scope="session", autouse=True)
def _warm_kernels():
    """Compile (or load from cache) the Numba kernels once per test process."""
    import lowbit
    from lowbit._kernels import pack_codes, unpack_codes

    for dtype in (np.float32, np.float64):
        x = np.linspace(-1, 1, 24, dtype=dtype).reshape(4, 6)
        for name in ("int8", "uint8", "int16", "uint16", "int4"):
            qt = lowbit.quantize(x, name, granularity=lowbit.PerChannel(1))
            qt.dequantize()
            qt.codes  # noqa: B018 - unpacks
        lowbit.fake_quantize(x, "int4")
    for dt in (np.int8, np.uint8, np.int16, np.uint16):
        unpack_codes(pack_codes(np.zeros(8, dt), 3), 8, 3, np.dtype(dt).kind == "i")
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)
