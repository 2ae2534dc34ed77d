"""Pins the public API: adding or removing a name is a deliberate change to this file."""

import graphopt
import graphopt.backends
import graphopt.ir
import graphopt.passes

API = {
    "graphopt": ["CalibrationTable", "CompiledModel", "calibrate", "compile", "quantization", "compression", "distill", "prune", "load", "load_model", "to_graph", "frontends", "import_torch",
                 "load_pt2", "import_onnx", "export_onnx", "GraphoptError", "InputError", "InterpreterError", "ModelLoadError", "NumericMismatchError", "ParseError",
                 "PassContext", "PassError", "PassManager", "PipelineError", "RewriteLimitError",
                 "UnsupportedOpError", "VerificationError", "backends", "errors", "ir", "load_pass", "passes",
                 "register_pass"],
    "graphopt.ir": ["Attr", "Builder", "AxisRef", "OpRef", "SLICE_END", "Tie", "Trait", "dim_flow", "op_names", "ops_with",
                    "ConcreteType", "DType", "Dim", "Graph", "Node", "NodeList", "OpDef", "Shape",
                    "ShapeError", "TensorType", "Use", "Value", "assert_graph_equal", "bind_shapes", "format_graph", "get_op",
                    "graph_equal", "parse", "promote", "register_op", "registered_ops", "same_as_input", "to_dot",
                    "to_networkx"],
    "graphopt.passes": ["ALL", "Budget", "AnalysisManager", "AttrVar", "Const", "CostReport", "DumpToDirectory", "Instrument",
                        "Match", "MatchFailure", "NumericCheck", "Option", "PRESETS", "PassContext", "PassInfo",
                        "PassManager", "PassRecord", "PassResult", "PassSpec", "Pat", "Pattern", "PipelineResult",
                        "PrintIR", "Rejection", "RewriteStats", "Rewriter", "Rule", "SkipPasses", "Var",
                        "VerifyEach", "apply_rules", "get_pass", "load_entry_points", "load_pass",
                        "register_analysis", "register_pass", "registered_passes", "same_type"],
    "graphopt.backends": ["reference", "Backend", "Executable", "available_backends", "check_coverage",
                          "get_backend", "register_backend"],
}


def test_public_api_is_pinned() -> None:
    for name, expected in API.items():
        module = {"graphopt": graphopt, "graphopt.ir": graphopt.ir, "graphopt.passes": graphopt.passes,
                  "graphopt.backends": graphopt.backends}[name]
        assert sorted(module.__all__) == sorted(expected), name
        for attr in expected:
            assert hasattr(module, attr), f"{name}.{attr}"


def test_installed_under_one_import_name() -> None:
    import importlib.util

    assert importlib.util.find_spec("ir") is None or "graphopt" not in str(importlib.util.find_spec("ir").origin)
    assert graphopt.ir.__name__ == "graphopt.ir"


def test_registry_size() -> None:
    assert len(graphopt.ir.registered_ops()) >= 93
