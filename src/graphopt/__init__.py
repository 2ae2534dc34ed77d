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

# Everything else loads on first use (PEP 562), so `import graphopt.ir` costs the IR alone — no torch, onnx,
# passes, backends or frontends — and the layers below stay importable on their own.
_LAZY = {
    "ir": ("graphopt.ir", None), "passes": ("graphopt.passes", None), "backends": ("graphopt.backends", None),
    "frontends": ("graphopt.frontends", None),
    "PassContext": ("graphopt.passes", "PassContext"), "PassManager": ("graphopt.passes", "PassManager"),
    "load_pass": ("graphopt.passes", "load_pass"), "register_pass": ("graphopt.passes", "register_pass"),
    "import_onnx": ("graphopt.frontends", "import_onnx"), "import_torch": ("graphopt.frontends", "import_torch"),
    "load_pt2": ("graphopt.frontends", "load_pt2"), "export_onnx": ("graphopt.backends.onnx_export", "export_onnx"),
    "CompiledModel": ("graphopt.api", "CompiledModel"), "compile": ("graphopt.api", "compile"),
    "load_model": ("graphopt.api", "load_model"), "load": ("graphopt.api", "load_model"),
    "to_graph": ("graphopt.api", "to_graph"), "calibrate": ("graphopt.quantization", "calibrate"),
    "CalibrationTable": ("graphopt.passes.calibration", "CalibrationTable"),
    "quantization": ("graphopt.quantization", None),
    "compression": ("graphopt.compression", None), "distill": ("graphopt.compression", "distill"),
    "prune": ("graphopt.compression", "prune"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'graphopt' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "CalibrationTable",
    "CompiledModel",
    "calibrate",
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
    "quantization",
    "compression",
    "distill",
    "prune",
    "register_pass",
]
