"""``fedmarket schema`` documents every component's parameters; ``fedmarket params NAME``
prints one entry's, with defaults and units."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from simulation.cli.main import app
from simulation.cli.params import COMPONENTS_KEY, unit_of
from simulation.scenario.components import KINDS

runner = CliRunner()


def test_schema_holds_every_components_parameters() -> None:
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.output)
    assert {"dataset", "rounds"} <= set(schema["properties"])  # the scenario schema is kept
    components = schema[COMPONENTS_KEY]
    for kind in ("strategy", "mechanism", "evaluator", "behaviour", "market_behaviour"):
        assert set(components[kind]) == set(KINDS[kind].names()), kind
    krum = components["strategy"]["krum"]
    assert krum["properties"]["num_malicious_nodes"]["default"] == 0
    assert krum["x-params-at"] == "aggregation.params"
    foolsgold = components["strategy"]["foolsgold"]["properties"]["kappa"]
    assert foolsgold["default"] == 1.0 and foolsgold["exclusiveMinimum"] == 0.0
    flip = components["behaviour"]["label_flip"]["properties"]["fraction"]
    assert (flip["default"], flip["minimum"], flip["maximum"]) == (1.0, 0.0, 1.0)
    cabal = components["market_behaviour"]["colluding_cabal"]["properties"]
    assert cabal["own_share"]["default"] == 0.5 and "group" in cabal
    slash = components["mechanism"]["stake_slash"]
    assert "slash_amount" in slash["required"]
    assert slash["properties"]["slash_amount"]["description"] == "tokens"
    assert components["evaluator"]["gtg_shapley"]["properties"]["max_sweeps"]["default"] == 10


def test_params_prints_defaults_and_units() -> None:
    res = runner.invoke(app, ["params", "krum"])
    assert res.exit_code == 0, res.output
    assert "set aggregation.strategy = krum; parameters under aggregation.params" in res.output
    assert "num_malicious_nodes: int; default 0; ≥ 0" in res.output
    assert "f, the Byzantine clients tolerated" in res.output
    res = runner.invoke(app, ["params", "colluding_cabal"])
    assert "check_interval_s: float; default 600.0; unit s (simulated); > 0" in res.output
    res = runner.invoke(app, ["params", "mechanism:stake_slash"])
    assert "slash_amount: float; default required; unit tokens; > 0.0" in res.output
    res = runner.invoke(app, ["params", "label_flip"])  # field text from the docstring
    assert "share of the eligible samples whose label is flipped." in res.output
    assert "takes no parameters" in runner.invoke(app, ["params", "fedavg"]).output


def test_params_unknown_name_lists_near_names() -> None:
    res = runner.invoke(app, ["params", "krun"])
    assert res.exit_code == 2
    assert "error: unknown component 'krun' (did you mean: krum" in res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)  # typer.Exit(2), nothing raised beyond it
    res = runner.invoke(app, ["params", "rating_rule:krum"])  # right name, wrong kind
    assert res.exit_code == 2


def test_params_without_name_lists_every_kind() -> None:
    res = runner.invoke(app, ["params"])
    assert res.exit_code == 0
    assert "strategy (aggregation.strategy): bulyan, fedavg" in res.output
    assert "market behaviour (market.behaviours[i].behaviour): buyers" in res.output


def test_units_by_convention() -> None:
    assert unit_of("mean_online_hours", None) == "h (simulated)"
    assert unit_of("rate_per_hour", None) == "1/h (simulated)"
    assert unit_of("platform_fee_bps", None) == "basis points (1/10,000)"
    assert unit_of("slash_amount", "tokens") == "tokens"
    assert unit_of("kappa", "confidence parameter of the logit") == ""
