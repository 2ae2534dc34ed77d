"""PyTorch frontend: `torch.export` → core ATen → graphopt IR.

The converter walks the exported FX graph once. Parameters and buffers become graph constants (numpy views of
the same storage, no copy), user inputs become graph inputs under their argument names, and every node keeps
the `nn.Module` path it came from as its origin. SymInt-valued nodes (`sym_size`, `s0*s1`) become dim
expressions, so `view(x, [batch*seq, 768])` stays dynamic. The ATen→IR mapping is data: see `aten.py`.

>>> import torch, graphopt
>>> g = graphopt.import_torch(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), (torch.ones(2, 4),))
>>> [n.op.name for n in g]
['transpose', 'matmul', 'add', 'relu']
>>> next(iter(g)).origin
'0'
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


from graphopt.arrays import to_numpy
from graphopt.errors import ModelLoadError, UnsupportedOpError
from graphopt.ir import Builder, DType, Graph, TensorType, Value
from graphopt.ir.binding import SYMBOL_BOUNDS
from graphopt.ir.symbolic import from_sympy

from . import aten

__all__ = ["import_torch", "import_exported_program", "load_pt2", "export_torch", "decompose", "export_failure"]


def export_torch(model: Any, example_inputs: Sequence[Any] = (), example_kwargs: Mapping[str, Any] | None = None,
                 dynamic_shapes: Any = None) -> Any:
    """`torch.export.export` in eval mode, decomposed to core ATen (keeping `aten.lstm` whole)."""
    import torch

    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ep = torch.export.export(model, tuple(example_inputs), dict(example_kwargs or {}),
                                     dynamic_shapes=dynamic_shapes)
    except Exception as e:
        short = export_failure(e, type(model).__name__)
        if short is None:
            raise
        raise short from None  # torch's 40-line message stays on short.__context__ for whoever needs it
    finally:
        model.train(was_training)
    return decompose(ep)


def export_failure(e: BaseException, model: str) -> ModelLoadError | None:
    r"""torch.export's two failures users hit most, said in a few lines with what to do; None for the rest.

    >>> class GuardOnDataDependentSymNode(Exception): ...
    >>> msg = "Could not guard on data-dependent expression Eq(u0, 1)\nThe following call raised this error:\n" \
    ...       '  File "m.py", line 5, in forward\n    if x.sum() > 0:\n'
    >>> print(export_failure(GuardOnDataDependentSymNode(msg), "Net"))  # doctest: +ELLIPSIS
    cannot export Net: its Python code branches on tensor values at m.py, line 5, in forward: `if x.sum() > 0:`...
    """
    text = str(e)
    lines = text.splitlines()
    if type(e).__name__ == "GuardOnDataDependentSymNode" or "data-dependent expression" in text:
        where, code = "?", ""
        if "The following call raised this error:" in lines:
            i = lines.index("The following call raised this error:")
            frame = lines[i + 1].strip() if i + 1 < len(lines) else ""
            where = frame.removeprefix("File ").replace('"', "")
            code = lines[i + 2].strip() if i + 2 < len(lines) else ""
        return ModelLoadError(
            f"cannot export {model}: its Python code branches on tensor values at {where}"
            + (f": `{code}`" if code else "") + ". A compiled graph has no Python control flow that depends on "
            "data. Compute both sides and select with torch.where, use torch.cond, or make the condition a value "
            "known at compile time (a constant argument).")
    if "Constraints violated" in text:
        problems = [ln.strip()[2:] for ln in lines if ln.strip().startswith("- ")]
        fixes = []
        if "Suggested fixes:" in lines:
            for ln in lines[lines.index("Suggested fixes:") + 1:]:
                if not ln.startswith("  ") or not ln.strip():
                    break
                fixes.append(ln.strip())
        return ModelLoadError(
            f"cannot export {model} with these dynamic shapes: the model's code only holds for part of the range "
            "you gave.\n" + "\n".join(f"  {p}" for p in problems[:5])
            + ("\nNarrow the range (torch.export's suggestion): " + "; ".join(fixes) if fixes else ""))
    return None


def decompose(ep: Any) -> Any:
    import torch

    table = torch.export.default_decompositions()
    for op in aten.keep_whole():
        table.pop(op, None)
    # Export can record `view` on a tensor whose strides only allow `reshape` (GPT-2's Conv1D at batch > 1), and
    # re-tracing for decomposition then fails inside torch. The graph is functional, so reshape is equivalent.
    changed = False
    for node in ep.graph_module.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
            changed = True
    if changed:
        ep.graph_module.recompile()
    return ep.run_decompositions(table)


def import_torch(model: Any, example_inputs: Sequence[Any] = (), example_kwargs: Mapping[str, Any] | None = None,
                 dynamic_shapes: Any = None, *, name: str | None = None) -> Graph:
    """Trace `model` with torch.export and convert it to a Graph.

    `example_kwargs` carries keyword inputs (`input_ids=`, `attention_mask=`); `dynamic_shapes` is passed to
    torch.export, and the names of its `torch.export.Dim`s become the graph's symbols (`batch`, `seq`).
    """
    ep = export_torch(model, example_inputs, example_kwargs, dynamic_shapes)
    return import_exported_program(ep, name=name or type(model).__name__, dynamic_shapes=dynamic_shapes)


def load_pt2(path: str | os.PathLike[str]) -> Graph:
    """Load an ExportedProgram saved with `torch.export.save` and convert it.

    torch.export.load reads a zip of JSON plus tensor data with the safe `weights_only` unpickler; no arbitrary
    code runs. Errors come back as ModelLoadError.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file")
    try:
        ep = torch.export.load(str(p))
    except Exception as e:  # noqa: BLE001 - any failure of a foreign file is a load error
        raise ModelLoadError(f"{p}: not a readable torch.export program ({type(e).__name__}: {e})") from None
    return import_exported_program(decompose(ep), name=p.stem)


def import_exported_program(ep: Any, *, name: str = "model", dynamic_shapes: Any = None) -> Graph:
    """Convert a (core ATen) ExportedProgram to a Graph. Raises UnsupportedOpError listing every unknown op."""
    return _Converter(ep, name, dynamic_shapes).run()


def _origin(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    for path, _cls in reversed(list(stack.values())):
        if path and not path.startswith("_empty"):
            return _clean_path(path)
    return ""


def _clean_path(path: str) -> str:
    # torch.export spells module paths as L['self'].encoder.layer[0] in some versions, encoder.layer.0 in others.
    path = path.replace("L['self'].", "").replace("L['self']", "")
    return path.replace("[", ".").replace("]", "").replace("'", "")


def _source(node: Any) -> str:
    trace = node.meta.get("stack_trace") or ""
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip().startswith("File ")]
    return lines[-1] if lines else ""


def _finite(x: Any) -> int | None:
    return int(x) if getattr(x, "is_Integer", False) or isinstance(x, int) else None


class _Converter(Builder):
    """Converts one ExportedProgram; converters build with `cx.op(...)`, the IR's one `Builder` API."""

    def __init__(self, ep: Any, name: str, dynamic_shapes: Any) -> None:
        super().__init__(Graph(name))
        self.ep = ep
        self.env: dict[Any, Any] = {}
        self.symbols = self._name_symbols(dynamic_shapes)

    # -- symbols -------------------------------------------------------------------------------------------
    def _name_symbols(self, dynamic_shapes: Any) -> dict[Any, Any]:
        """Map torch's s0, s1 ... to the user's Dim names, else to `<input>_<axis>`."""
        import sympy

        sig = self.ep.graph_signature
        placeholders = {n.name: n for n in self.ep.graph.nodes if n.op == "placeholder"}
        names: dict[Any, Any] = {}
        taken: set[str] = set()
        for pos, arg in enumerate(sig.user_inputs):
            if not isinstance(arg, str):  # a constant argument (return_dict=False, a None mask): specialized away
                continue
            val = placeholders[arg].meta.get("val")
            spec = _spec_for(dynamic_shapes, arg, pos)
            for axis, d in enumerate(getattr(val, "shape", ())):
                expr = getattr(getattr(d, "node", None), "expr", None)
                if expr is None or not isinstance(expr, sympy.Symbol) or expr in names:
                    continue
                user = spec.get(axis) if isinstance(spec, Mapping) else (
                    spec[axis] if isinstance(spec, (list, tuple)) and axis < len(spec) else None)
                want = getattr(user, "__name__", None) or f"{arg}_{axis}"
                want = "".join(c if c.isalnum() or c == "_" else "_" for c in want)
                while want in taken:
                    want += "_"
                taken.add(want)
                names[expr] = sympy.Symbol(want, integer=True, positive=True)
        return names

    def dim(self, d: Any) -> Any:
        """An int or SymInt (or an fx node producing one) as a graphopt dim."""
        if hasattr(d, "op") and hasattr(d, "meta"):  # fx.Node producing a SymInt
            d = d.meta["val"]
        if isinstance(d, (int, str)):  # already a dim (SymInt nodes are converted before their users)
            return d
        expr = getattr(getattr(d, "node", None), "expr", None)
        if expr is None:
            raise TypeError(f"not a dim: {d!r}")
        return self.sympy_dim(expr)

    def sympy_dim(self, expr: Any) -> Any:
        import sympy

        try:
            from torch.utils._sympy.functions import CeilDiv, FloorDiv
            expr = expr.replace(FloorDiv, lambda a, b: sympy.floor(a / b))
            expr = expr.replace(CeilDiv, lambda a, b: sympy.ceiling(a / b))
        except ImportError:  # older torch: nothing to rewrite
            pass
        unknown = expr.free_symbols - set(self.symbols)
        if unknown:  # data-dependent sizes (unbacked symbols): name them after themselves
            for s in unknown:
                self.symbols[s] = sympy.Symbol(f"u_{s.name}", integer=True, positive=True)
        return from_sympy(expr.xreplace(self.symbols))

    def ttype(self, val: Any) -> TensorType:
        return TensorType(DType.from_torch(val.dtype), tuple(self.dim(d) for d in val.shape))

    # -- conversion ----------------------------------------------------------------------------------------
    def run(self) -> Graph:
        self._check_supported()
        sig = self.ep.graph_signature
        kinds = {s.arg.name: s for s in sig.input_specs if hasattr(s.arg, "name")}
        tables = {**self.ep.state_dict, **getattr(self.ep, "constants", {})}
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                spec = kinds.get(node.name)
                if spec is not None and spec.target is not None and spec.target in tables:
                    arr = to_numpy(tables[spec.target])
                    self.env[node] = self.graph.add_constant(arr, name=spec.target)
                elif node.name in sig.user_inputs:
                    self.env[node] = self.graph.add_input(node.name, self.ttype(node.meta["val"]))
                elif spec is not None and hasattr(spec.arg, "value"):  # a constant in the call, as torch.export
                    self.env[node] = spec.arg.value                   # specializes it (None, return_dict=False)
                else:
                    raise ModelLoadError(f"placeholder {node.name} is neither a user input nor a known weight")
            elif node.op == "call_function":
                self._convert(node)
            elif node.op == "output":
                outs = [self.env[a] for a in node.args[0] if a is not None]
                user = [v for v in outs if isinstance(v, Value)][-len(sig.user_outputs):]
                self.graph.set_outputs(user)
                self._name_outputs()
        bounds = self._symbol_bounds()
        if bounds:
            self.graph.metadata[SYMBOL_BOUNDS] = bounds
        return self.graph

    def _name_outputs(self) -> None:
        """Outputs take the names of the model's output structure (`last_hidden_state`, `logits`, `output_0`)."""
        import torch.utils._pytree as pytree

        try:
            spec = self.ep.call_spec.out_spec
            tree = pytree.tree_unflatten(list(range(spec.num_leaves)), spec)
            paths = [pytree.keystr(path) for path, _ in pytree.tree_flatten_with_path(tree)[0]]
        except Exception:  # noqa: BLE001 - an output structure torch cannot describe keeps the SSA names
            return
        if len(paths) != len(self.graph.outputs):
            return
        for v, path in zip(self.graph.outputs, paths):
            name = "".join(c if c.isalnum() or c == "_" else "_" for c in path).strip("_") or "output"
            name = f"output_{name}" if name[0].isdigit() else name
            if v.producer is not None and name not in self.graph._values:
                self.graph.rename(v, name)

    def _symbol_bounds(self) -> dict[str, list[int | None]]:
        """The Dim(min=, max=) ranges the user declared, by graphopt symbol name; torch.export's own default
        lower bound of 2 (its 0/1 specialization) is not a limit of the compiled graph and is left out."""
        out: dict[str, list[int | None]] = {}
        for sym, rng in getattr(self.ep, "range_constraints", {}).items():
            name = self.symbols.get(sym)
            if name is None:
                continue
            lo, hi = _finite(rng.lower), _finite(rng.upper)  # torch's int_oo / -int_oo: no bound
            lo = lo if lo is not None and lo > 2 else None
            if lo is not None or hi is not None:
                out[str(name)] = [lo, hi]
        return out

    def _check_supported(self) -> None:
        missing: Counter[str] = Counter()
        where: dict[str, list[str]] = {}
        for node in _all_nodes(self.ep.graph_module):
            if node.op == "call_function" and not aten.is_supported(node) and aten.op_name(node.target) != "cond":
                key = aten.op_name(node.target)
                missing[key] += 1
                where.setdefault(key, []).append(_origin(node) or _source(node) or node.name)
        if missing:
            lines = [f"  {op} x{n} (at {', '.join(dict.fromkeys(where[op]))[:200]})" for op, n in missing.most_common()]
            raise UnsupportedOpError(
                f"{len(missing)} ATen op(s) have no graphopt mapping:\n" + "\n".join(lines) +
                "\nAdd a converter with graphopt.frontends.aten.converter(...) (and an IR op with "
                "graphopt.ir.register_op if none fits), or run the model in eager PyTorch.",
                ops=dict(missing))

    def _convert_cond(self, node: Any) -> None:
        """torch.cond(pred, true_fn, false_fn, operands): both branches inlined, the results selected with
        `where`. Exact (the branches are pure and agree in shape and dtype, as torch.cond requires); both sides
        are computed, which is what a dataflow graph (ONNX If aside) can do without control flow."""
        pred = self._map(node.args[0])
        operands = list(self._map(node.args[3]))
        branches = [self._inline(getattr(self.ep.graph_module, a.target), operands) for a in node.args[1:3]]
        if not isinstance(pred, Value):  # decided at export time
            self.env[node] = tuple(branches[0] if pred else branches[1])
            return
        with self.graph.inserting_at_end(origin=_origin(node)):
            self.env[node] = tuple(self.op("where", [pred, t, f]) for t, f in zip(*branches))

    def _inline(self, gm: Any, operands: list[Any]) -> list[Any]:
        args = iter(operands)
        for n in gm.graph.nodes:
            if n.op == "placeholder":
                self.env[n] = next(args)
            elif n.op == "call_function":
                self._convert(n)
            elif n.op == "output":
                return [self.env[a] for a in n.args[0]]
        raise ModelLoadError(f"branch {gm} has no output")

    def _convert(self, node: Any) -> None:
        if aten.op_name(node.target) == "cond":
            self._convert_cond(node)
            return
        val = node.meta.get("val")
        if aten.is_sym(node):  # SymInt arithmetic (sym_size, s0*s1): a dim, not a tensor
            import torch

            # a SymBool only feeds torch's runtime asserts on unbacked sizes (u0 >= 0), which are no-ops here
            self.env[node] = None if isinstance(val, (torch.SymBool, bool)) else self.dim(val)
            return
        args = self._map(node.args)
        kwargs = self._map(node.kwargs)
        with self.graph.inserting_at_end(origin=_origin(node)):
            try:
                out = aten.convert(self, node, args, kwargs)
            except UnsupportedOpError:
                raise
            except Exception as e:  # noqa: BLE001 - say which model node failed, keep the cause chained
                raise UnsupportedOpError(
                    f"cannot convert {aten.op_name(node.target)} at {_origin(node) or node.name} "
                    f"({_source(node) or 'no source location'}): {type(e).__name__}: {e}",
                    ops={aten.op_name(node.target): 1}) from e
        self.env[node] = out
        if isinstance(out, Value):
            self._check_type(node, out, val)

    def _check_type(self, node: Any, out: Value, val: Any) -> None:
        if val is None or not hasattr(val, "shape"):
            return
        want = self.ttype(val)
        if out.type.dtype != want.dtype:
            with self.graph.inserting_at_end(origin=_origin(node)):
                self.env[node] = out = self.graph.add("cast", [out], {"dtype": want.dtype})
        if out.type.shape != want.shape:
            raise UnsupportedOpError(
                f"converting {aten.op_name(node.target)} at {_origin(node) or node.name}: graphopt infers "
                f"{out.type} but torch says {want}", ops={aten.op_name(node.target): 1})

    def _map(self, a: Any) -> Any:
        if isinstance(a, (list, tuple)):
            return type(a)(self._map(x) for x in a)
        if isinstance(a, dict):
            return {k: self._map(v) for k, v in a.items()}
        if hasattr(a, "op") and hasattr(a, "meta"):
            return self.env[a]
        return a



def _all_nodes(gm: Any) -> list[Any]:
    """The graph's nodes and those of its control-flow branches (torch.cond's true/false subgraphs)."""
    out = []
    for node in gm.graph.nodes:
        out.append(node)
        if node.op == "get_attr":
            sub = getattr(gm, node.target, None)
            if hasattr(sub, "graph"):
                out += _all_nodes(sub)
    return out


def _spec_for(dynamic_shapes: Any, arg: str, pos: int) -> Any:
    if isinstance(dynamic_shapes, Mapping):
        return dynamic_shapes.get(arg)
    if isinstance(dynamic_shapes, (list, tuple)) and pos < len(dynamic_shapes):
        return dynamic_shapes[pos]
    return None
