"""Frontends: functions from a model (PyTorch module, ExportedProgram, ONNX file) into a graphopt Graph."""

from .onnx import import_onnx
from .torch_export import export_torch, import_exported_program, import_torch, load_pt2

__all__ = ["import_onnx", "import_torch", "import_exported_program", "load_pt2", "export_torch"]
