import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graphopt.cli import main
from graphopt.ir import parse
from graphopt.passes import PassManager, get_pass, load_pass

ROOT = Path(__file__).resolve().parents[1]


def test_opt_on_the_bundled_example(capsys) -> None:
    assert main(["opt", str(ROOT / "examples/bert_layer.gir"), "-p", "O1", "--verify-each", "--numeric-check",
                 "--timing", "-q"]) == 0
    err = capsys.readouterr().err
    assert "rule:dropout=3" in err and "numeric check: exact passes within float rounding" in err


def test_opt_writes_atomically_and_never_overwrites(tmp_path, capsys) -> None:
    src = tmp_path / "m.gir"
    src.write_text("graph @f(%x: f32[2]) {\n  %0: f32[2] = identity(%x)\n  return %0\n}\n")
    out = tmp_path / "out.gir"
    assert main(["opt", str(src), "-o", str(out)]) == 0
    assert parse(out.read_text()).outputs[0].name == "x"
    assert main(["opt", str(src), "-o", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["opt", str(src), "-o", str(out), "--overwrite"]) == 0


def test_clean_errors_for_bad_input(tmp_path, capsys) -> None:
    assert main(["opt", str(tmp_path / "missing.gir")]) == 1
    assert "missing.gir: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.gir"
    bad.write_text("graph @f(%x: f32[2]) {\n  %0: f32[2] = rleu(%x)\n  return %0\n}\n")
    assert main(["opt", str(bad)]) == 1
    assert "2:16: unknown op 'rleu'; did you mean 'relu'" in capsys.readouterr().err
    assert main(["opt", str(bad), "-p", "canonicalise"]) == 1


def test_load_pass_from_a_file_and_a_module(tmp_path, monkeypatch) -> None:
    plugin = tmp_path / "myplugin.py"
    plugin.write_text(textwrap.dedent('''
        from graphopt.passes import PassResult

        def drop_relus(graph, ctx, *, keep_last: bool = False):
            """Replace relu by its input (a test plugin)."""
            n = 0
            for node in graph:
                if node.op.name == "relu":
                    node.output.replace_all_uses_with(node.inputs[0])
                    graph.remove_node(node)
                    n += 1
            return PassResult(changed=n > 0, stats={"dropped": n})
    '''))
    info = load_pass(f"{plugin}:drop_relus")
    assert info.name == "drop-relus" and "keep-last" in info.options
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_pass("myplugin:drop_relus").name == "drop-relus"
    g = parse("graph @f(%x: f32[2]) {\n  %0: f32[2] = relu(%x)\n  return %0\n}")
    assert PassManager.parse("drop-relus{keep-last=true}").run(g).records[0].stats == {"dropped": 1}


def test_entry_point_passes_are_found(monkeypatch) -> None:
    import graphopt.passes.plugins as plugins
    import graphopt.passes.registry as registry

    class EP:
        name = "ep-pass"

        def load(self):
            from graphopt.passes import PassResult

            def ep_pass(graph, ctx):
                """A pass from an entry point."""
                return PassResult(changed=False)

            return ep_pass

    monkeypatch.setattr(plugins, "entry_points", lambda group: [EP()] if group == "graphopt.passes" else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert get_pass("ep-pass").doc == "A pass from an entry point."


def test_console_script_passes_lists_options() -> None:
    out = subprocess.run([sys.executable, "-m", "graphopt.cli", "passes"], capture_output=True, text=True, check=True)
    assert "fold-constants" in out.stdout and "max-size: int = 16777216" in out.stdout


def test_custom_pass_example_runs() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples/custom_pass.py")], capture_output=True, text=True,
                         check=True)
    assert 'gelu(%x) {approximate="tanh"}' in out.stdout


@pytest.mark.parametrize("bad", ["nocolon", "json:nope", "no_such_module_xyz:f"])
def test_load_pass_errors(bad: str) -> None:
    from graphopt.errors import PipelineError

    with pytest.raises(PipelineError):
        load_pass(bad)


def test_every_pipeline_command_takes_load_pass(tmp_path, monkeypatch, capsys) -> None:
    """New-user trial: compile suggested --load-pass and then rejected it; cwd modules were not found."""
    (tmp_path / "cwd_pass.py").write_text(textwrap.dedent('''
        from graphopt.passes import PassResult

        def mark_nothing(graph, ctx, *, only_relu: bool = False):
            """Changes nothing, on purpose: it proves the pass ran. A second sentence, not cut."""
            return PassResult(changed=False, stats={"ran": 1})
    '''))
    monkeypatch.chdir(tmp_path)
    gir = ROOT / "examples/bert_layer.gir"
    assert main(["opt", str(gir), "-p", "mark-nothing", "-q", "--load-pass", "cwd_pass:mark_nothing"]) == 0
    for cmd in (["show", str(gir)], ["explain", str(gir), "--pass", "mark-nothing"]):
        assert main([*cmd, "-p", "O1,mark-nothing", "--load-pass", "cwd_pass:mark_nothing"]) == 0, cmd
    assert main(["compile", str(gir), "-o", str(tmp_path / "art"), "-p", "mark-nothing", "--repeats", "1",
                 "--load-pass", "cwd_pass:mark_nothing"]) == 0
    capsys.readouterr()
    assert main(["passes", "--load-pass", "cwd_pass:mark_nothing"]) == 0
    listing = capsys.readouterr().out
    assert "A second sentence, not cut." in listing and "presets:" in listing and "O3 " in listing
    assert main(["opt", str(gir), "-p", "mark-nothing{only_relu=true}", "--load-pass", "cwd_pass:mark_nothing"]) == 1
    assert "did you mean 'only-relu'?" in capsys.readouterr().err


def test_gir_with_weights_beside_it_works_everywhere(tmp_path) -> None:
    """New-user trial: the README's examples/bert_layer.gir worked in `opt` only."""
    import graphopt

    gir = ROOT / "examples/bert_layer.gir"
    assert main(["show", str(gir)]) == 0
    assert main(["explain", str(gir), "--pass", "fuse-gelu"]) == 0
    assert main(["compile", str(gir), "-o", str(tmp_path / "a"), "--repeats", "1"]) == 0
    assert graphopt.compile(str(gir), target="cpu").graph.constants


def test_user_errors_are_one_line_without_traceback(tmp_path) -> None:
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"\x08\xff\xfe not a model")
    gir_named_onnx = tmp_path / "bin.gir"
    gir_named_onnx.write_bytes(b"\xff\xfe\x00binary")
    for argv in (["run", str(tmp_path / "missing")], ["opt", str(gir_named_onnx)], ["opt", str(onnx_file)],
                 ["run", str(tmp_path), "--inputs", str(tmp_path / "none.npz")]):
        proc = subprocess.run([sys.executable, "-m", "graphopt.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 1, (argv, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("graphopt: error: "), (argv, proc.stderr)


def test_show_into_a_closed_pipe_is_quiet(tmp_path) -> None:
    body = "".join(f"  %{i + 1}: f32[2] = relu(%{i})\n" for i in range(6000))  # far more than a pipe buffer
    (tmp_path / "big.gir").write_text(f"graph @f(%0: f32[2]) {{\n{body}  return %6000\n}}\n")
    cmd = f"{sys.executable} -m graphopt.cli show {tmp_path / 'big.gir'} | head -1"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    assert proc.stdout.startswith("graph @") and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
