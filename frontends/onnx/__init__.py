"""ONNX frontend: a .onnx file or ModelProto (opset 13 and up) → graphopt IR.

Reading order: `loading` (safe loading), `context` (the conversion context and the converter table),
`converters`, `composite`, `recurrent` and `resize` (the converters), `importer` (the driver).

Untrusted files are handled defensively: a missing path, a truncated or malformed protobuf, a model that
fails `onnx.checker`, or an external-data location outside the model's folder each raise ModelLoadError
before anything is converted. External weights are memory-mapped, so they are read lazily. Shape arithmetic
(Shape → Gather → Concat → Reshape, as exporters emit for dynamic models) is evaluated at import time into
dim expressions instead of becoming runtime nodes; where such a value is used as data it is read from the bound
dims by a `shape_tensor` node, and a shape argument only known at run time names the graph inputs it comes from
(`ShapeInputsNeeded`: `graphopt.compile` then specializes on their values when the model is called).

>>> import onnx, graphopt
>>> from onnx import helper, TensorProto
>>> node = helper.make_node("Relu", ["x"], ["y"])
>>> g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
>>> graphopt.import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])).format().splitlines()[1]
'  %y: f32[n,4] = relu(%x)  loc("Relu_0")'
"""

from __future__ import annotations

from . import composite, converters, recurrent, resize  # noqa: F401  (registers the converters)
from .context import CONVERTERS, ConversionContext, converter
from .importer import import_onnx
from .loading import MIN_OPSET

__all__ = ["import_onnx", "converter", "CONVERTERS", "ConversionContext", "MIN_OPSET"]
