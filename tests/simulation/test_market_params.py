"""``market.params``: the ledger's genesis rules come from the scenario, in tokens."""

from __future__ import annotations

from pathlib import Path

from marketplace import Market
from marketplace.state import Params
from simulation.config.prices import ledger_params
from simulation.config.schema import MarketParamsConfig
from simulation.scenario.load import load_scenario
from simulation.world.market_setup import open_market
from tests.keyring import KEYRING
from tests.simulation.test_scenario_feasible import problems


def test_ledger_params_are_the_scenarios_in_base_units() -> None:
    cfg = MarketParamsConfig(
        unstake_delay=60.0, min_stake=2.5, platform_fee_bps=1_000, vote_min_stake=1.0,
        vote_min_reputation=0.5, vote_earn_min_stake=0.25, max_supply=1_000.0,
        emission_per_round=100.0, halving_rounds=2, reputation_half_life=10.0,
    )  # fmt: skip
    # 1 token = 10**6 base units.
    assert ledger_params(cfg) == Params(
        unstake_delay=60.0, min_stake=2_500_000, platform_fee_bps=1_000,
        vote_min_stake=1_000_000, vote_min_reputation=0.5, vote_earn_min_stake=250_000,
        max_supply=1_000_000_000, emission_per_round=100_000_000, halving_rounds=2,
        reputation_half_life=10.0,
    )  # fmt: skip
    assert ledger_params(MarketParamsConfig()) == Params()  # the defaults are the ledger's


def test_the_genesis_entry_states_the_scenarios_rules(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "rounds: 2\nmarket:\n  params: {min_stake: 5, platform_fee_bps: 1000, max_supply: 5000,"
        " vote_earn_min_stake: 2, halving_rounds: 1, emission_per_round: 100}\n"
    )
    scenario = load_scenario(path)
    open_market(scenario, tmp_path, KEYRING, 2, lambda: 0.0).close()
    with Market.open(tmp_path) as m:
        genesis = next(iter(m.entries()))
        assert genesis.kind == "genesis"
        params = dict(genesis.data["params"])  # type: ignore[arg-type]
        assert m.params.min_stake == 5_000_000 and m.params.platform_fee_bps == 1_000
    assert params["min_stake"] == 5_000_000 and params["max_supply"] == 5_000_000_000
    assert params["vote_earn_min_stake"] == 2_000_000 and params["halving_rounds"] == 1
    assert params["emission_per_round"] == 100_000_000


def _problems(tmp_path: Path, text: str) -> list[str]:
    prefix = "s.yaml: "
    return [p.removeprefix(prefix) for p in problems(tmp_path, text)]


def test_an_emission_above_the_ledgers_cap_is_a_scenario_error(tmp_path: Path) -> None:
    text = "rewards: {emission_per_round: 100}\nmarket: {params: {emission_per_round: 50}}\n"
    assert _problems(tmp_path, text) == [
        "rewards.emission_per_round -> 100 tokens a round exceeds the ledger's cap "
        "market.params.emission_per_round (50 tokens)"
    ]


def test_a_max_supply_the_run_would_exceed_is_a_scenario_error(tmp_path: Path) -> None:
    # 10 clients × 10 tokens granted; emission 100, 50, 50, 25 over rounds 1..4
    # (halving every 2 rounds: round r emits 100 / 2**(r // 2)) = 225; 325 > 300.
    text = (
        "clients: {count: 10}\nrounds: 4\nrewards: {emission_per_round: 100}\n"
        "market: {initial_grant: 10, params: {max_supply: 300, halving_rounds: 2}}\n"
    )
    assert _problems(tmp_path, text) == [
        "market.params.max_supply -> 300 tokens is less than the run mints: 100 in "
        "initial grants and 225 in emission over 4 rounds"
    ]


def test_royalties_need_a_share_rule_and_take_the_ledgers_fee(tmp_path: Path) -> None:
    text = (
        "rewards: {mechanism: royalties, params: {platform_fee_bps: 1000}}\n"
        "market: {params: {platform_fee_bps: 500}}\n"
    )
    assert _problems(tmp_path, text) == [
        "rewards.revenue_share -> royalties pay licence revenue by a version's contributor "
        "shares; name the rule that sets them (equal, data_size, score or reputation)",
        "rewards.params.platform_fee_bps -> 1000 differs from the ledger's fee "
        "market.params.platform_fee_bps (500); set the fee there, where the genesis entry "
        "states it",
    ]


def test_a_rule_that_pays_by_score_needs_an_evaluator(tmp_path: Path) -> None:
    # Before: validated "ok" and crashed at the first settlement ("needs a score").
    reason = (
        "score pays by contribution scores, but contribution.evaluator is not set: name one "
        "(loo, exact_shapley, tmc_shapley, gtg_shapley, cosine, cgsv)"
    )
    assert _problems(tmp_path, "rewards: {mechanism: score}\n") == [
        f"rewards.mechanism -> {reason}"
    ]
    text = "rewards: {mechanism: stake_slash, params: {base: score, slash_amount: 1}}\n"
    assert _problems(tmp_path, text) == [f"rewards.params.base -> {reason}"]
    text = "rewards: {mechanism: royalties, revenue_share: score}\n"
    assert _problems(tmp_path, text) == [f"rewards.revenue_share -> {reason}"]
    (tmp_path / "ok.yaml").write_text(
        "rewards: {mechanism: score}\ncontribution: {evaluator: loo}\n"
    )
    assert load_scenario(tmp_path / "ok.yaml").rewards.mechanism == "score"
