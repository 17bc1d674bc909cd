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

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from simulation.config.schema import Scenario
from simulation.engine.channel import RunChannel
from simulation.engine.env import quiet_environment
from simulation.engine.stop import StopRequest
from simulation.engine.superlink import LocalSuperLink, RayHead, child_environment
from simulation.errors import Problem, RunError, RunInterrupted, ScenarioError

if TYPE_CHECKING:
    from marketplace.keyring import Keyring
    from simulation.world.records import RoundRecord, WorldResult

log = logging.getLogger("fedmarket.runner")

ENGINE_LOGS = "engine-logs"
"""Where a failed Flower run's SuperLink and Ray logs are kept, inside ``out_dir``."""

STOP_GRACE = 60.0
"""Seconds the ServerApp gets to finish its client and seal the block after a stop."""


def gpu_resources(scenario: Scenario) -> tuple[float, int]:
    """Flower's per-client GPU share and the GPUs Ray may hand out: the scenario's share
    when the run trains on CUDA (see ``resolve_device``), none otherwise."""
    from simulation.fl.device import resolve_device

    if resolve_device(scenario.training, scenario.resources).used != "cuda":
        return 0.0, 0
    import torch

    return scenario.resources.client_gpus, torch.cuda.device_count()


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
    quiet_environment()
    federation = _federation(scenario, verbose)
    workdir = Path(tempfile.mkdtemp(prefix="fm-", dir="/tmp"))  # short: Ray's sockets live here
    try:
        channel = RunChannel(workdir / "channel")
        channel.create(json.dumps(scenario.resolved()))
        env = child_environment(workdir / "flwr", ray_address=None)
        num_cpus = scenario.resources.num_cpus or os.cpu_count() or 1
        num_gpus = gpu_resources(scenario)[1]
        ray = RayHead.start(workdir, num_cpus, env, verbose=verbose, num_gpus=num_gpus)
        link: LocalSuperLink | None = None
        try:
            env["RAY_ADDRESS"] = ray.address
            link = LocalSuperLink.start(workdir, env)
            log.debug("SuperLink up on 127.0.0.1:%d", link.port)
            run_config = {
                "scenario": str(channel.scenario),
                "out": str(out_dir.resolve()),
                "channel": str(channel.path),
                "keyring": str(channel.hand_keyring(keyring)),
            }
            run_id = link.submit(run_config, federation)
            log.debug("submitted run %d to the SuperLink on port %d", run_id, link.port)
            _import_while_they_start()
            _follow(link, ray, run_id, channel, on_round, stop)
        except RunError as exc:
            if isinstance(exc, RunInterrupted):
                raise
            raise RunError(f"{exc} (engine logs: {_keep_logs(workdir, out_dir)})") from exc
        finally:
            # Both trees are told to stop at once, then waited for.
            processes = [ray.process] if link is None else [link.process, ray.process]
            for p in processes:
                p.begin_close()
            if link is not None:
                link.client.close()
            for p in processes:
                p.close()
        return channel.outcome()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _keep_logs(workdir: Path, out_dir: Path) -> Path:
    """Copy the SuperLink's and Ray's logs beside the partial results."""
    dest = out_dir / ENGINE_LOGS
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("superlink.log", "ray.log"):
        if (workdir / name).exists():
            shutil.copy(workdir / name, dest / name)
    return dest


def _import_while_they_start() -> None:
    """What this process needs later (the results writer: pandas, pyarrow),
    imported while the run starts rather than after it. No torch: the driver
    of a Flower run never trains."""
    import simulation.results.write  # noqa: F401


class Liveness(Protocol):
    """What ``_follow`` asks, besides the SuperLink, whether it still runs (the Ray head)."""

    def running(self) -> bool: ...


def _follow(
    link: LocalSuperLink,
    ray: Liveness,
    run_id: int,
    channel: RunChannel,
    on_round: Callable[[RoundRecord], None] | None,
    stop: StopRequest,
) -> None:
    """Relay rounds and log records until the run finishes (or is stopped)."""
    relay = _Relay(channel, on_round)
    stop_sent: float | None = None
    next_status = 0.0
    while True:
        relay()
        if stop.requested and stop_sent is None:
            channel.request_stop()
            stop_sent = time.monotonic()
        if stop_sent is not None and time.monotonic() - stop_sent > STOP_GRACE:
            raise RunError(f"the ServerApp did not stop within {STOP_GRACE:g} s of {stop.reason}")
        if time.monotonic() >= next_status:
            if not link.process.running():
                raise RunError("the SuperLink exited during the run")
            if not ray.running():
                raise RunError("the Ray head exited during the run")
            status, sub_status, details = link.status(run_id)
            if status == "finished":
                relay()
                if sub_status != "completed" and not (channel.path / "failure.json").exists():
                    raise RunError(f"the Flower run {sub_status}: {details or 'no details'}")
                return
            next_status = time.monotonic() + 1.0
        time.sleep(0.1)


class _Relay:
    """Passes the ServerApp's new log records and finished rounds on, in order."""

    def __init__(self, channel: RunChannel, on_round: Callable[[RoundRecord], None] | None) -> None:
        self.channel = channel
        self.on_round = on_round
        self.log_at = 0
        self.round_at = 0

    def __call__(self) -> None:
        records, self.log_at = self.channel.read_lines("log.jsonl", self.log_at)
        for rec in records:
            logging.getLogger(str(rec["name"])).log(int(rec["level"]), "%s", rec["message"])
        rounds, self.round_at = self.channel.rounds(self.round_at)
        for r in rounds:
            if self.on_round is not None:
                self.on_round(r)
