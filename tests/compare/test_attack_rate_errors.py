"""``flip_mapping`` refuses a scenario without a targeted flip with a readable problem
(it once passed a bare string to ``ScenarioError``, which printed one character per line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.errors import ScenarioError
from simulation.scenario.load import load_scenario
from simulation.study.attack_rate import flip_mapping

ROOT = Path(__file__).resolve().parents[2]


def test_no_targeted_flip_is_one_problem_naming_population() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    with pytest.raises(ScenarioError) as caught:
        flip_mapping(scenario)
    assert str(caught.value) == (
        "scenario: population -> no label_flip group sets a mapping "
        "(an untargeted flip has no attack rate)"
    )
