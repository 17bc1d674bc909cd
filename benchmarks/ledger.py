"""Ledger benchmark: the append path ``fedmarket run`` uses, and a full audit.

    .venv/bin/python benchmarks/ledger.py                  # 25k and 100k entries
    .venv/bin/python benchmarks/ledger.py --full           # and 1M (minutes)
    .venv/bin/python benchmarks/ledger.py --entries 50000  # sizes of your choice

For each size it builds the ledger of a DP run: one ``Market`` method call per
entry (contributions with their privacy record and cumulative ε, rejections,
quality scores, rewards, transfers, events), clients registered, granted and
staked when they first take part, every block sealed with a signed checkpoint
(one commit and one WAL checkpoint per block, like a round). A round's calls
are planned first and only the Market calls are timed. It prints appends/s and
CPU per append, then audits the ledger from scratch as ``fedmarket ledger
verify --workers N`` does (hashes, every signature against its registered key,
ledger ids, nonces, balances replayed, Merkle roots, signed checkpoint notes,
and every ε re-derived with dp-accounting by :class:`PrivacyAudit`) with 1 and
with 2 signature workers: entries/s, CPU per entry of this process and of the
workers, and the ε hook's share. Audit µs/entry at the smallest and largest size
show whether the cost is linear in entries. Targets (ledger-trust issue) are
printed beside each figure, and so are the floors this machine sets: one
Ed25519 signature per append, two fsyncs per sealed block (SQLite's WAL
checkpoint at ``synchronous=NORMAL``), one verification per audited entry.
Rates are wall-clock on this (shared) machine, printed with the load average;
CPU per entry is less sensitive to load.
Finally the ledger of the [scale] issue's largest run (100,000 clients, 100 per
round, 10 rounds) is built with lazy registration and audited, beside the
start-up an eager registration of every client would cost.

(The signing helper process that ``Market.append_many`` used was removed:
measured side by side before removal, the append path with the helper ran at
10.9k appends/s against 19.5k/s for plain calls on this machine, and no run
ever used it.)
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from marketplace import TOKEN, Keyring, Market, PrivacyAudit, audit_ledger
from marketplace.canonical import JSON
from marketplace.entries import Entry
from marketplace.keys import BACKEND, Signer, verify_signature_raw
from marketplace.privacy_audit import RDP_ORDERS_NAME, rdp_epsilon
from marketplace.state import MarketState

TARGET_APPENDS = 30_000
TARGET_AUDIT = 20_000
KEYRING = Keyring(b"\x42" * 32)  # a benchmark keyring (in memory, never stored)


def _ed25519_costs(n: int = 2000) -> tuple[float, float]:
    """Median over 5 rounds of the raw sign / verify CPU cost in microseconds (CPU,
    not wall, so that it compares with the CPU per entry on a loaded machine)."""
    signer = Signer(b"\x01" * 32)
    msg = b'{"data":{"amount":1,"memo":"","to":"client-001"},"kind":"transfer"}' * 3
    sig = signer.sign(msg)
    signs, verifies = [], []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(n):
            signer.sign(msg)
        t1 = time.process_time()
        for _ in range(n):
            verify_signature_raw(signer.public, sig, msg)
        t2 = time.process_time()
        signs.append((t1 - t0) / n * 1e6)
        verifies.append((t2 - t1) / n * 1e6)
    return sorted(signs)[2], sorted(verifies)[2]


def _fsync_ms(where: Path, n: int = 20) -> float:
    """Median latency of one fsync after a 64 KiB write in ``where`` (milliseconds)."""
    probe = where / "fsync.probe"
    fd = os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 65536)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        probe.unlink()
    return sorted(times)[n // 2] * 1e3


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SIGMA, DELTA, BATCH = 1.1, 1e-5, 32


@functools.cache
def _epsilon(q: float, steps: int) -> float:
    """The cumulative ε a DP client records after ``steps`` steps at rate ``q``
    (the runner computes it with Opacus; the audit re-derives it)."""
    return rdp_epsilon(((SIGMA, q, steps),), DELTA)


def _privacy(q: float, steps: int) -> dict[str, JSON]:
    return {
        "mechanism": "poisson_gaussian",
        "noise_multiplier": SIGMA,
        "sample_rate": q,
        "steps": steps,
        "delta": DELTA,
        "accountant": "rdp",
        "rdp_orders": RDP_ORDERS_NAME,
    }


class RunLike:
    """Appends the entries of a DP run: rounds of ``per_round`` sampled clients out
    of ``population``, one Market call per entry, one sealed block per round.

    Each client holds 20-400 examples, so (like Opacus' schedule, batch 32) it
    trains ``ceil(n/32)`` steps a round at q = 1/ceil(n/32), and each
    contribution records that mechanism and the cumulative ε; every 20th reply
    is rejected (a platform-signed ``contribution_rejected`` with its privacy
    cost). A round's calls are planned first (the ε a client records is the
    runner's work, not the ledger's) and then played: only the Market calls are
    timed (:attr:`seconds`, :attr:`cpu`).
    """

    def __init__(self, where: Path, population: int, per_round: int, seed: int = 0) -> None:
        self.t = 0.0
        self.market = Market.create(
            where, keyring=KEYRING, seed=seed, genesis={"scenario_hash": "bench"}, clock=self.now
        )
        self.market.end_block()
        self.rng = random.Random(seed)
        self.population, self.per_round = population, per_round
        self.enrolled: set[int] = set()
        self.batches: dict[int, int] = {}
        self.steps: dict[int, int] = {}
        self.round = 0
        self.seconds = self.cpu = 0.0

    def now(self) -> float:
        return self.t

    def _enroll(self, c: int, calls: list[Callable[[], object]]) -> None:
        m, name = self.market, f"client-{c:06d}"
        if c not in self.enrolled:
            self.enrolled.add(c)
            size = self.rng.randint(20, 400)
            self.batches[c] = -(-size // BATCH)
            meta: dict[str, JSON] = {"num_examples": size}
            calls.append(partial(m.register_participant, name, role="data_owner", meta=meta))
            calls.append(partial(m.mint, name, 10 * TOKEN, reason="initial_grant"))
            calls.append(partial(m.stake, name, 5 * TOKEN))

    def _contribute(self, c: int, calls: list[Callable[[], object]]) -> None:
        m, name, rnd = self.market, f"client-{c:06d}", self.round
        q, steps = 1.0 / self.batches[c], self.batches[c]
        self.steps[c] = self.steps.get(c, 0) + steps
        eps, privacy = _epsilon(q, self.steps[c]), _privacy(q, steps)
        if self.rng.random() < 0.05:
            calls.append(
                partial(
                    m.reject_contribution,
                    round=rnd,
                    client=name,
                    reason="norm",
                    epsilon=eps,
                    privacy=privacy,
                )
            )
            return
        metrics = {"train-loss": self.rng.random(), "train-accuracy": self.rng.random()}
        calls.append(
            partial(
                m.record_contribution,
                round=rnd,
                client=name,
                update_hash=f"{self.rng.getrandbits(256):064x}",
                num_examples=BATCH * steps,
                epsilon=eps,
                metrics=metrics,
                privacy=privacy,
            )
        )
        calls.append(partial(m.record_quality, round=rnd, client=name, score=self.rng.random()))

    def plan(self) -> list[Callable[[], object]]:
        """The Market calls of the next round, in a run's order."""
        m = self.market
        self.round += 1
        calls: list[Callable[[], object]] = []
        sampled = sorted(self.rng.sample(range(self.population), self.per_round))
        for c in sampled:
            self._enroll(c, calls)
        calls.append(partial(m.record, "round_started", {"round": self.round}))
        for c in sampled:
            self._contribute(c, calls)
        for c in sampled[: len(sampled) // 2]:
            other = self.rng.choice(sampled)
            if other != c:
                calls.append(
                    partial(m.transfer, f"client-{c:06d}", f"client-{other:06d}", 1, memo="fee")
                )
        allocations = {f"client-{c:06d}": 1000 + c for c in sampled}
        calls.append(partial(m.reward, round=self.round, allocations=allocations, mechanism="x"))
        calls.append(m.end_block)
        return calls

    def one_round(self) -> None:
        calls = self.plan()
        cpu, t0 = time.process_time(), time.perf_counter()
        for call in calls:
            self.t += 0.001
            call()
        self.seconds += time.perf_counter() - t0
        self.cpu += time.process_time() - cpu


def _append_benchmark(where: Path, entries: int, per_round: int) -> tuple[int, float, float, int]:
    """Build ``entries`` (about) through the run path; (size, seconds, CPU seconds, blocks)."""
    run = RunLike(where, population=max(10 * per_round, 1000), per_round=per_round)
    while run.market.size < entries:
        run.one_round()
    elapsed, used = run.seconds, run.cpu
    size, blocks = run.market.size, run.market.state.block
    run.market.close()
    return size, elapsed, used, blocks


def _mark(value: float, target: float) -> str:
    return "ok" if value >= target else "MISSED"


class _TimedHook:
    """Wraps the ε hook to report its share of the audit (CPU time of this thread:
    wall time would count the preemptions of a loaded machine)."""

    def __init__(self, hook: PrivacyAudit) -> None:
        self.hook, self.seconds = hook, 0.0

    def __call__(self, entry: Entry, state: MarketState) -> None:
        t0 = time.thread_time()
        self.hook(entry, state)
        self.seconds += time.thread_time() - t0


def _audit(where: Path, workers: int, size: int) -> tuple[float, float]:
    """A full audit as ``fedmarket ledger verify --workers N`` runs it (ε hook included)."""
    privacy = PrivacyAudit()
    timed = _TimedHook(privacy)
    checks = {kind: [timed] for kind in privacy.checks()}
    own, kids, t0 = time.process_time(), _children_cpu(), time.perf_counter()
    report = audit_ledger(where, workers=workers, checks=checks)
    elapsed = time.perf_counter() - t0
    own_us = (time.process_time() - own) / size * 1e6
    kids_us = (_children_cpu() - kids) / size * 1e6
    assert report.entries == size and privacy.checked > 0
    rate = size / elapsed
    print(
        f"  audit   workers={workers}: {rate:>9,.0f} entries/s  "
        f"CPU/entry {own_us:.1f} us here + {kids_us:.1f} us in workers; "
        f"ε hook CPU {timed.seconds / size * 1e6:.1f} us/entry ({privacy.checked:,} ε re-derived) "
        f"(target >= {TARGET_AUDIT:,} on 2 cores: {_mark(rate, TARGET_AUDIT)})"
    )
    return elapsed / size * 1e6, own_us + kids_us


def _scale(root: Path) -> None:
    """[scale]'s largest run: 100,000 clients, 100 per round, 10 rounds."""
    run = RunLike(root / "scale", population=100_000, per_round=100)
    for _ in range(10):
        run.one_round()
    elapsed = run.seconds
    size = run.market.size
    run.market.close()
    print(
        f"scale:   100,000 clients x 100/round x 10 rounds: {size:,} entries "
        f"({len(run.enrolled):,} clients registered, lazily) in {elapsed:.2f} s; "
        f"start-up: {1} entry"
    )
    _audit(root / "scale", 2, size)
    eager = Market.create(
        root / "eager", keyring=KEYRING, seed=0, genesis={"scenario_hash": "eager"}
    )
    t0 = time.perf_counter()
    for c in range(10_000):
        eager.register_participant(f"client-{c:06d}", role="data_owner")
        eager.mint(f"client-{c:06d}", 10 * TOKEN, reason="initial_grant")
        eager.stake(f"client-{c:06d}", 5 * TOKEN)
    eager.end_block()
    per_client = (time.perf_counter() - t0) / 10_000
    eager.close()
    print(
        f"         registering every client up front instead: 3 entries and "
        f"{per_client * 1e6:.0f} us per client = {per_client * 100_000:.1f} s of start-up "
        "at 100,000 clients (measured on 10,000)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--entries", type=int, nargs="+", default=[25_000, 100_000], help="ledger sizes"
    )
    parser.add_argument("--full", action="store_true", help="also 1,000,000 entries (minutes)")
    parser.add_argument("--per-round", type=int, default=100, help="clients sampled per round")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-scale", action="store_true", help="skip the [scale] ledger")
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: tmp)")
    args = parser.parse_args()
    sizes = [*args.entries, *([1_000_000] if args.full else [])]

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    root = args.dir or Path(tempfile.mkdtemp(prefix="fedmarket-bench-", dir="/tmp"))
    sign_us, verify_us = _ed25519_costs()
    fsync_ms = _fsync_ms(root)
    print(
        f"ed25519 ({BACKEND}), CPU: sign {sign_us:.1f} us ({1e6 / sign_us:,.0f}/s per core: the "
        f"ceiling of appends signed one at a time), verify {verify_us:.1f} us "
        f"({1e6 / verify_us:,.0f}/s per core, the audit's ceiling without batch "
        f"verification: {2e6 / verify_us:,.0f}/s on 2 cores); fsync {fsync_ms:.2f} ms "
        "(two per sealed block)"
    )
    audits: dict[int, dict[int, tuple[float, float]]] = {}
    try:
        for n in sizes:
            where = root / f"ledger-{n}"
            size, elapsed, used, blocks = _append_benchmark(where, n, args.per_round)
            rate = size / elapsed
            print(
                f"{size:,} entries in {blocks:,} blocks "
                f"({(where / 'ledger.db').stat().st_size / 1e6:.0f} MB):"
            )
            print(
                f"  appends (run path, one call per entry, commit per block): "
                f"{rate:>9,.0f} entries/s  CPU/entry {used / size * 1e6:.1f} us, of which "
                f"~{sign_us:.0f} signing; fsync ~{2 * fsync_ms * 1e3 * blocks / size:.0f} us "
                f"per entry  (target >= {TARGET_APPENDS:,}: {_mark(rate, TARGET_APPENDS)})"
            )
            for workers in args.workers:
                audits.setdefault(workers, {})[size] = _audit(where, workers, size)
            shutil.rmtree(where, ignore_errors=True)
        for workers, by_size in audits.items():
            if len(by_size) > 1:
                small, large = min(by_size), max(by_size)
                (wall0, cpu0), (wall1, cpu1) = by_size[small], by_size[large]
                print(
                    f"linearity, workers={workers}: {large / small:.0f}x the entries cost "
                    f"{cpu1 / cpu0:.2f}x the CPU per entry ({cpu0:.1f} -> {cpu1:.1f} us) and "
                    f"{wall1 / wall0:.2f}x the wall time per entry ({wall0:.1f} -> {wall1:.1f} us)"
                )
        if not args.no_scale:
            _scale(root)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
