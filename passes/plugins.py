"""Custom passes from outside graphopt: `load_pass("module:function")` and the `graphopt.passes` entry points.

A third-party package registers passes without touching graphopt by declaring, in its pyproject.toml:

    [project.entry-points."graphopt.passes"]
    my-pass = "my_package.passes:my_pass"

>>> info = load_pass("graphopt.passes.dce:dce")
>>> info.name
'dce'
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from typing import Any

from graphopt.errors import PipelineError

from .registry import PassInfo, get_pass, register_pass

__all__ = ["load_pass", "load_entry_points"]


def _register(obj: Any, default_name: str) -> PassInfo:
    name = getattr(obj, "__graphopt_pass__", None)
    if name is None:  # a plain function: register it under its kebab-case name
        name = default_name.replace("_", "-")
        register_pass(name, replace=True)(obj)
    return get_pass(name)


def load_pass(spec: str) -> PassInfo:
    """Import `module:function` (or `path/to/file.py:function`) and make the function a pipeline pass.

    A function already decorated with @register_pass keeps its name; a plain one is registered under its
    kebab-cased name. Returns the pass's PassInfo.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise PipelineError(f"--load-pass expects module:function, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            module = _import_file(module_name)
        else:
            module = _import_from_cwd_too(module_name)
    except (ImportError, OSError) as e:
        raise PipelineError(f"cannot import {module_name!r} for pass {spec!r}: {e}") from e
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise PipelineError(f"module {module_name!r} has no attribute {attr!r}") from None
    return _register(obj, attr)


def _import_from_cwd_too(name: str) -> Any:
    """Import `name`, also from the current folder (as `python -m` and the CLI's model factories do)."""
    import os
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # after installed packages: a local file never shadows a real module
    return importlib.import_module(name)


def _import_file(path: str) -> Any:
    import importlib.util
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise ImportError(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location(f"graphopt_user_{file.stem}", file)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    # registered before it runs, as `import` does: dataclasses, pickling and typing look their module up there
    # (a plugin file defining a @dataclass failed to load without it)
    sys.modules[module_spec.name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_spec.name]
        raise
    return module


def load_entry_points() -> list[str]:
    """Load every pass advertised in the `graphopt.passes` entry-point group. Returns their names."""
    names = []
    for ep in entry_points(group="graphopt.passes"):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin is named, not a traceback from deep in importlib
            raise PipelineError(f"the graphopt.passes entry point {ep.name!r} ({ep.value}) failed to load: "
                                f"{type(e).__name__}: {e}") from e
        names.append(_register(obj, ep.name).name)
    return names
