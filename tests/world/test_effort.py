"""The effort a rational participant chose reaches everything that depends on local
epochs: its task's epochs, the DP noise calibration (at the most it may choose), the
budget check's planned step, and the one cost model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulation.config.schema import DPSGDPrivacy, Scenario
from simulation.fl.messages import ReplyMetrics
from simulation.fl.privacy import calibrate_noise, epsilon
from simulation.rng import SeedTree
from simulation.scenario.load import load_scenario
from simulation.world.accounting import ClientPrivacy
from simulation.world.context import Recorder, RoundContext, Screened
from simulation.world.costs import CostModel, examples_processed
from simulation.world.population import Population
from simulation.world.records import Reply
from simulation.world.setup import account_name, effort_ceilings
from simulation.world.stages import ChargeCosts, Screen, StopExhausted
from simulation.world.timing import TimeModel
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
        local_steps=None,
        batch_size=16,
    )
    assert costs.expected_cost("client-000") == pytest.approx(16.0)
    assert costs.expected_cost("client-000", 3) == pytest.approx(48.0)
    pop.effort[9] = 2
    assert costs.expected_cost("client-009") == pytest.approx(0.08 * 30 * 2)


@pytest.mark.parametrize(
    ("local_steps", "examples"),
    [(None, 200 * 2), (3, 3 * 16)],  # 2 chosen epochs of 200 rows; 3 minibatches of 16
)
def test_the_screen_charges_the_cost_the_cost_model_expects(
    local_steps: int | None, examples: int
) -> None:
    """Both count examples processed with one formula (``examples_processed``): rows ×
    local epochs, or under ``training.local_steps`` that many minibatches of
    min(batch size, rows), whatever the epochs. 0.08 tokens an example, nothing else."""
    pop, scenario = _population()
    pop.effort[0] = 2
    rows = lambda c: ROWS.get(c, 30)  # noqa: E731
    work = {"local_steps": local_steps, "batch_size": 16}
    costs = CostModel(scenario.market, pop.identities, None, 1, pop, rows, **work)
    fed = federation(10)
    timing = TimeModel(
        scenario.timing, speeds_gflops=(1.0,) * 10, flops_per_example=1e6, model_bytes=10**3
    )
    screen = Screen(
        timing, pop, fed, base_epochs=1, dp=False, max_update_norm=1e9, deadline=None, **work
    )
    ctx = RoundContext(1, 0.0, 0.0)
    update = {"w": np.zeros(2, np.float32)}
    ctx.screened = [
        Screened(Reply(0, update, ReplyMetrics(num_examples=200, steps=1)), "client-000")
    ]
    screen.run(ctx)
    rec = Recorder()
    ChargeCosts(scenario.market, rec).run(ctx)
    assert ctx.screened[0].processed == examples
    assert examples_processed(200, 2, local_steps=local_steps, batch_size=16) == examples
    assert rec.rows[0].value == pytest.approx(0.08 * examples)
    assert costs.expected_cost("client-000") == rec.rows[0].value
