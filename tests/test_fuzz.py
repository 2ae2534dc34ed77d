"""The differential fuzzer finds the miscompiles it was built for, and today's passes pass it."""

from __future__ import annotations

from graphopt.cli import main
from graphopt.fuzz import fuzz, random_graph


def test_random_graphs_are_valid_and_reproducible() -> None:
    for seed in range(20):
        g = random_graph(seed)
        g.verify()
        assert g.format() == random_graph(seed).format()


def test_every_pass_and_preset_on_every_target_matches_the_reference() -> None:
    report = fuzz(graphs=40, seed=1000)
    assert report.graphs >= 35 and report.runs >= 35 * 18 * 3
    assert report.counts["mismatch"] == 0 and report.counts["crash"] == 0, report.summary()


def test_the_cli_reports_and_exits_zero_when_clean(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["fuzz", "--graphs", "3", "--pipelines", "O2;cse", "--targets", "reference,cpu"]) == 0
    assert "3 graphs, 12 runs: ok 12" in capsys.readouterr().out
