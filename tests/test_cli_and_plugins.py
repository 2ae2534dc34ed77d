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
    assert "rule:dropout=3" in err and "numeric check: outputs match" in err


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
    assert "no such IR file" in capsys.readouterr().err
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
