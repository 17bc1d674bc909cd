"""Ledger benchmark: appends/s, full-audit entries/s, inclusion proofs/s.

    .venv/bin/python benchmarks/ledger.py --entries 100000

Builds a ledger of signed entries (accounts, mints, then transfers) in batches
of one block each (one SQLite commit and one signed checkpoint per block),
then audits it from scratch (hashes, every Ed25519 signature, nonces, balances
re-derived, Merkle roots) and generates + verifies random inclusion proofs.
Timings are wall-clock on this machine; signing/verifying Ed25519 dominates.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

from marketplace import Market, audit_ledger
from marketplace.keys import derive_private_key


def _ed25519_costs(n: int = 2000) -> tuple[float, float]:
    key = derive_private_key(0, "bench")
    msg = b'{"data":{"amount":1,"memo":"","to":"client-001"},"kind":"transfer"}'
    t0 = time.perf_counter()
    for _ in range(n):
        sig = key.sign(msg)
    t1 = time.perf_counter()
    pub = key.public_key()
    for _ in range(n):
        pub.verify(sig, msg)
    t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="entries to append")
    parser.add_argument("--block-size", type=int, default=1000, help="entries per block")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--proofs", type=int, default=10_000, help="inclusion proofs to check")
    parser.add_argument("--workers", type=int, default=1, help="audit signature workers")
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: tmp)")
    args = parser.parse_args()

    sign_us, verify_us = _ed25519_costs()
    print(f"ed25519 on this machine: sign {sign_us:.1f} us, verify {verify_us:.1f} us")

    root = args.dir or Path(tempfile.mkdtemp(prefix="fedmarket-bench-"))
    clock_t = [0.0]
    market = Market.create(
        root,
        seed=1,
        genesis={"scenario_hash": "bench"},
        clock=lambda: clock_t[0],
        block_size=args.block_size,
    )
    names = [f"client-{i:03d}" for i in range(args.accounts)]
    rng = random.Random(0)
    t0 = time.perf_counter()
    with market.batch():
        for name in names:
            market.register_participant(name, role="data_owner")
            market.mint(name, 10**12, reason="bench")
    while market.size < args.entries:
        with market.batch():
            for _ in range(min(args.block_size, args.entries - market.size)):
                clock_t[0] += 0.001
                a, b = rng.sample(names, 2)
                market.transfer(a, b, rng.randint(1, 1000))
    market.end_block()
    build = time.perf_counter() - t0
    n = market.size
    print(f"appends: {n} entries in {build:.2f} s = {n / build:,.0f} appends/s (batched per block)")

    t0 = time.perf_counter()
    report = audit_ledger(root, workers=args.workers)
    audit = time.perf_counter() - t0
    print(
        f"audit:   {report.entries} entries in {audit:.2f} s = {report.entries / audit:,.0f} "
        f"entries/s (workers={args.workers}; head {report.head_hash[:16]}...)"
    )

    seqs = [rng.randrange(n) for _ in range(args.proofs)]
    t0 = time.perf_counter()
    proofs = [market.inclusion_proof(s, tree_size=n) for s in seqs]
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in proofs:
        p.verify()
    ver = time.perf_counter() - t0
    longest = max(len(p.path) for p in proofs)
    print(
        f"proofs:  generate {len(proofs) / gen:,.0f}/s, verify {len(proofs) / ver:,.0f}/s; "
        f"longest path {longest} hashes (ceil log2 n = {math.ceil(math.log2(n))})"
    )
    market.close()


if __name__ == "__main__":
    main()
