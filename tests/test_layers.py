"""Layers point one way: ir -> (errors); passes -> ir; backends -> ir; frontends -> ir; api and cli on top.

Checked on the source (every import, also those inside functions) and at run time (`import graphopt.ir` loads
neither torch nor onnx nor any other layer).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAVES = {"graphopt.errors", "graphopt.fileio", "graphopt.arrays"}  # shared, import nothing of graphopt
LAYERS = {  # folder -> (its package, the graphopt packages it may import besides itself and the leaves)
    "ir": ("graphopt.ir", set()),
    "passes": ("graphopt.passes", {"graphopt.ir"}),
    "backends": ("graphopt.backends", {"graphopt.ir"}),
    "frontends": ("graphopt.frontends", {"graphopt.ir"}),
}


def _imports(path: Path, package: str, folder: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts[:-1]]
                base = ".".join(p for p in parts[: len(parts) - node.level + 1] if p)
                out.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                out.add(node.module)
    return {m for m in out if m == "graphopt" or m.startswith("graphopt.")}


@pytest.mark.parametrize("folder", list(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(folder: str) -> None:
    package, allowed = LAYERS[folder]
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for module in _imports(path, package, ROOT / folder):
            ok = (module.startswith(package) or module in LEAVES
                  or any(module == a or module.startswith(a + ".") for a in allowed))
            if not ok:
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


def test_importing_the_ir_loads_no_other_layer_and_no_torch() -> None:
    code = ("import sys, graphopt.ir\n"
            "heavy = ('torch', 'onnx', 'onnxruntime', 'graphopt.passes', 'graphopt.backends', 'graphopt.frontends',"
            " 'graphopt.api')\n"
            "print(sorted(m for m in sys.modules if m.startswith(heavy)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_umbrella_still_offers_everything_lazily() -> None:
    code = "import graphopt; print(graphopt.compile.__module__, graphopt.PassManager.__name__, graphopt.load.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["graphopt.api", "PassManager", "load_model"]


def test_the_onnx_importer_has_no_import_cycle_and_shares_no_private_names() -> None:
    """loading ← context ← converters/composite/resize ← importer, each importing only public names of the ones
    below: the old single module worked only through a bottom-of-file import of modules importing its privates."""
    order = ["loading", "context", "converters", "composite", "resize", "importer"]
    below = {"converters": {"context", "loading"}, "composite": {"context", "loading"}, "resize": {"context", "loading"},
             "importer": {"context", "loading"}, "context": {"loading"}, "loading": set()}
    bad = []
    for name in order:
        tree = ast.parse((ROOT / "frontends" / "onnx" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module not in below[name]:
                    bad.append(f"{name} imports .{node.module}")
                bad += [f"{name} imports private {a.name} from .{node.module}" for a in node.names
                        if a.name.startswith("_")]
    assert not bad, bad


def test_importing_the_ir_defers_sympy_scipy_and_networkx() -> None:
    """They cost 0.8 s of a 1.1 s import; reading, printing and verifying graphs needs none of them."""
    code = ("import sys, graphopt.ir\n"
            "print(sorted(m for m in ('sympy', 'scipy.special', 'networkx') if m in sys.modules and\n"
            "             type(sys.modules[m]).__name__ != '_LazyModule'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
