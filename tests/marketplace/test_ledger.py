"""The Market facade: identities, signatures, nonces, tokens, stake, blocks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from marketplace import (
    TOKEN,
    AuthorizationError,
    DuplicateAccountError,
    EmissionError,
    InsufficientFunds,
    LedgerNotFoundError,
    Market,
    NonceError,
    ProofError,
    ReadOnlyLedgerError,
    SignatureError,
    StakeError,
    UnknownAccountError,
    audit_ledger,
)
from marketplace.keys import Signer, verify_signature
from marketplace.merkle import verify_consistency
from tests.keyring import KEYRING
from tests.marketplace.conftest import Clock, populate


def test_genesis_and_treasury(market: Market) -> None:
    g = market.entry(0)
    assert g.kind == "genesis" and g.seq == 0 and g.prev_hash == "00" * 32
    assert g.data["scenario_hash"] == "abc" and g.data["seed"] == 42
    assert g.ledger is None and g.key == market.public_key("treasury")
    assert "treasury_public_key" not in g.data
    assert market.size == 1 and market.head_hash == g.hash == market.ledger_id


def test_entries_are_signed_by_sender(market: Market) -> None:
    market.register_participant("client-000", role="data_owner")
    e = market.mint("client-000", 5, reason="x")
    assert e.sender == "treasury"
    assert verify_signature(market.public_key("treasury"), e.signature, e.tx.signing_bytes())
    t = market.register_participant("client-001", role="data_owner")
    assert verify_signature(market.public_key("client-001"), t.signature, t.tx.signing_bytes())


def test_tokens_and_invariants(market: Market) -> None:
    populate(market)
    assert market.balance("client-000") == 8 * TOKEN + 3
    assert market.staked("client-000") == 2 * TOKEN
    assert market.balance("client-002") == 11 * TOKEN
    assert market.supply == 85 * TOKEN + 5
    assert market.state.total_held() == market.supply
    with pytest.raises(InsufficientFunds) as err:
        market.transfer("client-000", "client-001", 100 * TOKEN)
    assert err.value.account == "client-000" and "transfer" in err.value.tx
    before = market.size
    market.burn("client-001", TOKEN)
    assert market.supply == 84 * TOKEN + 5 and market.size == before + 1


def test_refusals_are_typed(market: Market) -> None:
    market.register_participant("client-000", role="data_owner")
    with pytest.raises(UnknownAccountError, match="ghost"):
        market.transfer("ghost", "client-000", 1)
    with pytest.raises(UnknownAccountError, match="nobody"):
        market.mint("nobody", 1, reason="x")
    with pytest.raises(DuplicateAccountError):
        market.register_participant("client-000", role="data_owner")
    size = market.size
    with pytest.raises(AuthorizationError):
        market.submit(
            market.sign("mint", "client-000", {"to": "client-000", "amount": 5, "reason": "me"})
        )
    assert market.size == size


def test_signature_and_nonce_checks(market: Market) -> None:
    market.register_participant("client-000", role="data_owner")
    market.register_participant("client-001", role="data_owner")
    market.mint("client-000", 100, reason="x")
    good = market.sign("transfer", "client-000", {"to": "client-001", "amount": 10, "memo": ""})
    forged = market.sign(
        "transfer",
        "client-000",
        {"to": "client-001", "amount": 10, "memo": ""},
        signer=Signer(b"\x07" * 32),
    )
    with pytest.raises(SignatureError) as err:
        market.submit(forged)
    assert err.value.account == "client-000"
    market.submit(good)
    with pytest.raises(NonceError, match="nonce reused"):
        market.submit(good)
    skipped = market.sign(
        "transfer", "client-000", {"to": "client-001", "amount": 1, "memo": ""}, nonce=5
    )
    with pytest.raises(NonceError, match="nonce skipped"):
        market.submit(skipped)
    assert market.balance("client-001") == 10
    audit_ledger(market.path)


def test_stake_unstake_slash(market: Market, clock: Clock) -> None:
    market.register_participant("client-000", role="data_owner")
    market.mint("client-000", 100, reason="x")
    market.stake("client-000", 60)
    with pytest.raises(InsufficientFunds):
        market.stake("client-000", 41)
    e = market.slash("client-000", 10, reason="poisoned update")
    assert e.data["reason"] == "poisoned update"
    assert market.staked("client-000") == 50 and market.supply == 90
    market.unstake("client-000", 30)
    with pytest.raises(StakeError, match="unbonding until"):
        market.withdraw("client-000")
    with pytest.raises(StakeError):
        market.unstake("client-000", 21)
    # still slashable while unbonding
    market.slash("client-000", 25, reason="late detection")
    assert market.staked("client-000") == 0
    clock.t = market.params.unstake_delay + 1
    market.withdraw("client-000")
    assert market.balance("client-000") == 40 + 25
    assert market.state.total_held() == market.supply == 65
    assert market.reputation("client-000") == 0.0


def test_slash_beyond_the_stake_takes_what_remains_and_records_the_shortfall(
    market: Market,
) -> None:
    # The review's case: stake 5, a slash of 2 per flag; the third flag finds only 1.
    market.register_participant("client-000", role="data_owner")
    market.mint("client-000", 5, reason="grant")
    market.stake("client-000", 5)
    for _ in range(3):
        market.slash("client-000", 2, reason="flagged")
    assert market.staked("client-000") == 0
    assert market.state.slash_shortfall("client-000") == 1
    assert market.supply == 0 and market.state.burned == 5
    # Nothing left: a fourth flag burns nothing and adds its whole amount.
    market.slash("client-000", 2, reason="flagged")
    assert market.state.slash_shortfall("client-000") == 3
    assert market.state.burned == 5
    audit_ledger(market.path)


def test_min_stake_to_contribute(tmp_path: Path) -> None:
    m = Market.create(
        tmp_path,
        keyring=KEYRING,
        seed=1,
        genesis={"scenario_hash": "s", "params": {"min_stake": 5}},
    )
    m.register_participant("client-000", role="data_owner")
    with pytest.raises(StakeError):
        m.record_contribution(
            round=0, client="client-000", update_hash="00", num_examples=1, epsilon=None, metrics={}
        )
    m.mint("client-000", 5, reason="x")
    m.stake("client-000", 5)
    m.record_contribution(
        round=0, client="client-000", update_hash="00", num_examples=1, epsilon=None, metrics={}
    )
    m.close()


def test_emission_schedule(tmp_path: Path) -> None:
    params = {"emission_per_round": 100, "halving_rounds": 2, "max_supply": 1000}
    m = Market.create(
        tmp_path, keyring=KEYRING, seed=1, genesis={"scenario_hash": "s", "params": params}
    )
    m.register_participant("a", role="data_owner")
    m.register_participant("b", role="data_owner")
    m.reward(round=0, allocations={"a": 60, "b": 40}, mechanism="m")
    with pytest.raises(EmissionError):
        m.reward(round=0, allocations={"a": 1}, mechanism="m")
    with pytest.raises(EmissionError):
        m.reward(round=2, allocations={"a": 51}, mechanism="m")
    m.reward(round=2, allocations={"a": 50}, mechanism="m")
    with pytest.raises(EmissionError):
        m.mint("a", 900, reason="too much")
    m.close()


def test_unknown_params_listed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unstake_delay"):
        Market.create(
            tmp_path,
            keyring=KEYRING,
            seed=1,
            genesis={"scenario_hash": "s", "params": {"unstak": 1}},
        )


def test_reserved_event_kind(market: Market) -> None:
    with pytest.raises(ValueError, match="reserved"):
        market.record("mint", {})
    e = market.record("privacy_budget_exhausted", {"client": "client-000"})
    assert e.sender == "treasury"


def test_blocks_checkpoints_and_proofs(market: Market) -> None:
    populate(market)
    cps = market.checkpoints()
    assert len(cps) == 2
    for cp in cps:
        assert cp.data["tree_size"] == cp.seq
        assert cp.data["root"] == market.root(cp.seq)
    assert [e.block for e in market.entries()][:3] == [0, 0, 0]
    proof = market.inclusion_proof(3)  # against the latest signed checkpoint
    assert proof.checkpoint_seq == cps[-1].seq and proof.root == cps[-1].data["root"]
    proof.verify()
    last = market.size - 1
    with pytest.raises(ProofError, match="open block"):
        market.inclusion_proof(last)
    open_proof = market.inclusion_proof(last, tree_size=market.size)
    assert open_proof.checkpoint_seq is None
    open_proof.verify()
    s1, s2 = cps[0].seq, cps[1].seq
    verify_consistency(
        s1,
        s2,
        [bytes.fromhex(p) for p in market.consistency_proof(s1, s2)],
        bytes.fromhex(market.root(s1)),
        bytes.fromhex(market.root(s2)),
    )


def test_block_size_auto_seals(tmp_path: Path) -> None:
    m = Market.create(
        tmp_path, keyring=KEYRING, seed=3, genesis={"scenario_hash": "s"}, block_size=4
    )
    for i in range(10):
        m.register_participant(f"client-{i:03d}", role="data_owner")
    cps = m.checkpoints()
    assert [c.data["tree_size"] for c in cps] == [4, 9]
    assert audit_ledger(tmp_path).sealed_blocks == 2
    m.close()


def test_same_seed_same_head(tmp_path: Path) -> None:
    heads = []
    for name in ("a", "b"):
        clock = Clock()
        m = Market.create(
            tmp_path / name, keyring=KEYRING, seed=9, genesis={"scenario_hash": "h"}, clock=clock
        )
        clock.t = 1.5
        populate(m)
        heads.append(m.head_hash)
        m.close()
    assert heads[0] == heads[1]
    assert (tmp_path / "a" / "ledger.db").is_file()
    other = Market.create(tmp_path / "c", keyring=KEYRING, seed=10, genesis={"scenario_hash": "h"})
    populate(other)
    assert other.head_hash != heads[0]
    other.close()


def test_reopen_and_continue(tmp_path: Path, clock: Clock) -> None:
    m = Market.create(
        tmp_path, keyring=KEYRING, seed=5, genesis={"scenario_hash": "s"}, clock=clock
    )
    populate(m)
    head, bal = m.head_hash, m.balance("client-000")
    m.close()
    ro = Market.open(tmp_path)
    assert ro.head_hash == head and ro.balance("client-000") == bal
    with pytest.raises(ReadOnlyLedgerError):
        ro.mint("client-000", 1, reason="x")
    ro.close()
    rw = Market.open(tmp_path, readonly=False, clock=clock, keyring=KEYRING)
    rw.transfer("client-000", "client-001", 1)
    rw.close()
    assert audit_ledger(tmp_path).entries == Market.open(tmp_path).size


def test_open_missing(tmp_path: Path) -> None:
    with pytest.raises(LedgerNotFoundError):
        Market.open(tmp_path)
    with pytest.raises(LedgerNotFoundError):
        audit_ledger(tmp_path)


def test_two_writers_serialize(tmp_path: Path) -> None:
    a = Market.create(tmp_path, keyring=KEYRING, seed=5, genesis={"scenario_hash": "s"})
    a.register_participant("client-000", role="data_owner")
    a.flush()  # a writer holds the ledger until it commits its open block
    b = Market.open(tmp_path, readonly=False, keyring=KEYRING)
    b.register_participant("client-001", role="data_owner")
    b.flush()
    a.mint("client-001", 7, reason="x")  # a catches up with b's entry first
    a.flush()
    b.transfer("client-001", "client-000", 3)
    assert a.size == b.size - 1
    a.close()
    b.close()
    report = audit_ledger(tmp_path)
    assert report.entries == 5 and report.supply == 7


def test_batch_commits_once(market: Market) -> None:
    market.register_participant("client-000", role="data_owner")
    market.flush()
    with market.batch():
        for _ in range(5):
            market.mint("client-000", 1, reason="x")
        other = sqlite3.connect(market.path)
        assert other.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 2
        other.close()
    assert audit_ledger(market.path).entries == 7
