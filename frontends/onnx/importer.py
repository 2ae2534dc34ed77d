"""The driver: load safely, upgrade old opsets, check every op has a converter (one error naming all that do
not), convert, and check the outputs against the types the file declares."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from graphopt.errors import ModelLoadError, UnsupportedOpError
from graphopt.ir import Graph

from .context import CONVERTERS, ConversionContext
from .loading import MIN_OPSET, external_tensor, load_proto, upgrade

__all__ = ["import_onnx"]


def import_onnx(model: str | os.PathLike[str] | Any, *, name: str | None = None,
                constants: Mapping[str, Any] | None = None) -> Graph:
    """Convert an ONNX model (path or ModelProto). Raises ModelLoadError or UnsupportedOpError (all ops).

    `constants` specializes graph inputs to fixed values (they stop being inputs), like TVM's `freeze_params`:
    graphopt needs shape-like arguments (a Reshape target, Slice bounds, TopK's k) known at compile time.
    Models below opset 13 are upgraded with `onnx.version_converter` first.
    """
    import onnx

    proto, folder = load_proto(model)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        proto = upgrade(proto, opset)
    from onnx import TensorProto

    # validate every external location before anything reads one; the memory maps are reused below
    external = {t.name: external_tensor(t, folder) for t in proto.graph.initializer
                if t.data_location == TensorProto.EXTERNAL}
    try:
        onnx.checker.check_model(str(model) if folder is not None else proto)
    except onnx.checker.ValidationError as e:
        raise ModelLoadError(f"model fails onnx.checker: {str(e).splitlines()[0]}") from None
    missing = Counter(n.op_type for n in proto.graph.node if n.op_type not in CONVERTERS or n.domain not in
                      ("", "ai.onnx"))
    if missing:
        where: dict[str, list[str]] = {}
        for n in proto.graph.node:
            if n.op_type in missing:
                where.setdefault(n.op_type, []).append(n.name or n.output[0])
        lines = [f"  {op} x{c} (at {', '.join(where[op][:5])})" for op, c in missing.most_common()]
        raise UnsupportedOpError(f"{len(missing)} ONNX op(s) have no graphopt converter:\n" + "\n".join(lines) +
                                 "\nAdd one with graphopt.frontends.onnx.converter(...) or use ONNX Runtime.",
                                 ops=dict(missing))
    unknown = set(constants or {}) - {i.name for i in proto.graph.input}
    if unknown:
        raise ModelLoadError(f"constants given for unknown input(s) {', '.join(sorted(unknown))}")
    return ConversionContext(proto, external, name or proto.graph.name or "model", dict(constants or {})).run()
