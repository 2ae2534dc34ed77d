import pytest

from helpers import check_pass, check_semantics


def test_merges_identical_nodes_and_commuted_operands() -> None:
    check_pass("cse,dce", """
graph @f(%x: f32[4], %y: f32[4]) {
  %0: f32[4] = add(%x, %y)
  %1: f32[4] = add(%y, %x)
  %2: f32[4] = sub(%x, %y)
  %3: f32[4] = sub(%y, %x)
  %4: f32[4] = mul(%0, %1)
  %5: f32[4] = mul(%2, %3)
  return %4, %5
}""", """
graph @f(%x: f32[4], %y: f32[4]) {
  %0: f32[4] = add(%x, %y)
  %2: f32[4] = sub(%x, %y)
  %3: f32[4] = sub(%y, %x)
  %4: f32[4] = mul(%0, %0)
  %5: f32[4] = mul(%2, %3)
  return %4, %5
}""")


def test_different_attributes_are_not_merged() -> None:
    check_pass("cse", """
graph @f(%x: f32[4]) {
  %0: f32[4] = gelu(%x)
  %1: f32[4] = gelu(%x) {approximate="tanh"}
  %2: f32[4] = add(%0, %1)
  return %2
}""", """
graph @f(%x: f32[4]) {
  %0: f32[4] = gelu(%x)
  %1: f32[4] = gelu(%x) {approximate="tanh"}
  %2: f32[4] = add(%0, %1)
  return %2
}""")


def test_merges_equal_constants_by_content() -> None:
    check_pass("cse,dce", """
graph @f(%x: f32[2]) {
  const @a: f32[2] = [1.0, 2.0]
  const @b: f32[2] = [1.0, 2.0]
  %0: f32[2] = mul(%x, @a)
  %1: f32[2] = mul(%x, @b)
  %2: f32[2] = add(%0, %1)
  return %2
}""", """
graph @f(%x: f32[2]) {
  const @a: f32[2] = [1.0, 2.0]
  %0: f32[2] = mul(%x, @a)
  %2: f32[2] = add(%0, %0)
  return %2
}""")


@pytest.mark.parametrize("op, attr", [("leaky_relu", "negative_slope"), ("clamp", "max")])
def test_attributes_differing_in_the_sign_of_zero_are_not_merged(op: str, attr: str) -> None:
    """Fuzz case: 0.0 == -0.0 in Python, but leaky_relu{-0.0} and {0.0} give zeros of opposite signs (1/x: ±inf)."""
    g = check_semantics("cse,dce", f"""
graph @f(%x: f32[8]) {{
  const @one: f32[] = 1.0
  %0: f32[8] = {op}(%x) {{{attr}=0.0}}
  %1: f32[8] = {op}(%x) {{{attr}=-0.0}}
  %2: f32[8] = div(@one, %0)
  %3: f32[8] = div(@one, %1)
  return %2, %3
}}""")
    assert [n.op.name for n in g].count(op) == 2
