r"""graphopt.backends: code out of the IR.

`reference` interprets graphs with the registry's numpy kernels; `cpu` generates Python calling PyTorch
kernels; `onnxruntime` exports to ONNX and runs it in ONNX Runtime. Each declares the ops it supports.

>>> from graphopt.backends import available_backends
>>> available_backends()
['reference', 'cpu', 'onnxruntime']
"""

from . import reference
from .base import Backend, Executable, available_backends, check_coverage, get_backend, register_backend


def _cpu() -> Backend:
    from .cpu import CpuBackend

    return CpuBackend()


def _ort() -> Backend:
    from .onnxruntime import OrtBackend

    return OrtBackend()


register_backend("reference", reference.ReferenceBackend)
register_backend("cpu", _cpu)
register_backend("onnxruntime", _ort)

__all__ = ["reference", "Backend", "Executable", "available_backends", "check_coverage", "get_backend",
           "register_backend"]
