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
    from graphopt.frontends import aten, onnx_import
    from graphopt.ir.ops import registry as ops
    from graphopt.passes import analysis, manager
    from graphopt.passes import registry as passes

    return [ops._REGISTRY, passes._PASSES, analysis._ANALYSES, manager.PRESETS, onnx_export.EXPORTERS,
            emit.EMITTERS, onnx_import.CONVERTERS, aten._TABLE, base._BACKENDS]


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
