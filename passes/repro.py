"""Reproducers: when a pass crashes or drifts, the IR it was given, written to a fresh folder, and the command that
runs that pass on it again.

A report that says `graphopt opt MODEL ...` leaves the user to rebuild the failing input; this writes it
(`before.gir`, with large weights in `before.npz` beside it, which `graphopt opt` reads) in a new temporary
folder — never over anything that exists — and names the exact command:

>>> from graphopt.ir import parse
>>> g = parse("graph @g(%x: f32[2]) { %y: f32[2] = relu(%x) return %y }")
>>> cmd = reproduce_command(g, "canonicalize", numeric_check=True)
>>> cmd.startswith("graphopt opt ") and cmd.endswith("before.gir --pipeline canonicalize --numeric-check")
True
"""

from __future__ import annotations

import inspect
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graphopt.ir import Graph

if TYPE_CHECKING:
    from .manager import PassSpec

__all__ = ["write_reproducer", "reproduce_command", "load_pass_flags"]

_INLINE = 64  # constants up to this many elements are printed in the text, larger ones go to before.npz


def write_reproducer(graph: Graph) -> Path:
    """Write `graph` as `before.gir` (+ `before.npz`) in a new temporary folder; the .gir's path."""
    folder = Path(tempfile.mkdtemp(prefix="graphopt-repro-"))
    path = folder / "before.gir"
    path.write_text(graph.format(max_inline=_INLINE) + "\n", encoding="utf-8")
    external = {name: np.asarray(v.const) for name, v in graph.constants.items()
                if v.const is not None and v.const.size > _INLINE}
    if external:
        np.savez(folder / "before.npz", **external)  # type: ignore[arg-type]
    return path


def load_pass_flags(specs: list[PassSpec] | list[str]) -> str:
    """`--load-pass file.py:function` for every pass in `specs` that is not graphopt's own, so the command also
    works for a plugin pass."""
    from .registry import get_pass

    flags = []
    for spec in specs:
        info = get_pass(spec if isinstance(spec, str) else spec.name)
        if info.target.__module__.startswith("graphopt."):
            continue
        try:
            source = inspect.getsourcefile(info.target)
        except TypeError:
            source = None
        where = source if source else info.target.__module__
        flags.append(f"--load-pass {shlex.quote(f'{where}:{info.target.__name__}')}")
    return "".join(" " + f for f in dict.fromkeys(flags))


def reproduce_command(graph: Graph, pipeline: str, *, numeric_check: bool = False, plugins: str = "") -> str:
    """Write `graph` as a reproducer and return the command that runs `pipeline` on it."""
    path = write_reproducer(graph)
    return (f"graphopt opt {shlex.quote(str(path))} --pipeline {shlex.quote(pipeline)}{plugins}"
            + (" --numeric-check" if numeric_check else ""))
