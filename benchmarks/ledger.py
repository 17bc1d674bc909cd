"""Ledger benchmark: the append path ``fedmarket run`` uses, and a full audit.

    .venv/bin/python benchmarks/ledger.py                  # 25k and 100k entries
    .venv/bin/python benchmarks/ledger.py --full           # and 1M (minutes)
    .venv/bin/python benchmarks/ledger.py --entries 50000  # sizes of your choice
    .venv/bin/python benchmarks/ledger.py --ref main       # and side by side with main

For each size it builds the ledger of a DP run: one ``Market`` method call per
entry (contributions with their privacy record and cumulative ε, rejections,
quality scores, rewards, transfers, events), clients registered, granted and
staked when they first take part, every block sealed with a signed checkpoint
(one commit and one WAL checkpoint per block, like a round). A round's calls
are planned first and only the Market calls are timed. It prints appends/s and
CPU per append, then audits the ledger from scratch as ``fedmarket ledger
verify --workers N`` does (hashes, every signature against its registered key,
ledger ids, nonces, balances replayed, Merkle roots, signed checkpoint notes,
and every ε re-derived with dp-accounting by :class:`PrivacyAudit`) inline
(``--workers 1``) and with 2 verifier threads: entries/s, CPU per entry of the
auditing thread and of all threads, and the ε hook's share. Audit µs/entry at
the smallest and largest size show whether the cost is linear in entries.
Targets (ledger-trust issue) are printed beside each figure, and so are the
floors this machine sets: one Ed25519 signature per append, two fsyncs per
sealed block (SQLite's WAL checkpoint at ``synchronous=NORMAL``), one
verification per audited entry, and how much of each runs without the GIL.
Rates are wall-clock on this (shared) machine, printed with the load average;
CPU per entry is less sensitive to load, so each rate also has an estimate for
idle cores: appends at one entry per CPU-µs-per-entry, the audit bounded by its
auditing thread and by all its CPU spread over 2 cores. ``--ref REF`` first
measures REF's ``marketplace/`` and this tree's alternately, each size in fresh
processes driven by this file, and prints the ratios.
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
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

import _proc  # benchmarks/_proc.py, beside this script

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


def _thread_speedup(n: int = 4000) -> tuple[float, float]:
    """Wall-clock throughput of n Ed25519 signs, then n verifies, in 2 threads over
    1 thread (median of 3): how much of each libsodium call runs without the GIL
    (2.0 on two idle cores if all of it did; a loaded machine shows less)."""
    signer = Signer(b"\x01" * 32)
    msg = b'{"data":{"amount":1,"memo":"","to":"client-001"},"kind":"transfer"}' * 6
    sig = signer.sign(msg)

    def signs(k: int) -> None:
        for _ in range(k):
            signer.sign(msg)

    def verifies(k: int) -> None:
        for _ in range(k):
            verify_signature_raw(signer.public, sig, msg)

    out = []
    with ThreadPoolExecutor(2) as pool:
        for job in (signs, verifies):
            ratios = []
            for _ in range(3):
                t0 = time.perf_counter()
                job(n)
                t1 = time.perf_counter()
                list(pool.map(job, [n // 2, n // 2]))
                ratios.append((t1 - t0) / (time.perf_counter() - t1))
            out.append(sorted(ratios)[1])
    return out[0], out[1]


def _gil_free_share(n: int = 2000) -> tuple[float, float] | None:
    """Share of one sign / one verify spent inside libsodium (with the GIL released):
    the C call alone (cffi, buffers made once) over the whole Python-level call, CPU
    time, median of 3. With a share f, 2 threads do at most 1 / (1 - f / 2) times
    the work of one on two idle cores."""
    try:
        from nacl._sodium import ffi, lib  # PyNaCl's own cffi module: measuring only
        from nacl.bindings import crypto_sign_seed_keypair
    except ImportError:
        return None
    signer = Signer(b"\x01" * 32)
    msg = b'{"data":{"amount":1,"memo":"","to":"client-001"},"kind":"transfer"}' * 6
    sm = signer.sign(msg) + msg
    _, sk = crypto_sign_seed_keypair(b"\x01" * 32)
    out, out_len = ffi.new("unsigned char[]", len(sm)), ffi.new("unsigned long long *")
    shares = []
    for whole, inner in (
        (lambda: signer.sign(msg), lambda: lib.crypto_sign(out, out_len, msg, len(msg), sk)),
        (
            lambda: verify_signature_raw(signer.public, sm[:64], msg),
            lambda: lib.crypto_sign_open(out, out_len, sm, len(sm), signer.public),
        ),
    ):
        ratios = []
        for _ in range(3):
            t0 = time.process_time()
            for _ in range(n):
                inner()
            t1 = time.process_time()
            for _ in range(n):
                whole()
            ratios.append((t1 - t0) / (time.process_time() - t1))
        shares.append(min(1.0, sorted(ratios)[1]))
    return shares[0], shares[1]


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


class AuditFigures(NamedTuple):
    """One audit's figures, per entry: wall and CPU microseconds."""

    wall_us: float
    main_us: float
    """CPU of the auditing thread: the critical path when verifiers keep up."""
    total_us: float
    """CPU of every thread and worker process."""
    hook_us: float

    def idle_rate(self, cores: int = 2) -> float:
        """Entries/s this audit would reach on ``cores`` idle cores: bounded by the
        auditing thread and by all its CPU spread over the cores (an estimate)."""
        return 1e6 / max(self.main_us, self.total_us / cores)


def _audit(where: Path, workers: int, size: int) -> AuditFigures:
    """A full audit as ``fedmarket ledger verify --workers N`` runs it (ε hook included)."""
    privacy = PrivacyAudit()
    timed = _TimedHook(privacy)
    checks = {kind: [timed] for kind in privacy.checks()}
    own, main, kids = time.process_time(), time.thread_time(), _children_cpu()
    t0 = time.perf_counter()
    report = audit_ledger(where, workers=workers, checks=checks)
    elapsed = time.perf_counter() - t0
    main_us = (time.thread_time() - main) / size * 1e6
    own_us = (time.process_time() - own) / size * 1e6
    kids_us = (_children_cpu() - kids) / size * 1e6
    assert report.entries == size and privacy.checked > 0
    return AuditFigures(elapsed / size * 1e6, main_us, own_us + kids_us, timed.seconds / size * 1e6)


def _print_audit(workers: int, fig: AuditFigures, checked: str = "") -> None:
    rate = 1e6 / fig.wall_us
    print(
        f"  audit   workers={workers}: {rate:>9,.0f} entries/s  CPU/entry {fig.total_us:.1f} us "
        f"({fig.main_us:.1f} in the auditing thread, {fig.total_us - fig.main_us:.1f} in "
        f"verifier threads/processes; ε hook {fig.hook_us:.1f}{checked}) -> "
        f"~{fig.idle_rate():,.0f}/s on 2 idle cores "
        f"(target >= {TARGET_AUDIT:,} on 2 cores: {_mark(rate, TARGET_AUDIT)} here, "
        f"{_mark(fig.idle_rate(), TARGET_AUDIT)} idle)"
    )


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
    _print_audit(2, _audit(root / "scale", 2, size))
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


class SizeFigures(NamedTuple):
    """The append and audit figures of one ledger size (per entry)."""

    size: int
    blocks: int
    megabytes: float
    append_wall_us: float
    append_cpu_us: float
    audits: dict[int, AuditFigures]


def _measure(root: Path, n: int, per_round: int, workers: list[int]) -> SizeFigures:
    """Build a ledger of about ``n`` entries through the run path, then audit it."""
    where = root / f"ledger-{n}"
    size, elapsed, used, blocks = _append_benchmark(where, n, per_round)
    megabytes = (where / "ledger.db").stat().st_size / 1e6
    audits = {w: _audit(where, w, size) for w in workers}
    shutil.rmtree(where, ignore_errors=True)
    return SizeFigures(size, blocks, megabytes, elapsed / size * 1e6, used / size * 1e6, audits)


def _print_size(fig: SizeFigures, sign_us: float, fsync_ms: float, label: str = "") -> None:
    rate = 1e6 / fig.append_wall_us
    print(f"{label}{fig.size:,} entries in {fig.blocks:,} blocks ({fig.megabytes:.0f} MB):")
    print(
        f"  appends (run path, one call per entry, commit per block): "
        f"{rate:>9,.0f} entries/s  CPU/entry {fig.append_cpu_us:.1f} us, of which "
        f"~{sign_us:.0f} signing; fsync ~{2 * fsync_ms * 1e3 * fig.blocks / fig.size:.0f} us "
        f"per entry -> ~{1e6 / fig.append_cpu_us:,.0f}/s on an idle core "
        f"(target >= {TARGET_APPENDS:,}: {_mark(rate, TARGET_APPENDS)} here, "
        f"{_mark(1e6 / fig.append_cpu_us, TARGET_APPENDS)} idle)"
    )
    for workers, audit in fig.audits.items():
        _print_audit(workers, audit)


def _linearity(figures: list[SizeFigures]) -> None:
    if len(figures) < 2:
        return
    small, large = figures[0], figures[-1]
    for workers in small.audits:
        a, b = small.audits[workers], large.audits[workers]
        print(
            f"linearity, workers={workers}: {large.size / small.size:.0f}x the entries cost "
            f"{b.total_us / a.total_us:.2f}x the CPU per entry ({a.total_us:.1f} -> "
            f"{b.total_us:.1f} us) and {b.wall_us / a.wall_us:.2f}x the wall time per entry "
            f"({a.wall_us:.1f} -> {b.wall_us:.1f} us)"
        )


def _child(tree: Path, n: int, args: argparse.Namespace) -> SizeFigures:
    """Measure one size in a fresh process importing ``marketplace`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": os.fspath(tree)}
    cmd = [sys.executable, __file__, "--child", "--entries", str(n), "--workers"]
    cmd += [str(w) for w in args.workers] + ["--per-round", str(args.per_round)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    raw = json.loads(out.splitlines()[-1])
    audits = {int(w): AuditFigures(*a) for w, a in raw.pop("audits").items()}
    return SizeFigures(**raw, audits=audits)


def _median(runs: list[SizeFigures]) -> SizeFigures:
    """Figure by figure, the median over repeated runs of one size."""

    def mid(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    audits = {
        w: AuditFigures(*(mid([r.audits[w][k] for r in runs]) for k in range(4)))
        for w in runs[0].audits
    }
    first = runs[0]
    return first._replace(
        append_wall_us=mid([r.append_wall_us for r in runs]),
        append_cpu_us=mid([r.append_cpu_us for r in runs]),
        audits=audits,
    )


def _ratio_line(what: str, new: float, old: float) -> str:
    return f"    {what}: {new:.1f} us vs {old:.1f} us = {new / old:.2f}x"


def _side_by_side(ref: str, sizes: list[int], args: argparse.Namespace, root: Path) -> None:
    """Each size measured with ``ref``'s marketplace and with this tree's, alternately,
    each in a fresh process (the same driver: this file), and the ratios printed."""
    here = Path(__file__).resolve().parent.parent
    old_tree = _proc.export_ref(here, ref, root / "ref", "marketplace")
    print(f"side by side: this tree against {ref} (CPU per entry, new vs old)")
    for n in sizes:
        olds, news = [], []
        for _ in range(args.repeat):  # alternately, so that load drifts hit both alike
            olds.append(_child(old_tree, n, args))
            news.append(_child(here, n, args))
        old, new = _median(olds), _median(news)
        print(f"{new.size:,} entries (median of {args.repeat} alternate runs each):")
        print(_ratio_line("appends CPU/entry", new.append_cpu_us, old.append_cpu_us))
        print(_ratio_line("appends wall/entry", new.append_wall_us, old.append_wall_us))
        for w in args.workers:
            a, b = new.audits[w], old.audits[w]
            print(_ratio_line(f"audit workers={w} CPU/entry (all threads)", a.total_us, b.total_us))
            print(_ratio_line(f"audit workers={w} auditing thread", a.main_us, b.main_us))
            print(_ratio_line(f"audit workers={w} wall/entry", a.wall_us, b.wall_us))
            print(
                f"    audit workers={w} on 2 idle cores (estimate): "
                f"{a.idle_rate():,.0f}/s vs {b.idle_rate():,.0f}/s"
            )


def _machine() -> tuple[float, float]:
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    sign_us, verify_us = _ed25519_costs()
    print(
        f"ed25519 ({BACKEND}), CPU: sign {sign_us:.1f} us ({1e6 / sign_us:,.0f}/s per core: the "
        f"ceiling of appends signed one at a time), verify {verify_us:.1f} us "
        f"({1e6 / verify_us:,.0f}/s per core, the audit's ceiling without batch "
        f"verification: {2e6 / verify_us:,.0f}/s on 2 cores)"
    )
    sign_x, verify_x = _thread_speedup()
    print(
        f"ed25519 in 2 threads vs 1 (wall): sign {sign_x:.2f}x, verify {verify_x:.2f}x "
        "(libsodium releases the GIL inside each call)"
    )
    shares = _gil_free_share()
    if shares is not None:
        print(
            f"  share inside libsodium (GIL released): sign {shares[0]:.0%}, verify "
            f"{shares[1]:.0%} -> 2 threads on 2 idle cores do at most "
            f"{1 / (1 - shares[0] / 2):.2f}x / {1 / (1 - shares[1] / 2):.2f}x the work of one"
        )
    return sign_us, verify_us


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
    parser.add_argument(
        "--ref", default=None, help="also measure the marketplace/ of this git ref, side by side"
    )
    parser.add_argument("--repeat", type=int, default=3, help="alternate runs per ref and size")
    parser.add_argument(
        "--only-ref", action="store_true", help="with --ref: only the side-by-side figures"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [*args.entries, *([1_000_000] if args.full else [])]
    root = args.dir or Path(tempfile.mkdtemp(prefix="fedmarket-bench-", dir="/tmp"))
    try:
        if args.child:  # one size, figures as a JSON line for _child
            fig = _measure(root, sizes[0], args.per_round, args.workers)
            out = fig._asdict()
            out["audits"] = {w: list(a) for w, a in fig.audits.items()}
            print(json.dumps(out))
            return
        sign_us, _ = _machine()
        fsync_ms = _fsync_ms(root)
        print(f"fsync {fsync_ms:.2f} ms (two per sealed block)")
        if args.ref is not None:
            _side_by_side(args.ref, sizes, args, root)
            if args.only_ref:
                return
        figures = []
        for n in sizes:
            figures.append(_measure(root, n, args.per_round, args.workers))
            _print_size(figures[-1], sign_us, fsync_ms)
        _linearity(figures)
        if not args.no_scale:
            _scale(root)
        load = os.getloadavg()
        print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
