"""Every op's numpy kernel against PyTorch, through the reference interpreter, on random inputs.

Each case also checks the op's type inference: the interpreter compares every result with its declared type.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphopt.backends.reference import run
from graphopt.ir import DType, Graph, TensorType, registered_ops

rng = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def pos(*shape: int) -> np.ndarray:
    return (rng.random(shape) + 0.1).astype(np.float32)


def ints(*shape: int, lo: int = -9, hi: int = 10, dtype: Any = np.int64) -> np.ndarray:
    return rng.integers(lo, hi, shape).astype(dtype)


def nonzero_ints(*shape: int) -> np.ndarray:
    a = ints(*shape)
    a[a == 0] = 3
    return a


def with_nan(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flat[0] = np.nan
    return a


T = torch.from_numpy


def run_op(op: str, inputs: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
    g = Graph("case")
    vals = [g.add_input(f"in{i}", TensorType(DType.from_numpy(a.dtype), a.shape)) for i, a in enumerate(inputs)]
    node = g.add_node(op, vals, attrs)
    g.set_outputs(node.outputs)
    g.verify()
    return run(g, inputs)


# (op, inputs, attrs, torch reference returning a tensor or tuple)
Case = tuple[str, list[np.ndarray], dict[str, Any], Callable[..., Any]]

CASES: list[Case] = [
    ("add", [f32(2, 3), f32(3)], {}, torch.add),
    ("add", [ints(2, 3, dtype=np.int32), f32(3)], {}, torch.add),  # promotion int32 + f32
    ("add", [ints(2, 3), np.array(2.5)], {}, torch.add),  # int tensor + 0-d f64 -> f64? (torch rule)
    ("add", [f32(2, 3), np.array(2.5)], {}, torch.add),  # f32 + 0-d f64 stays f32
    ("add", [ints(4, dtype=np.uint8, lo=0), ints(4, dtype=np.int8)], {}, torch.add),  # u8 + i8 -> i16
    ("sub", [f32(2, 3), f32(2, 1)], {}, torch.sub),
    ("mul", [f32(4, 1, 3), f32(5, 1)], {}, torch.mul),
    ("mul", [f32(3).astype(np.float16), f32(3).astype(np.float16)], {}, torch.mul),
    ("div", [f32(3, 4), pos(4)], {}, torch.div),
    ("div", [ints(3, 4), nonzero_ints(4)], {}, torch.div),  # int / int -> f32
    ("div", [ints(3, 4), nonzero_ints(4)], {"rounding_mode": "trunc"}, lambda a, b: torch.div(a, b, rounding_mode="trunc")),
    ("div", [ints(3, 4), nonzero_ints(4)], {"rounding_mode": "floor"}, lambda a, b: torch.div(a, b, rounding_mode="floor")),
    ("div", [f32(3, 4) * 10, f32(4)], {"rounding_mode": "floor"}, lambda a, b: torch.div(a, b, rounding_mode="floor")),
    ("div", [f32(3, 4) * 10, f32(4)], {"rounding_mode": "trunc"}, lambda a, b: torch.div(a, b, rounding_mode="trunc")),
    ("pow", [pos(3, 2), f32(2)], {}, torch.pow),
    ("pow", [ints(5, lo=0, hi=5), ints(5, lo=0, hi=4)], {}, torch.pow),
    ("maximum", [with_nan(f32(6)), f32(6)], {}, torch.maximum),
    ("minimum", [with_nan(f32(6)), f32(6)], {}, torch.minimum),
    ("fmod", [ints(8), nonzero_ints(8)], {}, torch.fmod),
    ("fmod", [f32(8) * 5, f32(8)], {}, torch.fmod),
    ("remainder", [ints(8), nonzero_ints(8)], {}, torch.remainder),
    ("remainder", [f32(8) * 5, f32(8)], {}, torch.remainder),
    ("eq", [ints(6, lo=0, hi=3), ints(6, lo=0, hi=3)], {}, torch.eq),
    ("ne", [ints(6, lo=0, hi=3), ints(6, lo=0, hi=3)], {}, torch.ne),
    ("lt", [f32(6), f32(6)], {}, torch.lt),
    ("le", [ints(6, lo=0, hi=3), ints(6, lo=0, hi=3)], {}, torch.le),
    ("gt", [f32(2, 3), f32(3)], {}, torch.gt),
    ("ge", [with_nan(f32(6)), f32(6)], {}, torch.ge),
    ("logical_and", [ints(6, lo=0, hi=2), f32(6)], {}, torch.logical_and),
    ("logical_or", [ints(6, lo=0, hi=2), ints(6, lo=0, hi=2)], {}, torch.logical_or),
    ("logical_xor", [ints(6, lo=0, hi=2) == 1, ints(6, lo=0, hi=2) == 1], {}, torch.logical_xor),
    ("where", [ints(2, 3, lo=0, hi=2) == 1, f32(2, 3), f32(3)], {}, torch.where),
    ("where", [ints(2, 3, lo=0, hi=2) == 1, ints(2, 3), f32(3)], {}, torch.where),
    ("neg", [ints(5)], {}, torch.neg),
    ("abs", [f32(5)], {}, torch.abs),
    ("sign", [f32(5)], {}, torch.sign),
    ("relu", [with_nan(f32(7))], {}, torch.relu),
    ("relu", [ints(7)], {}, torch.relu),
    ("exp", [f32(5)], {}, torch.exp),
    ("exp", [ints(5, lo=-3, hi=3)], {}, torch.exp),  # int -> f32
    ("exp", [f32(5).astype(np.float16)], {}, torch.exp),
    ("log", [pos(5)], {}, torch.log),
    ("log1p", [pos(5)], {}, torch.log1p),
    ("expm1", [np.linspace(-1e-3, 2, 7, dtype=np.float32)], {}, torch.expm1),
    ("sqrt", [pos(5)], {}, torch.sqrt),
    ("rsqrt", [pos(5)], {}, torch.rsqrt),
    ("reciprocal", [pos(5)], {}, torch.reciprocal),
    ("sin", [f32(5)], {}, torch.sin),
    ("cos", [f32(5)], {}, torch.cos),
    ("tan", [f32(5)], {}, torch.tan),
    ("asin", [np.tanh(f32(5)) * 0.9], {}, torch.asin),
    ("acos", [np.tanh(f32(5)) * 0.9], {}, torch.acos),
    ("atan", [f32(5)], {}, torch.atan),
    ("sinh", [f32(5)], {}, torch.sinh),
    ("cosh", [f32(5)], {}, torch.cosh),
    ("asinh", [f32(5)], {}, torch.asinh),
    ("acosh", [pos(5) + 1], {}, torch.acosh),
    ("atanh", [np.tanh(f32(5)) * 0.9], {}, torch.atanh),
    ("tanh", [f32(5)], {}, torch.tanh),
    ("erf", [f32(5)], {}, torch.erf),
    ("sigmoid", [f32(5) * 10], {}, torch.sigmoid),
    ("silu", [f32(5)], {}, F.silu),
    ("gelu", [f32(9)], {}, F.gelu),
    ("gelu", [f32(9)], {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ("softplus", [f32(9) * 20], {"beta": 2.0, "threshold": 10.0}, lambda x: F.softplus(x, beta=2.0, threshold=10.0)),
    ("elu", [f32(9)], {"alpha": 0.5}, lambda x: F.elu(x, alpha=0.5)),
    ("leaky_relu", [f32(9)], {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    ("hardsigmoid", [f32(9) * 4], {}, F.hardsigmoid),
    ("hardswish", [f32(9) * 4], {}, F.hardswish),
    ("floor", [f32(9) * 3], {}, torch.floor),
    ("ceil", [f32(9) * 3], {}, torch.ceil),
    ("round", [np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4], np.float32)], {}, torch.round),  # half to even
    ("trunc", [f32(9) * 3], {}, torch.trunc),
    ("isnan", [with_nan(f32(4))], {}, torch.isnan),
    ("isinf", [np.array([np.inf, -np.inf, 1.0, np.nan], np.float32)], {}, torch.isinf),
    ("logical_not", [ints(6, lo=0, hi=2)], {}, torch.logical_not),
    ("clamp", [with_nan(f32(9))], {"min": -0.5, "max": 0.5}, lambda x: torch.clamp(x, -0.5, 0.5)),
    ("clamp", [f32(9)], {"min": 0.0}, lambda x: torch.clamp(x, min=0.0)),
    ("cast", [f32(9) * 10], {"dtype": DType.I32}, lambda x: x.to(torch.int32)),  # truncation toward zero
    ("cast", [f32(9)], {"dtype": DType.BF16}, lambda x: x.to(torch.bfloat16)),
    ("cast", [f32(9)], {"dtype": DType.BOOL}, lambda x: x.to(torch.bool)),
    ("identity", [f32(3)], {}, lambda x: x),
    ("dropout", [f32(3)], {"p": 0.3}, lambda x: F.dropout(x, 0.3, training=False)),
    ("reduce_sum", [f32(2, 3, 4)], {"axes": [1]}, lambda x: x.sum(1)),
    ("reduce_sum", [ints(2, 3, dtype=np.int32)], {}, lambda x: x.sum()),  # int32 -> i64
    ("reduce_prod", [f32(2, 3)], {"axes": [0], "keepdims": True}, lambda x: x.prod(0, keepdim=True)),
    ("reduce_mean", [f32(2, 3, 4)], {"axes": [-1, 0]}, lambda x: x.mean((-1, 0))),
    ("reduce_max", [with_nan(f32(2, 3))], {"axes": [1]}, lambda x: x.amax(1)),
    ("reduce_min", [f32(2, 3)], {"axes": [1], "keepdims": True}, lambda x: x.amin(1, keepdim=True)),
    ("argmax", [f32(3, 5)], {"axis": 1}, lambda x: x.argmax(1)),
    ("argmin", [f32(3, 5)], {"axis": 0, "keepdims": True}, lambda x: x.argmin(0, keepdim=True)),
    ("var", [f32(3, 5)], {"axes": [1]}, lambda x: x.var(1)),
    ("var", [f32(3, 5)], {"axes": [1], "correction": 0.0, "keepdims": True},
     lambda x: x.var(1, correction=0, keepdim=True)),
    ("softmax", [f32(2, 5) * 5], {"axis": -1}, lambda x: torch.softmax(x, -1)),
    ("softmax", [f32(2, 5).astype(np.float16)], {"axis": 0}, lambda x: torch.softmax(x, 0)),
    ("log_softmax", [f32(2, 5) * 5], {"axis": 1}, lambda x: torch.log_softmax(x, 1)),
    ("cumsum", [ints(3, 4, dtype=np.int32)], {"axis": 1}, lambda x: torch.cumsum(x, 1)),
    ("cumsum", [f32(3, 4)], {"axis": 0}, lambda x: torch.cumsum(x, 0)),
    ("topk", [f32(3, 6)], {"k": 2}, lambda x: torch.topk(x, 2)),
    ("topk", [f32(3, 6)], {"k": 3, "axis": 0, "largest": False}, lambda x: torch.topk(x, 3, 0, largest=False)),
    ("reshape", [f32(2, 3, 4)], {"shape": [6, -1]}, lambda x: x.reshape(6, -1)),
    ("transpose", [f32(2, 3, 4)], {"perm": [2, 0, 1]}, lambda x: x.permute(2, 0, 1)),
    ("expand", [f32(3, 1)], {"shape": [2, 3, 4]}, lambda x: x.expand(2, 3, 4)),
    ("squeeze", [f32(1, 3, 1)], {"axes": [0]}, lambda x: x.squeeze(0)),
    ("squeeze", [f32(1, 3, 1)], {}, lambda x: x.squeeze()),
    ("unsqueeze", [f32(3, 4)], {"axes": [0, -1]}, lambda x: x.unsqueeze(0).unsqueeze(-1)),
    ("concat", [f32(2, 3), f32(2, 1), f32(2, 2)], {"axis": 1}, lambda *xs: torch.cat(xs, 1)),
    ("split", [f32(2, 6)], {"axis": 1, "sizes": [1, 2, 3]}, lambda x: torch.split(x, [1, 2, 3], 1)),
    ("slice", [f32(5, 6)], {"starts": [1, -4], "ends": [4, 2**62], "axes": [0, 1], "steps": [2, 1]},
     lambda x: x[1:4:2, -4:]),
    ("gather", [f32(10, 4), ints(2, 3, lo=0, hi=10)], {"axis": 0}, lambda w, i: F.embedding(i, w)),
    ("gather", [f32(3, 10), ints(4, lo=0, hi=10)], {"axis": 1}, lambda x, i: torch.index_select(x, 1, i)),
    ("gather_elements", [f32(3, 4), ints(3, 2, lo=0, hi=4)], {"axis": 1}, lambda x, i: torch.gather(x, 1, i)),
    ("index", [f32(3, 4, 5), ints(3, 1, lo=0, hi=4), ints(1, 2, lo=0, hi=5)], {"axis": 1},
     lambda x, i, j: x[:, i, j]),
    ("pad", [f32(2, 3)], {"pads": [0, 1, 1, 2], "value": 1.5}, lambda x: F.pad(x, (1, 2, 0, 1), value=1.5)),
    ("pad", [f32(1, 2, 5)], {"pads": [0, 0, 2, 0, 0, 1], "mode": "reflect"},
     lambda x: F.pad(x, (2, 1), mode="reflect")),
    ("pad", [f32(1, 2, 5)], {"pads": [0, 0, 2, 0, 0, 1], "mode": "edge"},
     lambda x: F.pad(x, (2, 1), mode="replicate")),
    ("tile", [f32(2, 3)], {"repeats": [2, 1]}, lambda x: x.repeat(2, 1)),
    ("triu", [f32(4, 5)], {"diagonal": 1}, lambda x: torch.triu(x, 1)),
    ("tril", [f32(2, 4, 4)], {}, torch.tril),
    ("arange", [], {"start": 2, "end": 11, "step": 3}, lambda: torch.arange(2, 11, 3)),
    ("full", [], {"shape": [2, 3], "value": 0.5}, lambda: torch.full((2, 3), 0.5)),
    ("shape_tensor", [], {"values": [2, 3, 4, 5], "shape": [2, 2]}, lambda: torch.tensor([[2, 3], [4, 5]])),
    ("nonzero", [np.array([[0, 1.5, 0], [2, 0, -1]], np.float32)], {"count": "k"}, lambda x: torch.nonzero(x).T),
    ("matmul", [f32(2, 1, 3, 4), f32(5, 4, 2)], {}, torch.matmul),
    ("matmul", [f32(4), f32(3, 4, 2)], {}, torch.matmul),
    ("matmul", [f32(3, 4), f32(4)], {}, torch.matmul),
    ("linear", [f32(2, 3, 4), f32(5, 4), f32(5)], {}, F.linear),
    ("linear", [f32(2, 4), f32(5, 4)], {}, F.linear),
    ("linear", [f32(2, 3, 4), f32(5, 4), f32(5)], {"activation": "gelu"}, lambda x, w, b: F.gelu(F.linear(x, w, b))),
    ("linear", [f32(2, 4), f32(5, 4)], {"activation": "gelu_tanh"},
     lambda x, w: F.gelu(F.linear(x, w), approximate="tanh")),
    ("linear", [f32(3, 4), f32(5, 4), f32(5)], {"activation": "relu"}, lambda x, w, b: torch.relu(F.linear(x, w, b))),
    ("linear", [f32(3, 4), f32(5, 4)], {"activation": "silu"}, lambda x, w: F.silu(F.linear(x, w))),
    ("linear", [f32(3, 4), f32(5, 4)], {"activation": "tanh"}, lambda x, w: torch.tanh(F.linear(x, w))),
    ("conv", [f32(2, 4, 9, 8), f32(6, 2, 3, 3), f32(6)], {"strides": [2, 1], "pads": [1, 0, 1, 2], "dilations": [1, 2],
                                                         "groups": 2},
     lambda x, w, b: F.conv2d(F.pad(x, (0, 2, 1, 1)), w, b, stride=(2, 1), dilation=(1, 2), groups=2)),
    ("conv", [f32(1, 3, 10), f32(4, 3, 3)], {"pads": [1, 1]}, lambda x, w: F.conv1d(x, w, padding=1)),
    ("conv", [f32(2, 4, 6, 6), f32(4, 4, 3, 3), f32(4), f32(2, 4, 6, 6)], {"pads": [1, 1, 1, 1], "activation": "relu"},
     lambda x, w, b, r: torch.relu(F.conv2d(x, w, b, padding=1) + r)),
    ("conv", [f32(1, 4, 6, 6), f32(8, 2, 1, 1), f32(8)], {"groups": 2, "activation": "silu"},
     lambda x, w, b: F.silu(F.conv2d(x, w, b, groups=2))),
    ("conv_transpose", [f32(2, 4, 5, 6), f32(4, 3, 3, 2), f32(6)], {"strides": [2, 1], "pads": [1, 0, 1, 0],
                                                                  "groups": 2},
     lambda x, w, b: F.conv_transpose2d(x, w, b, stride=(2, 1), padding=(1, 0), groups=2)),
    ("conv_transpose", [f32(1, 3, 5), f32(3, 2, 3)], {"strides": [2], "pads": [0, 1], "output_padding": [1],
                                                     "dilations": [2]},
     lambda x, w: F.conv_transpose1d(x, w, stride=2, dilation=2, output_padding=1)[..., :-1]),
    ("grid_sample", [f32(2, 3, 5, 6), np.tanh(f32(2, 4, 3, 2)) * 1.2], {},
     lambda x, g: F.grid_sample(x, g, "bilinear", "zeros", False)),
    ("grid_sample", [f32(1, 2, 5, 6), np.tanh(f32(1, 4, 3, 2)) * 1.5], {"mode": "cubic", "padding_mode": "reflection",
                                                                       "align_corners": True},
     lambda x, g: F.grid_sample(x, g, "bicubic", "reflection", True)),
    ("grid_sample", [f32(1, 2, 3, 4, 5), np.tanh(f32(1, 2, 2, 2, 3)) * 1.2], {"mode": "nearest", "padding_mode": "border"},
     lambda x, g: F.grid_sample(x, g, "nearest", "border", False)),
    ("interpolate", [f32(1, 3, 8, 8)], {"mode": "linear", "sizes": [16, 16], "scales": [2.0, 2.0]},
     lambda x: F.interpolate(x, scale_factor=2, mode="bilinear")),
    ("interpolate", [f32(1, 3, 8, 8)], {"mode": "cubic", "sizes": [3, 2]},
     lambda x: F.interpolate(x, size=(3, 2), mode="bicubic")),
    ("interpolate", [f32(1, 2, 7, 9)], {"mode": "cubic", "sizes": [11, 15], "align_corners": True},
     lambda x: F.interpolate(x, size=(11, 15), mode="bicubic", align_corners=True)),
    ("interpolate", [f32(2, 3, 10)], {"mode": "linear", "sizes": [25], "scales": [2.5]},
     lambda x: F.interpolate(x, scale_factor=2.5, mode="linear")),
    ("interpolate", [f32(1, 2, 3, 5, 4)], {"mode": "nearest", "sizes": [6, 7, 9]},
     lambda x: F.interpolate(x, size=(6, 7, 9), mode="nearest")),
    ("interpolate", [f32(1, 2, 4, 5, 6)], {"mode": "linear", "sizes": [5, 3, 7]},
     lambda x: F.interpolate(x, size=(5, 3, 7), mode="trilinear")),
    ("einsum", [f32(2, 3, 4), f32(2, 4, 5)], {"equation": "bij,bjk->bik"}, lambda a, b: torch.einsum("bij,bjk->bik", a, b)),
    ("einsum", [f32(3, 3)], {"equation": "ii"}, lambda a: torch.einsum("ii", a)),
    ("einsum", [f32(2, 3, 4)], {"equation": "...ij->...ji"}, lambda a: torch.einsum("...ij->...ji", a)),
    ("bitwise_and", [ints(3, 4, dtype=np.int32), ints(4, dtype=np.int32)], {}, torch.bitwise_and),
    ("bitwise_or", [ints(3, 4, lo=0, hi=255, dtype=np.uint8), ints(3, 4, lo=0, hi=255, dtype=np.uint8)], {},
     torch.bitwise_or),
    ("bitwise_xor", [ints(5, dtype=np.int16), ints(5, dtype=np.int16)], {}, torch.bitwise_xor),
    ("bitwise_not", [ints(5, dtype=np.int32)], {}, torch.bitwise_not),
    ("shift", [ints(6, dtype=np.int32), np.array([0, 1, 3, 31, 5, 2], np.int32)], {"left": True},
     torch.bitwise_left_shift),
    ("shift", [ints(6, dtype=np.int8), np.array([0, 1, 3, 7, 5, 2], np.int8)], {"left": False},
     torch.bitwise_right_shift),
    ("bitcast", [f32(2, 3)], {"dtype": "i32"}, lambda x: x.view(torch.int32)),
    ("cumprod", [f32(3, 4)], {"axis": 1}, lambda x: torch.cumprod(x, 1)),
    ("cumprod", [ints(3, 4, lo=-3, hi=4, dtype=np.int32)], {"axis": 0}, lambda x: torch.cumprod(x, 0, dtype=torch.int32)),
    ("scatter_elements", [f32(3, 4), np.array([[1, 0], [2, 3], [0, 0]]), f32(3, 2)], {"axis": 1, "reduction": "add"},
     lambda x, i, u: torch.scatter_reduce(x, 1, i, u, "sum")),
    ("scatter_elements", [f32(3, 4), np.array([[1, 0, 2, 2]]), f32(1, 4)], {"axis": 0},
     lambda x, i, u: torch.scatter(x, 0, i, u)),
    ("scatter_nd", [f32(4, 3), np.array([[2], [0]]), f32(2, 3)], {}, lambda x, i, u: x.index_put((i[:, 0],), u)),
    ("scatter_nd", [f32(4, 3), np.array([[1, 2], [1, 2]]), f32(2)], {"reduction": "mul"},
     lambda x, i, u: x.index_put((i[:, 0], i[:, 1]), u[:1] * u[1:]  * x[1, 2])),
    ("max_pool", [f32(1, 2, 7, 7)], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
     lambda x: F.max_pool2d(x, 3, 2, 1)),
    ("max_pool", [f32(1, 2, 8, 8)], {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": True},
     lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True)),
    ("avg_pool", [f32(1, 2, 7, 7)], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
     lambda x: F.avg_pool2d(x, 3, 2, 1)),
    ("avg_pool", [f32(1, 2, 7, 7)], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                     "count_include_pad": False},
     lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
    ("avg_pool", [f32(1, 2, 8, 8)], {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": True},
     lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True)),
    ("adaptive_avg_pool", [f32(1, 3, 7, 5)], {"output_size": [3, 2]}, lambda x: F.adaptive_avg_pool2d(x, (3, 2))),
    ("batch_norm", [f32(2, 3, 4, 4), f32(3), f32(3), f32(3), pos(3)], {"eps": 1e-3},
     lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, training=False, eps=1e-3)),
    ("layer_norm", [f32(2, 3, 8), f32(8), f32(8)], {"eps": 1e-12},
     lambda x, w, b: F.layer_norm(x, (8,), w, b, eps=1e-12)),
    ("layer_norm", [f32(2, 3, 8)], {"axis": 1}, lambda x: F.layer_norm(x, (3, 8))),
    ("rms_norm", [f32(2, 3, 8), f32(8)], {"eps": 1e-6}, lambda x, w: F.rms_norm(x, (8,), w, eps=1e-6)),
    ("scaled_dot_product_attention", [f32(2, 3, 5, 4), f32(2, 3, 6, 4), f32(2, 3, 6, 4)], {},
     F.scaled_dot_product_attention),
    ("scaled_dot_product_attention", [f32(1, 2, 5, 4), f32(1, 2, 5, 4), f32(1, 2, 5, 4)],
     {"causal": True, "scale": 0.3}, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
    ("scaled_dot_product_attention", [f32(1, 2, 5, 4), f32(1, 2, 5, 4), f32(1, 2, 5, 4), ints(1, 1, 5, 5, lo=0, hi=2) == 1],
     {}, lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)),
]


def _lstm_case() -> Case:
    lstm = torch.nn.LSTM(4, 3, batch_first=True)
    x, h0, c0 = f32(2, 5, 4), f32(1, 2, 3), f32(1, 2, 3)
    params = [p.detach().numpy() for p in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)]

    def ref(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, *_: Any) -> Any:
        y, (hn, cn) = lstm(x, (h, c))
        return y, hn, cn

    return ("lstm", [x, h0, c0, *params], {"batch_first": True}, ref)


def _quantized_lstm_case() -> Case:
    """int8 LSTM against torch's own pieces: quantize_per_tensor with torch's qparams (x once for the sequence, h
    per step, 0..255) into torch.lstm_cell on the dequantized weights."""
    x, h0, c0 = f32(2, 5, 4), f32(1, 2, 3), f32(1, 2, 3)
    w_ih, w_hh = np.clip(np.rint(f32(12, 4) * 40), -127, 127).astype(np.int8), \
        np.clip(np.rint(f32(12, 3) * 40), -127, 127).astype(np.int8)
    s_ih, s_hh, b_ih, b_hh = pos(12) * 0.01, pos(12) * 0.01, f32(12), f32(12)

    def fake_quant(v: torch.Tensor) -> torch.Tensor:
        s, z = torch._choose_qparams_per_tensor(v, False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.quantize_per_tensor(v, s, z, torch.quint8).dequantize()

    def ref(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, wi: torch.Tensor, si: torch.Tensor, wh: torch.Tensor,
            sh: torch.Tensor, bi: torch.Tensor, bh: torch.Tensor) -> Any:
        xs, h, c = fake_quant(x.transpose(0, 1)), h[0], c[0]
        ys = []
        for t in range(xs.shape[0]):
            h, c = torch.lstm_cell(xs[t], (fake_quant(h), c), wi.float() * si[:, None], wh.float() * sh[:, None],
                                   bi, bh)
            ys.append(h)
        return torch.stack(ys, 1), h[None], c[None]

    return ("quantized_lstm", [x, h0, c0, w_ih, s_ih, w_hh, s_hh, b_ih, b_hh], {"batch_first": True}, ref)


def _gru_case(batch_first: bool) -> Case:
    gru = torch.nn.GRU(4, 3, batch_first=batch_first)
    x, h0 = (f32(2, 5, 4) if batch_first else f32(5, 2, 4)), f32(1, 2, 3)
    params = [p.detach().numpy() for p in (gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)]

    def ref(x: torch.Tensor, h: torch.Tensor, *_: Any) -> Any:
        return gru(x, h)

    return ("gru", [x, h0, *params], {"batch_first": batch_first}, ref)


def _rnn_case(nonlinearity: str) -> Case:
    rnn = torch.nn.RNN(4, 3, nonlinearity=nonlinearity, batch_first=nonlinearity == "relu")
    x, h0 = (f32(2, 5, 4) if nonlinearity == "relu" else f32(5, 2, 4)), f32(1, 2, 3)
    params = [p.detach().numpy() for p in (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)]

    def ref(x: torch.Tensor, h: torch.Tensor, *_: Any) -> Any:
        return rnn(x, h)

    return ("rnn", [x, h0, *params], {"batch_first": nonlinearity == "relu", "nonlinearity": nonlinearity}, ref)


def _quant_cases() -> list[Case]:
    x = f32(2, 3, 4) * 3
    scale, zp = np.array(0.05, np.float32), np.array(3, np.int8)
    per_s, per_z = pos(3) * 0.1, np.array([0, 5, -2], np.int8)
    q = lambda x, s, z: torch.quantize_per_tensor(x, float(s), int(z), torch.qint8).int_repr()  # noqa: E731
    qc = lambda x, s, z: torch.quantize_per_channel(x, s.double(), z.long(), 1, torch.qint8).int_repr()  # noqa: E731
    xq = np.clip(np.rint(x / scale) + 3, -128, 127).astype(np.int8)
    dq = lambda x, s, z: torch.dequantize(torch._make_per_tensor_quantized_tensor(x, float(s), int(z)))  # noqa: E731
    return [
        ("quantize_linear", [x, scale, zp], {}, q),
        ("quantize_linear", [x, per_s, per_z], {"axis": 1}, qc),
        ("dequantize_linear", [xq, scale, zp], {}, dq),
    ]


def _int8_cases() -> list[Case]:
    """dynamic_quantize_linear against torch's own qparams choice, quantized_linear against fbgemm's int8 kernels."""
    import warnings

    x = f32(3, 5, 16) * 2 + 0.5
    w = np.clip(np.rint(f32(6, 16) * 40), -127, 127).astype(np.int8)
    ws, b = pos(6) * 0.01, f32(6)

    def dql(reduce_range: bool) -> Callable[..., Any]:
        def ref(x: torch.Tensor) -> Any:
            s, z = torch._choose_qparams_per_tensor(x, reduce_range)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                q = torch.quantize_per_tensor(x, s, z, torch.quint8).int_repr()
            return q, torch.tensor(s, dtype=torch.float32), torch.tensor(z, dtype=torch.uint8)
        return ref

    def fbgemm(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> Any:
        from graphopt.backends.cpu.kernels import prepack_int8_linear

        return torch.ops.quantized.linear_dynamic(x, prepack_int8_linear(w, s, b), True)

    def weight_only(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> Any:
        return F.gelu(F.linear(x, w.float() * s[:, None], b))

    cx = np.abs(f32(2, 3, 6, 6)) * 3
    cw = np.clip(np.rint(f32(4, 3, 3, 3) * 40), -127, 127).astype(np.int8)
    cws, cb, res = pos(4) * 0.01, f32(4), f32(2, 4, 3, 3)
    xs, xz = np.array(0.05, np.float32), np.array(3, np.uint8)

    def static_conv(x: torch.Tensor, w: torch.Tensor, ws: torch.Tensor, s: torch.Tensor, z: torch.Tensor,
                    b: torch.Tensor, r: torch.Tensor) -> Any:
        with warnings.catch_warnings():  # torch's own fake quantization: quantize_per_tensor with 0..127 codes
            warnings.simplefilter("ignore", UserWarning)
            xq = torch.fake_quantize_per_tensor_affine(x, float(s), int(z), 0, 127)
        return F.relu(F.conv2d(xq, w.float() * ws[:, None, None, None], b, 2, 1) + r)

    # int4 group-wise (codes -8..7 in int8, a scale per row and group of 8) against torch's own group dequantize
    w4 = np.clip(np.rint(f32(6, 16) * 3), -8, 7).astype(np.int8)
    s4, z4 = pos(6, 2) * 0.1, np.zeros((6, 2), np.int8)

    def group_dq(w: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> Any:
        from torch.ao.quantization.fx import _decomposed  # noqa: F401 - registers quantized_decomposed

        return torch.ops.quantized_decomposed.dequantize_per_channel_group(w, s, z.long(), -8, 7, torch.int8, 8,
                                                                           torch.float32)

    def int4_linear(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> Any:
        return F.linear(x, group_dq(w, s, torch.zeros_like(w, dtype=torch.int8)[:, ::8]), b)

    return [
        ("dequantize_linear", [w4, s4, z4], {"axis": 1, "block_size": 8}, group_dq),
        ("quantized_linear", [x, w4, s4, b], {"act_quant": "none", "group_size": 8}, int4_linear),
        ("quantized_conv", [cx, cw, cws, xs, xz, cb, res], {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                                            "dilations": [1, 1], "activation": "relu"}, static_conv),
        ("dynamic_quantize_linear", [x], {}, dql(False)),
        ("dynamic_quantize_linear", [x], {"reduce_range": True}, dql(True)),
        ("quantized_linear", [x, w, ws, b], {}, fbgemm),
        ("quantized_linear", [x, w, ws, b], {"act_quant": "none", "activation": "gelu"}, weight_only),
    ]


CASES += [_lstm_case(), _quantized_lstm_case(), _gru_case(True), _gru_case(False), _rnn_case("tanh"), _rnn_case("relu"), *_quant_cases(),
          *_int8_cases()]

# Ops whose semantics a torch function cannot state on its own; tested elsewhere.
NOT_TORCH = {"scale_by", "swish_beta", "coverage_probe"}  # registered by a doctest, the README and a test


@pytest.mark.parametrize("op,inputs,attrs,ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_kernel_matches_torch(op: str, inputs: list[np.ndarray], attrs: dict[str, Any], ref: Callable[..., Any]) -> None:
    got = run_op(op, inputs, attrs)
    t_inputs = [T(a) if a.dtype != np.dtype("bfloat16") else T(a.astype(np.float32)).bfloat16() for a in inputs]
    want = ref(*t_inputs)
    want = list(want) if isinstance(want, (tuple, list)) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = w.detach()
        w = w.float().numpy().astype(g.dtype) if w.dtype == torch.bfloat16 else w.numpy()
        assert g.dtype == w.dtype, f"{op}: dtype {g.dtype} vs torch {w.dtype}"
        assert g.shape == w.shape, f"{op}: shape {g.shape} vs torch {w.shape}"
        if g.dtype.kind in "biu":
            np.testing.assert_array_equal(g, w)
        else:
            tol = 1e-3 if g.dtype in (np.float16, np.dtype("bfloat16")) else 2e-5
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol, equal_nan=True)


def test_every_op_has_a_torch_case() -> None:
    covered = {c[0] for c in CASES}
    missing = set(registered_ops()) - covered - NOT_TORCH
    assert not missing, f"ops without a kernel-vs-torch case: {sorted(missing)}"


def test_integer_division_by_zero_raises() -> None:
    from graphopt.errors import InterpreterError

    with pytest.raises(InterpreterError, match="division by zero"):
        run_op("div", [ints(3), np.zeros(3, np.int64)], {"rounding_mode": "floor"})
