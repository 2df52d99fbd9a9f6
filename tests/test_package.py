"""The package's shape: no import cycle, a light ``import lowbit``, a small public surface, private modules private."""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import lowbit

SRC = pathlib.Path(lowbit.__file__).parent


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """Every lowbit module ``name`` imports, at module level or inside functions (lazy imports count)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target in modules:
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_inside_lowbit():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["lowbit.core"] and "lowbit.qtensor" in graph["lowbit.core"]  # the walk sees imports at all
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_lowbit_is_light():
    code = "import sys, lowbit; print(sorted(m for m in ('torch', 'numba', 'lowbit._kernels') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names_exist_and_private_modules_stay_out_of_all():
    for module in ("lowbit", "lowbit.calibration", "lowbit.algorithms", "lowbit.nn", "lowbit.model",
                   "lowbit.formats", "lowbit.io", "lowbit.report", "lowbit.zoo"):
        mod = importlib.import_module(module)
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.{name}"
            assert not name.startswith("_") or name == "__version__", f"{module}.{name}"
    assert "kernels" not in dir(lowbit) and not hasattr(lowbit, "kernels")
    import lowbit.model as lm

    assert not hasattr(lm, "quantize"), "lowbit.model.quantize would be a module, not a function"
    assert callable(lm.quantize_) and callable(lm.calibrate) and callable(lm.train)


@pytest.mark.parametrize(
    "private",
    ["lowbit._kernels", "lowbit.model._handlers", "lowbit.model._collect", "lowbit.model._observed",
     "lowbit.model._quantize", "lowbit.algorithms._statistics", "lowbit.algorithms._checks"],
)
def test_implementation_modules_are_private(private):
    module = importlib.import_module(private)
    assert private.rpartition(".")[2].startswith("_")
    parent = importlib.import_module(private.rpartition(".")[0])
    assert private.rpartition(".")[2] not in getattr(parent, "__all__", [])
    assert module.__doc__
