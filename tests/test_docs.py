"""The README's Python blocks and every module docstring example run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import sys
import types
from pathlib import Path

import pytest

import graphopt

ROOT = Path(__file__).resolve().parents[1]


README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_python_blocks_run_each_on_its_own(index: int, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each block in a fresh namespace and an empty folder: a user copies one block, not the page."""
    assert len(README_BLOCKS) >= 3
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("__readme__")  # in sys.modules, as a script's __main__ is: dataclasses look there
    monkeypatch.setitem(sys.modules, "__readme__", module)
    exec(compile(README_BLOCKS[index], f"README.md block {index}", "exec"), module.__dict__)  # noqa: S102


def test_readme_starts_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first is not None
    commands = first.group(1).strip().splitlines()
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci  # CI runs exactly the README's test command


def _modules() -> list[str]:
    names = ["graphopt"]
    for pkg in (graphopt, graphopt.ir, graphopt.ir.ops, graphopt.passes, graphopt.backends, graphopt.frontends):
        names += [m.name for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + ".")]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
