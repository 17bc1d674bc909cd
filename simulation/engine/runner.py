"""Running a scenario end to end, on Flower or in process.

``--engine flower`` runs the world as a Flower run on a private SuperLink
(``simulation.engine.flower``); ``--engine inprocess`` trains the same tasks
in a plain loop. The result files are written only after the world finishes;
the ledger is written as the run goes, so a killed run still leaves a ledger
that verifies, and a run stopped by SIGTERM/SIGINT seals its last block first.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simulation.config.schema import Scenario
from simulation.engine.env import quiet_environment
from simulation.engine.stop import StopRequest, stop_on_signals
from simulation.errors import RunError, RunInterrupted

if TYPE_CHECKING:
    # Imported when a run starts: the Flower engine's processes come up meanwhile.
    from simulation.fl.training import ClientTask
    from simulation.world.core import Reply, Transport
    from simulation.world.records import RoundRecord, Weights, WorldResult

__all__ = [
    "Engine",
    "RunOutcome",
    "baseline_of",
    "prepare_out_dir",
    "quiet_environment",
    "run_scenario",
]

Engine = Literal["flower", "inprocess"]

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
)


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: where its files are and what it produced."""

    out_dir: Path
    result: WorldResult
    manifest: dict[str, Any]
    wall_seconds: float


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    """Create ``out_dir``; refuse to overwrite an earlier run unless ``force``."""
    existing = [f for f in RESULT_FILES if (out_dir / f).exists()]
    if existing and not force:
        raise RunError(f"{out_dir} already holds a run ({existing[0]}); use --force to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in existing:
        (out_dir / f).unlink()
    for sub in ("baseline", "engine-logs"):
        if force and (out_dir / sub).is_dir():
            shutil.rmtree(out_dir / sub)


def _in_process(stop: StopRequest) -> Transport:
    """The in-process loop, one task at a time so that a stop request is seen between clients."""

    from simulation.world.core import in_process_transport

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
) -> WorldResult:
    """Run the world on ``engine``; a stop on SIGTERM/SIGINT says where the partial results are."""
    done: list[int] = [0]

    def finished(record: RoundRecord) -> None:
        done[0] = record.round
        if on_round is not None:
            on_round(record)

    with stop_on_signals() as stop:
        try:
            if engine == "flower":
                from simulation.engine.flower import run_flower

                return run_flower(scenario, out_dir, verbose=verbose, on_round=finished, stop=stop)
            from simulation.world.core import World

            transport = _in_process(stop)
            return World(scenario, out_dir, transport, on_round=finished).run()
        except RunInterrupted as exc:
            raise RunInterrupted(
                f"stopped by {stop.reason} after round {done[0]} of {scenario.rounds}: the "
                f"partial ledger is {out_dir / 'ledger.db'} (last block sealed; check it with "
                f"`fedmarket ledger verify {out_dir}`); no other result files were written",
                stop.signum if stop.requested else exc.signum,
            ) from None


ATTACK_MARKET_BEHAVIOURS = ("colluding_cabal", "whitewashers", "license_abusers")


def baseline_of(scenario: Scenario) -> Scenario:
    """The same scenario and seed without attackers: no population groups, timeline
    or faults, and no attacking market behaviours. Its accuracy is the yardstick of
    an attack's accuracy drop."""
    market = scenario.market.model_copy(
        update={
            "behaviours": tuple(
                b for b in scenario.market.behaviours if b.behaviour not in ATTACK_MARKET_BEHAVIOURS
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
) -> RunOutcome:
    """Run ``scenario`` and write its results into ``out_dir``.

    ``engine="flower"`` is the product path (ServerApp and ClientApps on a
    SuperLink's simulation runtime); ``"inprocess"`` trains the same tasks in
    a plain loop, the baseline that ``benchmarks/flower_overhead.py`` compares
    against. ``RunInterrupted`` after SIGTERM/SIGINT names the partial ledger.
    """
    from simulation.results.write import write_results

    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, force)
    started = time.perf_counter()
    log.info(
        "running %s (seed %d): %d clients, %d rounds, engine %s",
        scenario.name,
        scenario.seed,
        scenario.clients.count,
        scenario.rounds,
        engine,
    )
    flwr_logger = logging.getLogger("flwr")
    old_level = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.WARNING)
    try:
        result = _run_world(scenario, out_dir, engine, verbose, on_round)
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
        )
        result.baseline_accuracy = [r.test_accuracy for r in base.result.rounds]
    wall = time.perf_counter() - started
    manifest = write_results(scenario, out_dir, result, wall_seconds=wall)
    return RunOutcome(out_dir, result, manifest, wall)
