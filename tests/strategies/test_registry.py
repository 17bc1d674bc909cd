"""The aggregator registry: every name builds its strategy from a typed parameter model
declared without importing Flower, and those models match Flower's own constructors."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from simulation.fl.aggregation import (
    AGGREGATORS,
    CLIENT_DP_MODES,
    FLOWER_STRATEGIES,
    create_strategy,
)
from simulation.fl.strategies import FLTrust, FoolsGold
from simulation.scenario.components import param_problems


def test_ours_build_from_their_params() -> None:
    fg = create_strategy("foolsgold", {"kappa": 0.5})
    assert isinstance(fg, FoolsGold) and fg.kappa == 0.5
    ft = create_strategy("fltrust", {"server_lr": 2.0})
    assert isinstance(ft, FLTrust) and ft.server_lr == 2.0 and ft.root_update is None


def test_unknown_parameters_list_the_valid_ones() -> None:
    model = AGGREGATORS.get("foolsgold").params
    assert param_problems(model, {"beta": 1}) == [("beta", "unknown parameter (valid: kappa)")]
    assert param_problems(AGGREGATORS.get("fltrust").params, {"root_update": None}) == [
        ("root_update", "unknown parameter (valid: server_lr)")
    ]
    with pytest.raises(ValidationError):
        create_strategy("krum", {"num_malicious": 1})


def test_registering_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        AGGREGATORS.register("krum", AGGREGATORS.get("krum"))


@pytest.mark.parametrize("name", sorted(FLOWER_STRATEGIES))
def test_declared_parameters_exist_in_flowers_constructor(name: str) -> None:
    """Each declared parameter is a keyword of the Flower class, with the same default,
    and the built strategy holds the value given."""
    from flwr.serverapp import strategy

    cls_name, model = FLOWER_STRATEGIES[name]
    sig = inspect.signature(getattr(strategy, cls_name).__init__).parameters
    for field, info in model.model_fields.items():
        assert field in sig, f"{cls_name} has no parameter {field}"
        assert sig[field].default == info.default, field
    built = create_strategy(name, {})
    assert type(built).__name__ == cls_name


@pytest.mark.parametrize("mode", sorted(CLIENT_DP_MODES))
def test_client_dp_parameters_exist_in_the_aggregator(mode: str) -> None:
    from simulation.fl.client_dp import DPFedAvg

    sig = inspect.signature(DPFedAvg.__init__).parameters
    assert set(CLIENT_DP_MODES[mode].model_fields) <= set(sig)
