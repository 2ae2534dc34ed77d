import pytest

from graphopt.ir import parse
from graphopt.passes import PassContext, PassManager
from helpers import check_pass

IDENTITIES = [
    ("mul(%x, @one)", "f32[] = 1.0"),
    ("mul(@one, %x)", "f32[] = 1.0"),
    ("add(%x, @one)", "f32[] = 0.0"),
    ("sub(%x, @one)", "f32[2] = [0.0, 0.0]"),
    ("div(%x, @one)", "f32[] = 1.0"),
    ("pow(%x, @one)", "f32[] = 1.0"),
]


@pytest.mark.parametrize("expr,const", IDENTITIES)
def test_arithmetic_identities(expr: str, const: str) -> None:
    check_pass("canonicalize,dce", f"""
graph @f(%x: f32[3,2]) {{
  const @one: {const}
  %0: f32[3,2] = {expr}
  %1: f32[3,2] = exp(%0)
  return %1
}}""", """
graph @f(%x: f32[3,2]) {
  %1: f32[3,2] = exp(%x)
  return %1
}""")


def test_identity_that_would_broadcast_is_rejected_with_reason() -> None:
    g = parse("""
graph @f(%x: f32[2]) {
  const @one: f32[3,1] = [[1.0], [1.0], [1.0]]
  %0: f32[3,2] = mul(%x, @one)
  return %0
}""")
    ctx = PassContext(explain=True)
    r = PassManager.parse("canonicalize").run(g, ctx)
    assert not r.changed
    assert any("replacing would change the type" in rj.reason for rj in ctx.rejections)


def test_layout_no_ops() -> None:
    check_pass("canonicalize,dce", """
graph @f(%x: f32[2,3,4]) {
  %0: f32[4,2,3] = transpose(%x) {perm=[2, 0, 1]}
  %1: f32[2,3,4] = transpose(%0) {perm=[1, 2, 0]}
  %2: f32[6,4] = reshape(%1) {shape=[6, 4]}
  %3: f32[24] = reshape(%2) {shape=[-1]}
  %4: f32[24] = reshape(%3) {shape=[24]}
  %5: f32[24] = identity(%4)
  %6: f32[24] = dropout(%5) {p=0.1}
  %7: f32[24] = slice(%6) {starts=[0], ends=[24]}
  %8: f32[24] = concat(%7) {axis=0}
  %9: f32[24] = expand(%8) {shape=[24]}
  return %9
}""", """
graph @f(%x: f32[2,3,4]) {
  %3: f32[24] = reshape(%x) {shape=[-1]}
  return %3
}""")


def test_transposes_compose_into_one() -> None:
    check_pass("canonicalize,dce", """
graph @f(%x: f32[2,3,4]) {
  %0: f32[3,2,4] = transpose(%x) {perm=[1, 0, 2]}
  %1: f32[3,4,2] = transpose(%0) {perm=[0, 2, 1]}
  return %1
}""", """
graph @f(%x: f32[2,3,4]) {
  %1: f32[3,4,2] = transpose(%x) {perm=[1, 2, 0]}
  return %1
}""")


def test_casts() -> None:
    check_pass("canonicalize,dce", """
graph @f(%x: i8[4], %y: f32[4]) {
  %0: i32[4] = cast(%x) {dtype=i32}
  %1: i64[4] = cast(%0) {dtype=i64}
  %2: f32[4] = cast(%y) {dtype=f32}
  %3: i8[4] = cast(%y) {dtype=i8}
  %4: f32[4] = cast(%3) {dtype=f32}
  return %1, %2, %4
}""", """
graph @f(%x: i8[4], %y: f32[4]) {
  %1: i64[4] = cast(%x) {dtype=i64}
  %3: i8[4] = cast(%y) {dtype=i8}
  %4: f32[4] = cast(%3) {dtype=f32}
  return %1, %y, %4
}""")


def test_double_negation_and_relu() -> None:
    check_pass("canonicalize,dce", """
graph @f(%x: f32[4]) {
  %0: f32[4] = neg(%x)
  %1: f32[4] = neg(%0)
  %2: f32[4] = relu(%1)
  %3: f32[4] = relu(%2)
  return %3
}""", """
graph @f(%x: f32[4]) {
  %2: f32[4] = relu(%x)
  return %2
}""")


def test_onnx_spellings_of_rsqrt_and_silu_become_the_ops() -> None:
    check_pass("canonicalize,dce", """
graph @f(%x: f32[4]) {
  %0: f32[4] = sqrt(%x)
  %1: f32[4] = reciprocal(%0)
  %2: f32[4] = sigmoid(%x)
  %3: f32[4] = mul(%2, %x)
  return %1, %3
}""", """
graph @f(%x: f32[4]) {
  %1: f32[4] = rsqrt(%x)
  %3: f32[4] = silu(%x)
  return %1, %3
}""")


def test_a_bmm_between_reshapes_becomes_a_matmul_over_the_heads() -> None:
    # torch.export's spelling of a 4-D matmul (SqueezeBERT's attention): the heads are visible again, so
    # fuse-attention finds the pattern it finds in the ONNX export of the same model
    check_pass("canonicalize,dce", """
graph @f(%q: f32[b,2,5,3], %k: f32[b,6,5]) {
  %0: f32["2*b",5,3] = reshape(%q) {shape=["2*b", 5, 3]}
  %1: f32["2*b",3,5] = reshape(%k) {shape=["2*b", 3, 5]}
  %2: f32["2*b",5,5] = matmul(%0, %1)
  %3: f32[b,2,5,5] = reshape(%2) {shape=[b, 2, 5, 5]}
  return %3
}""", """
graph @f(%q: f32[b,2,5,3], %k: f32[b,6,5]) {
  %1: f32[b,2,3,5] = reshape(%k) {shape=[b, 2, 3, 5]}
  %2: f32[b,2,5,5] = matmul(%q, %1)
  return %2
}""")


def test_a_bmm_whose_result_is_not_split_by_batch_stays() -> None:
    text = """
graph @f(%q: f32[4,5,3], %k: f32[4,3,5]) {
  %0: f32[4,5,3] = reshape(%q) {shape=[4, 5, 3]}
  %1: f32[4,3,5] = reshape(%k) {shape=[4, 3, 5]}
  %2: f32[4,5,5] = matmul(%0, %1)
  %3: f32[2,2,25] = reshape(%2) {shape=[2, 2, 25]}
  return %3
}"""
    g = check_pass("canonicalize,dce", text, """
graph @f(%q: f32[4,5,3], %k: f32[4,3,5]) {
  %2: f32[4,5,5] = matmul(%q, %k)
  %3: f32[2,2,25] = reshape(%2) {shape=[2, 2, 25]}
  return %3
}""")
    assert [n.op.name for n in g] == ["matmul", "reshape"]
