"""Markets that work by default: prices from the buyers' willingness to pay for the
measured quality, and a scenario error for a price list no buyer can ever afford."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.market import BuyersBehaviour
from marketplace.state import PriceTerms
from simulation.cli.main import app
from simulation.config.prices import pricing_for
from simulation.config.schema import MarketConfig
from simulation.errors import ScenarioError
from simulation.scenario.load import load_scenario

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
BUYERS = "market.behaviours=[{behaviour: buyers, params: {rate_per_hour: 3}}]"


def test_quickstart_with_buyers_sells_licences(tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = ["rounds=2", "clients.count=4", "timing.round_interval_s=3600", BUYERS]
    args = ["run", str(QUICKSTART), "--out", str(out), "--engine", "inprocess"]
    result = CliRunner().invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    market = json.loads((out / "manifest.json").read_text())["market"]
    assert market["licenses_sold"] >= 1 and market["revenue_tokens"] > 0
    sold = re.search(r"licences sold\W+(\d+)", result.output)
    assert sold is not None and int(sold.group(1)) == market["licenses_sold"]
    revenue = re.search(r"licence revenue \(tokens\)\W+([\d.]+)", result.output)
    assert revenue is not None and revenue.group(1) == f"{market['revenue_tokens']:.2f}"


def test_demand_prices_take_the_lowest_willingness_to_pay() -> None:
    mix = {"perpetual": 0.5, "per_use": 0.5}  # these buyers never take a subscription
    cheap = {"behaviour": "buyers", "params": {"base_value": {"perpetual": 20, "per_use": 1}}}
    cheap["params"]["license_mix"] = mix  # type: ignore[index]
    market = MarketConfig.model_validate(
        {"behaviours": [{"behaviour": "buyers"}, cheap], "demand_price_share": 0.5}
    )
    prices = pricing_for(market)({"accuracy": 0.8})
    # min(50, 20) x 0.8^2 x (3/5) x 0.5 = 3.84; subscription: only the default buyers
    # buy it (10 -> 1.92); per_use: min(5, 1) -> 0.192 tokens.
    assert prices == {
        "perpetual": PriceTerms(3_840_000, None, None),
        "subscription": PriceTerms(1_920_000, 86_400.0, None),
        "per_use": PriceTerms(192_000, None, 20),
    }
    assert pricing_for(market)({"parameters": 10.0}) == {}  # no measured accuracy: not for sale
    worth = BuyersBehaviour().worth("perpetual", 0.8)
    assert worth == pytest.approx(50 * 0.64 * 0.6)


@pytest.mark.parametrize(
    ("prices", "budget", "why"),
    [
        ("{perpetual: {price: 1000}, per_use: {price: 60, max_uses: 5}}", 100, "costs 1000"),
        ("{perpetual: {price: 40}}", 30, "perpetual costs 40 tokens > 30"),  # over budget
    ],
)
def test_unaffordable_prices_are_a_scenario_error(prices: str, budget: int, why: str) -> None:
    sets = (BUYERS, f"market.prices={prices}", f"market.buyer_budget={budget}")
    with pytest.raises(ScenarioError) as err:
        load_scenario(QUICKSTART, sets)
    (problem,) = err.value.problems
    assert problem.field == "market.prices"
    assert "no buyer can ever afford a licence" in problem.reason and why in problem.reason
    allowed = load_scenario(QUICKSTART, (*sets, "market.allow_no_sales=true"))
    assert allowed.market.allow_no_sales
    # 50 (a perfect model's worth to a perpetual buyer) is affordable: no error
    load_scenario(QUICKSTART, (BUYERS, "market.prices={perpetual: {price: 50}}"))
