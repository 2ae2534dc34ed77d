"""Write a custom pass in a few lines and run it inside a text pipeline.

    python examples/custom_pass.py
    graphopt opt examples/bert_layer.gir --load-pass examples/custom_pass.py:fold_gelu_tanh -p 'O1,gelu-to-tanh'
"""

from graphopt.ir import parse
from graphopt.passes import PassManager, PassResult, Pat, Rule, Var, apply_rules, register_pass

# One rule: exact GELU -> its tanh approximation (a lossy speed trade some deployments make).
TANH_GELU = Rule("gelu-tanh", Pat("gelu", Var("x"), approximate="none"),
                 lambda rw, m: rw.op("gelu", [m.x], approximate="tanh"))


@register_pass("gelu-to-tanh")
def fold_gelu_tanh(graph, ctx) -> PassResult:
    """Use the tanh approximation for every exact GELU."""
    stats = apply_rules(graph, [TANH_GELU], ctx)
    return PassResult(changed=stats.total > 0, stats=stats.as_stats())


if __name__ == "__main__":
    g = parse("graph @f(%x: f32[4]) {\n  %0: f32[4] = gelu(%x)\n  %1: f32[4] = identity(%0)\n  return %1\n}")
    result = PassManager.parse("canonicalize,gelu-to-tanh,dce").run(g)
    print(g)
    print(result.table())
