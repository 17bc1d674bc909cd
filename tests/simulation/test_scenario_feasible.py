"""Configurations that cannot be honoured are scenario errors at validation time, by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.errors import ScenarioError
from simulation.scenario.load import load_scenario


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    return [f"{path.name}: {p.field} -> {p.reason}" for p in exc.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "clients: {count: 10}\n"
            "aggregation: {strategy: bulyan, params: {num_malicious_nodes: 2}}\n",
            "s.yaml: aggregation.params.num_malicious_nodes -> bulyan tolerates f=2 only with at "
            "least 4f+3=11 replies per round, but a round samples 10 clients (clients.count=10, "
            "clients.fraction=1.0)",
        ),
        (
            "clients: {count: 12, fraction: 0.5}\n"
            "aggregation: {strategy: krum, params: {num_malicious_nodes: 2}}\n",
            "s.yaml: aggregation.params.num_malicious_nodes -> krum tolerates f=2 only with at "
            "least 2f+3=7 replies per round, but a round samples 6 clients (clients.count=12, "
            "clients.fraction=0.5)",
        ),
        (
            "clients: {count: 4}\n"
            "aggregation: {strategy: multikrum, params: {num_nodes_to_select: 5}}\n",
            "s.yaml: aggregation.params.num_nodes_to_select -> multikrum cannot select 5 updates: "
            "a round samples 4 clients (clients.count=4, clients.fraction=1.0)",
        ),
        (
            "dataset: {validation_fraction: 0.0}\naggregation: {strategy: fltrust}\n",
            # FLTrust's root set is the validation split, which must not be empty.
            "s.yaml: dataset.validation_fraction -> Input should be greater than 0 (got 0.0)",
        ),
        (
            "rewards: {mechanism: equal, params: {slash_amount: 5}}\n",
            "s.yaml: rewards.params.slash_amount -> unknown parameter "
            "(valid: max_share, min_score)",
        ),
        (
            "rewards: {mechanism: royalties, revenue_share: data_size,"
            " params: {platform_fee: 5}}\n",
            "s.yaml: rewards.params.platform_fee -> unknown parameter "
            "(valid: max_share, min_score, platform_fee_bps, treasury)",
        ),
    ],
)
def test_unhonourable_configuration_names_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problems(tmp_path, text) == [expected]


@pytest.mark.parametrize(
    "text",
    [
        "clients: {count: 11}\naggregation: {strategy: bulyan, params: {num_malicious_nodes: 2}}\n",
        "clients: {count: 7}\naggregation: {strategy: krum, params: {num_malicious_nodes: 2}}\n",
        "rewards: {mechanism: stake_slash,\n"
        "          params: {slash_amount: 5, base: score, max_share: 0.5}}\n"
        "contribution: {evaluator: loo}\n",
    ],
)
def test_the_minimum_a_rule_allows_is_accepted(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)

    load_scenario(path)
