"""Shared fixtures for the market-process tests: a real ``Market`` on a simpy clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import simpy

from agents.market import MarketBehaviour
from marketplace import TOKEN, Market, PriceTerms
from simulation.world.market_process import (
    IntentApplier,
    IntentOutcome,
    MarketViewImpl,
    start_market_processes,
)
from tests.keyring import KEYRING

PRICES = {
    "perpetual": PriceTerms(price=20 * TOKEN),
    "subscription": PriceTerms(price=5 * TOKEN, duration=4 * 3600.0),
    "per_use": PriceTerms(price=10 * TOKEN, max_uses=100),
}


def rng_for(seed: int) -> Callable[[str], np.random.Generator]:
    """A seeded generator per behaviour key (stable under adding behaviours)."""
    return lambda key: np.random.default_rng([seed, *key.encode()])


@dataclass
class World:
    """A tiny market world: env, market, applier, view and the outcomes it produced."""

    env: simpy.Environment
    market: Market
    applier: IntentApplier
    view: MarketViewImpl
    outcomes: list[IntentOutcome] = field(default_factory=list)

    def add_clients(self, *accounts: str, grant: int = 10 * TOKEN, stake: int = 0) -> None:
        for acct in accounts:
            self.market.register_participant(acct, role="data_owner")
            self.market.mint(acct, grant, reason="initial_grant")
            if stake:
                self.market.stake(acct, stake)

    def add_version(
        self,
        accuracy: float,
        contributors: Mapping[str, float],
        prices: Mapping[str, PriceTerms] | None = None,
        round: int = 1,
    ) -> str:
        return self.market.register_model_version(
            round=round,
            parent=None,
            artifact_sha256=f"{len(self.market.versions()):064x}",
            metrics={"accuracy": accuracy},
            contributors=contributors,
            prices=PRICES if prices is None else prices,
        )

    def start(self, behaviours: Mapping[str, MarketBehaviour], *, seed: int = 7) -> None:
        start_market_processes(
            self.env,
            self.market,
            behaviours,
            rng_for(seed),
            applier=self.applier,
            view=self.view,
        )

    def refused(self, kind: str | None = None) -> list[IntentOutcome]:
        return [
            o
            for o in self.outcomes
            if not o.accepted and (kind is None or type(o.intent).__name__ == kind)
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    env = simpy.Environment()
    market = Market.create(
        tmp_path / "ledger.db",
        keyring=KEYRING,
        seed=1,
        genesis={"scenario_hash": "x"},
        clock=lambda: env.now,
    )
    outcomes: list[IntentOutcome] = []
    applier = IntentApplier(market, on_event=outcomes.append, clock=lambda: float(env.now))
    view = MarketViewImpl(market, lambda: float(env.now))
    with market:
        yield World(env, market, applier, view, outcomes)
