"""Modules the IR needs only once a kernel runs or a symbolic expression is simplified: sympy (0.4 s to import)
and scipy.special (0.2 s) load on first use, so `import graphopt.ir` stays cheap for tools that only read,
print or verify graphs.

>>> sp = lazy_module("sympy")
>>> sp.Integer(2) + 3
5
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

__all__ = ["lazy_module"]


def lazy_module(name: str) -> ModuleType:
    """`name` as a module that is executed on its first attribute access (importlib's LazyLoader); the real
    module if something imported it already."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
