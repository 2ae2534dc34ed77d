import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


import pytest  # noqa: E402


def _registries() -> list[dict]:  # type: ignore[type-arg]
    """Every table a test (or a doctest, or a README block) can register into."""
    from graphopt.backends import base, onnx_export
    from graphopt.backends.cpu import emit
    from graphopt.frontends import aten, onnx
    from graphopt.ir.ops import registry as ops
    from graphopt.passes import analysis, manager
    from graphopt.passes import registry as passes

    return [ops._REGISTRY, passes._PASSES, analysis._ANALYSES, manager.PRESETS, onnx_export.EXPORTERS,
            emit.EMITTERS, onnx.CONVERTERS, aten._TABLE, base._BACKENDS]


@pytest.fixture(autouse=True)
def _restore_registries():  # type: ignore[no-untyped-def]
    """Each test sees the registries as the package made them: an op, pass or converter a test registers is gone
    afterwards, so no test passes or fails because of what another test in the same worker left behind."""
    tables = _registries()
    saved = [dict(t) for t in tables]
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)


@pytest.fixture(autouse=True)
def _verify_after_every_pass(monkeypatch):  # type: ignore[no-untyped-def]
    """Every pipeline a test runs — directly or through compile, bench, the CLI — verifies the IR after each pass
    that changed it, so a pass that leaves a malformed graph fails the test that ran it, naming the pass."""
    from graphopt.passes import PassContext, PassManager, VerifyEach

    original = PassManager.run

    class AfterEachPass(VerifyEach):
        def enter_pipeline(self, graph, ctx):  # type: ignore[no-untyped-def]
            pass  # an input without types is legal (infer-shapes fills them); only what passes leave is checked

    def run(self, graph, ctx=None):  # type: ignore[no-untyped-def]
        ctx = ctx if ctx is not None else PassContext()
        if not any(isinstance(i, VerifyEach) for i in ctx.instruments):
            ctx.instruments = [AfterEachPass(), *ctx.instruments]
        return original(self, graph, ctx)

    monkeypatch.setattr(PassManager, "run", run)
