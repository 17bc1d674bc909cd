from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marketplace import TOKEN, Market
from tests.fixtures.references.dp_vectors import DP_EPSILON, mechanism
from tests.keyring import KEYRING


class Clock:
    """A settable simulated clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def populate(market: Market, clock: Callable[[], float] | None = None) -> None:
    """A small but complete market history used by several tests."""
    for i in range(3):
        market.register_participant(f"client-{i:03d}", role="data_owner")
    market.register_participant("buyer-000", role="buyer")
    market.register_participant("validator-000", role="validator")
    for i in range(3):
        market.mint(f"client-{i:03d}", 10 * TOKEN, reason="airdrop")
    market.mint("buyer-000", 50 * TOKEN, reason="airdrop")
    market.mint("validator-000", 5 * TOKEN, reason="airdrop")
    market.stake("client-000", 2 * TOKEN)
    market.stake("validator-000", 1 * TOKEN)
    market.end_block()
    market.record("round_started", {"round": 1})
    for i in range(3):
        market.record_contribution(
            round=1,
            client=f"client-{i:03d}",
            update_hash=f"{i:064x}",
            num_examples=100 + i,
            epsilon=DP_EPSILON,  # what dp-accounting derives from the record below
            metrics={"loss": 0.5},
            privacy=mechanism(1000),
        )
    market.transfer("client-001", "client-002", TOKEN, memo="gift")
    market.reward(
        round=1, allocations={"client-000": 3, "client-001": 2, "client-002": 0}, mechanism="fedavg"
    )
    market.end_block()


@pytest.fixture
def market(tmp_path: Path, clock: Clock) -> Iterator[Market]:
    m = Market.create(
        tmp_path, keyring=KEYRING, seed=42, genesis={"scenario_hash": "abc"}, clock=clock
    )
    yield m
    m.close()
