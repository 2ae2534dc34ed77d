from helpers import check_pass


def test_removes_dead_chain_and_constants() -> None:
    check_pass("dce", """
graph @f(%x: f32[4]) {
  const @c: f32[] = 2.0
  %0: f32[4] = mul(%x, @c)
  %1: f32[4] = exp(%0)
  %2: f32[4] = relu(%x)
  return %2
}""", """
graph @f(%x: f32[4]) {
  %0: f32[4] = relu(%x)
  return %0
}""")


def test_keeps_multi_output_node_with_one_live_output() -> None:
    check_pass("dce", """
graph @f(%x: f32[2,6]) {
  %a: f32[2,2], %b: f32[2,4] = split(%x) {axis=1, sizes=[2, 4]}
  return %b
}""", """
graph @f(%x: f32[2,6]) {
  %a: f32[2,2], %b: f32[2,4] = split(%x) {axis=1, sizes=[2, 4]}
  return %b
}""")


def test_graph_outputs_are_live() -> None:
    check_pass("dce", """
graph @f(%x: f32[2]) {
  %0: f32[2] = neg(%x)
  return %0, %x
}""", """
graph @f(%x: f32[2]) {
  %0: f32[2] = neg(%x)
  return %0, %x
}""")
