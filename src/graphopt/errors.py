"""The one exception hierarchy of graphopt.

Every error says what went wrong, where (node, origin in the user's model, pass) and how to fix it. Catch
`GraphoptError` to catch them all.
"""

from __future__ import annotations

__all__ = [
    "GraphoptError",
    "ParseError",
    "VerificationError",
    "PassError",
    "PipelineError",
    "NumericMismatchError",
    "RewriteLimitError",
    "UnsupportedOpError",
    "ModelLoadError",
    "InterpreterError",
    "InputError",
]


class GraphoptError(Exception):
    """Base class of every error graphopt raises on purpose."""


class ParseError(GraphoptError):
    """IR or pipeline text that does not parse; carries 1-based `line` and `column`."""

    def __init__(self, message: str, line: int, column: int, source_line: str = "") -> None:
        self.line = line
        self.column = column
        self.reason = message
        text = f"{line}:{column}: {message}"
        if source_line:
            text += f"\n  {source_line}\n  {' ' * (column - 1)}^"
        super().__init__(text)


class VerificationError(GraphoptError):
    """A graph breaks an IR rule (SSA, order, schema, types). Names the node and the rule."""

    def __init__(self, message: str, node: object | None = None, rule: str = "") -> None:
        self.node = node
        self.rule = rule
        super().__init__(message)


class PassError(GraphoptError):
    """A pass failed or broke its contract; names the pass and the passes that ran before it."""


class PipelineError(GraphoptError):
    """A pipeline string names an unknown pass or option, or has a bad value."""


class NumericMismatchError(PassError):
    """A pass changed the graph's outputs beyond tolerance (raised by the numeric-check instrument)."""


class RewriteLimitError(PassError):
    """The greedy rewrite driver hit its iteration cap; names the rules that kept firing."""


class UnsupportedOpError(GraphoptError):
    """Ops that the frontend, registry or backend does not support. `ops` maps each op name to its count."""

    def __init__(self, message: str, ops: dict[str, int] | None = None) -> None:
        self.ops = dict(ops or {})
        super().__init__(message)


class ShapeInputsNeeded(UnsupportedOpError):
    """A shape-like argument (a Reshape target, Resize scales, reduction axes) comes from graph inputs whose values
    graphopt needs at compile time. `inputs` names them (as the model file does); `graphopt.compile` then
    specializes on their values when the model is called (see graphopt.specialize)."""

    def __init__(self, message: str, inputs: list[str]) -> None:
        self.inputs = list(inputs)
        super().__init__(message, ops={})


class ModelLoadError(GraphoptError):
    """A model file that is missing, malformed or unsafe to load."""


class InterpreterError(GraphoptError):
    """The reference interpreter could not run a node (bad inputs, kernel failure)."""


class InputError(GraphoptError, TypeError, ValueError):
    """Inputs that do not fit the compiled model: count, name, dtype, rank, a dim, or a symbol's declared range.

    A TypeError (wrong arguments, as Python calls report them) and a ValueError (wrong sizes) both."""
