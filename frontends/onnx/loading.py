"""Safe loading of ONNX files: a missing path, a malformed protobuf, an element type that is not one, external
data outside the model's folder or of the wrong length each raise ModelLoadError before anything is converted.
External weights are memory-mapped (read lazily)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from graphopt.errors import ModelLoadError, UnsupportedOpError
from graphopt.ir import DType

__all__ = ["MIN_OPSET", "load_proto", "external_tensor", "upgrade", "dtype_of", "graph_input_names"]

MIN_OPSET = 13


def load_proto(model: Any) -> tuple[Any, Path | None]:
    import onnx
    from google.protobuf.message import DecodeError

    if not isinstance(model, (str, os.PathLike)):
        return model, None
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no graph)")
    return proto, path.parent


def external_tensor(tensor: Any, folder: Path | None) -> np.ndarray:
    info = {e.key: e.value for e in tensor.external_data}
    if folder is None:
        raise ModelLoadError(f"initializer {tensor.name} has external data; load the model from its file path")
    location = info.get("location", "")
    target = (folder / location).resolve()
    if folder.resolve() not in target.parents or not target.is_file():
        raise ModelLoadError(f"initializer {tensor.name}: external data location {location!r} is outside the "
                             f"model's folder or missing; refusing to read it")
    dtype = dtype_of(tensor.data_type, f"initializer {tensor.name}").numpy
    count = int(np.prod(tensor.dims)) if tensor.dims else 1
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", count * dtype.itemsize))
    except ValueError:
        raise ModelLoadError(f"initializer {tensor.name}: external data offset/length are not integers") from None
    if offset < 0 or length != count * dtype.itemsize or offset + length > target.stat().st_size:
        raise ModelLoadError(f"initializer {tensor.name}: external data is truncated or has the wrong length")
    return np.memmap(target, dtype=dtype, mode="r", offset=offset, shape=tuple(tensor.dims))  # lazy


def upgrade(proto: Any, opset: int) -> Any:
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as e:  # noqa: BLE001 - the converter raises bare RuntimeErrors from C++
        raise ModelLoadError(f"model uses opset {opset}; graphopt reads opset {MIN_OPSET} and up and "
                             f"onnx.version_converter could not upgrade it: {str(e).splitlines()[0]}") from None


def dtype_of(elem_type: int, where: str) -> DType:
    from onnx import TensorProto, helper

    try:
        name = TensorProto.DataType.Name(elem_type)
    except ValueError:  # not an element type at all: a corrupt or hostile file
        raise ModelLoadError(f"{where}: {elem_type} is not an ONNX element type") from None
    try:
        return DType.from_numpy(helper.tensor_dtype_to_np_dtype(elem_type))
    except (ValueError, KeyError):
        raise UnsupportedOpError(f"{where}: ONNX element type {name} has no graphopt dtype (graphopt has "
                                 f"{', '.join(d.value for d in DType)})", ops={name: 1}) from None


def graph_input_names(proto: Any) -> list[str]:
    """The model's graph inputs by the file's names (initializers listed as inputs are weights, not inputs)."""
    inits = {t.name for t in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in inits]
