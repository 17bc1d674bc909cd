"""Hypothesis stateful test: the ledger against a plain-Python model of the invariants."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from marketplace import (
    InsufficientFunds,
    LicenseError,
    Market,
    NonceError,
    PriceTerms,
    SignedTransaction,
    VoteError,
    audit_ledger,
)
from tests.keyring import KEYRING

ACCOUNTS = ["client-000", "client-001", "client-002", "buyer-000"]
PRICE, MAX_USES, DURATION = 7, 2, 5.0
accounts = st.sampled_from(ACCOUNTS)
amounts = st.integers(min_value=1, max_value=60)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fedmarket-stateful-"))
        self.t = 0.0
        params = {"vote_min_stake": 1, "platform_fee_bps": 0}
        self.market = Market.create(
            self.dir,
            keyring=KEYRING,
            seed=123,
            genesis={"scenario_hash": "stateful", "params": params},
            clock=lambda: self.t,
        )
        for a in ACCOUNTS:
            self.market.register_participant(a, role="data_owner")
        self.market.register_model_version(
            round=0,
            parent=None,
            artifact_sha256="a" * 64,
            metrics={},
            contributors={"client-000": 1.0},
            prices={"research": PriceTerms(PRICE, DURATION, MAX_USES)},
        )
        # the plain-Python model
        self.balance = dict.fromkeys([*ACCOUNTS, "pool:v0001"], 0)
        self.stake = dict.fromkeys(ACCOUNTS, 0)
        self.minted = 0
        self.burned = 0
        self.licenses: list[tuple[str, str, float, int]] = []  # id, buyer, expiry, uses
        self.voted: set[str] = set()
        self.sent: list[SignedTransaction] = []

    def teardown(self) -> None:
        self.market.flush()
        report = audit_ledger(self.dir)
        assert report.supply == self.minted - self.burned
        assert report.head_hash == self.market.head_hash
        self.market.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(to=accounts, amount=amounts)
    def mint(self, to: str, amount: int) -> None:
        self.market.mint(to, amount, reason="test")
        self.balance[to] += amount
        self.minted += amount

    @rule(a=accounts, b=accounts, amount=amounts)
    def transfer(self, a: str, b: str, amount: int) -> None:
        if amount > self.balance[a]:
            with pytest.raises(InsufficientFunds):
                self.market.transfer(a, b, amount)
            return
        self.market.transfer(a, b, amount)
        self.balance[a] -= amount
        self.balance[b] += amount

    @rule(a=accounts, amount=amounts)
    def stake_tokens(self, a: str, amount: int) -> None:
        if amount > self.balance[a]:
            with pytest.raises(InsufficientFunds):
                self.market.stake(a, amount)
            return
        self.market.stake(a, amount)
        self.balance[a] -= amount
        self.stake[a] += amount

    @rule(a=accounts, amount=amounts)
    def slash(self, a: str, amount: int) -> None:
        # A slash beyond the stake takes what remains and records the shortfall.
        taken = min(amount, self.stake[a])
        before = self.market.state.slash_shortfall(a)
        self.market.slash(a, amount, reason="test")
        self.stake[a] -= taken
        self.burned += taken
        assert self.market.state.slash_shortfall(a) == before + amount - taken

    @rule(buyer=accounts)
    def buy_license(self, buyer: str) -> None:
        if self.balance[buyer] < PRICE:
            with pytest.raises(InsufficientFunds):
                self.market.buy_license(buyer, "v0001", "research")
            return
        lic = self.market.buy_license(buyer, "v0001", "research")
        self.balance[buyer] -= PRICE
        self.balance["pool:v0001"] += PRICE
        self.licenses.append((lic, buyer, self.t + DURATION, 0))

    @precondition(lambda self: bool(self.licenses))
    @rule(data=st.data())
    def use_license(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.licenses) - 1))
        lic, buyer, expiry, uses = self.licenses[i]
        if self.t >= expiry or uses >= MAX_USES:
            with pytest.raises(LicenseError):
                self.market.use_license(buyer, lic)
            return
        self.market.use_license(buyer, lic)
        self.licenses[i] = (lic, buyer, expiry, uses + 1)

    @rule(dt=st.floats(min_value=0.0, max_value=4.0, allow_nan=False))
    def advance_clock(self, dt: float) -> None:
        self.t += dt

    @rule(voter=accounts, score=st.integers(0, 5))
    def vote(self, voter: str, score: int) -> None:
        if voter in self.voted or self.stake[voter] < 1:
            with pytest.raises(VoteError):
                self.market.vote(voter, "v0001", score)
            return
        self.market.vote(voter, "v0001", score)
        self.voted.add(voter)

    @rule(a=accounts, b=accounts)
    def signed_transfer(self, a: str, b: str) -> None:
        if self.balance[a] < 1:
            return
        signed = self.market.sign("transfer", a, {"to": b, "amount": 1, "memo": "signed"})
        self.market.submit(signed)
        self.balance[a] -= 1
        self.balance[b] += 1
        self.sent.append(signed)

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        signed = data.draw(st.sampled_from(self.sent))
        size = self.market.size
        with pytest.raises(NonceError):
            self.market.submit(signed)
        assert self.market.size == size

    @invariant()
    def balances_match_model(self) -> None:
        for a, bal in self.balance.items():
            assert self.market.balance(a) == bal >= 0
        for a, s in self.stake.items():
            assert self.market.staked(a) == s >= 0

    @invariant()
    def supply_is_minted_minus_burned(self) -> None:
        assert self.market.supply == self.minted - self.burned
        assert self.market.state.total_held() == self.market.supply


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
