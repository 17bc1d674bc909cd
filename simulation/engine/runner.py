"""Running a scenario end to end, on Flower or in process.

``--engine flower`` runs the world as a Flower run on a private SuperLink
(``simulation.engine.flower``); ``--engine inprocess`` trains the same tasks
in a plain loop. The result files are written only after the world finishes;
the ledger is written as the run goes, so a killed run still leaves a ledger
that verifies, and a run stopped by SIGTERM/SIGINT seals its last block first.

A run owns its directory: it holds an exclusive ``flock`` on ``--out/.fedmarket.lock``
from before it looks for an earlier run until its last file is written, so a
second run, or ``--force`` against a live one, is refused instead of deleting a
ledger under a writer. Every I/O failure (not a directory, read-only, full,
permission) becomes a one-line :class:`~simulation.errors.RunError` naming the
path and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from marketplace.keyring import Keyring
from simulation.config.schema import Scenario
from simulation.engine.env import quiet_environment
from simulation.engine.run_dir import prepare_data
from simulation.engine.stop import StopRequest, stop_on_signals
from simulation.errors import RunError, RunInterrupted

if TYPE_CHECKING:
    # Imported when a run starts: the Flower engine's processes come up meanwhile.
    from simulation.fl.training import ClientTask
    from simulation.world.records import Reply, RoundRecord, Transport, Weights, WorldResult

__all__ = [
    "Engine",
    "RunOutcome",
    "baseline_of",
    "owned_out_dir",
    "prepare_out_dir",
    "quiet_environment",
    "run_scenario",
]

Engine = Literal["flower", "inprocess", "deployment"]

log = logging.getLogger("fedmarket.runner")

RESULT_FILES = (
    "ledger.db",
    "ledger.db-wal",
    "ledger.db-shm",
    "manifest.json",
    "metrics.parquet",
    "metrics.csv",
    "rounds.parquet",
    "rounds.csv",
    "model.safetensors",
    "ground_truth.json",
    "scenario.yaml",
    "label_counts.parquet",
    "label_counts.csv",
)


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: where its files are and what it produced."""

    out_dir: Path
    result: WorldResult
    manifest: dict[str, Any]
    wall_seconds: float


LOCK_FILE = ".fedmarket.lock"
"""Held (``flock``, exclusive) by the run writing the directory; never deleted, so
two runs always lock the same inode."""


def io_failure(exc: OSError | sqlite3.Error, path: Path) -> str:
    """One line naming the path and the cause of an I/O failure."""
    if isinstance(exc, sqlite3.Error):
        return f"{path / 'ledger.db'}: {exc}"
    where = exc.filename if exc.filename is not None else path
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and Path(where) == path:
        return f"{path} is not a directory"
    return f"{where}: {exc.strerror or exc}"


def _make_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunError(f"{out_dir} is not a directory") from None
    except NotADirectoryError:
        raise RunError(f"{out_dir}: a parent of it is not a directory") from None
    except OSError as exc:
        raise RunError(io_failure(exc, out_dir)) from None


def _posix_locks(out_dir: Path) -> ModuleType:
    """``fcntl``, imported here rather than at the top so that importing the runner
    (its dataclasses, ``prepare_out_dir``) works where it is absent; a run that needs
    the lock there is refused with the reason instead of an ``ImportError``."""
    try:
        import fcntl
    except ImportError:
        raise RunError(
            f"{out_dir / LOCK_FILE}: cannot lock the run directory: this platform has no "
            "POSIX file locks (fcntl); runs need Linux or macOS (Ray and Flower do too)"
        ) from None
    return fcntl


@contextlib.contextmanager
def owned_out_dir(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` and hold its run lock for the ``with`` block; a directory
    another live run holds is refused (``RunError``), whatever ``--force`` says."""
    fcntl = _posix_locks(out_dir)
    _make_dir(out_dir)
    lock = out_dir / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunError(io_failure(exc, out_dir)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise RunError(
                f"{out_dir} is in use by another run{by}; wait for it or choose another --out"
            ) from None
        except OSError as exc:
            raise RunError(f"{lock}: cannot lock: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):  # the pid only makes the refusal clearer
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    """Create ``out_dir``; refuse to overwrite an earlier run unless ``force``.

    Call it holding :func:`owned_out_dir`, so no live run's files are removed.
    """
    _make_dir(out_dir)
    existing = [f for f in RESULT_FILES if (out_dir / f).exists()]
    if existing and not force:
        raise RunError(f"{out_dir} already holds a run ({existing[0]}); use --force to replace it")
    for f in existing:
        (out_dir / f).unlink()
    for sub in ("baseline", "engine-logs"):
        if force and (out_dir / sub).is_dir():
            shutil.rmtree(out_dir / sub)


def _in_process(stop: StopRequest) -> Transport:
    """The in-process loop, one task at a time so that a stop request is seen between clients."""

    from simulation.engine.inprocess import in_process_transport

    def send(tasks: list[ClientTask], weights: Weights) -> list[Reply]:
        out: list[Reply] = []
        for task in tasks:
            if stop.requested:
                raise RunInterrupted(f"{stop.reason} received", stop.signum)
            out.extend(in_process_transport([task], weights))
        return out

    return send


def _run_world(
    scenario: Scenario,
    out_dir: Path,
    engine: Engine,
    verbose: bool,
    on_round: Callable[[RoundRecord], None] | None,
    keyring: Keyring,
) -> WorldResult:
    """Run the world on ``engine``; a stop on SIGTERM/SIGINT says where the partial results are."""
    done: list[int] = [0]

    def finished(record: RoundRecord) -> None:
        done[0] = record.round
        if on_round is not None:
            on_round(record)

    with stop_on_signals() as stop:
        try:
            if engine in ("flower", "deployment"):
                if engine == "flower":
                    from simulation.engine.flower import run_flower as run_on_flower
                else:
                    from simulation.engine.deployment import run_deployment as run_on_flower

                return run_on_flower(
                    scenario,
                    out_dir,
                    verbose=verbose,
                    on_round=finished,
                    stop=stop,
                    keyring=keyring,
                )
            from simulation.world.core import World

            transport = _in_process(stop)
            return World(scenario, out_dir, transport, on_round=finished, keyring=keyring).run()
        except RunInterrupted as exc:
            raise RunInterrupted(
                f"stopped by {stop.reason} after round {done[0]} of {scenario.rounds}: the "
                f"partial ledger is {out_dir / 'ledger.db'} (last block sealed; check it with "
                f"`fedmarket ledger verify {out_dir}`); no other result files were written",
                stop.signum if stop.requested else exc.signum,
            ) from None


def baseline_of(scenario: Scenario) -> Scenario:
    """The same scenario and seed without attackers: no population groups, timeline
    or faults, and no attacking market behaviours. Its accuracy is the yardstick of
    an attack's accuracy drop."""
    from agents.market import attacking_market_behaviours

    attacking = attacking_market_behaviours()
    market = scenario.market.model_copy(
        update={
            "behaviours": tuple(
                b for b in scenario.market.behaviours if b.behaviour not in attacking
            )
        }
    )
    return scenario.model_copy(
        update={
            "name": f"{scenario.name}-baseline",
            "population": (),
            "timeline": (),
            "faults": (),
            "market": market,
            "output": scenario.output.model_copy(update={"baseline": False}),
        }
    )


def run_scenario(
    scenario: Scenario,
    out_dir: Path | str,
    *,
    engine: Engine = "flower",
    force: bool = False,
    verbose: bool = False,
    on_round: Callable[[RoundRecord], None] | None = None,
    keyring: Keyring | None = None,
) -> RunOutcome:
    """Run ``scenario`` and write its results into ``out_dir``, signing its ledger
    with ``keyring`` (default: ``Keyring.load_or_create()``, the user's keyring).

    ``engine="flower"`` is the product path (ServerApp and ClientApps on a
    SuperLink's simulation runtime); ``"inprocess"`` trains the same tasks in
    a plain loop, the baseline that ``benchmarks/flower_overhead.py`` compares
    against. Raises ``RunError`` (one line) when ``out_dir`` is held by another run
    or any I/O fails; the ledger written so far then still verifies.
    ``RunInterrupted`` after SIGTERM/SIGINT names the partial ledger.
    """
    out_dir = Path(out_dir)
    if engine == "deployment":  # refused before any file or process exists
        from simulation.engine.deployment import check_deployable

        check_deployable(scenario)
    try:
        with owned_out_dir(out_dir):
            prepare_out_dir(out_dir, force)
            signer = keyring if keyring is not None else Keyring.load_or_create()
            return _run_owned(scenario, out_dir, engine, verbose, on_round, signer)
    except (OSError, sqlite3.Error) as exc:
        log.debug("I/O failure in %s", out_dir, exc_info=True)
        raise RunError(io_failure(exc, out_dir)) from exc


def _run_owned(
    scenario: Scenario,
    out_dir: Path,
    engine: Engine,
    verbose: bool,
    on_round: Callable[[RoundRecord], None] | None,
    keyring: Keyring,
) -> RunOutcome:
    started = time.perf_counter()
    log.info(
        "running %s (seed %d): %d clients, %d rounds, engine %s",
        scenario.name,
        scenario.seed,
        scenario.clients.count,
        scenario.rounds,
        engine,
    )
    if engine == "inprocess":
        # A SuperLink engine builds it while its processes start (``run_dir``).
        prepare_data(scenario)
    flwr_logger = logging.getLogger("flwr")
    old_level = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.WARNING)
    try:
        result = _run_world(scenario, out_dir, engine, verbose, on_round, keyring)
    finally:
        flwr_logger.setLevel(old_level)
    if scenario.output.baseline:
        log.info("running the no-attack baseline (same seed) into %s", out_dir / "baseline")
        base = run_scenario(
            baseline_of(scenario),
            out_dir / "baseline",
            engine=engine,
            force=True,
            verbose=verbose,
            keyring=keyring,
        )
        result.baseline_accuracy = [r.test_accuracy for r in base.result.rounds]
    wall = time.perf_counter() - started
    from simulation.results.write import write_results  # imported during a Flower run's start

    manifest = write_results(scenario, out_dir, result, wall_seconds=wall, keyring=keyring)
    return RunOutcome(out_dir, result, manifest, wall)
