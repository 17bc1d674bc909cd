"""The effort a rational participant chose reaches everything that depends on local
epochs: its task's epochs, the DP noise calibration (at the most it may choose), the
budget check's planned step, and the one cost model."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.config.schema import DPSGDPrivacy, Scenario
from simulation.fl.privacy import calibrate_noise, epsilon
from simulation.rng import SeedTree
from simulation.scenario.load import load_scenario
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import RoundContext
from simulation.world.costs import CostModel
from simulation.world.population import Population
from simulation.world.setup import account_name, effort_ceilings
from simulation.world.stages import StopExhausted
from tests.world.fakes import FakeMarket, federation

ROOT = Path(__file__).resolve().parents[2]
ROWS = {0: 200, 9: 30}


def _population() -> tuple[Population, Scenario]:
    scenario = load_scenario(ROOT / "scenarios" / "rational_participants.yaml")
    pop = Population.create(scenario, [account_name(i) for i in range(10)], SeedTree(1))
    fed = federation(10)
    pop.effort_max = effort_ceilings(scenario, fed, pop.group_accounts())
    return pop, scenario


def _privacy(pop: Population, scenario: Scenario, dp: DPSGDPrivacy) -> ClientPrivacy:
    return ClientPrivacy(
        dp,
        scenario.training,
        10,
        lambda c, round_=None, now=0.0: ROWS.get(c, 30),
        epochs_of=lambda c: pop.planned_epochs(c, 1),
    )


def test_chosen_epochs_replace_the_scenarios_and_calibration_uses_the_most() -> None:
    pop, scenario = _population()
    assert pop.effort_max == dict.fromkeys(range(10), 3)
    assert pop.epochs(0, 1, 0.0, base=1) == 1  # nothing chosen yet: training.epochs
    pop.effort[0] = 2
    assert pop.epochs(0, 1, 0.0, base=1) == 2
    assert pop.planned_epochs(0, 1) == 3
    dp = DPSGDPrivacy(mode="dp_sgd", target_epsilon=4.0)
    privacy = _privacy(pop, scenario, dp)
    # 200 rows at batch 16: q = 1/13, 13 steps an epoch; 3 epochs × 10 rounds.
    assert privacy.noise_for(0) == pytest.approx(calibrate_noise(4.0, 1e-5, 1 / 13, 13 * 3 * 10))


def test_the_budget_check_plans_the_chosen_epochs() -> None:
    """A budget between the ε of 1 and of 3 epochs of client 0's first round: at 3
    chosen epochs it is stopped, at 1 it trains."""
    pop, scenario = _population()
    sigma = 1.5
    one, three = (epsilon(((sigma, 1 / 13, 13 * e),), 1e-5) for e in (1, 3))
    dp = DPSGDPrivacy(mode="dp_sgd", noise_multiplier=sigma, budget=(one + three) / 2)
    for chosen, stopped in ((3, True), (1, False)):
        privacy = _privacy(pop, scenario, dp)
        fed = federation(10)
        fed.active = {0}
        pop.effort[0] = chosen
        market = FakeMarket()
        StopExhausted(privacy, pop, fed, market, 1).run(RoundContext(1, 0.0, 0.0))  # type: ignore[arg-type]
        assert (0 in fed.stopped) is stopped


def test_expected_cost_is_the_cost_the_run_records_at_each_effort() -> None:
    """Compute at 0.08 tokens per row and epoch, no ε price: 200 rows cost 16 per epoch."""
    pop, scenario = _population()
    costs = CostModel(
        scenario.market,
        pop.identities,
        None,
        1,
        pop,
        lambda c: ROWS.get(c, 30),
    )
    assert costs.expected_cost("client-000") == pytest.approx(16.0)
    assert costs.expected_cost("client-000", 3) == pytest.approx(48.0)
    pop.effort[9] = 2
    assert costs.expected_cost("client-009") == pytest.approx(0.08 * 30 * 2)
