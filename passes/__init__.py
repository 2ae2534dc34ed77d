"""graphopt.passes: the pass manager, pattern rewriting, analyses and the cleanup passes.

>>> from graphopt.ir import parse
>>> from graphopt.passes import PassManager
>>> g = parse('''
... graph @f(%x: f32[2,3]) {
...   %0: f32[3,2] = transpose(%x) {perm=[1, 0]}
...   %1: f32[2,3] = transpose(%0) {perm=[1, 0]}
...   return %1
... }''')
>>> result = PassManager.parse("O1").run(g)
>>> print(g)
graph @f(%x: f32[2,3]) {
  return %x
}
"""

from . import (  # noqa: F401  (registration)
    canonicalize, cse, dce, eliminate_layout_ops, fold_batchnorm, fold_constants, fuse_attention, fuse_conv, fuse_gelu,
    fuse_layernorm, fuse_linear, fuse_rmsnorm, infer_shapes, low_rank, merge_parallel_linears, prune_magnitude, prune_structured, quantize)
from .analysis import AnalysisManager, CostReport, register_analysis
from .context import Instrument, PassContext, Rejection
from .instruments import DumpToDirectory, NumericCheck, PrintIR, SkipPasses, VerifyEach
from .manager import PRESETS, PassManager, PassRecord, PassSpec, PipelineResult
from .pattern import AttrVar, Const, Match, MatchFailure, Pat, Pattern, Var
from .plugins import load_entry_points, load_pass
from .registry import ALL, Budget, Option, PassInfo, PassResult, get_pass, register_pass, registered_passes
from .rewrite import Rewriter, RewriteStats, Rule, apply_rules, same_type

__all__ = [
    "Budget",
    "ALL",
    "AnalysisManager",
    "AttrVar",
    "Const",
    "CostReport",
    "DumpToDirectory",
    "Instrument",
    "Match",
    "MatchFailure",
    "NumericCheck",
    "Option",
    "PRESETS",
    "PassContext",
    "PassInfo",
    "PassManager",
    "PassRecord",
    "PassResult",
    "PassSpec",
    "Pat",
    "Pattern",
    "PipelineResult",
    "PrintIR",
    "Rejection",
    "RewriteStats",
    "Rewriter",
    "Rule",
    "SkipPasses",
    "Var",
    "VerifyEach",
    "apply_rules",
    "get_pass",
    "load_entry_points",
    "load_pass",
    "register_analysis",
    "register_pass",
    "registered_passes",
    "same_type",
]
