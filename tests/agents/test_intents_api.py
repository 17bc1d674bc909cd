"""Market intents and the pinned public API."""

from __future__ import annotations

import dataclasses

import pytest

import agents
from agents import Bid, BuyLicense, Contribute, Join, Leave, Stake, Unstake, UseLicense, Vote


def test_intents_are_frozen_values() -> None:
    bid = Bid(buyer="buyer-000", version="v0001", license_type="perpetual", price=5_000_000)
    assert bid == Bid("buyer-000", "v0001", "perpetual", 5_000_000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bid.price = 1  # type: ignore[misc]
    assert {Vote("client-001", "v0002", 4.0), Vote("client-001", "v0002", 4.0)} == {
        Vote("client-001", "v0002", 4.0)
    }
    assert BuyLicense("buyer-001", "v0001", "per_use").license_type == "per_use"
    assert UseLicense("buyer-001", "v0001").uses == 1
    assert Contribute("client-002", 3, 120).num_examples == 120
    assert Join("client-009", "client").role == "client"
    assert Leave("client-009").account == "client-009"
    assert Unstake("client-001", 10).amount == 10


@pytest.mark.parametrize(
    "build",
    [
        lambda: Stake("client-001", 0),
        lambda: Stake("client-001", 1.5),  # type: ignore[arg-type]
        lambda: Stake("client-001", True),
        lambda: Stake("", 10),
        lambda: Vote("client-001", "v0001", float("inf")),
        lambda: Contribute("client-001", 0, 10),
    ],
)
def test_intent_validation(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_public_api_is_pinned() -> None:
    assert sorted(agents.__all__) == sorted(
        [
            "MARKET_BEHAVIOURS",
            "MarketBehaviour",
            "MarketView",
            "MarketIntent",
            "Emit",
            "SimEnvironment",
            "ProcessGenerator",
            "VersionInfo",
            "LicenseInfo",
            "LicenseTerms",
            "UseLicenseKey",
            "Register",
            "ReportUsage",
            "Availability",
            "BASE_UNITS_PER_TOKEN",
            "create_market_behaviour",
            "fresh_identity",
            "base_identity",
            "ALIEAttack",
            "BackdoorBehaviour",
            "Bid",
            "BuyLicense",
            "COALITION_ATTACKS",
            "CoalitionAttack",
            "Contribute",
            "DisguisedFreeRiderBehaviour",
            "FreeRiderBehaviour",
            "GaussianNoiseBehaviour",
            "Heterogeneity",
            "HonestBehaviour",
            "Intent",
            "Join",
            "LabelFlipBehaviour",
            "Leave",
            "RoundContext",
            "ScalingBehaviour",
            "SignFlipBehaviour",
            "Stake",
            "StaleReplayAttack",
            "SybilDuplicateAttack",
            "SybilGroup",
            "TRAINING_BEHAVIOURS",
            "TrainingBehaviour",
            "Unstake",
            "UpdateCopyingAttack",
            "UseLicense",
            "Vote",
            "alie_z_max",
            "apply_trigger",
            "attack_from_config",
            "attack_to_config",
            "behaviour_from_config",
            "behaviour_to_config",
            "create_behaviour",
            "create_coalition_attack",
            "sybil_indices",
            "SetEffort",
        ]
    )
    for name in agents.__all__:
        assert hasattr(agents, name)


def test_agents_depends_only_on_numpy_and_pydantic() -> None:
    import ast
    import pathlib
    import sys

    allowed = {"numpy", "pydantic", "agents", "__future__"} | set(sys.stdlib_module_names)
    for path in pathlib.Path(agents.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{path.name} imports {roots}"
