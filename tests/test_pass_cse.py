from helpers import check_pass


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
