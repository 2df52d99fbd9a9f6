"""lowbit.calibration (the package): importing it keeps torch out."""

from __future__ import annotations

import subprocess
import sys


def test_importing_lowbit_does_not_import_torch():
    code = "import sys, lowbit, lowbit.calibration; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
