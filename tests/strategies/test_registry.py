"""``register``: foolsgold and fltrust by name, unknown parameters named."""

from __future__ import annotations

import pytest

from simulation.fl.strategies import FLTrust, FoolsGold, register
from simulation.registry import Registry


def test_register_adds_both_factories() -> None:
    registry: Registry = Registry("aggregation strategy")  # type: ignore[type-arg]

    register(registry)

    assert registry.names() == ["fltrust", "foolsgold"]
    fg = registry.get("foolsgold")({"kappa": 0.5})
    assert isinstance(fg, FoolsGold) and fg.kappa == 0.5
    ft = registry.get("fltrust")({"server_lr": 2.0})
    assert isinstance(ft, FLTrust) and ft.server_lr == 2.0 and ft.root_update is None


def test_unknown_parameters_list_the_valid_ones() -> None:
    registry: Registry = Registry("aggregation strategy")  # type: ignore[type-arg]
    register(registry)

    with pytest.raises(ValueError, match=r"FoolsGold takes no parameter beta \(valid: kappa\)"):
        registry.get("foolsgold")({"beta": 1})
    with pytest.raises(ValueError, match=r"\(valid: server_lr\)"):
        registry.get("fltrust")({"root_update": None})


def test_registering_twice_is_an_error() -> None:
    registry: Registry = Registry("aggregation strategy")  # type: ignore[type-arg]
    register(registry)

    with pytest.raises(ValueError, match="already registered"):
        register(registry)
