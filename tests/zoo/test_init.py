"""lowbit.zoo (the package): importing it keeps torch and transformers out; every loader documents an Example."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from lowbit import zoo  # noqa: E402


def test_import_zoo_does_not_import_torch():
    code = "import sys, lowbit, lowbit.zoo; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_public_surface():
    assert set(zoo.__all__) >= {
        "load_mnist_cnn",
        "mnist_split",
        "evaluate_accuracy",
        "load_minilm",
        "embed",
        "sentences",
    }
    for name in zoo.__all__:
        obj = getattr(zoo, name)
        if callable(obj):
            assert obj.__doc__ and "Example" in obj.__doc__, name
