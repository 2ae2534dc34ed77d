"""The README's Python blocks and every module docstring example run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import graphopt

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_blocks_run() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102


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
    for pkg in (graphopt, graphopt.ir, graphopt.ir.ops, graphopt.passes, graphopt.backends):
        names += [m.name for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + ".")]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
