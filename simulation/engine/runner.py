"""Running a scenario end to end through Flower's Simulation Engine.

Ray is started and stopped inside each run (its temp files under /tmp, quiet
unless verbose), Flower's telemetry is off, and the result files are written
only after the world finishes; the ledger is written as the run goes, so a
killed run still leaves a ledger that verifies.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from marketplace.keyring import Keyring
from simulation.config.schema import Scenario
from simulation.engine.env import quiet_environment
from simulation.errors import RunError
from simulation.world.core import RoundRecord, World, WorldResult, in_process_transport

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
    if force and (out_dir / "baseline").is_dir():
        shutil.rmtree(out_dir / "baseline")


def _run_flower(
    scenario: Scenario,
    out_dir: Path,
    verbose: bool,
    on_round: Callable[[RoundRecord], None] | None,
    keyring: Keyring | None,
) -> WorldResult:
    quiet_environment()
    from flwr.simulation import run_simulation

    from simulation.engine.server_app import make_server_app
    from simulation.fl.client_app import app as client_app

    sink: list[WorldResult] = []
    server_app = make_server_app(scenario, out_dir, sink, on_round, keyring)
    ray_tmp = tempfile.mkdtemp(prefix="fm-ray-", dir="/tmp")
    num_cpus = scenario.resources.num_cpus or os.cpu_count() or 1
    backend_config: dict[str, Any] = {
        "client_resources": {"num_cpus": scenario.resources.client_cpus, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": num_cpus,
            "num_gpus": 0,
            "_temp_dir": ray_tmp,
            "include_dashboard": False,
            "logging_level": logging.INFO if verbose else logging.ERROR,
            "log_to_driver": verbose,
            "object_store_memory": 256 * 1024 * 1024,
        },
    }
    try:
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=scenario.clients.count,
            backend_config=backend_config,  # type: ignore[arg-type]
            verbose_logging=verbose,
        )
    except SystemExit as exc:  # Flower exits on some engine failures
        raise RunError(f"the Flower simulation engine stopped (exit {exc.code})") from exc
    finally:
        _shutdown_ray()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if not sink:
        raise RunError("the ServerApp finished without a result (see the log above)")
    return sink[0]


def _shutdown_ray() -> None:
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


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
    engine: Literal["flower", "inprocess"] = "flower",
    force: bool = False,
    verbose: bool = False,
    on_round: Callable[[RoundRecord], None] | None = None,
    keyring: Keyring | None = None,
) -> RunOutcome:
    """Run ``scenario`` and write its results into ``out_dir``, signing its ledger
    with ``keyring`` (default: ``Keyring.load_or_create()``, the user's keyring).

    ``engine="flower"`` is the product path (ServerApp and ClientApps on the
    Simulation Engine); ``"inprocess"`` trains the same tasks in a plain loop,
    the baseline that ``benchmarks/flower_overhead.py`` compares against.
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
        if keyring is None:
            keyring = Keyring.load_or_create()
        if engine == "flower":
            result = _run_flower(scenario, out_dir, verbose, on_round, keyring)
        else:
            world = World(
                scenario, out_dir, in_process_transport, on_round=on_round, keyring=keyring
            )
            result = world.run()
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
    manifest = write_results(scenario, out_dir, result, wall_seconds=wall, keyring=keyring)
    return RunOutcome(out_dir, result, manifest, wall)
