"""The ONNX backend-test node cases through import_onnx → reference (O0) and → cpu (O2).

`onnx_known_failures.json` (written by `python benchmarks/onnx_conformance.py --update-known`) lists, per target,
the cases graphopt fails today and why. A case outside that list must pass (a regression fails here), and a listed
case must still fail (a fix must update the list, so the counts in benchmarks/ONNX_CONFORMANCE.md stay true).
Cases that a newer onnx wheel adds are not judged until the list is regenerated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphopt.conformance import node_cases, run_case

SPEC = json.loads((Path(__file__).parent / "onnx_known_failures.json").read_text())
SHARDS = 6


@pytest.fixture(scope="module")
def cases() -> list[Any]:
    known = set(SPEC["cases"])
    return [c for c in node_cases() if c.name in known]


def test_the_known_list_matches_the_installed_cases(cases: list[Any]) -> None:
    assert len(cases) >= 0.95 * len(SPEC["cases"]), (
        f"only {len(cases)} of the {len(SPEC['cases'])} recorded cases exist in onnx; regenerate the list")


@pytest.mark.parametrize("target", sorted(SPEC["pipelines"]))
@pytest.mark.parametrize("shard", range(SHARDS))
def test_node_cases(cases: list[Any], target: str, shard: int) -> None:
    known = SPEC["known_failures"][target]
    regressed, fixed = [], []
    for case in cases[shard::SHARDS]:
        r = run_case(case, target, SPEC["pipelines"][target])
        if r.status != "pass" and case.name not in known:
            regressed.append(f"{case.name}: {r.status}: {r.detail}")
        elif r.status == "pass" and case.name in known:
            fixed.append(case.name)
    assert not regressed, f"{len(regressed)} case(s) no longer pass on {target}:\n" + "\n".join(regressed)
    assert not fixed, (f"{len(fixed)} known failure(s) now pass on {target} ({', '.join(fixed[:10])}); "
                       "run `python benchmarks/onnx_conformance.py --update-known`")
