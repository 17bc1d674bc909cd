"""Ledger benchmark: the append path ``fedmarket run`` uses, and a full audit.

    .venv/bin/python benchmarks/ledger.py                    # 100k and 1M entries
    .venv/bin/python benchmarks/ledger.py --entries 100000   # one size

For each size it builds a ledger the way a run does: one ``Market`` method call
per entry (contributions, quality scores, rewards, transfers, events), clients
registered, granted and staked when they first take part, every block sealed
with a signed checkpoint (one commit and one WAL checkpoint per block, like a
round). It prints appends/s and CPU per append, then audits the ledger from
scratch (hashes, every signature against its registered key, ledger ids,
nonces, balances replayed, Merkle roots and signed checkpoint notes) with 1
and with 2 signature workers: entries/s, and CPU per entry of this process and
of the workers. Targets (ledger-trust issue) are printed beside each figure;
all timings are wall-clock on this (shared) machine, and the load average is
printed. Finally the ledger of the [scale] issue's largest run (100,000
clients, 100 per round, 10 rounds) is built with lazy registration, beside
the start-up an eager registration of every client would cost.

(The signing helper process that ``Market.append_many`` used was removed:
measured side by side before removal, the append path with the helper ran at
10.9k appends/s against 19.5k/s for plain calls on this machine, and no run
ever used it.)
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from marketplace import TOKEN, Keyring, Market, audit_ledger
from marketplace.keys import BACKEND, Signer, verify_signature_raw

TARGET_APPENDS = 30_000
TARGET_AUDIT = 20_000
KEYRING = Keyring(b"\x42" * 32)  # a benchmark keyring (in memory, never stored)


def _ed25519_costs(n: int = 2000) -> tuple[float, float]:
    """Median over 5 rounds of the raw sign / verify cost in microseconds."""
    signer = Signer(b"\x01" * 32)
    msg = b'{"data":{"amount":1,"memo":"","to":"client-001"},"kind":"transfer"}' * 3
    sig = signer.sign(msg)
    signs, verifies = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            signer.sign(msg)
        t1 = time.perf_counter()
        for _ in range(n):
            verify_signature_raw(signer.public, sig, msg)
        t2 = time.perf_counter()
        signs.append((t1 - t0) / n * 1e6)
        verifies.append((t2 - t1) / n * 1e6)
    return sorted(signs)[2], sorted(verifies)[2]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class RunLike:
    """Appends the entries of a run: rounds of ``per_round`` sampled clients out of
    ``population``, one Market call per entry, one sealed block per round."""

    def __init__(self, where: Path, population: int, per_round: int, seed: int = 0) -> None:
        self.t = 0.0
        self.market = Market.create(
            where, keyring=KEYRING, seed=seed, genesis={"scenario_hash": "bench"}, clock=self.now
        )
        self.market.end_block()
        self.rng = random.Random(seed)
        self.population, self.per_round = population, per_round
        self.enrolled: set[int] = set()
        self.round = 0

    def now(self) -> float:
        return self.t

    def _enroll(self, c: int) -> None:
        m, name = self.market, f"client-{c:06d}"
        if c not in self.enrolled:
            self.enrolled.add(c)
            m.register_participant(name, role="data_owner", meta={"num_examples": 50})
            m.mint(name, 10 * TOKEN, reason="initial_grant")
            m.stake(name, 5 * TOKEN)

    def one_round(self) -> None:
        m = self.market
        self.round += 1
        sampled = sorted(self.rng.sample(range(self.population), self.per_round))
        for c in sampled:
            self._enroll(c)
        m.record("round_started", {"round": self.round, "sampled": len(sampled)})
        for c in sampled:
            self.t += 0.01
            m.record_contribution(
                round=self.round,
                client=f"client-{c:06d}",
                update_hash=f"{self.rng.getrandbits(256):064x}",
                num_examples=50,
                epsilon=0.1 * self.round,
                metrics={"train-loss": self.rng.random(), "train-accuracy": self.rng.random()},
            )
            m.record_quality(round=self.round, client=f"client-{c:06d}", score=self.rng.random())
        for c in sampled[: len(sampled) // 2]:
            other = self.rng.choice(sampled)
            if other != c:
                m.transfer(f"client-{c:06d}", f"client-{other:06d}", 1, memo="fee")
        m.reward(
            round=self.round,
            allocations={f"client-{c:06d}": 1000 + c for c in sampled},
            mechanism="fedavg",
        )
        m.end_block()


def _append_benchmark(where: Path, entries: int, per_round: int) -> tuple[int, float, float]:
    """Build ``entries`` (about) through the run path; (size, seconds, CPU seconds)."""
    run = RunLike(where, population=max(10 * per_round, 1000), per_round=per_round)
    cpu, t0 = time.process_time(), time.perf_counter()
    while run.market.size < entries:
        run.one_round()
    elapsed, used = time.perf_counter() - t0, time.process_time() - cpu
    size = run.market.size
    run.market.close()
    return size, elapsed, used


def _mark(value: float, target: float) -> str:
    return "ok" if value >= target else "MISSED"


def _audit(where: Path, workers: int, size: int) -> None:
    own, kids, t0 = time.process_time(), _children_cpu(), time.perf_counter()
    report = audit_ledger(where, workers=workers)
    elapsed = time.perf_counter() - t0
    own_us = (time.process_time() - own) / size * 1e6
    kids_us = (_children_cpu() - kids) / size * 1e6
    assert report.entries == size
    rate = size / elapsed
    print(
        f"  audit   workers={workers}: {rate:>9,.0f} entries/s  "
        f"CPU/entry {own_us:.1f} us here + {kids_us:.1f} us in workers  "
        f"(target >= {TARGET_AUDIT:,} on 2 cores: {_mark(rate, TARGET_AUDIT)})"
    )


def _scale(root: Path) -> None:
    """[scale]'s largest run: 100,000 clients, 100 per round, 10 rounds."""
    run = RunLike(root / "scale", population=100_000, per_round=100)
    t0 = time.perf_counter()
    for _ in range(10):
        run.one_round()
    elapsed = time.perf_counter() - t0
    size = run.market.size
    run.market.close()
    print(
        f"scale:   100,000 clients x 100/round x 10 rounds: {size:,} entries "
        f"({len(run.enrolled):,} clients registered, lazily) in {elapsed:.2f} s; "
        f"start-up: {1} entry"
    )
    t0 = time.perf_counter()
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
        "--entries", type=int, nargs="+", default=[100_000, 1_000_000], help="ledger sizes"
    )
    parser.add_argument("--per-round", type=int, default=100, help="clients sampled per round")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-scale", action="store_true", help="skip the [scale] ledger")
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: tmp)")
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    sign_us, verify_us = _ed25519_costs()
    print(
        f"ed25519 ({BACKEND}): sign {sign_us:.1f} us ({1e6 / sign_us:,.0f}/s per core), "
        f"verify {verify_us:.1f} us ({1e6 / verify_us:,.0f}/s per core, the audit's "
        f"ceiling without batch verification: {2e6 / verify_us:,.0f}/s on 2 cores)"
    )
    root = args.dir or Path(tempfile.mkdtemp(prefix="fedmarket-bench-", dir="/tmp"))
    try:
        for n in args.entries:
            where = root / f"ledger-{n}"
            size, elapsed, used = _append_benchmark(where, n, args.per_round)
            rate = size / elapsed
            print(f"{size:,} entries ({(where / 'ledger.db').stat().st_size / 1e6:.0f} MB):")
            print(
                f"  appends (run path, one call per entry, commit per block): "
                f"{rate:>9,.0f} entries/s  CPU/entry {used / size * 1e6:.1f} us  "
                f"(target >= {TARGET_APPENDS:,}: {_mark(rate, TARGET_APPENDS)})"
            )
            for workers in args.workers:
                _audit(where, workers, size)
            shutil.rmtree(where, ignore_errors=True)
        if not args.no_scale:
            _scale(root)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
