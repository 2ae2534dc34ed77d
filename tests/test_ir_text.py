import numpy as np
import pytest

from graphopt.errors import ParseError
from graphopt.ir import graph_equal, parse

ROUND_TRIP = ["""graph @bert(%x: f32[batch,seq,8], %mask: i64[batch,seq]) {
  const @w: f32[2,8] = [[0.1, -2.5, 3.0, 1e-08, inf, -inf, 0.0, -0.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]
  const @"odd name/1": f16[] = 0.333
  const @ids: i64[3] = [1, -2, 9223372036854775807]
  const @flags: bool[2] = [true, false]
  %0: f32[batch,seq,2] = linear(%x, @w)  loc("encoder.layer.0.attention.self.query")
  %1: f32[batch,seq,2] = gelu(%0) {approximate="tanh"}
  %v: f32[batch,seq,1], %i: i64[batch,seq,1] = topk(%1) {k=1}
  %2: f32[batch,seq,1] = mul(%v, @"odd name/1")
  %3: f32[batch,seq,1] = clamp(%2) {min=-1.5}
  %4: f32[batch,seq] = squeeze(%3) {axes=[-1]}
  %5: bf16[batch,seq] = cast(%4) {dtype=bf16}
  %6: i64[seq] = arange() {end=seq}
  return %5, %i, %6
}""", """graph @empty() {
  return
}"""]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_print_parse_round_trip_is_exact(text: str) -> None:
    text = text.replace('f16[] = 0.333', 'f16[] = 0.333')
    g = parse(text)
    assert str(g) == text
    assert graph_equal(parse(str(g)), g, names=True)


def test_external_constants() -> None:
    w = np.arange(100, dtype=np.float32).reshape(10, 10)
    g = parse("graph @f(%x: f32[10]) {\n  const @w: f32[10,10] = external\n  %0: f32[10] = matmul(@w, %x)\n"
              "  return %0\n}", {"w": w})
    assert "= external" in str(g)
    assert graph_equal(parse(str(g), {"w": w}), g)


@pytest.mark.parametrize("text,line,col,message", [
    ("graph @f(%x: f32[2]) {\n  %0: f32[2] = rleu(%x)\n  return %0\n}", 2, 16, "unknown op 'rleu'; did you mean 'relu'"),
    ("graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%y)\n  return %0\n}", 2, 21, "use of undefined value %y"),
    ("graph @f(%x: f32[2]) {\n  %x: f32[2] = relu(%x)\n  return %x\n}", 2, 3, "already used"),
    ("graph @f(%x: f33[2]) {\n  return %x\n}", 1, 14, "unknown dtype 'f33'"),
    ("graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x) {alpha=1}\n  return %0\n}", 2, 25, "relu has no attribute 'alpha'"),
    ("graph @f(%x: f32[2]) {\n  %0: f32[2] = add(%x)\n  return %0\n}", 2, 16, "add takes 2 inputs (a, b), got 1"),
    ("graph @f(%x: f32[2]) {\n  const @w: f32[3] = external\n  return %x\n}", 2, 9, "no data was given"),
    ("graph @f(%x: f32[2]) {\n  const @w: f32[3] = [1.0, 2.0]\n  return %x\n}", 2, 9, "declared f32[3] but its data is"),
    ("graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x) $\n}", 2, 25, "unexpected character '$'"),
    ("graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)\n", 3, 1, "expected a node (%name: type = op(...)) or 'return', got end of input"),
])
def test_parse_errors_have_line_and_column(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (line, col), str(info.value)
    assert message in str(info.value)
