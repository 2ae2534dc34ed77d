r"""The `onnxruntime` target: export the optimized graph to ONNX and run it in an ONNX Runtime session.

>>> import numpy as np
>>> from graphopt.ir import parse
>>> from graphopt.backends import get_backend
>>> g = parse('graph @f(%x: f32[n]) {\n  %0: f32[n] = relu(%x)\n  return %0\n}')
>>> get_backend("onnxruntime").compile(g)(np.array([-1.0, 2.0], np.float32))
[array([0., 2.], dtype=float32)]
"""

from __future__ import annotations

import functools
from typing import Any

import ml_dtypes
import numpy as np

from graphopt.errors import UnsupportedOpError
from graphopt.ir import DType, Graph
from graphopt.ir.binding import bind_arrays

from .base import bind_inputs, check_coverage, from_numpy, to_numpy
from .onnx_export import EXPORTERS, to_onnx
from .ort_legalize import legalize

__all__ = ["OrtBackend", "OrtExecutable", "session", "int8_saturates", "EXTERNAL_DATA_ABOVE"]


def session(model: bytes | str, *, threads: int | None = None, optimization: str = "all", quiet: bool = False) -> Any:
    """A CPU InferenceSession on a serialized model, its pool threads told not to spin between runs; `quiet`
    silences ONNX Runtime's own error log (a caller that handles the exception itself)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if quiet:
        opts.log_severity_level = 4  # fatal only
    opts.graph_optimization_level = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimization]
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Idle pool threads otherwise spin after each run and steal cores from whatever runs next.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


# protobuf cannot serialize a message of 2 GiB or more; above this many bytes of weights the model goes to a
# temporary folder with its weights as ONNX external data, and the session loads it from there
EXTERNAL_DATA_ABOVE = 1 << 30


@functools.lru_cache(maxsize=None)
def int8_saturates() -> bool:
    """Whether ONNX Runtime's dynamic int8 GEMM loses full-range (0..255) activations on this CPU: without VNNI the
    u8·s8 pair sums of AVX2 saturate int16. Probed at the worst case, all-max codes against all-max weights."""
    from graphopt.ir import parse

    k = 256  # through the exporter's own DynamicQuantizeMatMul: what the onnxruntime target runs
    probe = parse(f"""graph @probe(%x: f32[4,{k}]) {{
  const @w: i8[8,{k}] = external
  const @s: f32[] = external
  %0: f32[4,8] = quantized_linear(%x, @w, @s) {{reduce_range=false}}
  return %0
}}""", {"w": np.full((8, k), 127, np.int8), "s": np.float32(1 / 127)})
    try:
        model = to_onnx(probe, ort_contrib=True).SerializeToString()
        (y,) = session(model, threads=1, quiet=True).run(None, {"x": np.ones((4, k), np.float32)})
    except Exception:  # noqa: BLE001 - no such kernel in this build: treat full range as unusable
        return True
    return bool(np.abs(y - k).max() > 0.01 * k)


def _serialized(model: Any, external_data_above: int) -> bytes | str:
    """The model as bytes, or (weights above the limit) the path of a temporary file with external data."""
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    if weights <= external_data_above:
        return model.SerializeToString()
    import atexit
    import shutil
    import tempfile

    import onnx

    folder = tempfile.mkdtemp(prefix="graphopt-ort-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # ORT maps the weights file while the session lives
    path = f"{folder}/model.onnx"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=1024)
    return path


class OrtExecutable:
    """An InferenceSession over the exported graph. numpy in gives numpy out; torch tensors give tensors."""

    source = None

    def __init__(self, graph: Graph, *, threads: int | None = None, optimization: str = "all",
                 external_data_above: int = EXTERNAL_DATA_ABOVE) -> None:
        self.graph = graph
        self.model = to_onnx(legalize(graph), ort_contrib=True)
        try:
            self.session = session(_serialized(self.model, external_data_above), threads=threads,
                                   optimization=optimization)
        except Exception as e:  # noqa: BLE001 - ORT raises plain RuntimeError subclasses
            raise UnsupportedOpError(f"ONNX Runtime cannot build a session for graph @{graph.name}: "
                                     f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
                                     ops={"onnxruntime": 1}) from None
        self.input_names = [v.name for v in graph.inputs]
        # bf16 crosses the session boundary as f32 (see ort_legalize): exact both ways
        self._dtypes = [v.type.dtype.numpy for v in graph.inputs]
        self._feed_f32 = [v.type.dtype == DType.BF16 for v in graph.inputs]
        self._bf16_out = [v.type.dtype == DType.BF16 for v in graph.outputs]
        self._checked: tuple[Any, ...] | None = None  # the (shape, dtype)s the last call passed the checks with

    def __call__(self, *inputs: Any, **named: Any) -> list[Any]:
        args = bind_inputs(self.input_names, inputs, named)
        is_torch = bool(args) and hasattr(args[0], "detach")
        arrays = [to_numpy(a) if hasattr(a, "detach") else np.asarray(a) for a in args]
        key = tuple((a.shape, a.dtype) for a in arrays)
        if key != self._checked:  # serving repeats one shape: the full check runs when it changes (as on cpu)
            bind_arrays(self.graph, arrays, self._dtypes)
            self._checked = key
        feed = {n: a.astype(np.float32) if widen else a for n, a, widen in zip(self.input_names, arrays, self._feed_f32)}
        outs = self.session.run(None, feed)
        if any(self._bf16_out):
            outs = [o.astype(ml_dtypes.bfloat16) if narrow else o for o, narrow in zip(outs, self._bf16_out)]
        return [from_numpy(o) for o in outs] if is_torch else outs


class OrtBackend:
    name = "onnxruntime"
    doc = "Export to ONNX (opset 17) and run with ONNX Runtime's CPU provider."

    def supported_ops(self) -> frozenset[str]:
        return frozenset(EXPORTERS)

    def compile(self, graph: Graph, **options: Any) -> OrtExecutable:
        check_coverage(graph, self)
        return OrtExecutable(graph, **options)
