"""graphopt.ir: the intermediate graph every frontend produces and every pass and backend consumes.

>>> from graphopt.ir import parse
>>> g = parse('''
... graph @mlp(%x: f32[batch,4]) {
...   const @w: f32[2,4] = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
...   %0: f32[batch,2] = linear(%x, @w)
...   %1: f32[batch,2] = relu(%0)
...   return %1
... }''')
>>> g.verify()
>>> print(g.nodes and len(g))
2
"""

from .binding import bind_shapes
from .builder import Builder
from .dtypes import DType, promote
from .graph import Graph, NodeList
from .node import Node
from .nx import to_dot, to_networkx
from .ops import (SLICE_END, Attr, AxisRef, ConcreteType, OpDef, OpRef, ShapeError, Tie, Trait, dim_flow, get_op, op_names, ops_with,
                  register_op, registered_ops, same_as_input)
from .parser import parse
from .printer import format_graph
from .types import Dim, Shape, TensorType
from .value import Use, Value
from .equality import assert_graph_equal, graph_equal

__all__ = [
    "Attr",
    "Builder",
    "AxisRef",
    "OpRef",
    "SLICE_END",
    "Tie",
    "Trait",
    "dim_flow",
    "op_names",
    "ops_with",
    "ConcreteType",
    "DType",
    "Dim",
    "Graph",
    "Node",
    "NodeList",
    "OpDef",
    "Shape",
    "ShapeError",
    "TensorType",
    "Use",
    "Value",
    "assert_graph_equal",
    "bind_shapes",
    "format_graph",
    "get_op",
    "graph_equal",
    "parse",
    "promote",
    "register_op",
    "registered_ops",
    "same_as_input",
    "to_dot",
    "to_networkx",
]
