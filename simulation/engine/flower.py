"""``--engine flower``: the scenario as a Flower run on a private SuperLink.

The driver (this process) lays out the run's temporary folder, starts a Ray
head and a ``flower-superlink --simulation`` (``simulation.engine.superlink``),
submits the fedmarket app with the run config ``channel`` pointing at a folder
of files (``simulation.engine.channel``), then follows the run: each finished
round and each ServerApp log record comes back through those files, and so
does the result. Whatever happens, the SuperLink, Ray and everything they
started are stopped (by the watchdog, checked by pid) and the temporary folder
is removed. The ledger is written by the ServerApp straight into ``out_dir``
as the run goes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulation.config.schema import Scenario
from simulation.engine.run_dir import ENGINE_LOGS, RunDir, Started, keep_logs, run_on_superlink
from simulation.engine.stop import StopRequest
from simulation.engine.superlink import LocalSuperLink, RayHead
from simulation.errors import Problem, ScenarioError

if TYPE_CHECKING:
    from marketplace.keyring import Keyring
    from simulation.world.records import RoundRecord, WorldResult

log = logging.getLogger("fedmarket.runner")

__all__ = ["ENGINE_LOGS", "gpu_resources", "ray_cpus", "run_flower"]


def gpu_resources(scenario: Scenario) -> tuple[float, int]:
    """Flower's per-client GPU share and the GPUs Ray may hand out: the scenario's share
    when the run trains on CUDA (see ``resolve_device``), none otherwise."""
    from simulation.fl.device import resolve_device

    if resolve_device(scenario.training, scenario.resources).used != "cuda":
        return 0.0, 0
    import torch

    return scenario.resources.client_gpus, torch.cuda.device_count()


def ray_cpus(scenario: Scenario) -> int:
    """CPUs for the Ray head: the scenario's (default: all), but no more than its clients
    can use at once. Flower starts one ClientApp actor per ``client_cpus`` of them, and
    each actor imports torch (and Opacus) and loads the data before its first task: an
    actor that can never be busy costs seconds of CPU at start for nothing."""
    cpus = scenario.resources.num_cpus or os.cpu_count() or 1
    return max(1, min(cpus, scenario.clients.count * int(scenario.resources.client_cpus)))


def _federation(scenario: Scenario, verbose: bool) -> dict[str, Any]:
    cpus = scenario.resources.client_cpus
    if not float(cpus).is_integer():
        raise ScenarioError(
            [
                Problem(
                    "scenario",
                    "resources.client_cpus",
                    f"{cpus:g}: Flower's simulation runtime takes whole CPUs per client",
                )
            ]
        )
    return {
        "num_supernodes": scenario.clients.count,
        "backend": "ray",
        "client_resources_num_cpus": int(cpus),
        "client_resources_num_gpus": gpu_resources(scenario)[0],
        "verbose": verbose,
        "init_args_logging_level": "INFO" if verbose else "ERROR",
        "init_args_log_to_driver": verbose,
    }


def run_flower(
    scenario: Scenario,
    out_dir: Path,
    *,
    verbose: bool,
    on_round: Callable[[RoundRecord], None] | None,
    stop: StopRequest,
    keyring: Keyring,
) -> WorldResult:
    """Run ``scenario`` on its own SuperLink, its ledger signed with ``keyring`` (the
    ServerApp is handed the keyring's file); the world's result."""
    launcher = _SimulationLauncher(scenario, _federation(scenario, verbose), verbose)
    return run_on_superlink(
        scenario, out_dir, launcher, on_round=on_round, stop=stop, keyring=keyring
    )


@dataclass
class _SimulationLauncher:
    """A Ray head and a ``flower-superlink --simulation`` on it."""

    scenario: Scenario
    federation: dict[str, Any]
    verbose: bool
    prefix: str = "fm-"

    def start(self, run: RunDir) -> Started:
        env = run.env
        num_gpus = gpu_resources(self.scenario)[1]
        ray = RayHead.start(
            run.workdir, ray_cpus(self.scenario), env, verbose=self.verbose, num_gpus=num_gpus
        )
        run.processes.append(ray.process)
        env["RAY_ADDRESS"] = ray.address
        # Not waited for: the driver builds the data while both come up.
        link = LocalSuperLink.start(run.workdir, env, wait=False)
        run.processes.append(link.process)
        return Started(link, ray, self.federation)

    def keep_logs(self, workdir: Path, out_dir: Path) -> Path:
        """The SuperLink's and Ray's logs beside the partial results."""
        return keep_logs(out_dir, {n: workdir / n for n in ("superlink.log", "ray.log")})
