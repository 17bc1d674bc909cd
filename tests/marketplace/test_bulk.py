"""``Market.append_many``: byte-identical to one-by-one appends, all or nothing,
and its signing helper process never outlives the market (or the interpreter)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import marketplace.ledger as ledger_module
from marketplace import (
    TOKEN,
    DuplicateAccountError,
    InsufficientFunds,
    Market,
    TransactionError,
    UnknownAccountError,
    audit_ledger,
)
from marketplace.keys import HAVE_SODIUM, Signer, SigningPool
from marketplace.ledger import BulkTx

needs_sodium = pytest.mark.skipif(not HAVE_SODIUM, reason="parallel signing needs PyNaCl")

NAMES = [f"client-{i:03d}" for i in range(8)] + ["buyer.x:1"]


def _new(path: Path, t: list[float], block_size: int | None = 7) -> Market:
    return Market.create(
        path,
        seed=11,
        genesis={"scenario_hash": "bulk"},
        clock=lambda: t[0],
        block_size=block_size,
    )


def _history(n: int, seed: int = 5) -> list[BulkTx]:
    """Registrations, mints, transfers, stakes and events, with explicit times."""
    rng = random.Random(seed)
    now = 0.0
    txs: list[BulkTx] = []
    for name in NAMES:
        txs.append(("register", name, {"role": "data_owner", "public_key": "", "meta": {}}))
    for name in NAMES:
        txs.append(("mint", "treasury", {"to": name, "amount": 50 * TOKEN, "reason": "é\t"}))
    for k in range(n):
        now += 0.25
        a, b = rng.sample(NAMES, 2)
        r = rng.random()
        if r < 0.8:
            data = {"to": b, "amount": rng.randint(1, 1000), "memo": f"m{k}\u2028"}
            txs.append(("transfer", a, data, now))
        elif r < 0.9:
            txs.append(("stake", a, {"amount": rng.randint(1, 100)}, now))
        else:
            txs.append(("round_started", "treasury", {"round": k, "x": 1.5}, now))
    return txs


def _serial(market: Market, t: list[float], txs: list[BulkTx]) -> None:
    """The same transactions through the one-call-per-append methods."""
    for tx in txs:
        kind, sender, data = tx[0], tx[1], tx[2]
        if len(tx) == 4:
            t[0] = tx[3]
        amount = data.get("amount", 0)
        assert isinstance(amount, int)
        if kind == "register":
            market.register_participant(sender, role="data_owner", meta={})
        elif kind == "mint":
            market.mint(str(data["to"]), amount, reason=str(data["reason"]))
        elif kind == "transfer":
            market.transfer(sender, str(data["to"]), amount, memo=str(data["memo"]))
        elif kind == "stake":
            market.stake(sender, amount)
        else:
            market.record(kind, data)


def _with_keys(market: Market, txs: list[BulkTx]) -> list[BulkTx]:
    """Fill in each registration's public key (what register_participant writes)."""
    out: list[BulkTx] = []
    for tx in txs:
        if tx[0] == "register":
            data = dict(tx[2])
            data["public_key"] = market.public_key(tx[1])
            out.append((tx[0], tx[1], data))
        else:
            out.append(tx)
    return out


@pytest.mark.parametrize("parallel", [False, True, None])
@pytest.mark.parametrize("chunk", [1, 5, 300])
def test_same_entries_as_one_by_one(tmp_path: Path, parallel: bool | None, chunk: int) -> None:
    if parallel is not False and not HAVE_SODIUM:
        pytest.skip("needs PyNaCl")
    t1, t2 = [0.0], [0.0]
    one = _new(tmp_path / "one", t1)
    bulk = _new(tmp_path / "bulk", t2)
    txs = _with_keys(bulk, _history(400))
    with one.batch():
        _serial(one, t1, txs)
    entries = []
    for i in range(0, len(txs), chunk):
        part = txs[i : i + chunk]
        entries += bulk.append_many(part, parallel=parallel)
        last = part[-1]
        if len(last) == 4:  # the clock a one-by-one caller would have set
            t2[0] = last[3]
    one.end_block()
    bulk.end_block()
    assert bulk.size == one.size
    assert bulk.head_hash == one.head_hash
    assert bulk.root() == one.root()
    assert bulk.entries() == one.entries()
    # The returned entries are the stored ones (checkpoints are not returned).
    stored = {e.seq: e for e in bulk.entries()}
    assert len(entries) == len(txs)
    assert all(stored[e.seq] == e for e in entries)
    assert bulk.state.balances == one.state.balances
    bulk.close()
    one.close()
    assert audit_ledger(tmp_path / "bulk", workers=1).head_hash == one.head_hash
    with Market.open(tmp_path / "bulk") as reopened:
        assert reopened.head_hash == one.head_hash


def _count_submissions(pool: SigningPool, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every chunk sent to the signing helper from now on."""
    submitted: list[int] = []
    real_submit = pool.submit_lists

    def counting_submit(secrets: list[bytes], messages: list[bytes]) -> int:
        submitted.append(len(messages))
        return real_submit(secrets, messages)

    monkeypatch.setattr(pool, "submit_lists", counting_submit)
    return submitted


@needs_sodium
@pytest.mark.parametrize("depth", [0, 16, 64, 100_000])
@pytest.mark.parametrize("block_size", [None, 333])
def test_helper_signing_any_share_gives_the_same_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int, block_size: int | None
) -> None:
    """Blocks big enough for the helper, whatever share of the chunks it gets
    (none at depth 0, nearly all at 100 000): the same bytes as one by one."""
    monkeypatch.setattr(ledger_module, "_HELPER_DEPTH", depth)
    t1, t2 = [0.0], [0.0]
    one = _new(tmp_path / "one", t1, block_size=block_size)
    bulk = _new(tmp_path / "bulk", t2, block_size=block_size)
    txs = _with_keys(bulk, _history(1200, seed=depth))
    with one.batch():
        _serial(one, t1, txs)
    pool = bulk._signing_pool()
    submitted = _count_submissions(pool, monkeypatch)
    entries = bulk.append_many(txs[:700], parallel=True)
    entries += bulk.append_many(txs[700:], parallel=True)
    t2[0] = t1[0]  # the clock a one-by-one caller would have set
    one.end_block()
    bulk.end_block()
    assert bulk.head_hash == one.head_hash
    assert bulk.entries() == one.entries()
    assert [e.hash for e in entries] == [e.hash for e in one.entries() if e.kind != "checkpoint"][
        1:
    ]
    assert pool.outstanding == 0
    if depth == 0:
        assert submitted == []
    else:
        assert 0 < sum(submitted) < len(txs)
        assert max(submitted) <= min(depth, 16)
    bulk.close()
    one.close()
    audit_ledger(tmp_path / "bulk", workers=1)


@needs_sodium
def test_refusal_while_the_helper_holds_chunks_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal deep in a big block: the chunks the helper still owes are
    collected (its protocol stays in step) and nothing is applied."""
    t = [0.0]
    market = _new(tmp_path, t, block_size=None)
    market.append_many(_with_keys(market, _history(200)), parallel=True)
    before = _snapshot(market, tmp_path)
    txs = [(*tx[:3], tx[3] + 100.0) for tx in _history(900, seed=3)[2 * len(NAMES) :]]
    data = {"to": "client-002", "amount": 10**18, "memo": ""}
    bad = ("transfer", "client-001", data, txs[699][3])
    txs.insert(700, bad)
    pool = market._pool
    assert pool is not None
    submitted = _count_submissions(pool, monkeypatch)
    with pytest.raises(InsufficientFunds, match="needs"):
        market.append_many(txs, parallel=True)
    assert submitted  # the helper held chunks when the refusal came
    assert pool.outstanding == 0
    assert _snapshot(market, tmp_path) == before
    good = [tx for tx in txs if tx is not bad]
    market.append_many(good, parallel=True)
    market.close()
    serial = _new(tmp_path / "serial", [0.0], block_size=None)
    serial.append_many(_with_keys(serial, _history(200)), parallel=False)
    serial.append_many(good, parallel=False)
    assert serial.head_hash == audit_ledger(tmp_path).head_hash
    serial.close()


@needs_sodium
def test_rows_inserted_while_waiting_are_undone_by_a_later_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of earlier blocks in the call were INSERTed early (the helper is
    made to look slow, so every run inserts while it waits); a refusal in a
    later block of the same call removes them again, and appends made before
    the call in the same batch survive."""
    t = [0.0]
    market = _new(tmp_path, t, block_size=300)
    market.append_many(_with_keys(market, _history(20)), parallel=True)
    pool = market._signing_pool()
    monkeypatch.setattr(pool, "ready", lambda ticket: False)
    flushed: list[int] = []
    real_flush = market._flush_pending

    def counting_flush() -> None:
        flushed.append(len(market._pending) - market._flushed)
        real_flush()

    monkeypatch.setattr(market, "_flush_pending", counting_flush)
    txs = [(*tx[:3], tx[3] + 100.0) for tx in _history(800, seed=4)[2 * len(NAMES) :]]
    bad = ("transfer", "client-001", {"to": "client-002", "amount": 10**18, "memo": ""})
    txs.insert(700, (*bad, txs[699][3]))
    with market.batch():
        t[0] = 50.0
        kept = market.transfer("client-003", "client-004", 7)
        with pytest.raises(InsufficientFunds):
            market.append_many(txs, parallel=True)
        assert sum(flushed) > 300  # rows of the blocks before the refusal went in early
        assert market.size == kept.seq + 1
        # The early rows are gone again (the kept entry waits for the commit).
        sql = "SELECT COUNT(*) FROM entries WHERE seq >= ?"
        assert market._conn.execute(sql, (kept.seq,)).fetchone() == (0,)
        market.append_many(txs[:700], parallel=True)
    assert market.entries(kept.seq, kept.seq + 1) == [kept]
    market.close()
    report = audit_ledger(tmp_path)
    assert report.entries == kept.seq + 1 + 700 + (kept.seq + 700) // 300
    serial = _new(tmp_path / "serial", [0.0], block_size=300)
    serial.append_many(_with_keys(serial, _history(20)), parallel=False)
    with serial.batch():
        serial._clock = lambda: 50.0
        serial.transfer("client-003", "client-004", 7)
        serial.append_many(txs[:700], parallel=False)
    assert serial.head_hash == report.head_hash
    serial.close()


@needs_sodium
def test_parallel_signatures_are_byte_identical_to_serial_signing(tmp_path: Path) -> None:
    t = [0.0]
    with _new(tmp_path, t, block_size=None) as market:
        txs = _with_keys(market, _history(600))
        parallel = market.append_many(txs, parallel=True)
        for entry in parallel:
            signer = Signer.derive(11, entry.sender)
            assert entry.signature == signer.sign(entry.tx.signing_bytes()).hex()
            assert entry.signature == signer.key.sign(entry.tx.signing_bytes()).hex()
    # The helper alone, against in-process signing.
    signers = [Signer.derive(3, f"acct-{i}") for i in range(5)]
    rng = random.Random(1)
    items = [(signers[i % 5].secret, rng.randbytes(rng.randint(0, 3000))) for i in range(700)]
    with SigningPool() as pool:
        tickets = [pool.submit(items[i : i + 100]) for i in range(0, 700, 100)]
        got = [sig for ticket in tickets for sig in pool.result(ticket)]
        assert pool.submit([]) == len(tickets)
        assert pool.result(len(tickets)) == []
    assert got == [signers[i % 5].sign(m) for i, (_, m) in enumerate(items)]


@needs_sodium
def test_signing_helper_can_be_polled_without_waiting() -> None:
    signer = Signer.derive(4, "acct")
    messages = [bytes([i]) * (i + 1) for i in range(40)]
    with SigningPool() as pool:
        first = pool.submit_lists([signer.secret] * 30, messages[:30])
        second = pool.submit_lists([signer.secret] * 10, messages[30:])
        assert pool.outstanding == 40
        with pytest.raises(ValueError, match="collect request 0 before 1"):
            pool.ready(second)
        deadline = time.monotonic() + 30
        while not pool.ready(first):  # never blocks; the helper catches up
            assert time.monotonic() < deadline
        assert 0 <= pool.owed() <= 10
        got = pool.result(first) + pool.result(second)
        assert pool.outstanding == 0 and pool.owed() == 0
        with pytest.raises(ValueError, match="owed"):
            pool.submit_lists(
                [signer.secret] * (pool.max_outstanding + 1), [b"m"] * (pool.max_outstanding + 1)
            )
    assert got == [signer.sign(m) for m in messages]


def _snapshot(market: Market, path: Path) -> tuple[object, ...]:
    conn = sqlite3.connect(path / "ledger.db")
    try:
        rows = conn.execute("SELECT seq, record FROM entries ORDER BY seq").fetchall()
    finally:
        conn.close()
    st = market.state
    return (
        market.size,
        market.head_hash,
        market.root(),
        dict(st.balances),
        dict(st.stakes),
        dict(st.nonces),
        st.block,
        st.last_time,
        rows,
    )


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(
    ("bad", "error", "named"),
    [
        (("transfer", "client-001", {"to": "client-002", "amount": 10**18, "memo": ""}),
         InsufficientFunds, "transfer by client-001 #"),
        (("transfer", "nobody", {"to": "client-002", "amount": 1, "memo": ""}),
         UnknownAccountError, "transfer by nobody #0"),
        (("transfer", "client-001", {"to": "client-002", "amount": 0, "memo": ""}),
         TransactionError, "transfer by client-001 #"),
        (("round_started", "client-003", {"round": 1}),
         TransactionError, "round_started by client-003 #"),
    ],
)  # fmt: skip
def test_refused_transaction_in_the_middle_changes_nothing(
    tmp_path: Path,
    parallel: bool,
    bad: BulkTx,
    error: type[Exception],
    named: str,
) -> None:
    if parallel and not HAVE_SODIUM:
        pytest.skip("needs PyNaCl")
    t = [0.0]
    market = _new(tmp_path, t, block_size=50)
    market.append_many(_with_keys(market, _history(30)))
    before = _snapshot(market, tmp_path)
    txs = _history(400, seed=9)[2 * len(NAMES) :]
    # Far enough in to cross block boundaries (checkpoints) before the refusal.
    txs.insert(300, (*bad, 10_000.0) if len(bad) == 3 else bad)
    with pytest.raises(error) as info:
        market.append_many([(*tx[:3], tx[3] + 100.0) if len(tx) == 4 else tx for tx in txs],
                           parallel=parallel)  # fmt: skip
    assert named in str(getattr(info.value, "tx", ""))
    assert _snapshot(market, tmp_path) == before
    # Still fully usable, and the refusal left no trace.
    entries = market.append_many(
        [("transfer", "client-001", {"to": "client-002", "amount": 1, "memo": ""}, 500.0)],
        parallel=parallel,
    )
    assert entries[0].seq == before[0]
    market.close()
    audit_ledger(tmp_path)


def test_refusal_inside_an_enclosing_batch_keeps_earlier_appends(tmp_path: Path) -> None:
    t = [0.0]
    market = _new(tmp_path, t, block_size=4)
    market.append_many(_with_keys(market, _history(3)))
    t[0] = 10.0
    with market.batch():
        kept = market.transfer("client-000", "client-001", 5)
        size, head = market.size, market.head_hash
        with pytest.raises(DuplicateAccountError) as info:
            market.append_many(
                [("transfer", "client-000", {"to": "client-002", "amount": 1, "memo": ""})] * 2
                + [("register", "client-000", {"role": "x", "public_key": "", "meta": {}})]
            )
        assert info.value.tx.startswith("register by client-000 #")
        assert (market.size, market.head_hash) == (size, head)
        last = market.transfer("client-000", "client-001", 6)
    final = market.size
    market.close()
    with Market.open(tmp_path) as reopened:
        assert reopened.entry(kept.seq) == kept
        assert reopened.entry(last.seq) == last
        assert reopened.size == final
    audit_ledger(tmp_path)


def test_bad_items_are_refused_before_anything(tmp_path: Path) -> None:
    t = [0.0]
    with _new(tmp_path, t) as market:
        size = market.size
        with pytest.raises(ValueError, match="transaction 1"):
            market.append_many([("round_started", "treasury", {}), ("checkpoint", "treasury", {})])
        with pytest.raises(ValueError, match="transaction 0"):
            market.append_many([("genesis", "treasury", {})])
        with pytest.raises(ValueError, match="round_started by treasury"):
            market.append_many([("round_started", "treasury", {"x": float("nan")})])
        assert market.append_many([]) == []
        assert market.size == size
        # An unencodable value after valid transactions: nothing applied either.
        head, nonce = market.head_hash, market.state.next_nonce("treasury")
        ok: BulkTx = ("round_started", "treasury", {"round": 1})
        with pytest.raises(TypeError):
            market.append_many([ok] * 200 + [("round_started", "treasury", {"x": {1, 2}})])
        assert (market.size, market.head_hash) == (size, head)
        assert market.state.next_nonce("treasury") == nonce
        assert len(market.append_many([ok] * 3)) == 3


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (reaped later by its parent).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@needs_sodium
def test_signing_helper_stops_with_the_market(tmp_path: Path) -> None:
    t = [0.0]
    market = _new(tmp_path, t, block_size=None)
    market.append_many(_with_keys(market, _history(300)), parallel=True)
    pool = market._pool
    assert pool is not None and pool.pid is not None
    pid = pool.pid
    assert _alive(pid)
    market.close()
    assert pool.pid is None and not _alive(pid)
    market.close()  # idempotent
    with SigningPool() as p2:
        pid2 = p2.pid
        assert pid2 is not None and _alive(pid2)
    assert not _alive(pid2)
    with pytest.raises(RuntimeError, match="closed"):
        p2.submit([])


@needs_sodium
def test_a_dead_helper_fails_the_call_cleanly_and_is_replaced(tmp_path: Path) -> None:
    t = [0.0]
    market = _new(tmp_path, t, block_size=None)
    market.append_many(_with_keys(market, _history(200)), parallel=True)
    txs = [(*tx[:3], tx[3] + 100.0) for tx in _history(900, seed=8)[2 * len(NAMES) :]]
    # Killed between calls: the next call starts a new helper.
    first = market._pool
    assert first is not None and first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    first._proc.wait()  # type: ignore[union-attr]
    market.append_many(txs[:300], parallel=True)
    second = market._pool
    assert second is not None and second is not first and not first.alive
    # Dies in the middle of a call: the call fails, nothing of it is applied.
    before = _snapshot(market, tmp_path)
    calls = [0]
    real_submit = second.submit_lists

    def dying_submit(secrets: list[bytes], messages: list[bytes]) -> int:
        calls[0] += 1
        if calls[0] == 3:
            assert second.pid is not None
            os.kill(second.pid, signal.SIGKILL)
            second._proc.wait()  # type: ignore[union-attr]
        return real_submit(secrets, messages)

    second.submit_lists = dying_submit  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="helper process died"):
        market.append_many(txs[300:], parallel=True)
    assert not second.alive
    assert _snapshot(market, tmp_path) == before
    market.append_many(txs[300:], parallel=True)
    assert market._pool is not None and market._pool not in (first, second)
    market.close()
    serial = _new(tmp_path / "serial", [0.0], block_size=None)
    serial.append_many(_with_keys(serial, _history(200)), parallel=False)
    serial.append_many(txs, parallel=False)
    assert audit_ledger(tmp_path).head_hash == serial.head_hash
    serial.close()


@needs_sodium
def test_signing_helper_stops_at_exit_and_with_a_killed_parent(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from marketplace.keys import SigningPool\n"
        "pool = SigningPool()\n"
        "print(pool.pid, flush=True)\n"
        "if sys.argv[1] == 'hang':\n"
        "    import time; time.sleep(60)\n"
    )
    for mode in ("exit", "hang"):
        proc = subprocess.Popen(
            [sys.executable, "-c", code, mode], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        helper = int(proc.stdout.readline())
        if mode == "hang":
            proc.kill()  # SIGKILL: no atexit; the helper sees end of input
        assert proc.wait(timeout=30) in (0, -9)
        for _ in range(200):
            if not _alive(helper):
                break
            time.sleep(0.05)
        assert not _alive(helper)
