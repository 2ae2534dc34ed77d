"""Write examples/bert_layer.gir (+ .npz weights): one BERT encoder layer as torch.export's core-ATen
decomposition spells it — weight transposes, dropouts, clones, reshape chains, a recomputed mask — so
that O1 has real work to do. Run: python examples/make_bert_layer.py
"""

from pathlib import Path

import numpy as np

from graphopt.ir import DType, Graph, TensorType


def build(hidden: int = 64, heads: int = 4, ffn: int = 256, seq: int = 16, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("bert_layer")
    x = g.add_input("hidden_states", TensorType(DType.F32, ("batch", seq, hidden)))
    mask = g.add_input("attention_mask", TensorType(DType.I64, ("batch", seq)))

    def weight(name: str, *shape: int) -> object:
        return g.add_constant((rng.standard_normal(shape) * 0.05).astype(np.float32), name)

    def linear(inp, name, n_in, n_out):  # aten.t + aten.matmul + aten.add, as export writes it
        wt = g.add("transpose", [weight(f"{name}.weight", n_out, n_in)], {"perm": [1, 0]})
        y = g.add("add", [g.add("matmul", [inp, wt]), weight(f"{name}.bias", n_out)])
        return g.add("reshape", [y], {"shape": ["batch", seq, n_out]})

    def heads_of(t):
        t = g.add("reshape", [t], {"shape": ["batch", seq, heads, hidden // heads]})
        return g.add("transpose", [t], {"perm": [0, 2, 1, 3]})

    # Extended attention mask: (1 - mask) * min, computed the way HF does, with a no-op cast and * 1.0.
    m = g.add("cast", [g.add("unsqueeze", [mask], {"axes": [1, 2]})], {"dtype": "f32"})
    m = g.add("cast", [m], {"dtype": "f32"})
    one = g.add_constant(np.float32(1.0), "one")
    m = g.add("mul", [g.add("sub", [one, m]), g.add_constant(np.float32(-3.4e38), "neg_big")])
    x = g.add("identity", [x])  # aten.clone
    q = heads_of(linear(x, "attention.self.query", hidden, hidden))
    k = heads_of(linear(x, "attention.self.key", hidden, hidden))
    v = heads_of(linear(x, "attention.self.value", hidden, hidden))
    kt = g.add("transpose", [k], {"perm": [0, 1, 3, 2]})
    s = g.add("div", [g.add("matmul", [q, kt]), g.add_constant(np.float32(np.sqrt(hidden // heads)), "scale")])
    s = g.add("add", [s, m])
    p = g.add("dropout", [g.add("softmax", [s], {"axis": -1})], {"p": 0.1})
    ctx = g.add("transpose", [g.add("matmul", [p, v])], {"perm": [0, 2, 1, 3]})
    ctx = g.add("reshape", [g.add("reshape", [ctx], {"shape": ["batch", seq, hidden]})],
                {"shape": ["batch", seq, hidden]})
    a = g.add("dropout", [linear(ctx, "attention.output.dense", hidden, hidden)], {"p": 0.1})
    a = g.add("mul", [g.add("add", [a, x]), one])
    a = g.add("layer_norm", [a, weight("attention.output.LayerNorm.weight", hidden),
                             weight("attention.output.LayerNorm.bias", hidden)], {"eps": 1e-12})
    h = g.add("gelu", [linear(a, "intermediate.dense", hidden, ffn)])
    o = g.add("dropout", [linear(h, "output.dense", ffn, hidden)], {"p": 0.1})
    o = g.add("layer_norm", [g.add("add", [o, a]), weight("output.LayerNorm.weight", hidden),
                             weight("output.LayerNorm.bias", hidden)], {"eps": 1e-12})
    g.set_outputs([o])
    return g


if __name__ == "__main__":
    graph = build()
    graph.verify()
    here = Path(__file__).parent
    (here / "bert_layer.gir").write_text(graph.format() + "\n")
    np.savez(here / "bert_layer.npz", **{c.name: c.const for c in graph.constants.values() if c.const.size > 64})
    print(f"wrote {here / 'bert_layer.gir'} ({len(graph)} nodes)")
