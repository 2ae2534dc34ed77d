r"""graphopt: a compiler-style graph optimizer for deep-learning models.

>>> import graphopt
>>> g = graphopt.ir.parse('graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)\n  return %0\n}')
>>> graphopt.PassManager.parse("O1").run(g).changed
False
"""

from . import errors
from .errors import (
    GraphoptError,
    InputError,
    InterpreterError,
    ModelLoadError,
    NumericMismatchError,
    ParseError,
    PassError,
    PipelineError,
    RewriteLimitError,
    UnsupportedOpError,
    VerificationError,
)
from . import ir  # noqa: E402
from . import passes  # noqa: E402
from . import backends  # noqa: E402
from .passes import PassContext, PassManager, load_pass, register_pass  # noqa: E402
from . import frontends  # noqa: E402
from .frontends import import_onnx, import_torch, load_pt2  # noqa: E402
from .backends.onnx_export import export_onnx  # noqa: E402
from .api import CompiledModel, compile, load_model, to_graph  # noqa: E402

load = load_model

__version__ = "0.1.0"

__all__ = [
    "CompiledModel",
    "compile",
    "load",
    "load_model",
    "to_graph",
    "GraphoptError",
    "InputError",
    "InterpreterError",
    "ModelLoadError",
    "NumericMismatchError",
    "ParseError",
    "PassContext",
    "PassError",
    "PassManager",
    "PipelineError",
    "RewriteLimitError",
    "UnsupportedOpError",
    "VerificationError",
    "backends",
    "errors",
    "frontends",
    "import_torch",
    "import_onnx",
    "export_onnx",
    "load_pt2",
    "ir",
    "load_pass",
    "passes",
    "register_pass",
]
